#!/usr/bin/env python3
"""Formats hits.py's JSON for the demo.

  summary.py servers   ->  one "    name: count" line per server, then errors
  summary.py inline    ->  "s1x20 s2x3" (and "errors=N" if any) on one line
"""
import json
import sys

d = json.load(sys.stdin)
servers = sorted(d["servers"].items())
errors = d["errors"]
if sys.argv[1:] == ["inline"]:
    text = " ".join(f"{k}x{v}" for k, v in servers)
    if errors:
        text += f" errors={errors}"
    print(text)
else:
    total = sum(v for _, v in servers) or 1
    for k, v in servers:
        print(f"    {k}: {v:5d}  ({100 * v / total:4.1f}%)")
    print(f"    errors: {errors}")
