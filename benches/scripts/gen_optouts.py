"""Opt-outs for import measurements.

usage: python3 gen_optouts.py N OUT.csv
"""
import random
import sys

n, path = int(sys.argv[1]), sys.argv[2]
r = random.Random(7)
with open(path, "w") as out:
    w = out.write
    w("suppression_id,number,controller,reason,source\n")
    for i in range(n):
        w(f"crm-oo-{i},+39348{r.randrange(10_000_000):07},{['', 'acme'][i % 2]},asked on the phone,call-centre\n")
