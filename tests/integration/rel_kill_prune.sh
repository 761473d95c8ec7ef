#!/usr/bin/env bash
# rel_kill_prune (issue 7, reliability goal "kill -9 during prune"): prune killed at random moments,
# in a loop (3 times; 100 with DVSNAP_LONG=1). Each iteration adds an expired point (taken 30 days
# ago on the test clock, past contoso-dev's 7-day retention) and a kept one, with churn between so
# each has objects of its own, then kills a prune somewhere inside its calibrated duration. After
# every kill: `dvsnap check` is clean, every kept point reads back exactly as before, and the next
# prune completes and leaves no expired point. At the end `check --read-data` passes.
# A prune of this repository takes about 15 ms, mostly process start; so the killed prunes run
# under strace with 20 ms injected before every fsync, unlink and rename (a slow disk), which
# stretches the part that changes the repository and the catalog to a few hundred ms, and the
# kill lands inside it.
. "$(dirname "$0")/../lib.sh"
start_dvsim --seed demo --records 2000
write_config
dvsnap init >/dev/null
ITER=3; [ -n "${DVSNAP_LONG:-}" ] && ITER=100
ENV=contoso-dev

# digest of every point that is kept (taken within the retention): point table hash
kept_digest() {
  local p t
  for p in $(dvsnap points "$ENV" | awk -v cut="$(date -u -d '-7 days' +%Y-%m-%dT%H%M%SZ)" 'NR>1 && $1 > cut {print $1}'); do
    for t in account contact annotation; do
      echo "$p $t $(dvsnap cat "$ENV" "$p" "$t" | sha256sum | cut -c1-16)"
    done
  done
}
expired_points() { dvsnap points "$ENV" | awk -v cut="$(date -u -d '-7 days' +%Y-%m-%dT%H%M%SZ)" 'NR>1 && $1 < cut' | wc -l; }
add_points() { # add_points I: one expired and one kept point, with churn before each
  sim_churn "$ENV" 0.05 "$1" >/dev/null
  env DVSNAP_NOW="$(date -u -d "-30 days + $1 minutes" +%Y-%m-%dT%H:%M:%SZ)" "$DVSNAP" --config "$T/config" capture --env "$ENV" >/dev/null 2>&1 || return 1
  sim_churn "$ENV" 0.05 "$(( $1 + 1000 ))" >/dev/null
  env DVSNAP_NOW="$(date -u -d "-1 day + $1 minutes" +%Y-%m-%dT%H:%M:%SZ)" "$DVSNAP" --config "$T/config" capture --env "$ENV" >/dev/null 2>&1
}

SLOW='fsync,fdatasync,unlink,unlinkat,rename,renameat,renameat2'
STRACE=(strace -f -qq -o /dev/null -e trace="$SLOW" -e inject="$SLOW":delay_enter=20000)
slow_prune() { "${STRACE[@]}" "$DVSNAP" --config "$T/config" prune; }
check "calibration points" add_points 0
start=$(date +%s%N)
check "calibration prune (slowed)" slow_prune
prune_ms=$(( ($(date +%s%N) - start) / 1000000 ))
killed=0; bad_check=0; bad_kept=0; bad_prune=0; left=0
for i in $(seq 1 "$ITER"); do
  add_points "$i" || { bad_prune=$((bad_prune + 1)); echo "# iteration $i: capture failed"; continue; }
  kept_digest >"$T/kept.txt"
  "${STRACE[@]}" "$DVSNAP" --config "$T/config" prune >"$T/killed.out" 2>&1 &
  spid=$!
  delay=$(( RANDOM % (prune_ms + 1) ))
  sleep "$(awk -v ms="$delay" 'BEGIN { printf "%.3f", ms / 1000 }')"
  pid=$(pgrep -P "$spid" -x dvsnap || true)  # the prune itself, strace's child
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null && killed=$((killed + 1))
  wait "$spid" 2>/dev/null
  dvsnap check >"$T/chk.out" 2>&1 || { bad_check=$((bad_check + 1)); sed 's/^/#   /' "$T/chk.out" | head -5; }
  kept_digest | cmp -s - "$T/kept.txt" || { bad_kept=$((bad_kept + 1)); echo "# iteration $i: a kept point changed"; }
  dvsnap prune >"$T/prune.out" 2>&1 || { bad_prune=$((bad_prune + 1)); sed 's/^/#   /' "$T/prune.out" | head -5; }
  n=$(expired_points); [ "$n" = 0 ] || { left=$((left + 1)); echo "# iteration $i: $n expired points left"; }
done
note "$ITER iterations, $killed prunes killed mid-run (a prune takes about ${prune_ms} ms)"
check_eq "the repository checked clean after every kill" 0 "$bad_check"
check_eq "kept points never changed" 0 "$bad_kept"
check_eq "the prune after every kill succeeded" 0 "$bad_prune"
check_eq "no expired point survived the prune after a kill" 0 "$left"
check "at least one prune was really killed" test "$killed" -ge 1
check "the repository reads clean at the end" dvsnap check --read-data
finish
