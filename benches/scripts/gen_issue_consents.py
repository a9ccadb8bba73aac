"""Issue 15's own import: consents of 5 columns, no consent_id (each id is
derived from its line, so ids come in random order; a few lines repeat).

usage: python3 gen_issue_consents.py N OUT.csv
"""
import random
import sys

n, path = int(sys.argv[1]), sys.argv[2]
r = random.Random(0x5EED)
ctl = ["acme", "acme", "acme", "bravo", "charlie"]
with open(path, "w") as out:
    w = out.write
    w("controller,number,purpose,granted_at,source\n")
    for i in range(n):
        w(f"{ctl[i % 5]},+39347{r.randrange(10_000_000):07},marketing,2026-0{1 + i % 9}-1{i % 10}T10:00:00Z,crm-{i % 97}\n")
