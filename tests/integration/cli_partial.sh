#!/usr/bin/env bash
# cli_partial (issue 18): a capture that commits a point while one table could not be read exits 5
# (it used to exit 0). dvsim --hostile-tables serves a table whose entity set is hostile: dvsnap
# refuses to put it in a URL, so that table is not captured and the point says so. Then:
#   - capture exits 5, says which table and why on stdout, and its --json names it (status
#     "partial", tables_not_captured);
#   - a manual backup of the same environment exits 5 too;
#   - status exits 5 and lists the table; the metrics count a partial capture (last_capture_ok 0,
#     one table not captured);
#   - an environment without the problem in the same pass is "done".
. "$(dirname "$0")/../lib.sh"
start_dvsim --seed demo --records 30 --hostile-tables
write_config "environments = contoso-prod" "metrics_file = $T/dvsnap.prom"
dvsnap init >/dev/null

dvsnap capture >"$T/c1.out" 2>"$T/c1.err"
check_eq "a capture with one table not read exits 5" 5 "$?"
check "it names the table and why" grep -q "^contoso-prod: table hostile_badset not captured (shown as of the point before): .*not a plain name" "$T/c1.out"
check_eq "the point was committed" 1 "$(dvsnap points contoso-prod --json | jq '.points | length')"
dvsnap capture --json >"$T/c2.json" 2>/dev/null
check_eq "capture --json exits 5 too" 5 "$?"
check_eq "--json: status partial, the table named with its reason, exit_code 5" "partial hostile_badset true 5" \
  "$(jq -r '"\(.environments[0].status) \(.environments[0].tables_not_captured[0].table) \(.environments[0].tables_not_captured[0].reason | test("not a plain name")) \(.exit_code)"' "$T/c2.json")"
dvsnap backup contoso-prod --label partial >/dev/null 2>&1
check_eq "a manual backup without that table exits 5" 5 "$?"

dvsnap status >"$T/s.out"; rc=$?
check_eq "status exits 5 (the newest point lacks a table)" 5 "$rc"
check "status says partial and names the table" bash -c \
  "grep -q '^contoso-prod  *partial ' '$T/s.out' && grep -q 'contoso-prod: table hostile_badset not captured' '$T/s.out'"
check_eq "status --json: partial, not stale" "partial true false 5" \
  "$(dvsnap status --json | jq -r '"\(.environments[0].state) \(.environments[0].partial) \(.environments[0].stale) \(.exit_code)"')"
dvsnap status --now "$(date -u -d '+2 hours' +%Y-%m-%dT%H:%M:%SZ)" >/dev/null 2>&1
check_eq "stale wins over partial (exit 7)" 7 "$?"
check_eq "metrics: the last capture was not ok" 0 "$(grep '^dvsnap_last_capture_ok{environment="contoso-prod"}' "$T/dvsnap.prom" | awk '{print $2}')"
check_eq "metrics: one table not captured" 1 "$(grep '^dvsnap_last_capture_tables_not_captured{environment="contoso-prod"}' "$T/dvsnap.prom" | awk '{print $2}')"
check_eq "metrics: three partial captures (two captures and the backup)" 3 \
  "$(grep '^dvsnap_captures_total{environment="contoso-prod",result="partial"}' "$T/dvsnap.prom" | awk '{print $2}')"
finish
