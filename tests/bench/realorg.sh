#!/usr/bin/env bash
# The 700-table org (issue 15): idle points and the mount's listing of a dvsim --shape real org.
# Each figure is printed with the load average at the time (the machine may be shared).
# Part idle: contoso-prod of `dvsim --shape real --records 1000 --notes BENCH_REALORG_NOTES
# (340000) --attachment-max-bytes 2048` (about 200,000 attachments of 1-2 KB), one full capture,
# then BENCH_REALORG_IDLE (100) passes with nothing changed (`dvsnap capture --passes`), on a
# directory repository and on Azurite (tests/node/servers.sh):
#   BENCH realorg_seed_s                 dvsim's seeding (start until it serves)
#   BENCH realorg_first_s_<store>        the first capture's wall time (peak RSS in the note)
#   BENCH realorg_idle_bytes_<store>     what the idle points add to the repository, objects and
#                                        manifests (goal: at most 1 MB in all)
#   BENCH realorg_idle_pass_ms_<store>   mean idle pass
# Part ls: contoso-prod of `dvsim --shape real --records 200` and BENCH_REALORG_POINTS (1000)
# points (one capture, then the rest as idle passes of one `dvsnap capture --passes`), mounted:
#   BENCH realorg_lsr_cold_s / _warm_s   ls -lR of the environment (fresh mount, page cache dropped;
#                                        then best of 3)
#   BENCH realorg_lsr_local_cold_s / _warm_s   the same names and sizes on local disk (truncate)
#   BENCH realorg_lsr_ratio_cold / _warm       mount against local disk (goal: within 2x)
#   BENCH realorg_lsr_rss                daemon peak RSS (VmHWM) after the listings (VmRSS and the
#                                        nodes it keeps, statfs's f_files, in the note)
# The mount keeps about --max-nodes kernel-known nodes (200,000 by default; the knob
# BENCH_REALORG_MAX_NODES sets it): a tree larger than that is listed again from the daemon when
# walked again, so the warm listing of 1,000 points (1.6M entries) is not served from the kernel's
# caches alone.
# dvsim runs with --max-requests 1000000/300: an idle pass of this org is about 700 requests, and
# the service's 6000 requests per 5 minutes would hold a run of 100 or 1000 back-to-back passes
# to about 8 passes every 5 minutes (captures 15 minutes apart never meet it).
# Knobs: BENCH_REALORG_PARTS ("idle ls"), BENCH_REALORG_STORES ("dir azure"),
# BENCH_REALORG_LS_KEEP=DIR (part ls keeps its repository and password in DIR and reuses them
# when DIR already holds BENCH_REALORG_POINTS points: writing 1,000 points takes about 30 minutes),
# BENCH_REALORG_LS_BUILD_ONLY=1 (write the points, do not mount).
. "$(dirname "$0")/../lib.sh"
PARTS=" ${BENCH_REALORG_PARTS:-idle ls} "
part() { [[ $PARTS == *" $1 "* ]]; }
ENV=contoso-prod
load() { cut -d' ' -f1-3 /proc/loadavg | sed 's/ /,/g'; }
bench() { echo "BENCH $*"; }
# timed NAME CMD...: runs CMD under /usr/bin/time; sets TIMED_S (wall seconds) and TIMED_MB (peak RSS)
timed() {
  local name=$1; shift
  /usr/bin/time -f '%e %M' -o "$T/$name.time" "$@" >"$T/$name.out" 2>&1 || { tail -5 "$T/$name.out"; exit 1; }
  read -r TIMED_S kb <"$T/$name.time"
  TIMED_MB=$(( kb / 1024 ))
}
# repo_bytes: the repository's stored bytes (objects and manifests; not the catalog or locks)
repo_bytes() {
  case $(_repo_loc) in
    azure://* | s3://*) _repo_objtool list | awk '{s += $1} END {print s + 0}' ;;
    *) du -sb --exclude=catalog.db\* --exclude=tmp --exclude=locks "$T/repo" | cut -f1 ;;
  esac
}

part idle && {
NOTES=${BENCH_REALORG_NOTES:-340000}
IDLE=${BENCH_REALORG_IDLE:-100}
s0=$(date +%s%N)
DVSIM_START_TIMEOUT=3600 start_dvsim --seed demo --shape real --records 1000 --notes "$NOTES" \
  --attachment-max-bytes 2048 --max-requests 1000000/300
s1=$(date +%s%N)
bench realorg_seed_s "$(awk -v n=$(( (s1 - s0) / 1000000 )) 'BEGIN {printf "%.1f", n / 1000}')" s \
  "dvsim --shape real --records 1000 --notes $NOTES, $(du -sm "$T/dvsim.db" | cut -f1) MB (load $(load))"
for store in ${BENCH_REALORG_STORES:-dir azure}; do
  rm -rf "$T/repo" "$T/cache"
  if [ "$store" = dir ]; then write_config; else DVSNAP_TEST_REPO=$store write_config; fi
  dvsnap init >/dev/null || exit 1
  l0=$(load)
  timed "first-$store" "$DVSNAP" --config "$T/config" capture --env "$ENV"
  files=$(manifest "$ENV" latest | jq '.files | length')
  records=$(dvsnap points "$ENV" latest | jq .records)
  bench "realorg_first_s_$store" "$TIMED_S" s "first capture, $records records, $files files, peak RSS $TIMED_MB MB (load $l0)"
  b0=$(repo_bytes)
  l0=$(load)
  t0=$(date +%s%N)
  timed "idle-$store" "$DVSNAP" --config "$T/config" capture --env "$ENV" --passes "$IDLE"
  t1=$(date +%s%N)
  b1=$(repo_bytes)
  points=$(dvsnap points "$ENV" | tail -n +2 | grep -c .)
  bench "realorg_idle_bytes_$store" $(( b1 - b0 )) bytes "$IDLE idle points of the 700-table org with $files files, $points points listed (goal <= 1048576; load $l0)"
  bench "realorg_idle_pass_ms_$store" $(( (t1 - t0) / 1000000 / IDLE )) ms "mean idle pass, peak RSS $TIMED_MB MB"
done
kill "$DVSIM_PID" 2>/dev/null; wait "$DVSIM_PID" 2>/dev/null
rm -f "$T/dvsim.db"
}

part ls && {
PTS=${BENCH_REALORG_POINTS:-1000}
KEEP=${BENCH_REALORG_LS_KEEP:-}
rm -rf "$T/repo" "$T/cache"
[ -z "$KEEP" ] || { mkdir -p "$KEEP/repo"; [ ! -s "$KEEP/password" ] || cp -p "$KEEP/password" "$T/password"; }
start_dvsim --seed demo --shape real --records 200 --max-requests 1000000/300
write_config
if [ -n "$KEEP" ]; then
  rm -rf "$T/repo"
  ln -s "$KEEP/repo" "$T/repo"
  cp -p "$T/password" "$KEEP/password"
fi
if [ -n "$KEEP" ] && [ -f "$KEEP/points-$PTS" ]; then
  note "reusing the $PTS points in $KEEP"
else
  dvsnap init >/dev/null || exit 1
  l0=$(load)
  t0=$(date +%s%N)
  dvsnap capture --env "$ENV" >/dev/null || exit 1
  [ "$PTS" -le 1 ] || dvsnap capture --env "$ENV" --passes $(( PTS - 1 )) >/dev/null || exit 1
  t1=$(date +%s%N)
  note "$PTS points written in $(( (t1 - t0) / 1000000000 )) s (load $l0)"
  [ -z "$KEEP" ] || touch "$KEEP/points-$PTS"
fi
[ -z "${BENCH_REALORG_LS_BUILD_ONLY:-}" ] || exit 0
points=$(dvsnap points "$ENV" | tail -n +2 | grep -c .)
M="$T/mnt"
drop() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; }
secs() { awk -v n="$1" 'BEGIN {printf "%.3f", n / 1e9}'; }
lsr() { local s; s=$(date +%s%N); ls -lR "$1" >/dev/null 2>&1; echo $(( $(date +%s%N) - s )); }
best3() { local b="" d; for _ in 1 2 3; do d=$(lsr "$1"); [ -z "$b" ] || [ "$d" -lt "$b" ] && b=$d; done; echo "$b"; }
mount_dvsnap "$M" ${BENCH_REALORG_MAX_NODES:+--max-nodes "$BENCH_REALORG_MAX_NODES"}
drop
l0=$(load)
cold=$(lsr "$M/$ENV")
warm=$(best3 "$M/$ENV")
# the same names and sizes on local disk
(cd "$M/$ENV" && find . -mindepth 1 -printf '%y %s %P\n') >"$T/tree.txt"
entries=$(wc -l <"$T/tree.txt")
python3 - "$T/tree.txt" "$T/local" <<'PY' || exit 1
import os, sys
root = sys.argv[2]
os.makedirs(root)
for line in open(sys.argv[1], encoding='utf-8', errors='surrogateescape'):
    kind, size, path = line.rstrip('\n').split(' ', 2)
    p = os.path.join(root, path)
    if kind == 'd':
        os.makedirs(p, exist_ok=True)
    else:
        with open(p, 'wb') as f:
            f.truncate(int(size))
PY
drop
lcold=$(lsr "$T/local")
lwarm=$(best3 "$T/local")
rss=$(awk '/VmHWM/ {print int($2 / 1024)}' "/proc/$MOUNT_PID/status")
rss_now=$(awk '/VmRSS/ {print int($2 / 1024)}' "/proc/$MOUNT_PID/status")
nodes=$(stat -f -c %c "$M")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "nan" }'; }
bench realorg_lsr_cold_s "$(secs "$cold")" s "ls -lR of $points points of the 700-table org, $entries entries, fresh mount (load $l0)"
bench realorg_lsr_warm_s "$(secs "$warm")" s "the same, best of 3"
bench realorg_lsr_local_cold_s "$(secs "$lcold")" s "the same tree on local disk, page cache dropped"
bench realorg_lsr_local_warm_s "$(secs "$lwarm")" s "the same, best of 3 (load $(load))"
bench realorg_lsr_ratio_cold "$(ratio "$cold" "$lcold")" x "mount against local disk (goal <= 2)"
bench realorg_lsr_ratio_warm "$(ratio "$warm" "$lwarm")" x "mount against local disk (goal <= 2)"
bench realorg_lsr_rss "$rss" MB "daemon peak RSS (VmHWM) after the listings; VmRSS $rss_now MB, $nodes nodes kept (load $(load))"
}
exit 0
