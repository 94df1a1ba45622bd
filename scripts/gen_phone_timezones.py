#!/usr/bin/env python3
"""Writes data/phone_timezones.txt from libphonenumber's time-zone map.

The map comes from the `phonenumbers` package (the Python port of Google's
libphonenumber, Apache-2.0), which carries upstream's
resources/timezones/map_data.txt as a Python dict. The output keeps upstream's
format, one prefix a line: `PREFIX|ZONE&ZONE…`, where PREFIX is the country
code followed by the leading digits of the national number.

    pip install phonenumbers==9.0.43
    python3 scripts/gen_phone_timezones.py > data/phone_timezones.txt
"""
import phonenumbers
from phonenumbers.tzdata import TIMEZONE_DATA

print(f"# libphonenumber time-zone map, from phonenumbers {phonenumbers.__version__} (Apache-2.0, see data/LICENSE-libphonenumber)")
for prefix in sorted(TIMEZONE_DATA, key=lambda p: (len(p), p)):
    print(f"{prefix}|{'&'.join(TIMEZONE_DATA[prefix])}")
