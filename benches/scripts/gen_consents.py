"""Consents for import measurements (docs/performance.md, "Contact records at CRM scale").

usage: python3 gen_consents.py N OUT.csv [--random-ids]

Ids `crm-<i>` in file order, or `crm-<16 hex digits>` in random order with
--random-ids; Italian mobile numbers at random (some repeat), five
controllers, nine columns. The same arguments give the same file.
"""
import random
import sys

n, path = int(sys.argv[1]), sys.argv[2]
random_ids = "--random-ids" in sys.argv[3:]
r = random.Random(0x9E37)
ctl = ["acme", "acme", "acme", "bravo", "charlie"]
with open(path, "w") as out:
    w = out.write
    w("consent_id,controller,number,purpose,granted_at,source,method,notice_version,evidence_ref\n")
    for i in range(n):
        cid = f"crm-{r.getrandbits(64):016x}" if random_ids else f"crm-{i}"
        w(f"{cid},{ctl[i % 5]},+39347{r.randrange(10_000_000):07},marketing,2026-0{1 + i % 9}-1{i % 10}T10:00:00Z,"
          f"web-form,double_opt_in,privacy-v{1 + i % 3},doi:{r.getrandbits(64):x}\n")
