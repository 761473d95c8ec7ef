#!/usr/bin/env bash
# The capture / mount / restore integration suites again with the repository in object storage
# (issue 6): each chosen script runs with DVSNAP_TEST_REPO=azure or s3, which makes tests/lib.sh's
# write_config put the repository in Azurite or s3rver (behind s3front) instead of a directory. Its
# ok / not ok lines are relayed here prefixed with the store kind and the script name.
#   quick (make check): capture_prune on Azurite (~15 s; objstore_capture/objstore_prune
#   cover s3rver);
#   DVSNAP_LONG=1 (CI, after make check): every capture_*, mount_* and restore_* script that calls
#   write_config and does not say "objstore-suite: skip" (e.g. one that flips bytes in repository
#   files), on both stores. Two runs go at a time (each its own servers, dvsim and temp
#   directory); the scripts themselves run in their quick mode (DVSNAP_LONG is not passed
#   on) unless DVSNAP_SUITES_LONG=1. About 10 minutes on 2 cores.
. "$(dirname "$0")/../lib.sh"
DIR=$(cd "$(dirname "$0")" && pwd)

names=()
if [ -n "${DVSNAP_LONG:-}" ]; then
  for s in "$DIR"/capture_*.sh "$DIR"/mount_*.sh "$DIR"/restore_*.sh; do
    [ -f "$s" ] || continue
    grep -q 'write_config' "$s" || continue
    grep -q 'objstore-suite: skip' "$s" && continue
    names+=("$(basename "$s" .sh)")
  done
  kinds=(azure s3)
else
  names=(capture_prune)
  kinds=(azure)
fi
child_env=(env -u DVSNAP_LONG)
[ -z "${DVSNAP_SUITES_LONG:-}" ] || child_env=(env DVSNAP_LONG=1)

# The (store, script) runs are one queue that $jobs workers take from (a run is claimed with an
# atomic mkdir), the slowest scripts first, so the workers end together rather than the slower
# store's lane running on alone. Each run has its own servers, dvsim and temp directory.
jobs=${#kinds[@]}
slowest=(restore_faults capture_kill capture_roundtrip restore_real capture_prune)
runs=()
for name in "${slowest[@]}" "${names[@]}"; do
  [[ " ${names[*]} " == *" $name "* ]] || continue
  [[ " ${runs[*]} " == *":$name "* ]] && continue
  for kind in "${kinds[@]}"; do runs+=("$kind:$name"); done
done
# worker: claim and run queued runs until none is left; $T/KIND-NAME.{log,rc,s}
worker() {
  local run kind name start rc
  for run in "${runs[@]}"; do
    kind=${run%%:*} name=${run#*:}
    mkdir "$T/claim-$kind-$name" 2>/dev/null || continue
    start=$(date +%s)
    "${child_env[@]}" DVSNAP_TEST_REPO="$kind" BUILD="$BUILD" timeout -k 10 600 \
      bash "$DIR/$name.sh" >"$T/$kind-$name.log" 2>&1
    rc=$?
    echo "$rc" >"$T/$kind-$name.rc"
    echo "$(( $(date +%s) - start ))" >"$T/$kind-$name.s"
  done
}

start=$(date +%s)
pids=()
for _ in $(seq 1 "$jobs"); do
  worker &
  pids+=($!)
  _pids+=($!)
done
wait "${pids[@]}"

for name in "${names[@]}"; do
  for kind in "${kinds[@]}"; do
    log="$T/$kind-$name.log"
    rc=$(cat "$T/$kind-$name.rc" 2>/dev/null || echo "?")
    sed -n -e "s/^ok - /ok - [$kind] $name: /p" -e "s/^not ok - /not ok - [$kind] $name: /p" \
      -e 's/^#/#/p' "$log" 2>/dev/null
    grep -q '^not ok' "$log" 2>/dev/null && _failed=1
    if ! grep -q '^ok' "$log" 2>/dev/null; then not_ok "[$kind] $name reported nothing (rc=$rc)"; fi
    if [ "$rc" != 0 ] && ! grep -q '^not ok' "$log" 2>/dev/null; then
      not_ok "[$kind] $name exited with status $rc"
    fi
    note "[$kind] $name: $(cat "$T/$kind-$name.s" 2>/dev/null || echo '?') s"
  done
done
note "${#names[@]} scripts on ${kinds[*]} in $(( $(date +%s) - start )) s"
finish
