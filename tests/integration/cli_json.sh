#!/usr/bin/env bash
# cli_json (issue 18): every command that reports has one --json document, as docs/json.md
# describes it (each field checked by name and type here), and nothing else on stdout; with
# --json, progress goes to stderr as {"progress":...} lines; without it, nothing on stderr when
# stderr is not a terminal, and a redrawn line with percent and rate when it is (run under
# `script`, which gives the command a terminal). Human output stays human: tables for lists and a
# per-table summary for a restore.
. "$(dirname "$0")/../lib.sh"
start_dvsim --seed demo --records 150
write_config "environments = contoso-prod contoso-dev contoso-trial"
dvsnap init >/dev/null

# has DOC FILTER...: every jq FILTER (a boolean about the document) holds
has() {
  local f=$1 e; shift
  for e in "$@"; do jq -e "$e" "$f" >/dev/null || { echo "fails: $e"; return 1; }; done
}
# every_line FILE FILTER: the jq FILTER holds for every document of FILE (one per line; `has` and
# jq -e look at the last one only)
every_line() { jq -s -e "length > 0 and all(.[]; $2)" "$1" >/dev/null; }
one_document() { jq -s 'length' "$1" | grep -qx 1; }

# ---- capture ----
dvsnap capture --json >"$T/cap.json" 2>"$T/cap.err"
check_eq "capture --json exits 0" 0 "$?"
check "capture: exactly one JSON document on stdout" one_document "$T/cap.json"
check "capture: the pass's fields" has "$T/cap.json" \
  '.pass == 1' '(.started_at | type) == "string"' '(.duration_seconds | type) == "number"' \
  '.exit_code == 0' '.error == null' '(.environments | length) == 3'
check "capture: each environment's fields" has "$T/cap.json" \
  '[.environments[] | (.env|type)=="string" and (.status|type)=="string" and (.tables|type)=="number"
    and (.delta_reads|type)=="number" and (.full_reads|type)=="number" and (.records_read|type)=="number"
    and (.records_changed|type)=="number" and (.files|type)=="number" and (.requests|type)=="number"
    and (.throttled|type)=="number" and (.bytes_stored|type)=="number"
    and (.duration_seconds|type)=="number" and (.tables_not_captured|type)=="array"] | all'
check "capture: contoso-prod done with a point, contoso-trial skipped with why" has "$T/cap.json" \
  '.environments[] | select(.env == "contoso-prod") | .status == "done" and (.point | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{6}Z$")) and .error == null' \
  '.environments[] | select(.env == "contoso-trial") | .status == "skipped" and .point == null and (.error | test("trial"))'
check "capture: stderr holds only progress lines" every_line "$T/cap.err" 'has("progress")'
check "capture: progress lines carry percent, rate, time left and tables" every_line "$T/cap.err" \
  '.progress | .command == "capture" and (.env|type)=="string" and has("percent") and has("rate")
     and has("eta_seconds") and (.unit == "records") and (.tables_total|type)=="number"'
check "capture: progress reaches 100% for each environment" \
  bash -c "[ \$(jq -s '[.[] | select(.progress.percent == 100) | .progress.env] | unique | length' '$T/cap.err') = 2 ]"
dvsnap capture --env contoso-dev >"$T/cap2.out" 2>"$T/cap2.err"
check_eq "without --json and without a terminal nothing goes to stderr" "" "$(cat "$T/cap2.err")"
check "without --json the report is a line per environment" grep -q "^contoso-dev: point .* tables (" "$T/cap2.out"

# ---- backup ----
dvsnap backup contoso-prod --label "json check" --json >"$T/bk.json" 2>/dev/null
check_eq "backup --json exits 0" 0 "$?"
check "backup: its fields" has "$T/bk.json" '.env == "contoso-prod"' '.label == "json check"' \
  '.status == "done"' '(.point|type) == "string"' '(.records_read|type) == "number"' '.error == null'

# ---- env list ----
dvsnap env list --json >"$T/env.json"
check "env list: one document" one_document "$T/env.json"
check "env list: each environment's fields" has "$T/env.json" \
  '[.environments[] | (.name|type)=="string" and (.type|type)=="string" and has("geo") and has("region")
    and has("retention_days") and has("state") and (.selected|type)=="boolean"
    and (.system_backups|type)=="boolean" and (.manual_backups|type)=="boolean" and has("reason")] | all'
check "env list: the trial is not backed up and says why; prod is, with 28 days" has "$T/env.json" \
  '.environments[] | select(.name == "contoso-trial") | .system_backups == false and (.reason | test("trial"))' \
  '.environments[] | select(.name == "contoso-prod") | .system_backups and .manual_backups and .retention_days == 28'
check "env list: fabrikam-prod is not selected" has "$T/env.json" \
  '.environments[] | select(.name == "fabrikam-prod") | .selected == false and .system_backups == false'
check "env list without --json is a table" bash -c "dvsnap() { '$DVSNAP' --config '$T/config' \"\$@\"; }; dvsnap env list | head -1 | grep -q '^NAME  *TYPE  *GEO  *REGION  *RETENTION  *STATE  *BACKUPS'"

# ---- points ----
dvsnap points contoso-prod --json >"$T/pts.json"
check "points: the list's fields" has "$T/pts.json" '.env == "contoso-prod"' '(.points | length) == 2' \
  '[.points[] | (.point|type)=="string" and (.kind|type)=="string" and has("label")
    and (.taken_at|type)=="string" and ((.expires_at|type)=="string" or (.kind == "manual" and .expires_at == null))] | all' \
  '.points[1].kind == "manual" and .points[1].label == "json check"'
dvsnap points contoso-prod latest --json >"$T/pt.json"
check "points ENV POINT --json is backup.json" has "$T/pt.json" '.environment == "contoso-prod"' \
  '(.point|type)=="string"' '(.tables|type)=="array"' '(.records|type)=="number"' '(.not_captured|type)=="array"'
check "...the same document as without --json" cmp "$T/pt.json" <(dvsnap points contoso-prod latest)
check "points without --json is a table" bash -c "'$DVSNAP' --config '$T/config' points contoso-prod | head -1 | grep -q '^POINT  *KIND  *TAKEN  *EXPIRES  *HELD  *ANOMALY  *LABEL'"

# ---- check ----
dvsnap check --json >"$T/ck.json" 2>"$T/ck.err"
check "check: its fields" has "$T/ck.json" '.status == "ok"' '.read_data == false' '.catalog_rebuilt == false' \
  '.points == 4' '.objects_checked > 0' '(.bytes_checked|type)=="number"' '.damaged == []' '.error == null'
dvsnap check --json --read-data >"$T/ckr.json" 2>"$T/ckr.err"
check "check --read-data: bytes read" has "$T/ckr.json" '.read_data == true' '.bytes_checked > 0'
check "check: progress lines on stderr" has "$T/ckr.err" '.progress.command == "check" and .progress.unit == "bytes"'

# ---- restore ----
dvsnap restore --json contoso-prod latest --target contoso-dev --tables account,contact --dry-run >"$T/rs.json" 2>"$T/rs.err"
check_eq "restore --json exits 0" 0 "$?"
check "restore: one document" one_document "$T/rs.json"
check "restore: the outcome's fields" has "$T/rs.json" '.state == "done"' '.dry_run == true' \
  '.source == "contoso-prod"' '.target == "contoso-dev"' '(.operation|type)=="string"' \
  '(.created|type)=="number"' '(.updated|type)=="number"' '(.deleted|type)=="number"' \
  '(.unchanged|type)=="number"' '(.requests|type)=="number"' '(.write_requests|type)=="number"' \
  '(.tables | length) == 2' '[.tables[] | (.table|type)=="string" and (.created|type)=="number"] | all' \
  '(.skipped_fields|type)=="object"'
check "restore: progress lines on stderr" has "$T/rs.err" '.progress.command == "restore" and (.progress.phase|type)=="string"'
dvsnap restore contoso-prod latest --target contoso-dev --tables account,contact --dry-run >"$T/rs.txt" 2>/dev/null
check_fails "restore without --json is not JSON" jq . "$T/rs.txt"
check "...but a per-table summary" bash -c "grep -q '^restore contoso-prod/.* into contoso-dev (dry run): done' '$T/rs.txt' &&
  grep -q '^TABLE  *CREATED  *UPDATED  *DELETED  *UNCHANGED  *SKIPPED  *FAILED' '$T/rs.txt' &&
  grep -q '^account ' '$T/rs.txt' && grep -q '^contact ' '$T/rs.txt' && grep -q '^total ' '$T/rs.txt'"
dvsnap restore contoso-prod latest --target contoso-dev --tables account --yes --wait >/dev/null 2>"$T/rw.err"
check "restore --wait: a progress line for each state, without a terminal" bash -c \
  "grep -q '^restore contoso-dev: comparing ' '$T/rw.err' && grep -q '^restore contoso-dev: writing ' '$T/rw.err' && grep -q '^restore contoso-dev: done 100% ' '$T/rw.err'"

# ---- status ----
dvsnap status --json >"$T/st.json"
check "status: its fields" has "$T/st.json" '(.now|type)=="string"' '.stale_after_seconds == 1800' \
  '.capture_every_seconds == 900' '.exit_code == 0' '(.environments | length) == 2' \
  '[.environments[] | (.env|type)=="string" and .state == "ok" and .backed_up and (.stale|not) and (.partial|not)
    and (.failing|not) and (.points|type)=="number" and (.newest_point|type)=="string"
    and (.newest_point_at|type)=="string" and (.age_seconds|type)=="number" and (.lag_seconds|type)=="number"
    and (.tables_not_captured|type)=="array" and (.last_attempt_at|type)=="string"
    and .last_result == "ok" and (.last_success_at|type)=="string" and has("last_failure_at") and has("last_error")] | all'
check "status: the trial is left out" has "$T/st.json" '[.environments[].env] | index("contoso-trial") == null'

# ---- prune (last: it removes points) ----
dvsnap prune --json --dry-run >"$T/pr0.json" 2>/dev/null
check "prune --dry-run: its fields" has "$T/pr0.json" '.dry_run == true' '(.now|type)=="string"' \
  '.removed == []' '.points_removed == 0' '.objects_removed == 0' '.bytes_removed == 0'
far=$(date -u -d '+60 days' +%Y-%m-%dT%H:%M:%SZ)
dvsnap prune --json --now "$far" >"$T/pr.json" 2>"$T/pr.err"
check "prune 60 days on: every system point removed, named; the manual ones kept (keep_manual all)" \
  has "$T/pr.json" '.dry_run == false' '.points_removed == 3' '(.removed | length) == 3' \
  '[.removed[] | test("^contoso-(prod|dev)/")] | all' \
  '[.points[] | select(.removed | not) | .why] == ["keep_manual all (manual backups stay until forgotten)", "keep_manual all (manual backups stay until forgotten)"]' \
  '(.objects_removed|type)=="number"' '(.bytes_removed|type)=="number"'
# (the manual backups kept share the removed points' segments, so few objects may go)
check "prune: progress lines on stderr" has "$T/pr.err" '.progress.command == "prune"'

# ---- a terminal: the progress line is redrawn in place ----
sim_churn contoso-prod 0.5 9 >/dev/null
script -qfec "'$DVSNAP' --config '$T/config' capture --env contoso-prod" /dev/null >"$T/tty.out" 2>&1
check "on a terminal: a progress line with percent, tables and a rate" \
  grep -qaE 'capture contoso-prod: [0-9]+% [0-9]+/[0-9]+ tables, [0-9,]+ records' "$T/tty.out"
check "...redrawn in place (carriage return, erase line)" grep -qaP '\r\e\[K' "$T/tty.out"
finish
