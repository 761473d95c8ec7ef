#!/usr/bin/env bash
# Restore rules (README, "Restore"): every refusal has its message and exit code, and a refused
# request makes no write request at all (dvsim's request log) and takes no safety backup. A dry
# run reports the same differences an independent comparison finds, and writes nothing.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/restore_common.bash"
start_dvsim --seed demo ${RESTORE_SIM_ARGS:-}
write_config
dvsnap init >/dev/null 2>&1
check "capture contoso-prod and contoso-dev" dvsnap capture --env contoso-prod --env contoso-dev
points_dev() { dvsnap points contoso-dev 2>/dev/null | wc -l; }
dev_points=$(points_dev)

# refuse DESC EXIT_CODE MESSAGE_PART ARGS...: dvsnap restore exits with EXIT_CODE, says
# MESSAGE_PART, and dvsim saw no write.
refuse() {
  local desc=$1 want=$2 msg=$3; shift 3
  local seq; seq=$(last_seq)
  dvsnap restore "$@" </dev/null >"$T/r.out" 2>"$T/r.err"; local rc=$?
  if [ "$rc" = "$want" ] && grep -qi -- "$msg" "$T/r.err"; then ok "$desc (exit $rc)"
  else not_ok "$desc: exit $rc (want $want), stderr: $(head -c 300 "$T/r.err")"; fi
  local w; w=$(writes_since "$seq")
  check_eq "$desc: no write request" "" "$w"
}
refuse "production target refused, says to switch it to sandbox" 3 "switch it to sandbox" \
  contoso-prod latest --target contoso-prod --yes
refuse "target in another region refused" 3 "same region" \
  contoso-prod latest --target contoso-test --yes
refuse "confirm naming another environment refused" 2 "confirm" \
  contoso-prod latest --target contoso-dev --confirm contoso-test
refuse "missing confirm refused" 2 "confirm" \
  contoso-prod latest --target contoso-dev --confirm ''
refuse "no --yes and stdin not a terminal refused" 3 "not a terminal" \
  contoso-prod latest --target contoso-dev
refuse "unknown table refused" 2 "unknown table 'nosuchtable'" \
  contoso-prod latest --target contoso-dev --tables account,nosuchtable --yes
refuse "malformed table list refused" 2 "not a table name" \
  contoso-prod latest --target contoso-dev --tables 'account,,contact' --yes
refuse "unknown target refused" 2 "unknown target environment" \
  contoso-prod latest --target nosuch-env --yes
refuse "unknown point refused" 2 "no restore point" \
  contoso-prod 1999-01-01T000000Z --target contoso-dev --yes
refuse "audit=include refused (audits are read-only)" 1 "audit" \
  contoso-prod latest --target contoso-dev --include-audit --yes
curl -sf -X POST "$DVSIM_URL/_sim/faults" -d '{"capacity_free_mb":500}' >/dev/null
refuse "less than 1 GB free capacity refused" 1 "1 GB" \
  contoso-prod latest --target contoso-dev --yes
curl -sf -X POST "$DVSIM_URL/_sim/faults" -d '{"capacity_free_mb":100000}' >/dev/null
check_eq "refused requests took no safety backup" "$dev_points" "$(points_dev)"

# dry run: counts equal an independent comparison; nothing written
seq=$(last_seq)
if dvsnap restore --json contoso-prod latest --target contoso-dev --tables account,contact --dry-run \
     >"$T/dry.json" 2>"$T/dry.err"; then ok "dry run succeeds without confirmation"
else not_ok "dry run: $(cat "$T/dry.err")"; fi
check_eq "dry run: no write request" "" "$(writes_since "$seq")"
check_eq "dry run: no safety backup" "$dev_points" "$(points_dev)"
check_eq "dry run: state done, dry_run true" "done true" "$(jq -r '"\(.state) \(.dry_run)"' "$T/dry.json")"
entity_defs contoso-dev "$T/defs.json"
principal_map contoso-prod latest contoso-dev "$T/map.json"
for t in account contact; do
  dvsnap cat contoso-prod latest "$t" >"$T/p.json"
  sim_dump contoso-dev "$t" >"$T/d.json"
  python3 "$NORM" "$T/p.json" "$T/defs.json" "$t" "$T/map.json" >"$T/p.norm"
  python3 "$NORM" "$T/d.json" "$T/defs.json" "$t" >"$T/d.norm"
  want=$(python3 - "$T/p.norm" "$T/d.norm" "$t" <<'PY'
import json, sys
pk = sys.argv[3] + "id"
p = {json.loads(l)[pk]: l for l in open(sys.argv[1])}
d = {json.loads(l)[pk]: l for l in open(sys.argv[2])}
c = len(p.keys() - d.keys()); x = len(d.keys() - p.keys())
u = sum(1 for k in p.keys() & d.keys() if p[k] != d[k])
print(c, u, x)
PY
)
  got=$(jq -r --arg t "$t" '.tables[] | select(.table == $t) | "\(.created) \(.updated) \(.deleted)"' "$T/dry.json")
  check_eq "dry run: $t create/update/delete counts match an independent comparison" "$want" "$got"
  check "dry run: $t lists its first keys" jq -e --arg t "$t" \
    '.tables[] | select(.table == $t) | .first_keys | (.create + .update + .delete | length) > 0' "$T/dry.json"
done
check "dry run lists fields it cannot write (createdon) as skipped" \
  jq -e '.skipped_fields.account | index("createdon") != null' "$T/dry.json"
finish
