#!/usr/bin/env bash
# Capture, cat and check with the repository in object storage (issue 6), on Azurite and s3rver:
#  - round trip: every table of every point cat-s exactly as dvsim held it when the point was taken,
#    and the same as a directory repository captured at the same moment; check --read-data is clean;
#  - many readers: a second machine (its own cache and catalog) sees the same points and bytes;
#  - one writer: a second capture of the same environment is refused while the first runs, naming
#    the holder; after the first (on "another machine") is killed its lease expires and is taken
#    over; a writer killed on this machine is taken over at once; no half point;
#  - the store going away during a capture (a fault proxy in front of Azurite is killed): the
#    capture fails in bounded time, leaves no half point, and the next capture completes.
# Time bound: ~90 s (DVSNAP_LEASE_TTL=3 keeps lease expiry short).
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../node/servers.sh"

if ! objstore_servers_available; then
  not_ok "object-storage test servers (npm ci in tests/node) are not available"
  finish
fi
export DVSNAP_LEASE_TTL=3
start_azurite az
start_s3rver s3
start_dvsim --seed demo
write_config
cp "$T/config" "$T/config.base"
# objtool reads endpoints from DVSNAP_* variables; dvsnap must not see them (they would override
# every config file here), so they are set only inside ot's subshell.
ot() { ( objstore_env; "$OBJTOOL" "$@" ); }

# cfg NAME REPOSITORY [EXTRA...]: $T/NAME.config with its own cache (one "machine" each).
cfg() {
  local name=$1 repo=$2; shift 2
  mkdir -p "$T/cache-$name"
  sed -e "s|^repository .*|repository = $repo|" -e "s|^cache_dir .*|cache_dir = $T/cache-$name|" \
    "$T/config.base" >"$T/$name.config"
  printf '%s\n' "azure_endpoint = $AZ_ENDPOINT" "azure_key_file = $AZ_KEYFILE" \
    "s3_endpoint = $S3_ENDPOINT" "s3_region = us-east-1" "s3_credentials_file = $S3_CREDFILE" "$@" \
    >>"$T/$name.config"
  chmod 600 "$T/$name.config"
}
dv() { local c=$1; shift; "$DVSNAP" --config "$T/$c.config" "$@"; }
tables() { dv "$1" points "$2" latest 2>/dev/null | jq -r '.tables[].name' 2>/dev/null || true; }
# dumps DIR ENV...: save dvsim's current tables of each env
dumps() {
  local dir=$1 env t; shift
  for env in "$@"; do
    mkdir -p "$dir/$env"
    for t in $(tables "$CFG" "$env"); do sim_dump "$env" "$t" >"$dir/$env/$t.json"; done
  done
}
# same_as_dumps CFG ENV POINT DIR: every table of the point cat-s equal to DIR's dumps
same_as_dumps() {
  local c=$1 env=$2 point=$3 dir=$4 f t n=0
  for f in "$dir/$env"/*.json; do
    t=$(basename "$f" .json)
    cmp -s <(dv "$c" cat "$env" "$point" "$t") "$f" || { echo "differs: $env $point $t"; return 1; }
    n=$((n + 1))
  done
  [ "$n" -gt 0 ] || { echo "no tables"; return 1; }
  echo "$n tables equal"
}

ENVS="contoso-prod fabrikam-prod"
for kind in azure s3; do
  if [ $kind = azure ]; then REPO="azure://$AZ_ACCOUNT/dvsnap-$RANDOM/repo"; else REPO="s3://dvsnap-$RANDOM/repo"; fi
  CFG=$kind
  cfg $kind "$REPO"
  cfg $kind-b "$REPO"            # a second machine reading the same repository
  check "$kind: init $REPO" dv $kind init
  check_fails "$kind: a second init is refused" dv $kind init
  check "$kind: first capture" dv $kind capture --env contoso-prod --env fabrikam-prod
  dumps "$T/$kind.d1" $ENVS
  p1=$(dv $kind points contoso-prod latest | jq -r .point)
  sim_churn contoso-prod 0.03 21 >/dev/null
  check "$kind: second capture after 3% churn" dv $kind capture --env contoso-prod --env fabrikam-prod
  dumps "$T/$kind.d2" $ENVS
  p2=$(dv $kind points contoso-prod latest | jq -r .point)
  check "$kind: two distinct points" test -n "$p1" -a "$p1" != "$p2"
  check "$kind: latest point of contoso-prod cats as dvsim holds it" same_as_dumps $kind contoso-prod latest "$T/$kind.d2"
  check "$kind: the first point still cats as it was" same_as_dumps $kind contoso-prod "$p1" "$T/$kind.d1"
  check "$kind: fabrikam-prod cats as dvsim holds it" same_as_dumps $kind fabrikam-prod latest "$T/$kind.d2"
  check "$kind: the 3% churn is a delta (changes are recorded)" \
    test "$(dv $kind points contoso-prod latest | jq '[.tables[] | .created + .updated + .deleted] | add')" -gt 0
  check "$kind: check --read-data is clean" dv $kind check --read-data
  # second machine: empty cache, catalog rebuilt from the store's listing
  check_eq "$kind: a second machine lists the same points" "$(dv $kind points contoso-prod | awk 'NR>1 {print $1}')" \
    "$(dv $kind-b points contoso-prod | awk 'NR>1 {print $1}')"
  check "$kind: ... and reads the same bytes" same_as_dumps $kind-b contoso-prod "$p1" "$T/$kind.d1"
done

# The same state captured into a directory repository cats identically.
mkdir -p "$T/dirrepo"
cfg dir "$T/dirrepo"
dv dir init >/dev/null
check "dir: capture" dv dir capture --env contoso-prod
CFG=dir
dirsame=0; dirn=0
for t in $(tables dir contoso-prod); do
  dirn=$((dirn + 1))
  cmp -s <(dv dir cat contoso-prod latest "$t") <(dv s3 cat contoso-prod latest "$t") && dirsame=$((dirsame + 1))
done
check "s3 and directory repositories cat the same bytes ($dirsame/$dirn tables)" test "$dirn" -gt 0 -a "$dirsame" = "$dirn"

# ---- one writer per environment, across machines ----
CFG=azure
before=$(dv azure points contoso-dev 2>/dev/null | awk 'NR>1' | wc -l)
curl -sf -X POST "$DVSIM_URL/_sim/faults" -d '{"latency_ms":1000}' >/dev/null
# (writer A says it runs on another machine: a lease of this machine's dead process is freed at
# once, which is checked further down)
DVSNAP_TEST_MACHINE=machine-a "$DVSNAP" --config "$T/azure.config" capture --env contoso-dev >"$T/capA.log" 2>&1 &
capA=$!; _pids+=("$capA")
lease_present() { ot "$REPO_AZ" leases locks/ | grep -q '^locks/contoso-dev.lease:'; }
REPO_AZ=$(sed -n 's/^repository = //p' "$T/azure.config")
check "writer A holds the contoso-dev lease" wait_for 20 lease_present
dv azure-b capture --env contoso-dev >"$T/capB.log" 2>&1; rc=$?
check "a second writer (other machine) is refused (rc=$rc)" test "$rc" -ne 0
check "... with a clear message naming the holder" grep -q "contoso-dev is held by .* pid $capA" "$T/capB.log"
kill -9 "$capA"; wait "$capA" 2>/dev/null
curl -sf -X POST "$DVSIM_URL/_sim/faults" -d '{"latency_ms":0}' >/dev/null
dv azure-b capture --env contoso-dev >"$T/capB2.log" 2>&1; rc=$?
check "right after the kill the lease is still held (rc=$rc)" test "$rc" -ne 0
t0=$(date +%s)
check "after expiry (ttl 3 s) the lease is taken over and the capture completes" \
  wait_for 30 dv azure-b capture --env contoso-dev
note "takeover after $(( $(date +%s) - t0 )) s"
after=$(dv azure points contoso-dev | awk 'NR>1' | wc -l)
check_eq "exactly one new point of contoso-dev (the killed writer left none)" "$((before + 1))" "$after"
check "the repository checks clean after the killed writer" dv azure check --read-data
mkdir -p "$T/azure.d3"; dumps "$T/azure.d3" contoso-dev
check "the taken-over capture cats as dvsim holds it" same_as_dumps azure contoso-dev latest "$T/azure.d3"
# a writer killed on this machine: its lease (ttl 120 s here) is taken over at once, because its
# process is known to be gone (same boot and pid namespace, pid no longer running)
curl -sf -X POST "$DVSIM_URL/_sim/faults" -d '{"latency_ms":1000}' >/dev/null
DVSNAP_LEASE_TTL=120 "$DVSNAP" --config "$T/azure.config" capture --env contoso-dev >"$T/capD.log" 2>&1 &
capD=$!; _pids+=("$capD")
check "writer D holds the contoso-dev lease" wait_for 20 lease_present
kill -9 "$capD"; wait "$capD" 2>/dev/null
curl -sf -X POST "$DVSIM_URL/_sim/faults" -d '{"latency_ms":0}' >/dev/null
t0=$(date +%s)
DVSNAP_LEASE_TTL=120 dv azure-b -v capture --env contoso-dev >"$T/capE.log" 2>&1; rc=$?
check "a writer killed on this machine is taken over at once (rc=$rc, $(( $(date +%s) - t0 )) s)" test "$rc" -eq 0
check "... saying why" grep -q "a process of this machine that is gone" "$T/capE.log"
check "the repository checks clean after it" dv azure check --read-data

# ---- the store goes away during a capture ----
echo pass >"$T/px.mode"
"$BUILD/tests/faultproxy" --listen 127.0.0.1:0 --ready-file "$T/px.ready" --target "127.0.0.1:$AZ_PORT" \
  --mode-file "$T/px.mode" --log "$T/px.conn" >"$T/px.log" 2>&1 &
px=$!; _pids+=("$px")
wait_for 10 test -s "$T/px.ready"
PXPORT=$(head -n1 "$T/px.ready")
cfg px "$REPO_AZ" "azure_endpoint = http://127.0.0.1:$PXPORT/$AZ_ACCOUNT"
sed -i "0,/^azure_endpoint = .*/{/^azure_endpoint = /d}" "$T/px.config" # keep the proxy's endpoint only
CFG=px
sim_churn contoso-prod 0.05 22 >/dev/null
npoints() { dv azure points contoso-prod | awk 'NR>1' | wc -l; }
before=$(npoints)
curl -sf -X POST "$DVSIM_URL/_sim/faults" -d '{"latency_ms":300}' >/dev/null
"$DVSNAP" --config "$T/px.config" -v capture --env contoso-prod >"$T/capC.log" 2>&1 &
capC=$!; _pids+=("$capC")
prod_lease() { ot "$REPO_AZ" leases locks/ | grep -q '^locks/contoso-prod.lease:'; }
check "capture through the proxy holds the lease" wait_for 20 prod_lease
sleep 1
note "killing the proxy at $(date +%T.%N)"
kill -9 "$px"; wait "$px" 2>/dev/null
t0=$(date +%s)
wait_for 90 sh -c "! kill -0 $capC 2>/dev/null"
el=$(( $(date +%s) - t0 ))
wait "$capC"; rc=$?
check "with the store gone the capture fails (rc=$rc)" test "$rc" -ne 0
check "... within 90 s (took ${el}s)" test "$el" -le 90
check_eq "no half point: the point count is unchanged" "$before" "$(npoints)"
check "the repository checks clean" dv azure check --read-data
curl -sf -X POST "$DVSIM_URL/_sim/faults" -d '{"latency_ms":0}' >/dev/null
"$BUILD/tests/faultproxy" --listen "127.0.0.1:$PXPORT" --ready-file "$T/px2.ready" --target "127.0.0.1:$AZ_PORT" \
  --mode-file "$T/px.mode" >"$T/px2.log" 2>&1 &
_pids+=($!)
wait_for 10 test -s "$T/px2.ready"
check "when the store is back the next capture completes (after the lease expires)" \
  wait_for 30 dv px capture --env contoso-prod
check_eq "one new point" "$((before + 1))" "$(npoints)"
mkdir -p "$T/azure.d4"; CFG=azure; dumps "$T/azure.d4" contoso-prod
check "it cats as dvsim holds it" same_as_dumps px contoso-prod latest "$T/azure.d4"
check "check --read-data is clean" dv px check --read-data
finish
