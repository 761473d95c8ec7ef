#!/usr/bin/env python3
"""restore_norm: normalise a table file for restore comparisons, independently of the C code.

usage: restore_norm.py TABLE_FILE ENTITY_DEFINITIONS_JSON TABLE [MAPPING_JSON]

Keeps, per record, the primary key and the members restore can write: drops annotation keys
(anything with '@', including @odata.etag), nulls, members whose attribute is not valid for
update (createdon, versionnumber, ...) and file and image columns (their value is a
per-environment file id or a thumbnail; bytes are compared separately). Lookup ids are
lower-cased. With MAPPING_JSON (restore_principals.py's output), the file is the point's side and
its lookups are put as the target is to hold them: mapped principals replaced by the target's
ids, an unmapped owner by the fallback owner, any other lookup to an unmapped principal dropped.
Intersect (N:N) tables become their sorted (entity1 id, entity2 id) pairs, since intersect rows
get new ids when associated. Numbers are kept as their exact text. Prints one line per record,
sorted."""
import json
import sys


def num(s):
    return "#" + s


def main():
    rows = json.load(open(sys.argv[1], encoding="utf-8"), parse_float=num, parse_int=num)
    meta = json.load(open(sys.argv[2], encoding="utf-8"))
    table = sys.argv[3]
    mapping = json.load(open(sys.argv[4], encoding="utf-8")) if len(sys.argv) > 4 else None
    defs = meta.get("value", [meta])
    d = next(x for x in defs if x.get("LogicalName") == table)
    pk = d["PrimaryIdAttribute"]
    attrs = {a["LogicalName"]: a for a in d.get("Attributes", [])}
    out = []
    if d.get("IsIntersect"):
        mm = None
        for x in defs:
            for r in x.get("ManyToManyRelationships", []) or []:
                if r.get("IntersectEntityName") == table:
                    mm = r
        a1, a2 = mm["Entity1IntersectAttribute"], mm["Entity2IntersectAttribute"]
        for r in rows:
            out.append("%s|%s" % (str(r.get(a1)).lower(), str(r.get(a2)).lower()))
    else:
        for r in rows:
            n = {}
            for k, v in r.items():
                if "@" in k or v is None:
                    continue
                if k != pk:
                    name = k[1:-6] if k.startswith("_") and k.endswith("_value") else k
                    a = attrs.get(name)
                    if not a or a.get("AttributeType") in ("File", "Image", "Virtual"):
                        continue
                    if a.get("IsValidForUpdate") is not True:
                        continue
                    if name != k and isinstance(v, str):
                        v = v.lower()
                        if mapping is not None:
                            if v in mapping["map"]:
                                v = mapping["map"][v]
                            elif v in mapping["unmapped"]:
                                if a.get("AttributeType") != "Owner":
                                    continue
                                v = mapping["fallback"]
                n[k] = v
            out.append(json.dumps(n, sort_keys=True, ensure_ascii=False))
    out.sort()
    sys.stdout.write("".join(line + "\n" for line in out))


if __name__ == "__main__":
    main()
