#!/usr/bin/env bash
# Cost growth (issue 15): what a capture pass costs as the org grows. For each size N in SIZES
# (accounts in contoso-prod: dvsim --records N gives N accounts, 2N contacts and the demo tables),
# one full capture, then CHURN_PASSES passes after about CHURN changed records each (dvsim
# /_sim/churn at CHURN / records of every user table), each timed with its peak RSS
# (/usr/bin/time). Prints per size:
#   BENCH scale_full_s_<N>       full capture's wall time
#   BENCH scale_full_rss_<N>     its peak RSS (MB)
#   BENCH scale_inc_s_<N>        the median of the passes after ~CHURN changed records
#   BENCH scale_inc_rss_<N>      its peak RSS (MB)
# then the ratios between the largest and the smallest size (goal: within 1.5x; full capture RSS
# at most 256 MB, the pass at the largest size at most 1 s and 64 MB).
# Then idle points (manifests that share what did not change): an org of 1000 accounts given
# BENCH_SCALE_NOTES (20000) more notes with attachments of 1-4 KB (written through $batch), one
# full capture, then BENCH_SCALE_IDLE (100) passes with nothing changed:
#   BENCH scale_idle_bytes       what those points add to the repository (objects and manifests;
#                                goal: at most 1 MB in all)
#   BENCH scale_idle_manifest    the size of one idle point's manifest
# Then a large table's first full read (parallel key ranges): the accounts of the largest size in
# SIZES (tables_include = account), dvsim answering every request 50 ms late, at max_concurrency
# 8 and at 1 (one stream):
#   BENCH scale_first_read_s_c8, scale_first_read_s_c1, scale_first_read_speedup (goal >= 5)
# Then an idle pass's cost against the number of tables (definitions read once per change): dvsim
# of shape DVSIM_SHAPE (default: dvsim's own 18 tables; "real" for about 700 definitions when
# dvsim has --shape real) with 1000 accounts, one full capture, then one idle pass (nothing
# changed); from dvsim's request log:
#   BENCH scale_meta_tables, scale_meta_tracked  tables listed and change-tracked tables captured
#   BENCH scale_meta_idle_requests, _bytes      the idle pass's Web API requests and bytes downloaded
#   BENCH scale_meta_idle_tracked_requests      of which delta reads of change-tracked tables (the
#                                               untracked ones are read whole every pass)
#   BENCH scale_meta_idle_meta_requests, _bytes  of which metadata (RetrieveMetadataChanges)
#   BENCH scale_meta_full_meta_bytes            the full pass's metadata bytes (the version, whose
#                                               answer lists every table, then the narrowed
#                                               definitions)
#   BENCH scale_meta_defs_unnarrowed_bytes      what every pass read before: the definitions list
#                                               with every property (no $select)
# Knobs: BENCH_SCALE_SIZES (default "100000 1000000"; BENCH_LONG=1 adds 3333334: 10M rows in
# accounts and contacts, seeded in about 4 min, 18 GB of dvsim database; the first capture takes
# about 12 min), BENCH_SCALE_CHURN (600),
# BENCH_SCALE_PASSES (5), BENCH_SCALE_KEEP_DB=DIR (keep dvsim databases there between runs: a
# seeded database is reused, churn and all).
. "$(dirname "$0")/../lib.sh"
PARTS=" ${BENCH_SCALE_PARTS:-growth idle ranges meta} "
part() { [[ $PARTS == *" $1 "* ]]; }
SIZES=${BENCH_SCALE_SIZES:-100000 1000000${BENCH_LONG:+ 3333334}}
CHURN=${BENCH_SCALE_CHURN:-600}
PASSES=${BENCH_SCALE_PASSES:-5}
ENV=contoso-prod
bench() { echo "BENCH $*"; }
# timed NAME CMD...: runs CMD under /usr/bin/time; sets TIMED_S (wall seconds) and TIMED_MB (peak RSS)
timed() {
  local name=$1; shift
  /usr/bin/time -f '%e %M' -o "$T/$name.time" "$@" >"$T/$name.out" 2>&1 || { tail -5 "$T/$name.out"; exit 1; }
  read -r TIMED_S kb <"$T/$name.time"
  TIMED_MB=$(( kb / 1024 ))
}
median() { tr ' ' '\n' | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

first=""; last=""
part growth || SIZES=""
for N in $SIZES; do
  db="$T/dvsim-$N.db"
  [ -n "${BENCH_SCALE_KEEP_DB:-}" ] && mkdir -p "$BENCH_SCALE_KEEP_DB" && db="$BENCH_SCALE_KEEP_DB/dvsim-$N.db"
  rm -rf "$T/repo" "$T/cache"
  DVSIM_START_TIMEOUT=7200 start_dvsim --seed demo --records "$N" --db "$db"
  write_config
  dvsnap init >/dev/null
  timed full "$DVSNAP" --config "$T/config" capture --env "$ENV"
  full_s=$TIMED_S; full_mb=$TIMED_MB
  records=$(dvsnap points "$ENV" latest | jq .records)
  bench "scale_full_s_$N" "$full_s" s "$records records"
  bench "scale_full_rss_$N" "$full_mb" MB "peak RSS of the full capture"
  fraction=$(awk -v c="$CHURN" -v r="$records" 'BEGIN {printf "%.8f", c / r}')
  times=""; rss=""
  for i in $(seq 1 "$PASSES"); do
    changed=$(sim_churn "$ENV" "$fraction" "$((N + i))" | jq '.updated + .created + .deleted')
    timed "inc$i" "$DVSNAP" --config "$T/config" capture --env "$ENV"
    note "N=$N pass $i: $changed changed records, $TIMED_S s, $TIMED_MB MB"
    times="$times $TIMED_S"; rss="$rss $TIMED_MB"
  done
  inc_s=$(echo $times | median); inc_mb=$(echo $rss | median)
  bench "scale_inc_s_$N" "$inc_s" s "median of $PASSES passes after ~$CHURN changed records"
  bench "scale_inc_rss_$N" "$inc_mb" MB "peak RSS of that pass"
  eval "full_s_$N=$full_s full_mb_$N=$full_mb inc_s_$N=$inc_s inc_mb_$N=$inc_mb"
  [ -n "$first" ] || first=$N
  last=$N
  kill "$DVSIM_PID" 2>/dev/null; wait "$DVSIM_PID" 2>/dev/null
  [ -n "${BENCH_SCALE_KEEP_DB:-}" ] || rm -f "$db"
done
if [ "$first" != "$last" ]; then
  r() { echo "scale=2; $1 / $2" | bc; }
  eval "a=\$inc_s_$last b=\$inc_s_$first c=\$inc_mb_$last d=\$inc_mb_$first e=\$full_mb_$last f=\$full_mb_$first"
  bench scale_inc_time_growth "$(r "$a" "$b")" x "pass after ~$CHURN changes, ${last} vs ${first} accounts (goal <= 1.5)"
  bench scale_inc_rss_growth "$(r "$c" "$d")" x "its peak RSS, ${last} vs ${first} (goal <= 1.5)"
  bench scale_full_rss_growth "$(r "$e" "$f")" x "full capture peak RSS, ${last} vs ${first} (goal <= 1.5, <= 256 MB)"
fi

part idle && {
NOTES=${BENCH_SCALE_NOTES:-20000}
IDLE=${BENCH_SCALE_IDLE:-100}
rm -rf "$T/repo" "$T/cache"
start_dvsim --seed demo --records 1000 --db "$T/dvsim-idle.db"
write_config
dvsnap init >/dev/null
API="$DVSIM_URL/org/$ENV/api/data/v9.2"
TOK=$(curl -s -X POST "$DVSIM_URL/contoso/oauth2/v2.0/token" --data-urlencode client_id=dvsnap-test \
  --data-urlencode "client_secret@$T/secret" -d grant_type=client_credentials \
  --data-urlencode "scope=$DVSIM_URL/org/$ENV/.default" | jq -r .access_token)
python3 - "$API" "$TOK" "$NOTES" <<'PY' || exit 1
import base64, http.client, os, random, sys, urllib.parse
api, tok, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
u = urllib.parse.urlsplit(api)
conn = http.client.HTTPConnection(u.hostname, u.port, timeout=300)
rnd = random.Random(15)
for start in range(0, n, 1000):
    parts = []
    for i in range(start, min(n, start + 1000)):
        body = base64.b64encode(rnd.randbytes(rnd.randint(1024, 4096))).decode()
        rec = '{"subject":"bench note %d","filename":"note-%d.bin","mimetype":"application/octet-stream","isdocument":true,"documentbody":"%s"}' % (i, i, body)
        parts.append('--batch_AAA\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n'
                     'POST %s/annotations HTTP/1.1\r\nContent-Type: application/json; type=entry\r\n\r\n%s\r\n' % (u.path, rec))
    data = (''.join(parts) + '--batch_AAA--\r\n').encode()
    conn.request('POST', u.path + '/$batch', body=data, headers={'Authorization': 'Bearer ' + tok,
                 'Content-Type': 'multipart/mixed; boundary=batch_AAA', 'Prefer': 'odata.continue-on-error'})
    r = conn.getresponse(); r.read()
    if r.status >= 300:
        sys.exit('batch failed: %d' % r.status)
PY
dvsnap capture --env "$ENV" >/dev/null || exit 1
files=$(manifest "$ENV" latest | jq '.files | length')
repo_bytes() { du -sb --exclude=catalog.db\* --exclude=tmp --exclude=locks "$T/repo" | cut -f1; }
b0=$(repo_bytes)
t0=$(date +%s%N)
for i in $(seq 1 "$IDLE"); do
  dvsnap capture --env "$ENV" >/dev/null || exit 1
done
t1=$(date +%s%N)
b1=$(repo_bytes)
m=$(ls "$T/repo/points/$ENV/"*.json | tail -1)
bench scale_idle_bytes $(( b1 - b0 )) bytes "$IDLE idle points of an org with $files files (goal <= 1048576)"
bench scale_idle_manifest "$(stat -c %s "$m")" bytes "one idle point's manifest"
bench scale_idle_pass_ms $(( (t1 - t0) / 1000000 / IDLE )) ms "mean idle pass"
}

part ranges && {
N=${BENCH_SCALE_RANGE_SIZE:-${last:-1000000}}
db="$T/dvsim-$N.db"
[ -n "${BENCH_SCALE_KEEP_DB:-}" ] && mkdir -p "$BENCH_SCALE_KEEP_DB" && db="$BENCH_SCALE_KEEP_DB/dvsim-$N.db"
DVSIM_START_TIMEOUT=7200 start_dvsim --seed demo --records "$N" --db "$db"
curl -sf -X POST "$DVSIM_URL/_sim/faults" -d '{"latency_ms":50}' >/dev/null
for c in 8 1; do
  rm -rf "$T/repo" "$T/cache"
  write_config "tables_include = account" "max_concurrency = $c"
  dvsnap init >/dev/null
  timed "first$c" "$DVSNAP" --config "$T/config" capture --env "$ENV"
  eval "first_s_$c=$TIMED_S first_mb_$c=$TIMED_MB"
  bench "scale_first_read_s_c$c" "$TIMED_S" s "first full read of $N accounts, 50 ms a request, max_concurrency $c (peak RSS $TIMED_MB MB)"
done
bench scale_first_read_speedup "$(echo "scale=2; $first_s_1 / $first_s_8" | bc)" x "max_concurrency 8 against one stream (goal >= 5)"
kill "$DVSIM_PID" 2>/dev/null; wait "$DVSIM_PID" 2>/dev/null
}

part meta && {
rm -rf "$T/repo" "$T/cache"
shape=()
[ -z "${DVSIM_SHAPE:-}" ] || shape=(--shape "$DVSIM_SHAPE")
start_dvsim --seed demo --records 1000 --db "$T/dvsim-meta.db" "${shape[@]}"
write_config
dvsnap init >/dev/null
API="/org/$ENV/api/data/v9.2/"
seq_now() { curl -sf "$DVSIM_URL/_sim/requests" | jq '[.requests[].seq] | max // 0'; }
# usage SEQ FILTER: "requests bytes" of the org's Web API requests since SEQ whose path (after
# the API root) matches the jq FILTER
usage() {
  curl -sf "$DVSIM_URL/_sim/requests?since=$1" | jq -r --arg a "$API" "
    [.requests[] | select(.path | startswith(\$a)) | select(.path | ltrimstr(\$a) | $2)] |
    \"\\(length) \\([.[].bytes] | add // 0)\""
}
s0=$(seq_now)
dvsnap capture --env "$ENV" >"$T/meta-full.out" 2>&1
[ $? -le 5 ] || { tail -5 "$T/meta-full.out"; exit 1; }
read -r _ full_meta_bytes <<<"$(usage "$s0" 'startswith("RetrieveMetadataChanges(") or startswith("EntityDefinitions")')"
read -r _ full_version_bytes <<<"$(usage "$s0" 'startswith("RetrieveMetadataChanges(")')"
m=$(manifest "$ENV" latest)
tracked=$(jq '[.tables[] | select(.delta_link)] | length' <<<"$m")
captured=$(jq '.tables | length' <<<"$m")
s1=$(seq_now)
dvsnap capture --env "$ENV" >"$T/meta-idle.out" 2>&1
[ $? -le 5 ] || { tail -5 "$T/meta-idle.out"; exit 1; }
read -r idle_req idle_bytes <<<"$(usage "$s1" 'true')"
read -r idle_meta_req idle_meta_bytes <<<"$(usage "$s1" 'startswith("RetrieveMetadataChanges(") or startswith("EntityDefinitions")')"
sets=$(jq -c '[.tables[] | select(.delta_link) | .entity_set]' <<<"$m")
read -r idle_tracked_req idle_tracked_bytes <<<"$(usage "$s1" ". as \$p | $sets | index(\$p) != null")"
TOK=$(token "$ENV")
tables=$(curl -sf -H "Authorization: Bearer $TOK" "$DVSIM_URL${API}EntityDefinitions?\$select=LogicalName" | jq '.value | length')
unnarrowed=$(curl -sf -H "Authorization: Bearer $TOK" \
  "$DVSIM_URL${API}EntityDefinitions?\$expand=Attributes,ManyToOneRelationships,ManyToManyRelationships" | wc -c)
what="shape ${DVSIM_SHAPE:-small}"
bench scale_meta_tables "$tables" tables "$what: tables listed ($captured captured)"
bench scale_meta_tracked "$tracked" tables "$what: change-tracked tables captured"
bench scale_meta_idle_requests "$idle_req" requests "$what: an idle pass, Web API requests"
bench scale_meta_idle_bytes "$idle_bytes" bytes "$what: an idle pass, bytes downloaded"
bench scale_meta_idle_tracked_requests "$idle_tracked_req" requests "$what: of which change-tracked tables' delta reads ($idle_tracked_bytes bytes); the rest reads the untracked tables whole"
bench scale_meta_idle_meta_requests "$idle_meta_req" requests "$what: of which metadata"
bench scale_meta_idle_meta_bytes "$idle_meta_bytes" bytes "$what: of which metadata"
bench scale_meta_full_meta_bytes "$full_meta_bytes" bytes "$what: the full pass's metadata ($full_version_bytes for the version, the rest the narrowed definitions)"
bench scale_meta_defs_unnarrowed_bytes "$unnarrowed" bytes "$what: the definitions list every pass read before (no \$select)"
kill "$DVSIM_PID" 2>/dev/null; wait "$DVSIM_PID" 2>/dev/null
}
