#!/usr/bin/env python3
"""Writes data/nanp/overlays.txt from NANPA's NPA database.

Usage: python3 data/nanp/build_overlays.py npa_report.csv > data/nanp/overlays.txt

npa_report.csv is the North American Numbering Plan Administrator's NPA
database (https://nanpa.com/reports/npa-reports). Its OVERLAY_COMPLEX column
names, for each area code (NPA), the codes serving the same area. Geographic
codes only (USE=G). Each group is written oldest first (IN_SERVICE_DT), so
that src/calling/zones.rs can give each overlay the zones of the codes that
served its area before it.
"""
import csv
import datetime
import re
import sys

# Complexes whose NANPA rows do not all list the same set, read by hand from
# the rows; the script checks that the codes named are exactly the complex's.
#   ('group', members)          all serve one area
#   ('over', overlays, bases)   each overlay serves the combined area of the bases
MANUAL = {
    '206': [('group', ['206']), ('group', ['360']), ('over', ['564'], ['206', '360'])],
    '212': [('group', ['212', '332', '646']), ('group', ['347', '465', '718', '929']),
            ('over', ['917'], ['212', '718'])],
    '236': [('group', ['250']), ('group', ['604']),
            ('over', ['236', '257', '672', '778'], ['250', '604'])],
    '273': [('group', ['273', '367', '418', '581'])],         # the 273 row adds 273 (planned)
    '281': [('group', ['281', '346', '621', '713', '832'])],  # the 832 row omits 621
    '312': [('group', ['312']), ('group', ['773']), ('over', ['872'], ['312', '773'])],
    '313': [('group', ['313']), ('group', ['734']), ('over', ['679'], ['313', '734'])],
    '321': [('group', ['407', '689']), ('over', ['321'], ['407'])],  # 321: Brevard codes and an overlay of 407
    '368': [('group', ['403']), ('group', ['780']),
            ('over', ['368', '587', '825'], ['403', '780'])],
    '404': [('group', ['404']), ('group', ['770']),
            ('over', ['470', '678', '943'], ['404', '770'])],
    '412': [('group', ['412']), ('group', ['724']), ('over', ['878'], ['412', '724'])],
    '416': [('group', ['416', '437', '647', '942'])],         # the 416/437/647 rows omit 942
}


def load(path):
    rows = list(csv.reader(open(path, encoding='utf-8')))
    assert rows[0][0] == 'File Date', 'not npa_report.csv'
    header = rows[1]
    by_npa = {}
    for row in rows[2:]:
        fields = dict(zip(header, row))
        by_npa[fields['NPA_ID']] = fields
    return rows[0][1], by_npa


def complexes(by_npa):
    parts = {}
    for npa, fields in by_npa.items():
        if fields['USE'] != 'G' or not fields['OVERLAY_COMPLEX'].strip():
            continue
        parts[npa] = [set(re.findall(r'\d{3}', p)) | {npa}
                      for p in fields['OVERLAY_COMPLEX'].split(',')]
    parent = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            x = parent[x]
        return x
    for npa, sets in parts.items():
        for members in sets:
            for m in members:
                parent[find(m)] = find(npa)
    groups = {}
    for npa in list(parent):
        groups.setdefault(find(npa), set()).add(npa)
    return parts, list(groups.values())


def main(path):
    date, by_npa = load(path)
    parts, found = complexes(by_npa)

    def since(npa):
        text = by_npa[npa]['IN_SERVICE_DT']
        day = datetime.datetime.strptime(text, '%d-%b-%Y').date() if text else datetime.date.max
        return (day, npa)

    def oldest_first(members):
        return '&'.join(sorted(members, key=since))

    sections = {}
    used = set()
    for members in found:
        manual = next((v for k, v in MANUAL.items() if k in members), None)
        if manual is None:
            sets = [s for npa in members for s in parts.get(npa, [])]
            assert all(s == members for s in sets), (members, sets)
            out = [oldest_first(members)]
        else:
            named = set()
            out = []
            for entry in manual:
                named |= set(entry[1]) | (set(entry[2]) if entry[0] == 'over' else set())
                if entry[0] == 'group' and len(entry[1]) > 1:
                    out.append(oldest_first(entry[1]))
                elif entry[0] == 'over':
                    out.append(oldest_first(entry[1]) + '|' + oldest_first(entry[2]))
            assert named == members, (members, named)
            used.add(next(k for k in MANUAL if k in members))
        country = by_npa[min(members)]['COUNTRY']
        section = {'US': 'US', 'CANADA': 'Canada'}.get(country, 'elsewhere in the NANP')
        places = '/'.join(sorted({by_npa[n]['LOCATION'] for n in members}))
        pending = sorted(n for n in members if by_npa[n]['IN_SERVICE'] != 'Y')
        for i, line in enumerate(out):
            note = places if i == 0 else ''
            later = [n for n in pending if n in re.findall(r'\d{3}', line)]
            if later:
                note += ('; ' if note else '') + 'not yet in service: ' + ', '.join(
                    f"{n} ({by_npa[n]['IN_SERVICE_DT'] or 'no date'})" for n in later)
            sections.setdefault(section, []).append((min(members), i, line + (f'  # {note}' if note else '')))
    assert used == set(MANUAL), set(MANUAL) - used
    print(f"""# NANP overlay area codes: which codes serve the same area.
# Source: NANPA, NPA database (npa_report.csv, "File Date,{date}"), columns
# OVERLAY_COMPLEX, IN_SERVICE_DT, LOCATION (https://nanpa.com/reports/npa-reports).
# Written by data/nanp/build_overlays.py (its MANUAL table: rows of one complex
# that disagree, resolved by hand). Geographic codes only.
#
#   A&B&C     A, B and C serve one area, in the order they entered service:
#             each takes the time zones of the codes before it.
#   X&Y|A&B   X and Y each serve the combined area of A and B, and take
#             their zones; A and B keep their own.
# Text after '#' is a comment.""")
    for section in ('US', 'Canada', 'elsewhere in the NANP'):
        print(f"\n# {section}")
        for _, _, line in sorted(sections[section]):
            print(line)


main(sys.argv[1])
