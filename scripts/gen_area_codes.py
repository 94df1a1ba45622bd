#!/usr/bin/env python3
"""Writes data/area_codes.txt: the US state or Canadian province of each
North American area code, from libphonenumber's geocoding data (the
`phonenumbers` package, Apache-2.0, see data/LICENSE-libphonenumber).

One line an area code: `NPA CODE` (`305 FL`, `514 QC`). Area codes the data
names no state or province for (toll-free, 500, 700, …) are left out, so
their numbers get no state.

    /tmp/hv/bin/pip install phonenumbers==9.0.21
    /tmp/hv/bin/python scripts/gen_area_codes.py > data/area_codes.txt
"""
import phonenumbers
from phonenumbers import geodata

NAMES = {
    "Alabama": "AL", "Alaska": "AK", "Arizona": "AZ", "Arkansas": "AR", "California": "CA",
    "Colorado": "CO", "Connecticut": "CT", "Delaware": "DE", "Florida": "FL", "Georgia": "GA",
    "Hawaii": "HI", "Idaho": "ID", "Illinois": "IL", "Indiana": "IN", "Iowa": "IA", "Kansas": "KS",
    "Kentucky": "KY", "Louisiana": "LA", "Maine": "ME", "Maryland": "MD", "Massachusetts": "MA",
    "Michigan": "MI", "Minnesota": "MN", "Mississippi": "MS", "Missouri": "MO", "Montana": "MT",
    "Nebraska": "NE", "Nevada": "NV", "New Hampshire": "NH", "New Jersey": "NJ",
    "New Mexico": "NM", "New York": "NY", "North Carolina": "NC", "North Dakota": "ND",
    "Ohio": "OH", "Oklahoma": "OK", "Oregon": "OR", "Pennsylvania": "PA", "Rhode Island": "RI",
    "South Carolina": "SC", "South Dakota": "SD", "Tennessee": "TN", "Texas": "TX", "Utah": "UT",
    "Vermont": "VT", "Virginia": "VA", "Washington State": "WA", "Washington": "WA",
    "West Virginia": "WV", "Wisconsin": "WI", "Wyoming": "WY", "Washington D.C.": "DC",
    "Alberta": "AB", "British Columbia": "BC", "British Colombia": "BC", "Manitoba": "MB", "New Brunswick": "NB",
    "Newfoundland and Labrador": "NL", "Nova Scotia": "NS", "Ontario": "ON",
    "Prince Edward Island": "PE", "Quebec": "QC", "Saskatchewan": "SK",
    "Northwest Territories": "NT", "Nunavut": "NU", "Yukon": "YT",
    # Areas spanning several provinces name none.
}

print(f"# North American area codes and their state or province, from phonenumbers {phonenumbers.__version__} (Apache-2.0, see data/LICENSE-libphonenumber)")
for prefix in sorted(k for k in geodata.GEOCODE_DATA if k.startswith("1") and len(k) == 4):
    name = geodata.GEOCODE_DATA[prefix].get("en", "")
    code = NAMES.get(name)
    if code is None and ", " in name:
        # "New York, NY": a city and its state.
        code = name.rsplit(", ", 1)[1] if len(name.rsplit(", ", 1)[1]) == 2 else None
    if code:
        print(f"{prefix[1:]} {code}")
