#!/usr/bin/env bash
# erase benchmark (issue 17): erasing one person from POINTS (30) points of contoso-prod with
# dvsim --records RECORDS (100000: 100k accounts, 200k contacts, the "300k-record org"). The person
# (a contact with a unique e-mail address) is created before the first point and updated twice;
# every point follows 1% churn. Measured: the dry run's and the erasure's wall time, the objects
# and bytes the erasure wrote and removed against the repository's size, and the points it
# rewrote. Prints "BENCH name value unit [note]" lines.
# Knobs: BENCH_RECORDS (100000), BENCH_POINTS (30).
. "$(dirname "$0")/../lib.sh"
RECORDS=${BENCH_RECORDS:-100000}
POINTS=${BENCH_POINTS:-30}
ENV=contoso-prod
ms() { echo $(( $(date +%s%N) / 1000000 )); }
bench() { echo "BENCH $*"; }

t0=$(ms)
start_dvsim --seed demo --records "$RECORDS"
note "dvsim seeded $RECORDS accounts and $((2 * RECORDS)) contacts in $(( $(ms) - t0 )) ms"
write_config
dvsnap init >/dev/null
tok=$(token $ENV)
API=$DVSIM_URL/org/$ENV/api/data/v9.2
api() { curl -sf -o /dev/null -X "$1" -H "Authorization: Bearer $tok" -H 'Content-Type: application/json' ${3:+-d "$3"} "$API/$2"; }
C=33333333-0000-4000-8000-000000000001
EMAIL=bench.person.zq@example.org
api PATCH "contacts($C)" "{\"firstname\":\"Benchperson\",\"lastname\":\"Zq\",\"emailaddress1\":\"$EMAIL\"}"
t0=$(ms)
for i in $(seq 1 "$POINTS"); do
  [ "$i" -gt 1 ] && sim_churn $ENV 0.01 "$i" >/dev/null
  [ "$i" -eq 10 ] && api PATCH "contacts($C)" '{"jobtitle":"Bench job one"}'
  [ "$i" -eq 20 ] && api PATCH "contacts($C)" '{"jobtitle":"Bench job two"}'
  dvsnap capture --env $ENV >/dev/null || { echo "capture $i failed"; exit 1; }
done
note "$POINTS points captured in $(( $(ms) - t0 )) ms"
repo_bytes=$(du -sb --exclude=catalog.db "$T/repo" | cut -f1)
repo_objects=$(find "$T/repo/objects" -type f | wc -l)

t0=$(ms)
dvsnap erase $ENV --where "emailaddress1=$EMAIL" >"$T/dry.out" || { cat "$T/dry.out"; exit 1; }
dry_ms=$(( $(ms) - t0 ))
t0=$(ms)
dvsnap erase $ENV --where "emailaddress1=$EMAIL" --yes >"$T/erase.out" || { cat "$T/erase.out"; exit 1; }
erase_ms=$(( $(ms) - t0 ))
sed 's/^/# /' "$T/erase.out"
log=$(dvsnap erase $ENV --log | jq -c .)
written=$(jq .objects_written <<<"$log"); wbytes=$(jq .bytes_written <<<"$log")
removed=$(jq .objects_removed <<<"$log"); rbytes=$(jq .bytes_removed <<<"$log")
points=$(jq .points_rewritten <<<"$log"); segs=$(jq .segments_rewritten <<<"$log")
records=$(jq '[.records[]] | add' <<<"$log")
pct() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", 100 * a / b}'; }
bench erase_dry_run_time "$dry_ms" ms "plan only: every segment of every point of $ENV read"
bench erase_time "$erase_ms" ms "$records records (the contact and its audit records) from $points of $POINTS points, $((3 * RECORDS)) records in the org"
bench erase_objects_rewritten "$segs" segments "$written objects written, $removed removed, of $repo_objects in the repository"
bench erase_bytes_written "$wbytes" bytes "$(pct "$wbytes" "$repo_bytes")% of the repository ($repo_bytes bytes)"
bench erase_bytes_removed "$rbytes" bytes "$(pct "$rbytes" "$repo_bytes")% of the repository"
check "the repository checks clean after the erasure" dvsnap check
finish
