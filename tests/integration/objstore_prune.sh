#!/usr/bin/env bash
# Prune on a repository in object storage (issue 6), on s3rver: a point past retention and the
# objects only it needed are deleted, what remains reads back unchanged and checks clean; a prune
# started on another machine while a capture runs waits for the capture's lease (it never deletes
# what a point being written may need) and then completes. Time bound: ~40 s.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../node/servers.sh"

if ! objstore_servers_available; then
  not_ok "object-storage test servers (npm ci in tests/node) are not available"
  finish
fi
export DVSNAP_LEASE_TTL=5
start_s3rver s3
start_dvsim --seed demo
write_config
REPO="s3://dvsnap-prune/repo"
# machines a and b: same repository, own caches
for m in a b; do
  mkdir -p "$T/cache-$m"
  sed -e "s|^repository .*|repository = $REPO|" -e "s|^cache_dir .*|cache_dir = $T/cache-$m|" "$T/config" >"$T/$m.config"
  printf '%s\n' "s3_endpoint = $S3_ENDPOINT" "s3_region = us-east-1" "s3_credentials_file = $S3_CREDFILE" >>"$T/$m.config"
  chmod 600 "$T/$m.config"
done
dv() { local m=$1; shift; "$DVSNAP" --config "$T/$m.config" "$@"; }
ot() { ( objstore_env; "$OBJTOOL" "$@" ); }
nobj() { ot "$REPO" list objects/ | wc -l; }

dv a init >/dev/null
D10=$(date -u -d '-10 days' +%Y-%m-%dT%H:%M:%SZ)
check "capture contoso-dev and contoso-test 10 days ago" env DVSNAP_NOW="$D10" "$DVSNAP" --config "$T/a.config" capture --env contoso-dev --env contoso-test
sim_churn contoso-dev 0.2 1 >/dev/null
check "capture contoso-dev now" dv a capture --env contoso-dev
old=$(dv a points contoso-dev | awk 'NR==2 {print $1}')
new=$(dv a points contoso-dev | awk 'NR==3 {print $1}')
digest() { for t in $(dv "$1" points contoso-dev "$new" | jq -r '.tables[].name'); do echo "$t $(dv "$1" cat contoso-dev "$new" "$t" | sha256sum | cut -c1-16)"; done; }
digest a >"$T/before.txt"
objs_before=$(nobj)
check "prune (machine b)" dv b prune
check_eq "the expired point is gone" "$new" "$(dv a points contoso-dev | awk 'NR>1 {print $1}')"
check_eq "contoso-test's only point (expired) is gone" "" "$(dv a points contoso-test | awk 'NR>1 {print $1}')"
objs_after=$(nobj)
check "objects only the expired points needed were deleted ($objs_before -> $objs_after)" test "$objs_after" -lt "$objs_before"
check_eq "the remaining point reads back unchanged" "$(cat "$T/before.txt")" "$(digest b)"
check "check --read-data is clean" dv a check --read-data
check_eq "no live lease left behind" "" "$(ot "$REPO" leases locks/)"
check "the released leases keep their newest generations (never numbered again)" \
  test "$(ot "$REPO" list locks/ | grep -c 'locks/prune.lease\.')" -eq 2

# a prune on machine b while machine a captures: prune waits for the capture's lease
curl -sf -X POST "$DVSIM_URL/_sim/faults" -d '{"latency_ms":500}' >/dev/null
sim_churn contoso-dev 0.1 2 >/dev/null
"$DVSNAP" --config "$T/a.config" capture --env contoso-dev >"$T/cap.log" 2>&1 &
cap=$!; _pids+=("$cap")
lease() { ot "$REPO" leases locks/ | grep -q 'contoso-dev.lease'; }
check "the capture holds its lease" wait_for 20 lease
dv b prune >"$T/prune.log" 2>&1 &
pr=$!; _pids+=("$pr")
sleep 2
check "prune is still waiting while the capture runs" kill -0 "$pr"
wait "$cap"; rc_cap=$?
check_eq "the capture completes" 0 "$rc_cap"
wait_for 60 sh -c "! kill -0 $pr 2>/dev/null"
wait "$pr"; rc_pr=$?
check_eq "then the prune completes" 0 "$rc_pr"
curl -sf -X POST "$DVSIM_URL/_sim/faults" -d '{"latency_ms":0}' >/dev/null
check_eq "the new point is there" 2 "$(dv a points contoso-dev | awk 'NR>1' | wc -l)"
check "and checks clean after the prune" dv b check --read-data
finish
