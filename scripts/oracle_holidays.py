#!/usr/bin/env python3
"""Writes tests/vectors/holidays.json: every public holiday of ten countries
and four subdivisions over 2024-2035, straight from the `holidays` package's
API (not through data/holidays.txt), for `calendar::holidays` to match.

    /tmp/hv/bin/python scripts/oracle_holidays.py > tests/vectors/holidays.json
"""
import json

import holidays

REGIONS = ["FR", "MA", "US", "GB", "DE", "ES", "CA", "BR", "IN", "JP", "US-CA", "DE-BY", "ES-CT", "CA-QC"]
vectors = []
for region in REGIONS:
    country, _, sub = region.partition("-")
    for year in range(2024, 2036):
        h = holidays.country_holidays(country, subdiv=sub or None, years=year)
        vectors.append({"region": region, "year": year, "dates": sorted(d.isoformat() for d in h)})
print(json.dumps({"source": f"holidays {holidays.__version__}", "vectors": vectors}, indent=1))
