#!/usr/bin/env bash
# rel_powerloss (issue 7, scenario 2): power loss during a capture. The directory repository,
# with its catalog (ROOT/catalog.db), lives on lossyfs (tests/tools/lossyfs.c), which keeps only
# what was fsynced: file data since the last fsync and directory changes since the directory's
# last fsync are lost at the cut. A cut right after init; then churn, prune, capture in a loop,
# cutting the power at a random moment of the capture (3 times; 50 with DVSNAP_LONG=1; any number
# with POWERLOSS_ITER=N); remount what survived; then: `check --read-data` is clean, every point
# committed before the cut (earlier ones and those the cut capture reported) reads back exactly as
# before, points pruned before it stay removed, and the next capture succeeds and equals the
# simulator. The cache directory stays on a normal disk.
. "$(dirname "$0")/../lib.sh"
LOSSYFS="$BUILD/tests/lossyfs"
B=$T/backing M=$T/mnt
start_dvsim --seed demo --records 2000 --latency-ms 20
write_config
sed -i "s|^repository .*|repository         = $M/repo|" "$T/config"  # made by init, on lossyfs
ITER=3; [ -n "${DVSNAP_LONG:-}" ] && ITER=50; ITER=${POWERLOSS_ITER:-$ITER}
ENVS="contoso-dev contoso-test"  # the same retention (7 days), so one prune keeps both short
TABLES="account contact annotation new_project incident"

lossy_mount() {
  mkdir -p "$B" "$M"
  rm -f "$T/ready" "$T/cut"
  "$LOSSYFS" "$B" "$M" --ready-file "$T/ready" --cut-file "$T/cut" 2>>"$T/lossyfs.log" &
  LPID=$!
  _pids+=("$LPID"); _mounts+=("$M")
  wait_for 30 test -s "$T/ready" || { echo "not ok - lossyfs did not start"; tail "$T/lossyfs.log"; exit 1; }
}
lossy_umount() {
  fusermount3 -u "$M" 2>/dev/null || fusermount3 -uz "$M"
  wait "$LPID"
}
# digest: one line per point of each environment with the hash of each table
digest() {
  local env p t
  for env in $ENVS; do
    for p in $(dvsnap points "$env" | awk 'NR>1 {print $1}'); do
      for t in $TABLES; do
        echo "$env $p $t $(dvsnap cat "$env" "$p" "$t" | sha256sum | cut -c1-16)"
      done
    done
  done
}

# power_cut: cut, wait until it took effect, unmount (BACKING := what survived), mount again
power_cut() {
  kill -USR1 "$LPID"
  wait_for 10 test -e "$T/cut" && cuts=$((cuts + 1))
  [ -z "${1:-}" ] || { kill -9 "$1" 2>/dev/null; wait "$1" 2>/dev/null; }
  lossy_umount
  lossy_mount
}
# prune_old: prune (offline) as of the expiry of each environment's third newest point, so each
# keeps about two (the digests stay small however long the loop runs)
prune_old() {
  local now
  now=$(for env in $ENVS; do dvsnap points "$env" | awk 'NR>1 {print $4}' | tail -n3 | head -n1; done | sort | head -n1)
  dvsnap prune --offline --now "$now"
}
cuts=0
lossy_mount
check "init on lossyfs" dvsnap init
power_cut
check "the repository made by init survives a power cut" dvsnap check
start=$(date +%s%N)
check "first capture" dvsnap capture --env contoso-dev --env contoso-test
full_ms=$(( ($(date +%s%N) - start) / 1000000 ))
sim_churn contoso-dev 0.05 900 >/dev/null; sim_churn contoso-test 0.05 901 >/dev/null
start=$(date +%s%N)
check "calibration capture" dvsnap capture --env contoso-dev --env contoso-test
delta_ms=$(( ($(date +%s%N) - start) / 1000000 ))
digest >"$T/digest.txt"
mid=0 reported=0 pruned=0 bad_pruned=0 bad_check=0 bad_old=0 bad_reported=0 bad_recapture=0
for i in $(seq 1 "$ITER"); do
  sim_churn contoso-dev 0.05 "$i" >/dev/null
  sim_churn contoso-test 0.05 "$((i + 100))" >/dev/null
  # prune old points first: their deletions must be durable before the capture's writes
  if [ "$(grep -c . "$T/digest.txt")" -gt 20 ]; then
    prune_old >"$T/prune.out" 2>&1 || { echo "# iteration $i: prune failed"; sed 's/^/#   /' "$T/prune.out"; }
    sed -n 's|^removed \(contoso-[a-z]*/[0-9TZ-]*\): .*|\1|p' "$T/prune.out" >"$T/pruned.txt"
    pruned=$((pruned + $(sed -n 's/^removed \([0-9]*\) points.*/\1/p' "$T/prune.out")))
    digest >"$T/digest.txt"
  fi
  "$DVSNAP" --config "$T/config" capture --env contoso-dev --env contoso-test >"$T/cut.out" 2>&1 &
  pid=$!
  delay=$(( RANDOM % (delta_ms * 9 / 10 + 1) ))  # anywhere inside a typical pass
  sleep "$(awk -v ms="$delay" 'BEGIN { printf "%.3f", ms / 1000 }')"
  running=no; kill -0 "$pid" 2>/dev/null && { mid=$((mid + 1)); running=yes; }
  power_cut "$pid"
  note "iteration $i: power cut after ${delay} ms (capture running: $running)"
  # a deletion prune reported is durable (else the point comes back, maybe without its objects)
  for p in $(cat "$T/pruned.txt" 2>/dev/null); do
    [ ! -e "$M/repo/points/$p.json" ] || { bad_pruned=$((bad_pruned + 1)); echo "# iteration $i: pruned point $p came back"; }
  done
  rm -f "$T/pruned.txt"
  # points the cut capture reported were committed before the cut: they must have survived
  for p in $(sed -n 's/^\(contoso-[a-z]*\): point \([0-9TZ-]*\):.*/\1:\2/p' "$T/cut.out"); do
    reported=$((reported + 1))
    dvsnap points "${p%%:*}" | awk 'NR>1 {print $1}' | grep -qx "${p#*:}" ||
      { bad_reported=$((bad_reported + 1)); echo "# iteration $i: reported point $p was lost"; }
  done
  if ! dvsnap check --read-data >"$T/chk.out" 2>&1; then
    bad_check=$((bad_check + 1)); echo "# iteration $i (cut after ${delay} ms): check failed"
    sed 's/^/#   /' "$T/chk.out" | head -8
  fi
  digest >"$T/now.txt"
  if ! diff <(cat "$T/digest.txt") <(grep -F -f <(awk '{print $1" "$2" "}' "$T/digest.txt" | sort -u) "$T/now.txt") >"$T/diff.out"; then
    bad_old=$((bad_old + 1)); echo "# iteration $i (cut after ${delay} ms): an earlier point changed or vanished"
    sed 's/^/#   /' "$T/diff.out" | head -6
  fi
  if ! dvsnap capture --env contoso-dev --env contoso-test >"$T/re.out" 2>&1; then
    bad_recapture=$((bad_recapture + 1)); sed 's/^/#   /' "$T/re.out" | head -5
  fi
  matches_sim contoso-dev >/dev/null && matches_sim contoso-test >/dev/null ||
    { bad_recapture=$((bad_recapture + 1)); echo "# iteration $i: the new point differs"; }
  digest >"$T/digest.txt"
done
note "$ITER power cuts during captures ($mid while it ran, $reported points reported before a cut, $pruned points pruned before); a full pass takes ${full_ms} ms, an incremental one ${delta_ms} ms, on lossyfs"
check_eq "every power cut took effect" "$((ITER + 1))" "$cuts"
check "prune removed points between the cuts" test "$pruned" -ge 1
check "at least one cut fell inside a capture" test "$mid" -ge 1
check_eq "check --read-data was clean after every cut" 0 "$bad_check"
check_eq "points committed before a cut never changed or vanished" 0 "$bad_old"
check_eq "points a capture reported before the cut survived" 0 "$bad_reported"
check_eq "points prune removed before the cut stayed removed" 0 "$bad_pruned"
check_eq "the capture after every cut succeeded and equals the simulator" 0 "$bad_recapture"
lossy_umount
finish
