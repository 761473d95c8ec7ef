#!/usr/bin/env bash
# mount_demo: `make demo`'s script builds its timeline, mounts, prints the tour and cleans up
# (DEMO_NO_WAIT=1 instead of waiting for Ctrl-C); a second run works too (DVSNAP_LONG=1 only).
. "$(dirname "$0")/../lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
runs=1; [ -z "${DVSNAP_LONG:-}" ] || runs=2
for r in $(seq $runs); do
  DEMO_NO_WAIT=1 MNT="$T/mnt" timeout 300 "$ROOT/tools/demo.sh" "$BUILD" >"$T/demo.out" 2>&1; rc=$?
  check_eq "demo run $r exits 0" 0 "$rc"
  [ "$rc" = 0 ] || tail -20 "$T/demo.out" | sed 's/^/#   /'
  n=$(sed -n 's/.*points of contoso-prod: \([0-9]*\).*/\1/p' "$T/demo.out")
  check "demo run $r shows a timeline of at least 5 points (got $n)" test "${n:-0}" -ge 5
  check "demo run $r prints the tour" grep -q "labels/pre-upgrade/tables" "$T/demo.out"
  check "demo run $r unmounted at the end" bash -c '! mountpoint -q "$1"' _ "$T/mnt"
  check "demo run $r stopped dvsim" test ! -f "$ROOT/demo/dvsim.pid"
done
finish
