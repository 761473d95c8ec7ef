#!/usr/bin/env bash
# Restore benchmark (issue 5). With dvsim --records N (default 500,000 accounts and so a
# 1,000,000-record contact table in contoso-prod; 1,500,000 records in all):
#   1. restore account and contact (N + 2N records; lookups stay inside the set, owners and
#      currencies mapped to contoso-dev's) into contoso-dev, which holds none of those records:
#      records/s;
#   2. capture contoso-dev (its scheduled backup, as dvsnap's continuous capture would have taken),
#      churn it by 1%, restore again: requests and time of the minimal restore (its reads are the
#      safety backup's delta: the target's change since that capture);
#   3. the same with DVSNAP_RESTORE_REWRITE_ALL=1 (the naive restore that rewrites every record,
#      still in $batch of 1000): requests and time.
# The empty restore's own safety backup reads the whole target; step 2 without the scheduled
# capture would too (about 300 reads for 1.5M records), which the note on step 2 says.
# Prints BENCH lines; RESTORE_BENCH_RECORDS=N for a smaller run.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../integration/restore_common.bash"
N=${RESTORE_BENCH_RECORDS:-500000}
start_dvsim --seed demo --records "$N"
write_config
dvsnap init >/dev/null 2>&1
s=$(date +%s%N)
dvsnap capture --env contoso-prod --env contoso-dev || { echo "capture failed"; exit 1; }
echo "# capture of contoso-prod + contoso-dev: $(( ($(date +%s%N) - s) / 1000000 )) ms"

# run_restore NAME [ENV=VALUE...]: one restore of the account table, prints its figures
run_restore() {
  local name=$1; shift
  local seq; seq=$(last_seq)
  local s; s=$(date +%s%N)
  env "$@" "$DVSNAP" --config "$T/config" restore --json contoso-prod latest --target contoso-dev --tables account,contact \
    --yes >"$T/$name.json" 2>"$T/$name.err" || { echo "restore $name failed: $(tail -2 "$T/$name.err")"; exit 1; }
  local ms=$(( ($(date +%s%N) - s) / 1000000 ))
  # dvsnap's own counts (the outcome): dvsim's request log is a ring that also holds every part
  # of every $batch, so a large restore pushes its first requests out; its count is shown as a
  # cross-check
  local all writes sim_writes
  all=$(jq .requests "$T/$name.json")
  writes=$(jq .write_requests "$T/$name.json")
  sim_writes=$(writes_since "$seq" | wc -l)
  echo "# $name: $(jq -c '{created,updated,deleted,unchanged,states_set,batches,requests,write_requests}' "$T/$name.json") ${ms} ms; dvsim's log: $sim_writes writes since the start (complete unless the log wrapped)"
  eval "${name}_ms=$ms ${name}_all=$all ${name}_writes=$writes"
  eval "${name}_written=$(jq .records_written "$T/$name.json")"
}
run_restore empty
echo "BENCH restore_empty_rate $(( empty_written * 1000 / (empty_ms > 0 ? empty_ms : 1) )) records/s ($empty_written records written in $empty_ms ms, $empty_writes write requests)"
dvsnap capture --env contoso-dev >/dev/null || { echo "capture of contoso-dev failed"; exit 1; }
sim_churn contoso-dev 0.01 21 >/dev/null
run_restore minimal
dvsnap capture --env contoso-dev >/dev/null || { echo "capture of contoso-dev failed"; exit 1; }
sim_churn contoso-dev 0.01 22 >/dev/null
run_restore naive DVSNAP_RESTORE_REWRITE_ALL=1
echo "BENCH restore_1pct_write_requests $minimal_writes requests (naive: $naive_writes)"
echo "BENCH restore_1pct_requests $minimal_all requests (naive: $naive_all; reads included)"
echo "BENCH restore_1pct_write_ratio $(python3 -c "print(round($naive_writes / max($minimal_writes, 1), 1))") x fewer write requests than the naive restore"
echo "BENCH restore_1pct_request_ratio $(python3 -c "print(round($naive_all / max($minimal_all, 1), 1))") x fewer requests than the naive restore (reads included)"
echo "BENCH restore_1pct_time_ratio $(python3 -c "print(round($naive_ms / max($minimal_ms, 1), 2))") x faster ($minimal_ms ms vs $naive_ms ms)"
