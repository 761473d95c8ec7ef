#!/usr/bin/env bash
# Object-storage benchmark (issue 6), all on loopback: Azurite (and s3rver) against the directory
# repository.
#  1. cold read of a 1M-record table (repo_fill, ~250 MB rendered): `dvsnap cat` and a first read
#     through a fresh mount, directory vs Azurite (vs s3rver for cat), with the requests and bytes
#     the store served (its access log);
#  2. capture time of dvsim's contoso-prod (--records N) into the directory vs Azurite.
# Prints "BENCH name value unit [note]" lines (tests/bench/run collects them). Measures only.
# BENCH_RECORDS (default 1000000) and BENCH_CAPTURE_RECORDS (default 50000) scale it.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../node/servers.sh"
objstore_servers_available || { echo "object-storage servers unavailable"; exit 1; }
RECORDS=${BENCH_RECORDS:-1000000}
CAP_RECORDS=${BENCH_CAPTURE_RECORDS:-50000}
bench() { echo "BENCH $*"; }
secs() { python3 -c "import time; print('%.3f' % time.time())"; }
ratio() { python3 -c "print('%.2f' % ($1 / $2))"; }

start_azurite az
start_s3rver s3
ot() { ( objstore_env; "$OBJTOOL" "$@" ); }

# ---- 1. cold read of a large table ----
"$BUILD/tests/repo_fill" --repo "$T/dirrepo" --envs 1 --points 1 --tables 1 --records "$RECORDS" --quiet
P=$(basename "$(ls "$T/dirrepo/points/env-01/")" .json)
TABLE=table01
printf 'repository = %s\ncache_dir = %s\n' "$T/dirrepo" "$T/fillcache" >"$T/fillconfig"
chmod 600 "$T/fillconfig"
bytes=$("$BUILD/tests/pointdump" "$T/fillconfig" env-01 "$P" | jq -r '.tables[0].bytes')
stored=$(du -cb "$T"/dirrepo/objects/*/* | tail -n1 | cut -f1)
AZ_REPO="azure://$AZ_ACCOUNT/bench/repo"
S3_REPO="s3://bench/repo"
for f in config $(cd "$T/dirrepo" && find objects points -type f); do
  ot "$AZ_REPO" put-file "$f" "$T/dirrepo/$f"
  ot "$S3_REPO" put-file "$f" "$T/dirrepo/$f"
done
mkcfg() { # NAME REPOSITORY: a config with its own empty cache
  mkdir -p "$T/cache-$1"
  cat >"$T/$1.config" <<CFG
repository = $2
cache_dir = $T/cache-$1
cache_size = 4G
azure_endpoint = $AZ_ENDPOINT
azure_key_file = $AZ_KEYFILE
s3_endpoint = $S3_ENDPOINT
s3_region = us-east-1
s3_credentials_file = $S3_CREDFILE
CFG
  chmod 600 "$T/$1.config"
}
LOG="$T/azurite-az.log"
reqs() { grep -cE '"(GET|PUT|HEAD|DELETE|POST) ' "$LOG"; }
served() { # N: "requests bytes" served after the first N requests
  grep -E '"(GET|PUT|HEAD|DELETE|POST) ' "$LOG" | tail -n +"$(($1 + 1))" |
    awk '{n++} $NF ~ /^[0-9]+$/ && $0 ~ /"GET / {b += $NF} END {print n + 0, b + 0}'
}
timed_cat() { # CONFIG: seconds for dvsnap cat of the table, output checked by sha
  local t0 t1
  t0=$(secs)
  "$DVSNAP" --config "$T/$1.config" cat env-01 "$P" "$TABLE" | sha256sum | cut -d' ' -f1 >"$T/$1.sha"
  t1=$(secs)
  python3 -c "print('%.3f' % ($t1 - $t0))"
}
mkcfg dir "$T/dirrepo"; mkcfg az "$AZ_REPO"; mkcfg s3 "$S3_REPO"
sync
t_dir=$(timed_cat dir)
n0=$(reqs)
t_az=$(timed_cat az)
read -r az_req az_bytes <<<"$(served "$n0")"
t_s3=$(timed_cat s3)
same="same bytes"
[ "$(cat "$T/dir.sha")" = "$(cat "$T/az.sha")" ] && [ "$(cat "$T/dir.sha")" = "$(cat "$T/s3.sha")" ] || same="DIFFERENT BYTES"
bench objstore_cat_dir_s "$t_dir" s "dvsnap cat of a $RECORDS-record table ($bytes bytes rendered, $stored stored)"
bench objstore_cat_azurite_s "$t_az" s "ratio $(ratio "$t_az" "$t_dir")x the directory; $same"
bench objstore_cat_s3rver_s "$t_s3" s "ratio $(ratio "$t_s3" "$t_dir")x the directory"
bench objstore_cat_azurite_requests "$az_req" requests "bytes fetched $az_bytes ($(ratio "$az_bytes" "$stored")x the stored segment)"

# first read through a fresh mount (empty cache)
mount_read() { # NAME: seconds for the first full read of the table through a fresh mount
  local m="$T/mnt-$1" t0 t1
  mkdir -p "$m"
  "$DVSNAP" --config "$T/$1.config" mount --foreground "$m" >"$T/mount-$1.log" 2>&1 &
  _pids+=($!); _mounts+=("$m")
  wait_for 30 mountpoint -q "$m" || { echo "mount $1 failed"; cat "$T/mount-$1.log"; exit 1; }
  ls "$m/env-01/$P/tables" >/dev/null
  t0=$(secs)
  sha256sum <"$m/env-01/$P/tables/$TABLE.json" | cut -d' ' -f1 >"$T/$1.msha"
  t1=$(secs)
  fusermount3 -u "$m"
  python3 -c "print('%.3f' % ($t1 - $t0))"
}
m_dir=$(mount_read dir)
n0=$(reqs)
m_az=$(mount_read az)
read -r maz_req maz_bytes <<<"$(served "$n0")"
same="same bytes"
[ "$(cat "$T/dir.msha")" = "$(cat "$T/az.msha")" ] && [ "$(cat "$T/dir.msha")" = "$(cat "$T/dir.sha")" ] || same="DIFFERENT BYTES"
bench objstore_mount_cold_dir_s "$m_dir" s "first read through a fresh mount, $bytes bytes"
bench objstore_mount_cold_azurite_s "$m_az" s "ratio $(ratio "$m_az" "$m_dir")x the directory; $same"
bench objstore_mount_cold_azurite_requests "$maz_req" requests "bytes fetched $maz_bytes (mount, listing and table)"

# ---- 2. capture time ----
start_dvsim --seed demo --records "$CAP_RECORDS"
write_config
# warm-up (untimed): dvsim's first full read of its tables is slower than any later one
sed -i "s|^repository .*|repository = $T/warmrepo|" "$T/config"
dvsnap init >/dev/null && dvsnap capture --env contoso-prod >/dev/null 2>&1
for kind in dir az; do
  if [ $kind = dir ]; then repo="$T/caprepo"; else repo="azure://$AZ_ACCOUNT/capbench/repo"; fi
  sed -i "s|^repository .*|repository = $repo|" "$T/config"
  grep -q azure_endpoint "$T/config" || printf '%s\n' "azure_endpoint = $AZ_ENDPOINT" "azure_key_file = $AZ_KEYFILE" >>"$T/config"
  dvsnap init >/dev/null
  n0=$(reqs)
  t0=$(secs)
  dvsnap capture --env contoso-prod >"$T/cap-$kind.log" 2>&1 || { echo "capture $kind failed"; cat "$T/cap-$kind.log"; }
  t1=$(secs)
  eval "cap_$kind=$(python3 -c "print('%.3f' % ($t1 - $t0))")"
  [ $kind = az ] && read -r cap_req _ <<<"$(served "$n0")"
  sim_churn contoso-prod 0.01 7 >/dev/null
  t0=$(secs)
  dvsnap capture --env contoso-prod >>"$T/cap-$kind.log" 2>&1
  t1=$(secs)
  eval "inc_$kind=$(python3 -c "print('%.3f' % ($t1 - $t0))")"
  sim_churn contoso-prod 0.01 7 >/dev/null # same churn again, so both runs see equal work
done
recs=$(grep -o '[0-9]* records read' "$T/cap-dir.log" | head -n1)
bench objstore_capture_dir_s "$cap_dir" s "first capture of contoso-prod ($recs)"
bench objstore_capture_azurite_s "$cap_az" s "ratio $(ratio "$cap_az" "$cap_dir")x the directory; $cap_req store requests"
bench objstore_capture_incr_dir_s "$inc_dir" s "after 1% churn"
bench objstore_capture_incr_azurite_s "$inc_az" s "ratio $(ratio "$inc_az" "$inc_dir")x the directory"
