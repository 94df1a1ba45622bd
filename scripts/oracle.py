#!/usr/bin/env python3
"""Independent test vectors for the callable-time module, from Python's
zoneinfo (the IANA database) and the phonenumbers package (libphonenumber).

    pip install phonenumbers==9.0.43
    python3 scripts/oracle.py

writes tests/vectors/next_callable.json and tests/vectors/phone_zones.json.
The next-callable answers come from a brute-force scan, minute by minute, of
the local time in each zone: nothing shared with the Rust algorithm.
"""
import datetime as dt
import json
import random
from zoneinfo import ZoneInfo

import phonenumbers
from phonenumbers import timezone as pntz

ZONES = ["America/New_York", "America/Chicago", "America/Denver", "America/Phoenix", "America/Los_Angeles",
         "Europe/London", "Europe/Paris", "Australia/Sydney", "Asia/Tokyo", "Africa/Casablanca",
         "Pacific/Auckland", "America/Sao_Paulo", "Asia/Kolkata"]
UTC = dt.timezone.utc


def transitions(zone, year):
    """UTC instants (to the hour) where the zone's offset changes in a year."""
    z = ZoneInfo(zone)
    out = []
    t = dt.datetime(year, 1, 1, tzinfo=UTC)
    prev = t.astimezone(z).utcoffset()
    while t.year == year:
        t2 = t + dt.timedelta(hours=1)
        off = t2.astimezone(z).utcoffset()
        if off != prev:
            out.append(t2)
            prev = off
        t = t2
    return out


def random_calendar(rng):
    weekly = []
    for _ in range(7):
        day = []
        if rng.random() < 0.8:
            start = rng.randrange(0, 20 * 60, 30)
            end = min(1440, start + rng.randrange(30, 10 * 60, 30))
            day.append([start, end])
            if rng.random() < 0.4 and end < 1380:
                s2 = rng.randrange(end + 30, 1440, 30) if end + 30 < 1440 else end
                if s2 < 1440:
                    day.append([s2, min(1440, s2 + rng.randrange(30, 240, 30))])
        weekly.append(day)
    if not any(weekly):
        weekly[0] = [[9 * 60, 17 * 60]]
    return weekly


def callable_at(t, zones, weekly, closed):
    for zone in zones:
        local = t.astimezone(ZoneInfo(zone))
        minute = local.hour * 60 + local.minute
        if local.date().isoformat() in closed:
            return False
        if not any(s <= minute < e for s, e in weekly[local.weekday()]):
            return False
    return True


def next_callable(t, zones, weekly, closed, limit_minutes=60 * 24 * 30):
    for _ in range(limit_minutes):
        if callable_at(t, zones, weekly, closed):
            return t
        t += dt.timedelta(minutes=1)
    return None


def iso(t):
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def next_callable_vectors(rng, count):
    out = []
    for i in range(count):
        zones = [rng.choice(ZONES)]
        if rng.random() < 0.25:
            zones.append(rng.choice(ZONES))
        weekly = random_calendar(rng)
        year = rng.randrange(2026, 2031)
        trans = transitions(zones[0], year)
        if trans and rng.random() < 0.6:
            base = rng.choice(trans) + dt.timedelta(minutes=rng.randrange(-36 * 60, 36 * 60))
        else:
            base = dt.datetime(year, 1, 1, tzinfo=UTC) + dt.timedelta(minutes=rng.randrange(0, 365 * 24 * 60))
        base = base.replace(second=0, microsecond=0)
        closed = []
        if rng.random() < 0.3:
            d = base.astimezone(ZoneInfo(zones[0])).date() + dt.timedelta(days=rng.randrange(0, 3))
            closed.append(d.isoformat())
        found = next_callable(base, zones, weekly, set(closed))
        if found is None:
            continue
        out.append({"zones": zones, "weekly": weekly, "closed": closed, "from": iso(base), "expected": iso(found)})
    return out


def phone_vectors():
    numbers = ["+12125550100", "+13125550100", "+13035550100", "+16025550100", "+13105550100", "+18085550100",
               "+19075550100", "+15413720000", "+15415550100", "+18502300000", "+16055550100", "+17015550100",
               "+33140000000", "+33612345678", "+442079460000", "+447700900000", "+493012345678",
               "+212661234567", "+212522000000", "+61291234567", "+81312345678", "+5511987654321",
               "+14165550100", "+16045550100", "+19055550100"]
    out = []
    for n in numbers:
        p = phonenumbers.parse(n)
        if not phonenumbers.is_valid_number(p):
            continue
        out.append({"number": n, "zones": list(pntz.time_zones_for_number(p))})
    # National formats read with a default region.
    for text, region in [("(212) 555-0100", "US"), ("1-212-555-0100", "US"), ("01 40 00 00 00", "FR"), ("020 7946 0000", "GB")]:
        p = phonenumbers.parse(text, region)
        out.append({"number": text, "region": region, "e164": phonenumbers.format_number(p, phonenumbers.PhoneNumberFormat.E164),
                    "zones": list(pntz.time_zones_for_number(p))})
    return out


def main():
    rng = random.Random(20261129)
    vectors = next_callable_vectors(rng, 400)
    with open("tests/vectors/next_callable.json", "w") as f:
        json.dump({"generator": "scripts/oracle.py", "tzdata": "zoneinfo", "vectors": vectors}, f, indent=0)
    with open("tests/vectors/phone_zones.json", "w") as f:
        json.dump({"generator": "scripts/oracle.py", "phonenumbers": phonenumbers.__version__, "vectors": phone_vectors()}, f, indent=1)
    print(len(vectors), "next-callable vectors")


if __name__ == "__main__":
    main()
