#!/usr/bin/env python3
"""Writes data/holidays.txt: the public holidays of every country and
subdivision the `holidays` package knows (MIT, see data/LICENSE-holidays),
for the years 2024 to 2035, observed days included.

One line a region: `CODE YEAR:MMDD,MMDD,… YEAR:…`. A subdivision's line
(`US-CA`) lists only how it differs from its country's: days of its own,
and `-MMDD` for a national day it does not keep; a year with no entry is
left out.

    python3 -m venv /tmp/hv && /tmp/hv/bin/pip install holidays==0.86
    /tmp/hv/bin/python scripts/gen_holidays.py > data/holidays.txt
"""
import holidays

YEARS = range(2024, 2036)


def days(code, subdiv=None):
    try:
        h = holidays.country_holidays(code, subdiv=subdiv, years=YEARS)
    except NotImplementedError:
        return None
    by_year = {}
    for d in sorted(h.keys()):
        by_year.setdefault(d.year, set()).add(f"{d.month:02}{d.day:02}")
    return by_year


def line(code, by_year, national=None):
    parts = []
    for year in YEARS:
        local = by_year.get(year, set())
        base = (national or {}).get(year, set())
        these = sorted(local - base) + sorted(f"-{d}" for d in base - local)
        if these:
            parts.append(f"{year}:{','.join(these)}")
    return f"{code} {' '.join(parts)}" if parts else None


print(f"# public holidays {YEARS.start}-{YEARS.stop - 1}, from the holidays package {holidays.__version__} (MIT, see data/LICENSE-holidays)")
supported = holidays.list_supported_countries()
for code in sorted(c for c in supported if len(c) == 2 and c.isupper()):
    national = days(code)
    if national is None:
        continue
    out = line(code, national)
    if out:
        print(out)
    for sub in supported[code]:
        local = days(code, sub)
        if local is None:
            continue
        extra = line(f"{code}-{sub}", local, national)
        # A subdivision with no day of its own still exists.
        print(extra or f"{code}-{sub}")
