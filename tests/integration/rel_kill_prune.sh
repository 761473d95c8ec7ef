#!/usr/bin/env bash
# rel_kill_prune (issue 7, reliability goal "kill -9 during prune"): prune killed at random
# moments, in a loop (3 times; 100 with DVSNAP_LONG=1). The test clock (DVSNAP_NOW) moves forward
# one hour per point from 40 days ago: each iteration captures two points of contoso-dev (7-day
# retention) with churn before each, then prunes 7 days and 30 minutes after the first of them, so
# every point but the newest has expired and is removed. The killed prunes run under strace with
# 20 ms injected before every fsync, unlink and rename (a slow disk), which stretches the part that
# changes the repository and the catalog to a few hundred ms, and the kill lands inside it. After
# every kill: `dvsnap check` is clean, the kept point reads back exactly as before, and the next
# prune completes and leaves no expired point. At the end `check --read-data` passes, one point is
# left, and the prunes removed points and objects (counted in the note).
. "$(dirname "$0")/../lib.sh"
start_dvsim --seed demo --records 2000
write_config
dvsnap init >/dev/null
ITER=3; [ -n "${DVSNAP_LONG:-}" ] && ITER=100
ENV=contoso-dev
BASE=$(( $(date +%s) - 40 * 86400 ))
at() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ; }   # RFC 3339 of epoch seconds
point_now() { echo $(( BASE + $1 * 3600 )); }     # the test clock at point number N

# the points of ENV and their expiry, and the hash of every table of those not expired at $1
kept_digest() {
  local p e t
  dvsnap points "$ENV" | awk 'NR>1 {print $1, $4}' | while read -r p e; do
    [ "$(date -u -d "$e" +%s)" -gt "$1" ] || continue
    for t in account contact annotation; do
      echo "$p $t $(dvsnap cat "$ENV" "$p" "$t" | sha256sum | cut -c1-16)"
    done
  done
}
expired_points() { # expired_points NOW: how many points of ENV have expired at NOW
  dvsnap points "$ENV" | awk 'NR>1 {print $4}' | while read -r e; do
    [ "$(date -u -d "$e" +%s)" -gt "$1" ] || echo x
  done | wc -l
}
n=0
add_points() { # one point that the next prune finds expired, one it keeps
  local k
  for k in 1 2; do
    n=$((n + 1))
    sim_churn "$ENV" 0.05 "$n" >/dev/null
    env DVSNAP_NOW="$(at "$(point_now $n)")" "$DVSNAP" --config "$T/config" capture --env "$ENV" >/dev/null 2>&1 || return 1
  done
}
prune_now() { echo $(( $(point_now $((n - 1))) + 7 * 86400 + 1800 )); } # all but the newest expired
SLOW='fsync,fdatasync,unlink,unlinkat,rename,renameat,renameat2'
STRACE=(strace -f -qq -o /dev/null -e trace="$SLOW" -e inject="$SLOW":delay_enter=20000)

check "calibration points" add_points
now=$(prune_now)
start=$(date +%s%N)
check "calibration prune (slowed) removes a point" bash -c \
  'DVSNAP_NOW="$1" "${@:2}" | grep -q "^removed 1 points"' _ "$(at "$now")" "${STRACE[@]}" "$DVSNAP" --config "$T/config" prune
prune_ms=$(( ($(date +%s%N) - start) / 1000000 ))
killed=0; bad_check=0; bad_kept=0; bad_prune=0; left=0; removed=0; objects=0
for i in $(seq 1 "$ITER"); do
  add_points || { bad_prune=$((bad_prune + 1)); echo "# iteration $i: capture failed"; continue; }
  now=$(prune_now)
  kept_digest "$now" >"$T/kept.txt"
  DVSNAP_NOW="$(at "$now")" "${STRACE[@]}" "$DVSNAP" --config "$T/config" prune >"$T/killed.out" 2>&1 &
  spid=$!
  delay=$(( RANDOM % (prune_ms + 1) ))
  sleep "$(awk -v ms="$delay" 'BEGIN { printf "%.3f", ms / 1000 }')"
  pid=$(pgrep -P "$spid" -x dvsnap || true)  # the prune itself, strace's child
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null && killed=$((killed + 1))
  wait "$spid" 2>/dev/null
  dvsnap check >"$T/chk.out" 2>&1 || { bad_check=$((bad_check + 1)); sed 's/^/#   /' "$T/chk.out" | head -5; }
  kept_digest "$now" | cmp -s - "$T/kept.txt" || { bad_kept=$((bad_kept + 1)); echo "# iteration $i: a kept point changed"; }
  if DVSNAP_NOW="$(at "$now")" "$DVSNAP" --config "$T/config" prune >"$T/prune.out" 2>&1; then
    removed=$((removed + $(sed -n 's/^removed \([0-9]*\) points.*/\1/p' "$T/prune.out") ))
    objects=$((objects + $(sed -n 's/^removed [0-9]* points, \([0-9]*\) objects.*/\1/p' "$T/prune.out") ))
  else
    bad_prune=$((bad_prune + 1)); sed 's/^/#   /' "$T/prune.out" | head -5
  fi
  e=$(expired_points "$now"); [ "$e" = 0 ] || { left=$((left + 1)); echo "# iteration $i: $e expired points left"; }
done
note "$ITER iterations, $killed prunes killed mid-run (a slowed prune takes about ${prune_ms} ms); the prunes after the kills removed $removed points and $objects objects"
check_eq "the repository checked clean after every kill" 0 "$bad_check"
check_eq "kept points never changed" 0 "$bad_kept"
check_eq "the prune after every kill succeeded" 0 "$bad_prune"
check_eq "no expired point survived the prune after a kill" 0 "$left"
check "at least one prune was really killed" test "$killed" -ge 1
check_eq "one point is left (the newest)" 1 "$(dvsnap points "$ENV" | awk 'NR>1' | wc -l)"
check "the repository reads clean at the end" dvsnap check --read-data
finish
