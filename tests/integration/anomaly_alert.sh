#!/usr/bin/env bash
# anomaly_alert (issue 17): mass-delete alerts. dvsim's churn deletes 10% of contoso-prod's
# contacts (200 of 2,000) between two captures: the capture exits 6, the new point is flagged in
# backup.json ("anomaly": the table, its rows before, what was deleted), in `dvsnap points` and in
# the mount's environment.json; notify_command runs exactly once with the JSON summary on stdin;
# the point before is held automatically for anomaly_hold (30 days), so a prune weeks later keeps
# it. Normal churn gives none of this, nor does a mass delete in a table under anomaly_min_rows
# (contoso-dev's 300 accounts); a lower anomaly_min_rows flags that one too.
. "$(dirname "$0")/../lib.sh"
start_dvsim --seed demo
cat >"$T/notify.sh" <<SH
#!/bin/sh
{ cat; echo; } >>"$T/notify.log"
echo "notify ran" # goes to dvsnap's stderr, not its stdout
SH
chmod 755 "$T/notify.sh"
write_config "notify_command = $T/notify.sh"
dvsnap init >/dev/null
at() { date -u -d "@$(( BASE + $1 ))" +%Y-%m-%dT%H:%M:%SZ; } # the test clock: BASE + seconds
BASE=$(( $(date +%s) / 3600 * 3600 - 5 * 3600 ))
notify_runs() { grep -c '^{' "$T/notify.log" 2>/dev/null || echo 0; }
cap() { # cap TIME [ARGS]: a capture on the test clock; prints its exit status
  DVSNAP_NOW="$1" "$DVSNAP" --config "$T/config" capture "${@:2}" >"$T/cap.out" 2>"$T/cap.err"
  echo $?
}

check_eq "first capture: exit 0" 0 "$(cap "$(at 0)")"
sim_churn contoso-prod 0.02 1 >/dev/null; sim_churn contoso-dev 0.02 2 >/dev/null
check_eq "normal churn (2%): exit 0" 0 "$(cap "$(at 3600)")"
check_eq "no point is flagged" "" "$(dvsnap points contoso-prod | awk 'NR>1 && $6 != "-"')"
check_eq "notify_command did not run" 0 "$(notify_runs)"
check_eq "nothing is held" "" "$(dvsnap points contoso-prod | awk 'NR>1 && $5 != "-"')"
BEFORE=$(dvsnap points contoso-prod | awk 'END {print $1}')

out=$(curl -sf -X POST "$DVSIM_URL/_sim/churn" -d '{"env":"contoso-prod","table":"contact","delete_fraction":0.1,"seed":3}')
check_eq "dvsim deleted 10% of contoso-prod's contacts and nothing else" "200 0 0" \
  "$(jq -r '"\(.deleted) \(.updated) \(.created)"' <<<"$out")"
curl -sf -X POST "$DVSIM_URL/_sim/churn" -d '{"env":"contoso-dev","table":"account","delete_fraction":0.5,"seed":4}' >/dev/null
check_eq "the capture after the mass delete exits 6" 6 "$(cap "$(at 7200)")"
check "it says so" grep -q "^contoso-prod: ANOMALY: point .* is flagged: contact: 200 of 2000 records deleted (10.00%)" "$T/cap.out"
check "the notify command's output went to stderr" grep -q "notify ran" "$T/cap.err"
P=$(dvsnap points contoso-prod | awk 'END {print $1}')
check_eq "dvsnap points flags the new point only" "$P mass-delete" \
  "$(dvsnap points contoso-prod | awk 'NR>1 && $6 != "-" {print $1, $6}')"
check_eq "backup.json has the anomaly" "mass_delete $BEFORE contact 2000 200 10 5 1000" \
  "$(dvsnap points contoso-prod "$P" | jq -r '.anomaly | "\(.kind) \(.previous_point) \(.tables[0].table) \(.tables[0].rows_before) \(.tables[0].deleted) \(.tables[0].percent) \(.threshold_percent) \(.min_rows)"')"
check_eq "only the contact table is flagged" 1 "$(dvsnap points contoso-prod "$P" | jq '.anomaly.tables | length')"
check_eq "contoso-dev's 50% of 300 accounts is under anomaly_min_rows: not flagged" "null" \
  "$(dvsnap points contoso-dev latest | jq -c .anomaly)"
check_eq "notify_command ran once" 1 "$(notify_runs)"
check_eq "with the summary on stdin" "contoso-prod $P $BEFORE contact 200 $BEFORE true" \
  "$(jq -r '"\(.env) \(.point) \(.previous_point) \(.tables[0].table) \(.tables[0].deleted) \(.held.point) \(.held.automatic)"' "$T/notify.log")"
check_eq "the point before is held for 30 days" "$BEFORE $(at $(( 7200 + 30 * 86400 )))" \
  "$(dvsnap points contoso-prod | awk '$5 != "-" && NR>1 {print $1, $5}')"
check "its backup.json shows the automatic hold" test \
  "$(dvsnap points contoso-prod "$BEFORE" | jq -r '"\(.hold.by) \(.hold.automatic)"')" = "dvsnap true"
check "and says why" bash -c "'$DVSNAP' --config '$T/config' points contoso-prod '$BEFORE' | jq -r .hold.reason | grep -q '^automatic: mass delete at $P (contact: 200 of 2000 records deleted (10.00%))'"

sim_churn contoso-prod 0.02 5 >/dev/null
check_eq "normal churn again: exit 0" 0 "$(cap "$(at 10800)")"
check_eq "and no new notify" 1 "$(notify_runs)"

# 29 days later the platform's 28 days of contoso-prod have passed: every point goes but the
# held one; at 40 days the hold has ended and it goes too
dvsnap prune --dry-run --now "$(at $(( 29 * 86400 )))" >"$T/dry1.out"
check_eq "prune 28 days later: the held point is kept, held" "keep contoso-prod/$BEFORE: held: automatic:" \
  "$(grep "^keep contoso-prod/$BEFORE: " "$T/dry1.out" | cut -d' ' -f1-4)"
dvsnap prune --dry-run --now "$(at $(( 40 * 86400 )))" >"$T/dry2.out"
check "after the hold ends (30 days) it goes like the rest" grep -q "^would remove contoso-prod/$BEFORE: platform retention ended" "$T/dry2.out"

# the mount shows the flag
mount_dvsnap "$T/mnt"
check_eq "environment.json lists the flagged point" "[\"$P\"]" "$(jq -c .anomalies "$T/mnt/contoso-prod/environment.json")"
check_eq "and the hold" "$BEFORE" "$(jq -r '.holds[].point' "$T/mnt/contoso-prod/environment.json")"
check_eq "the mount's backup.json has the anomaly" "contact" "$(jq -r '.anomaly.tables[0].table' "$T/mnt/contoso-prod/$P/backup.json")"

# configurable: with anomaly_min_rows 100, contoso-dev's mass delete is flagged too
curl -sf -X POST "$DVSIM_URL/_sim/churn" -d '{"env":"contoso-dev","table":"account","delete_fraction":0.2,"seed":6}' >/dev/null
check_eq "anomaly_min_rows = 100: a mass delete of 20% of 150 accounts exits 6" 6 \
  "$(DVSNAP_ANOMALY_MIN_ROWS=100 cap "$(at 14400)" --env contoso-dev)"
check_eq "flagged" "account" "$(dvsnap points contoso-dev latest | jq -r '.anomaly.tables[0].table')"
check_eq "notify ran for it" 2 "$(notify_runs)"
check "the repository checks clean" dvsnap check --read-data
finish
