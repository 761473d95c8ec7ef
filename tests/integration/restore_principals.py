#!/usr/bin/env python3
"""restore_principals: the principal mapping a restore should use, computed independently of the
C code, for the restore tests.

usage: restore_principals.py DIR FALLBACK_ID [MAP_FILE]

DIR holds, per principal table T (systemuser, team, businessunit, transactioncurrency), the
point's rows as pt.T.json and the target's as dst.T.json (table files; a missing file is an empty
table). Prints JSON {"map": {source id: target id}, "unmapped": [source ids], "fallback": id}:
the map file's pairs first, then the same id in the target, then users by Entra object id then
domain name (case-insensitive), business units root to root and by name, teams by name within
the mapped business unit (a default team to the mapped unit's default team), currencies by ISO
code. Ids are lower-cased."""
import json
import os
import sys


def rows(path):
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def low(s):
    return s.lower() if isinstance(s, str) else None


def main():
    d, fallback = sys.argv[1], sys.argv[2].lower()
    pairs = {}
    if len(sys.argv) > 3:
        for line in open(sys.argv[3], encoding="utf-8"):
            line = line.split("#")[0].split()
            if len(line) == 3:
                pairs[line[1].lower()] = line[2].lower()
    pt = {t: rows(os.path.join(d, "pt.%s.json" % t)) for t in
          ("systemuser", "team", "businessunit", "transactioncurrency")}
    dst = {t: rows(os.path.join(d, "dst.%s.json" % t)) for t in pt}
    pk = {"systemuser": "systemuserid", "team": "teamid", "businessunit": "businessunitid",
          "transactioncurrency": "transactioncurrencyid"}
    out, unmapped = {}, []

    def decide(table, r, rule):
        sid = low(r[pk[table]])
        ids = {low(x[pk[table]]) for x in dst[table]}
        if sid in pairs:
            out[sid] = pairs[sid]
        elif sid in ids:
            out[sid] = sid
        else:
            hit = rule(r)
            if hit:
                out[sid] = low(hit[pk[table]])
            else:
                unmapped.append(sid)

    def first(table, pred):
        return next((x for x in dst[table] if pred(x)), None)

    for r in pt["businessunit"]:
        def bu_rule(r):
            if not r.get("_parentbusinessunitid_value"):
                return first("businessunit", lambda x: not x.get("_parentbusinessunitid_value"))
            return first("businessunit", lambda x: low(x.get("name")) == low(r.get("name")) and
                         x.get("_parentbusinessunitid_value"))
        decide("businessunit", r, bu_rule)
    for r in pt["systemuser"]:
        def user_rule(r):
            aad = low(r.get("azureactivedirectoryobjectid"))
            dom = low(r.get("domainname"))
            return (aad and first("systemuser", lambda x: low(x.get("azureactivedirectoryobjectid")) == aad)) or \
                (dom and first("systemuser", lambda x: low(x.get("domainname")) == dom)) or None
        decide("systemuser", r, user_rule)
    for r in pt["team"]:
        def team_rule(r):
            bu = out.get(low(r.get("_businessunitid_value")))
            if not bu:
                return None
            if r.get("isdefault"):
                hit = first("team", lambda x: x.get("isdefault") and low(x.get("_businessunitid_value")) == bu)
                if hit:
                    return hit
            return first("team", lambda x: low(x.get("name")) == low(r.get("name")) and
                         low(x.get("_businessunitid_value")) == bu)
        decide("team", r, team_rule)
    for r in pt["transactioncurrency"]:
        decide("transactioncurrency", r,
               lambda r: first("transactioncurrency",
                               lambda x: low(x.get("isocurrencycode")) == low(r.get("isocurrencycode"))))
    json.dump({"map": out, "unmapped": sorted(unmapped), "fallback": fallback}, sys.stdout,
              sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
