#!/usr/bin/env bash
# Restore a sandbox onto itself (README, "Restore"): capture contoso-dev, churn it, restore the
# point into contoso-dev: every table equals the point again, and the audit records written after
# the point (by the churn and by the restore itself) are still there.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/restore_common.bash"
start_dvsim --seed demo ${RESTORE_SIM_ARGS:-}
write_config
dvsnap init >/dev/null 2>&1
check "capture contoso-dev" dvsnap capture --env contoso-dev
point=$(dvsnap points contoso-dev | grep -oE '[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{6}Z' | tail -1)
note "point $point"
entity_defs contoso-dev "$T/defs.json"
check "churn contoso-dev by 5%" sim_churn contoso-dev 0.05 3
audit_set=$(jq -r '[.value[] | select(.EntitySetName == "audits") | .LogicalName][0] // "audit"' "$T/defs.json")
sim_dump contoso-dev "$audit_set" | jq -r '.[] | .auditid' | sort >"$T/audit.before"
check "audit records exist after the churn" test -s "$T/audit.before"
if dvsnap restore --json contoso-dev "$point" --target contoso-dev --yes >"$T/out.json" 2>"$T/err"; then
  ok "restore contoso-dev onto itself"
else not_ok "restore failed: $(tail -3 "$T/err")"; finish; fi
check "something was written" jq -e '.records_written > 0' "$T/out.json"
for t in $(jq -r '.tables[] | select(.note == null) | .table' "$T/out.json"); do
  check "contoso-dev $t equals the point" same_table contoso-dev "$point" "$t" contoso-dev "$T/defs.json"
done
sim_dump contoso-dev "$audit_set" | jq -r '.[] | .auditid' | sort >"$T/audit.after"
check_eq "every audit record written after the point is still there" "" "$(comm -23 "$T/audit.before" "$T/audit.after" | head -3)"
check "the restore's own writes were audited" test "$(wc -l <"$T/audit.after")" -gt "$(wc -l <"$T/audit.before")"
finish
