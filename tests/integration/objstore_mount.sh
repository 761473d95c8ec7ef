#!/usr/bin/env bash
# The mount on a repository in object storage (issue 6), against Azurite, counting the requests
# the store serves (its access log):
#  - lazy: mounting fetches no object and listing no segment (a point's manifest and shared
#    documents only when its directory is listed); opening a table fetches its segments (range
#    reads), once: the second read is served from the cache with no request;
#  - offline: with the store unreachable (a fault proxy in front of it is killed) a cached table
#    still reads, an uncached one fails with EIO in bounded time; when the store is back the same
#    table reads correctly without a remount; the same with a stalled store (connections accepted,
#    never answered), whose EIO comes after the drivers' time-outs;
#  - many readers: two mounts with their own caches see a point captured while they are mounted.
# Time bound: ~50 s (a stalled store costs mount A's 2 time-outs of 10 s).
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../node/servers.sh"

if ! objstore_servers_available; then
  not_ok "object-storage test servers (npm ci in tests/node) are not available"
  finish
fi
export DVSNAP_LEASE_TTL=5
start_azurite az
start_dvsim --seed demo
write_config
cp "$T/config" "$T/config.base"
REPO="azure://$AZ_ACCOUNT/dvsnap-mount/repo"

# cfg NAME ENDPOINT: $T/NAME.config with its own cache directory (one machine each)
cfg() {
  mkdir -p "$T/cache-$1"
  sed -e "s|^repository .*|repository = $REPO|" -e "s|^cache_dir .*|cache_dir = $T/cache-$1|" \
    "$T/config.base" >"$T/$1.config"
  printf '%s\n' "azure_endpoint = $2" "azure_key_file = $AZ_KEYFILE" >>"$T/$1.config"
  chmod 600 "$T/$1.config"
}
dv() { local c=$1; shift; "$DVSNAP" --config "$T/$c.config" "$@"; }
# mount_as NAME MOUNTPOINT
mount_as() {
  mkdir -p "$2"
  "$DVSNAP" --config "$T/$1.config" mount --foreground "$2" >"$T/mount-$1.log" 2>&1 &
  _pids+=($!); _mounts+=("$2")
  wait_for 30 mountpoint -q "$2" || { not_ok "mount $1 did not come up"; sed 's/^/#   /' "$T/mount-$1.log" | tail; finish; }
}
LOG="$T/azurite-az.log"
reqs() { grep -cE '"(GET|PUT|HEAD|DELETE|POST) ' "$LOG"; }
# since N PATTERN: requests after the first N whose line matches PATTERN
since() { grep -E '"(GET|PUT|HEAD|DELETE|POST) ' "$LOG" | tail -n +"$(($1 + 1))" | grep -cE "$2" || true; }
bytes_since() { grep -E '"(GET|PUT|HEAD|DELETE|POST) ' "$LOG" | tail -n +"$(($1 + 1))" | grep -E '"GET ' | awk '$NF ~ /^[0-9]+$/ {b += $NF} END {print b + 0}'; }

echo pass >"$T/px.mode"
"$BUILD/tests/faultproxy" --listen 127.0.0.1:0 --ready-file "$T/px.ready" --target "127.0.0.1:$AZ_PORT" \
  --mode-file "$T/px.mode" >"$T/px.log" 2>&1 &
px=$!; _pids+=("$px")
wait_for 10 test -s "$T/px.ready"
PXPORT=$(head -n1 "$T/px.ready")

cfg writer "$AZ_ENDPOINT"
cfg a "http://127.0.0.1:$PXPORT/$AZ_ACCOUNT"   # machine A reaches the store through the proxy
cfg b "$AZ_ENDPOINT"
dv writer init >/dev/null
check "capture two points of contoso-prod into Azurite" sh -c "'$DVSNAP' --config '$T/writer.config' capture --env contoso-prod >/dev/null && sleep 1 && '$DVSNAP' --config '$T/writer.config' capture --env contoso-prod >/dev/null"
total=$( (objstore_env; "$OBJTOOL" "$REPO" list objects/) | awk '{b += $1} END {print b + 0}')

# every segment object of the environment's points: listing must fetch none of them (a point's
# manifest and its shared tables and files documents are objects too, read when points are listed)
SEGS=$(for p in $(dv writer points contoso-prod --json | jq -r '.points[].point'); do
  "$BUILD/tests/pointdump" "$T/writer.config" contoso-prod "$p" | jq -r '.tables[].segments[]'
done | sort -u | paste -sd'|')
check "the points have segments" test -n "$SEGS"
n0=$(reqs)
DVSNAP_OBJSTORE_ATTEMPTS=2 mount_as a "$T/ma" # 2 time-outs of 10 s for the stalled-store case
check_eq "mounting fetches no object" 0 "$(since "$n0" '/objects/')"
check_eq "mounting fetches no point manifest" 0 "$(since "$n0" 'GET [^ ]*/points/[^ ]*\.json')"
note "mount start: $(since "$n0" .) requests"
P=$(ls "$T/ma/contoso-prod" | grep -E '^[0-9]{4}-' | tail -n1)
check "the points are listed" test -n "$P"
check_eq "listing an environment fetches no segment" 0 "$(since "$n0" "/objects/../($SEGS)")"
n1=$(reqs)
size=$(stat -c %s "$T/ma/contoso-prod/$P/tables/account.json")
check "stat gives the table size before any segment is read ($size bytes)" test "$size" -gt 0
check_eq "... still no segment fetched" 0 "$(since "$n0" "/objects/../($SEGS)")"
n2=$(reqs)
sha_mount=$(sha256sum <"$T/ma/contoso-prod/$P/tables/account.json" | cut -d' ' -f1)
r_open=$(since "$n2" '/objects/'); b_open=$(bytes_since "$n2")
check_eq "the table read through the mount equals dvsnap cat" \
  "$(dv b cat contoso-prod "$P" account | sha256sum | cut -d' ' -f1)" "$sha_mount"
check "opening the table fetched its segments ($r_open requests, $b_open bytes for a $size-byte table)" \
  test "$r_open" -gt 0 -a "$b_open" -gt 0 -a "$b_open" -lt "$size"
note "cold table read: $r_open requests, $b_open bytes fetched, table $size bytes, all segments written $total bytes"
n3=$(reqs)
sha2=$(sha256sum <"$T/ma/contoso-prod/$P/tables/account.json" | cut -d' ' -f1)
check_eq "a second read gives the same bytes" "$sha_mount" "$sha2"
check_eq "... and asks the store nothing" 0 "$(since "$n3" .)"

# offline: the store becomes unreachable for machine A
kill -9 "$px"; wait "$px" 2>/dev/null
check_eq "offline: a cached table still reads" "$sha_mount" "$(sha256sum <"$T/ma/contoso-prod/$P/tables/account.json" | cut -d' ' -f1)"
t0=$(date +%s)
cat "$T/ma/contoso-prod/$P/tables/contact.json" >/dev/null 2>"$T/offline.err"; rc=$?
el=$(( $(date +%s) - t0 ))
check "offline: an uncached table fails (rc=$rc: $(head -c 100 "$T/offline.err"))" test "$rc" -ne 0
check "offline: ... with EIO" grep -q "Input/output error" "$T/offline.err"
check "offline: ... within 60 s (took ${el}s)" test "$el" -le 60
"$BUILD/tests/faultproxy" --listen "127.0.0.1:$PXPORT" --ready-file "$T/px2.ready" --target "127.0.0.1:$AZ_PORT" \
  --mode-file "$T/px.mode" >"$T/px2.log" 2>&1 &
px2=$!; _pids+=("$px2")
wait_for 10 test -s "$T/px2.ready"
contact_ok() {
  [ "$(sha256sum <"$T/ma/contoso-prod/$P/tables/contact.json" | cut -d' ' -f1)" = \
    "$(dv b cat contoso-prod "$P" contact | sha256sum | cut -d' ' -f1)" ]
}
check "store back: the same table now reads correctly without a remount" wait_for 60 contact_ok

# a stalled store (connections accepted, never answered): EIO after the drivers' time-outs
kill -9 "$px2"; wait "$px2" 2>/dev/null
echo stall >"$T/px.mode"
"$BUILD/tests/faultproxy" --listen "127.0.0.1:$PXPORT" --ready-file "$T/px3.ready" --target "127.0.0.1:$AZ_PORT" \
  --mode-file "$T/px.mode" >"$T/px3.log" 2>&1 &
px3=$!; _pids+=("$px3")
wait_for 10 test -s "$T/px3.ready"
t0=$(date +%s)
cat "$T/ma/contoso-prod/$P/tables/incident.json" >/dev/null 2>"$T/stall.err"; rc=$?
el=$(( $(date +%s) - t0 ))
check "stalled store: an uncached table fails with EIO (rc=$rc)" grep -q "Input/output error" "$T/stall.err"
check "stalled store: ... within 45 s (took ${el}s)" test "$el" -le 45
echo pass >"$T/px.mode"
kill -9 "$px3"; wait "$px3" 2>/dev/null   # new connections from here on pass again
"$BUILD/tests/faultproxy" --listen "127.0.0.1:$PXPORT" --ready-file "$T/px4.ready" --target "127.0.0.1:$AZ_PORT" \
  --mode-file "$T/px.mode" >"$T/px4.log" 2>&1 &
_pids+=($!)
wait_for 10 test -s "$T/px4.ready"
incident_ok() {
  [ "$(sha256sum <"$T/ma/contoso-prod/$P/tables/incident.json" | cut -d' ' -f1)" = \
    "$(dv b cat contoso-prod "$P" incident | sha256sum | cut -d' ' -f1)" ]
}
check "stall over: the table reads correctly without a remount" wait_for 60 incident_ok

# many readers, one writer: a point captured while two machines have the repository mounted
mount_as b "$T/mb"
before_a=$(ls "$T/ma/contoso-prod" | grep -cE '^[0-9]{4}-')
check_eq "both mounts list the same points" "$(ls "$T/ma/contoso-prod" | grep -E '^[0-9]{4}-')" "$(ls "$T/mb/contoso-prod" | grep -E '^[0-9]{4}-')"
sim_churn contoso-prod 0.02 5 >/dev/null
check "a capture while both are mounted" sh -c "'$DVSNAP' --config '$T/writer.config' capture --env contoso-prod >/dev/null"
NEW=$(dv writer points contoso-prod latest | jq -r .point)
check "mount A shows the new point" wait_for 60 test -d "$T/ma/contoso-prod/$NEW"
check "mount B shows the new point" wait_for 60 test -d "$T/mb/contoso-prod/$NEW"
check_eq "both read its account table identically" \
  "$(sha256sum <"$T/ma/contoso-prod/$NEW/tables/account.json" | cut -d' ' -f1)" \
  "$(sha256sum <"$T/mb/contoso-prod/$NEW/tables/account.json" | cut -d' ' -f1)"
check_eq "... equal to dvsim's table" "$(sim_dump contoso-prod account | sha256sum | cut -d' ' -f1)" \
  "$(sha256sum <"$T/mb/contoso-prod/$NEW/tables/account.json" | cut -d' ' -f1)"
finish
