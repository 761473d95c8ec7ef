#!/usr/bin/env bash
# The capture / mount / restore integration suites again with the repository in object storage
# (issue 6): each chosen script runs with DVSNAP_TEST_REPO=azure or s3, which makes tests/lib.sh's
# write_config put the repository in Azurite or s3rver instead of a directory. Its ok / not ok
# lines are relayed here prefixed with the store kind and the script name.
#   quick (make check): capture_roundtrip on Azurite (~25 s; objstore_capture/objstore_prune
#   cover s3rver);
#   DVSNAP_LONG=1 (CI): every capture_*, mount_* and restore_* script that calls write_config and
#   does not say "objstore-suite: skip" (e.g. one that edits repository files), on both stores.
. "$(dirname "$0")/../lib.sh"
DIR=$(cd "$(dirname "$0")" && pwd)

if [ -n "${DVSNAP_LONG:-}" ]; then
  runs=()
  for s in "$DIR"/capture_*.sh "$DIR"/mount_*.sh "$DIR"/restore_*.sh; do
    [ -f "$s" ] || continue
    grep -q 'write_config' "$s" || continue
    grep -q 'objstore-suite: skip' "$s" && continue
    runs+=("azure:$(basename "$s" .sh)" "s3:$(basename "$s" .sh)")
  done
else
  runs=(azure:capture_roundtrip)
fi

for r in "${runs[@]}"; do
  kind=${r%%:*} name=${r#*:}
  [ -f "$DIR/$name.sh" ] || { not_ok "$kind $name: no such script"; continue; }
  start=$(date +%s)
  DVSNAP_TEST_REPO=$kind BUILD="$BUILD" timeout -k 10 600 bash "$DIR/$name.sh" >"$T/$kind-$name.log" 2>&1
  rc=$?
  sed -n -e "s/^ok - /ok - [$kind] $name: /p" -e "s/^not ok - /not ok - [$kind] $name: /p" -e 's/^#/#/p' \
    "$T/$kind-$name.log"
  grep -q '^not ok' "$T/$kind-$name.log" && _failed=1
  if ! grep -q '^ok' "$T/$kind-$name.log"; then not_ok "[$kind] $name reported nothing (rc=$rc)"; fi
  if [ "$rc" -ne 0 ] && ! grep -q '^not ok' "$T/$kind-$name.log"; then not_ok "[$kind] $name exited with status $rc"; fi
  note "[$kind] $name: $(( $(date +%s) - start )) s"
done
finish
