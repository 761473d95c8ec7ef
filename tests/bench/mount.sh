#!/usr/bin/env bash
# bench mount (issue 4): the mount against local disk, a trivial in-memory FUSE file (the FUSE
# ceiling here), restic mount and borg mount, in one run, as ratios. Prints "BENCH name value unit".
#   1. a 1M-record table (repo_fill, ~75 MB) read cold (empty dvsnap cache, page cache dropped) and
#      warm, vs `cat` of the same bytes on local disk, memfuse, restic mount, borg mount; warm both
#      through FUSE passthrough (the default as root) and through the FUSE page cache
#   2. ls -lR of an environment with 1000 points x 20 tables vs the same tree on local disk
#   3. diff of the table at two points through the mount vs diff of local copies; changes/ vs table
#   4. daemon peak RSS while reading a 1 GB table (fakemount, the same view and cache), and the
#      cache's peak bytes against a small budget
# BENCH_QUICK=1 shrinks everything (a smoke run). Needs root (drop_caches); restic/borg optional.
set -u
BUILD=${BUILD:-$(cd "$(dirname "$0")/../.." && pwd)/build}
T=$(mktemp -d /tmp/dvsnap-bench.XXXXXX)
PIDS=() MOUNTS=()
cleanup() {
  for m in "${MOUNTS[@]}"; do fusermount3 -u "$m" 2>/dev/null || fusermount3 -uz "$m" 2>/dev/null; done
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null; rm -rf "$T"
}
trap cleanup EXIT
REC=1000000 PTS=1000 BIG=11500000
[ -z "${BENCH_QUICK:-}" ] || { REC=100000; PTS=100; BIG=1000000; }
drop() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; }
# best of 3 wall-clock seconds of a command (with drop before each run when $1 = cold)
tm() {
  local mode=$1; shift; local best=""
  for _ in 1 2 3; do
    [ "$mode" = cold ] && drop
    local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N)
    local d=$(( (e - s) / 1000 ))
    [ -z "$best" ] || [ "$d" -lt "$best" ] && best=$d
  done
  awk -v u="$best" 'BEGIN { printf "%.4f", u / 1e6 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "nan" }'; }
bench() { echo "BENCH $*"; }
waitmnt() { for _ in $(seq 300); do mountpoint -q "$1" && return 0; sleep 0.1; done; return 1; }

# ---- data: one environment, 2 points of one 1M-record table ----
cat >"$T/config" <<CFG
repository = $T/repo
cache_dir  = $T/cache
cache_size = 4G
CFG
chmod 600 "$T/config"
"$BUILD/tests/repo_fill" --repo "$T/repo" --envs 1 --points 2 --tables 1 --records "$REC" \
  --record-bytes 70 --churn 0.01 --quiet || { echo "repo_fill failed"; exit 1; }
M="$T/mnt"; mkdir -p "$M"
mount_dvsnap() {
  "$BUILD/dvsnap" --config "$T/config" mount --foreground "$M" "$@" >"$T/mount.log" 2>&1 &
  DPID=$!; PIDS+=("$DPID"); MOUNTS+=("$M"); waitmnt "$M" || { cat "$T/mount.log"; exit 1; }
}
umount_dvsnap() { fusermount3 -u "$M"; wait "$DPID" 2>/dev/null; }
# wait until the daemon holds N plain copies (passthrough backing files: unlinked cache files)
wait_plain() {
  for _ in $(seq 300); do
    [ "$(ls -l "/proc/$DPID/fd" 2>/dev/null | grep -c "$T/cache/files/#.*(deleted)")" -ge "$1" ] && return 0
    sleep 0.1
  done
  echo "BENCH note: no plain copy (passthrough off: not root, or a kernel without it)"; return 1
}
mount_dvsnap
P1=$(ls "$M/env-01" | grep '^20' | head -1); P2=$(ls "$M/env-01" | grep '^20' | tail -1)
TBL="$M/env-01/$P2/tables/table01.json"
SIZE=$(stat -c %s "$TBL")
bench table_bytes "$SIZE" bytes "1 table, $REC records"
cp "$TBL" "$T/local.json"
cp "$M/env-01/$P1/tables/table01.json" "$T/local1.json"

# 1. cold: a fresh cache each run (unmount, empty the cache, mount, drop caches)
best=""
for _ in 1 2 3; do
  umount_dvsnap; rm -rf "$T/cache"; mount_dvsnap; ls -l "$TBL" >/dev/null; drop
  s=$(date +%s%N); cat "$TBL" >/dev/null; e=$(date +%s%N); d=$(( (e - s) / 1000 ))
  [ -z "$best" ] || [ "$d" -lt "$best" ] && best=$d
done
dv_cold=$(awk -v u="$best" 'BEGIN { printf "%.4f", u / 1e6 }')
# served by the daemon from the cache's zstd frames (no passthrough), then warm through the FUSE
# page cache
umount_dvsnap; mount_dvsnap --no-passthrough; ls -l "$TBL" >/dev/null
dv_cached=$(tm cold cat "$TBL")   # materialised in the dvsnap cache, page cache dropped
dv_warm_fuse=$(tm warm cat "$TBL")
# passthrough (the default as root): the first read again makes the plain copy; then reads go
# from the plain copy's file, page cache dropped and warm
umount_dvsnap; mount_dvsnap; ls -l "$TBL" >/dev/null
s=$(date +%s%N); cat "$TBL" >/dev/null; wait_plain 1; e=$(date +%s%N)
bench plain_copy_seconds "$(awk -v u=$(( (e - s) / 1000 )) 'BEGIN { printf "%.4f", u / 1e6 }')" s \
  "the read again that makes the plain copy, until it is ready"
dv_pt_cold=$(tm cold cat "$TBL")
dv_warm=$(tm warm cat "$TBL")
loc_cold=$(tm cold cat "$T/local.json")
loc_warm=$(tm warm cat "$T/local.json")
bench read_dvsnap_cold "$dv_cold" s "empty cache: merge segments + render + cache + FUSE"
bench read_dvsnap_cache "$dv_cached" s "from the dvsnap cache's frames, page cache dropped (--no-passthrough)"
bench read_dvsnap_warm_fuse "$dv_warm_fuse" s "FUSE page cache (keep_cache, --no-passthrough)"
bench read_dvsnap_passthrough_cold "$dv_pt_cold" s "passthrough from the plain copy, page cache dropped"
bench read_dvsnap_warm "$dv_warm" s "passthrough, warm"
bench read_local_cold "$loc_cold" s; bench read_local_warm "$loc_warm" s
bench ratio_warm_vs_local "$(ratio "$dv_warm" "$loc_warm")" x "goal <= 1.25"
bench ratio_warm_fuse_vs_local "$(ratio "$dv_warm_fuse" "$loc_warm")" x "without passthrough"
bench ratio_passthrough_cold_vs_local_cold "$(ratio "$dv_pt_cold" "$loc_cold")" x
bench ratio_cold_vs_local "$(ratio "$dv_cold" "$loc_cold")" x

# memfuse: the FUSE ceiling
MF="$T/memfuse"; mkdir -p "$MF"
"$BUILD/tests/memfuse" "$T/local.json" "$MF" & PIDS+=("$!"); MOUNTS+=("$MF"); waitmnt "$MF"
mf_cold=$(tm cold cat "$MF/data"); mf_warm=$(tm warm cat "$MF/data")
bench read_memfuse_cold "$mf_cold" s; bench read_memfuse_warm "$mf_warm" s
bench ratio_cold_vs_memfuse "$(ratio "$dv_cold" "$mf_cold")" x
bench ratio_cache_vs_memfuse "$(ratio "$dv_cached" "$mf_cold")" x
# the FUSE ceiling for warm reads: when memfuse itself is above 1.25x of local cat, that (not
# dvsnap) is why the warm goal is out of reach here
bench ratio_memfuse_warm_vs_local_warm "$(ratio "$mf_warm" "$loc_warm")" x "the FUSE ceiling"
bench ratio_warm_fuse_vs_memfuse_warm "$(ratio "$dv_warm_fuse" "$mf_warm")" x "dvsnap's own share without passthrough"
fusermount3 -u "$MF"

if command -v restic >/dev/null; then
  export RESTIC_PASSWORD=bench RESTIC_REPOSITORY="$T/restic"
  restic init -q >/dev/null 2>&1 && (cd "$T" && restic backup -q local.json >/dev/null 2>&1)
  RM="$T/rmnt"; mkdir -p "$RM"
  restic mount --no-cache "$RM" >/dev/null 2>&1 & PIDS+=("$!"); MOUNTS+=("$RM")
  for _ in $(seq 200); do [ -e "$RM/snapshots/latest" ] && break; sleep 0.1; done
  RF=$(find "$RM/snapshots/latest/" -name local.json | head -1)
  if [ -n "$RF" ]; then
    r_cold=$(tm cold cat "$RF"); r_warm=$(tm warm cat "$RF")
    bench read_restic_cold "$r_cold" s; bench read_restic_warm "$r_warm" s
    bench ratio_restic_cold_vs_dvsnap_cold "$(ratio "$r_cold" "$dv_cold")" x "goal >= 2"
  fi
  fusermount3 -u "$RM" 2>/dev/null
fi
if command -v borg >/dev/null; then
  export BORG_REPO="$T/borg" BORG_PASSPHRASE="" BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
  borg init -e none >/dev/null 2>&1 && (cd "$T" && borg create ::a local.json >/dev/null 2>&1)
  BM="$T/bmnt"; mkdir -p "$BM"
  borg mount ::a "$BM" >/dev/null 2>&1; MOUNTS+=("$BM")
  if [ -f "$BM/local.json" ]; then
    b_cold=$(tm cold cat "$BM/local.json"); b_warm=$(tm warm cat "$BM/local.json")
    bench read_borg_cold "$b_cold" s; bench read_borg_warm "$b_warm" s
    bench ratio_dvsnap_cold_vs_borg_cold "$(ratio "$dv_cold" "$b_cold")" x "goal <= 1"
  fi
  borg umount "$BM" 2>/dev/null
fi

# 3. diff of the table at two points; changes/ vs the table
T1="$M/env-01/$P1/tables/table01.json"
cat "$T1" >/dev/null; cat "$T1" >/dev/null; wait_plain 2   # both tables read before: passthrough
d_mnt=$(tm cold diff "$T1" "$TBL"); d_loc=$(tm cold diff "$T/local1.json" "$T/local.json")
bench diff_dvsnap "$d_mnt" s "both tables in the dvsnap cache, page cache dropped"
bench diff_local "$d_loc" s
bench ratio_diff_vs_local "$(ratio "$d_mnt" "$d_loc")" x "goal <= 1.1"
d_warm=$(tm warm diff "$T1" "$TBL"); d_lwarm=$(tm warm diff "$T/local1.json" "$T/local.json")
bench ratio_diff_warm_vs_local_warm "$(ratio "$d_warm" "$d_lwarm")" x
CH="$M/env-01/$P2/changes/table01.json"
umount_dvsnap; rm -rf "$T/cache"; mount_dvsnap
ls -l "$CH" "$TBL" >/dev/null; drop
s=$(date +%s%N); cat "$CH" >/dev/null; e=$(date +%s%N)
bench read_changes_cold "$(awk -v u=$(( (e - s) / 1000 )) 'BEGIN { printf "%.4f", u / 1e6 }')" s \
  "$(stat -c %s "$CH") bytes of changes vs $SIZE of table (cold table: ${dv_cold}s)"
umount_dvsnap

# 2. ls -lR of 1000 points x 20 tables vs the same tree on local disk
rm -rf "$T/repo" "$T/cache"
s=$(date +%s)
"$BUILD/tests/repo_fill" --repo "$T/repo" --envs 1 --points "$PTS" --tables 20 --records 20 \
  --record-bytes 100 --churn 0.1 --manual-every 50 --quiet || { echo "repo_fill failed"; exit 1; }
bench fill_points_seconds $(( $(date +%s) - s )) s "$PTS points x 20 tables"
mount_dvsnap
lsr_cold=$(tm warm ls -lR "$M/env-01")    # first of 3 runs is cold (fresh mount); best of 3
cp -r "$M/env-01" "$T/tree" 2>/dev/null
lsr_loc=$(tm warm ls -lR "$T/tree")
bench ls_lR_dvsnap "$lsr_cold" s "$PTS points x 20 tables, best of 3 on a fresh mount"
bench ls_lR_local "$lsr_loc" s
bench ratio_ls_lR_vs_local "$(ratio "$lsr_cold" "$lsr_loc")" x "goal <= 2"
umount_dvsnap
rm -rf "$T/tree"

# 4. RSS while reading a 1 GB table, and the cache budget (fakemount: same view and cache)
FM="$T/fmnt"; mkdir -p "$FM"
"$BUILD/tests/fakemount" --records 20000 --tables 10 --big-records "$BIG" --cache "$T/fcache" \
  --cache-size 33554432 "$FM" 2>"$T/fake.log" & FPID=$!; PIDS+=("$FPID"); MOUNTS+=("$FM"); waitmnt "$FM"
BIGF="$FM/alpha/latest/tables/big.json"
bench big_table_bytes "$(stat -c %s "$BIGF")" bytes
cat "$BIGF" >/dev/null
for p in $(ls "$FM/alpha" | grep '^20'); do cat "$FM/alpha/$p"/tables/*.json >/dev/null; done
rss=$(awk '/VmHWM/ { print $2 }' "/proc/$FPID/status")
bench daemon_peak_rss_mb "$(( rss / 1024 ))" MB "reading a $(( $(stat -c %s "$BIGF") >> 20 )) MiB table and more; goal < 64"
fusermount3 -u "$FM"; wait "$FPID" 2>/dev/null
maxb=$(sed -n 's/.*max \([0-9]*\).*/\1/p' "$T/fake.log")
bench cache_peak_bytes "${maxb:-nan}" bytes "budget 33554432 (32 MiB)"
