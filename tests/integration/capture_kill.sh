#!/usr/bin/env bash
# capture_kill (issue 3): kill -9 at random moments during a capture, in a loop (4 times; 100 with
# DVSNAP_LONG=1), then capture again. Every time: the repository checks clean, every manifest
# names only objects that exist (no half point), every earlier point reads back exactly as before,
# and the new point equals the simulator.
. "$(dirname "$0")/../lib.sh"
# 40 ms per request, so an incremental pass lasts long enough to be killed in the middle
start_dvsim --seed demo --records 4000 --latency-ms 40
write_config
dvsnap init >/dev/null
ITER=4; [ -n "${DVSNAP_LONG:-}" ] && ITER=100
TABLES="account contact annotation new_project incident"

# digest: one line per point of contoso-prod and contoso-dev and table: the hash of its manifest
# (recomputed every time: a manifest names its segments by content hash, and `dvsnap check` checks
# those exist) and the hash of the table as read (computed once per point, so the long mode stays
# linear; every table of every point is read again at the end against these hashes)
digest() {
  local env p t m h k
  local -A known=()
  touch "$T/tables.txt"
  while read -r env p t h; do known["$env $p $t"]=$h; done <"$T/tables.txt"
  for env in contoso-prod contoso-dev; do
    for p in $(dvsnap points "$env" | awk 'NR>1 {print $1}'); do
      m=$(repo_get "points/$env/$p.json" | sha256sum | cut -c1-16)
      for t in $TABLES; do
        h=${known["$env $p $t"]:-}
        if [ -z "$h" ]; then
          h=$(dvsnap cat "$env" "$p" "$t" | sha256sum | cut -c1-16)
          echo "$env $p $t $h" >>"$T/tables.txt"
        fi
        echo "$env $p $t $m $h"
      done
    done
  done
}

start=$(date +%s%N)
check "first capture" dvsnap capture --env contoso-prod --env contoso-dev
full_ms=$(( ($(date +%s%N) - start) / 1000000 ))
digest >"$T/digest.txt"
# calibrate: how long an incremental pass after the same churn takes (the kind of pass killed)
sim_churn contoso-prod 0.05 900 >/dev/null; sim_churn contoso-dev 0.05 901 >/dev/null
start=$(date +%s%N)
check "calibration capture" dvsnap capture --env contoso-prod --env contoso-dev
delta_ms=$(( ($(date +%s%N) - start) / 1000000 ))
digest >"$T/digest.txt"
killed=0; bad_check=0; bad_old=0; bad_new=0; bad_recapture=0
for i in $(seq 1 "$ITER"); do
  sim_churn contoso-prod 0.05 "$i" >/dev/null
  sim_churn contoso-dev 0.05 "$((i + 100))" >/dev/null
  # a capture killed somewhere between its start and a little past a typical duration
  "$DVSNAP" --config "$T/config" capture --env contoso-prod --env contoso-dev >"$T/killed.out" 2>&1 &
  pid=$!
  delay=$(( delta_ms / 10 + RANDOM % (delta_ms * 8 / 10 + 1) ))  # inside the pass, never at its edges
  sleep "$(awk -v ms="$delay" 'BEGIN { printf "%.3f", ms / 1000 }')"
  kill -9 "$pid" 2>/dev/null && killed=$((killed + 1))
  wait "$pid" 2>/dev/null
  dvsnap check >"$T/chk.out" 2>&1 || { bad_check=$((bad_check + 1)); sed 's/^/#   /' "$T/chk.out" | head -5; }
  # earlier points unchanged (points the killed run managed to commit are complete: new lines)
  digest >"$T/now.txt"
  if ! diff <(cat "$T/digest.txt") <(grep -F -f <(awk '{print $1" "$2" "}' "$T/digest.txt" | sort -u) "$T/now.txt") >/dev/null; then
    bad_old=$((bad_old + 1)); echo "# iteration $i: an earlier point changed"
  fi
  for env in contoso-prod contoso-dev; do
    # a point committed by the killed run must equal the simulator (nothing changed since)
    if [ "$(dvsnap points "$env" | awk 'END {print $1}')" != "$(grep "^$env " "$T/digest.txt" | awk 'END {print $2}')" ]; then
      matches_sim "$env" || { bad_new=$((bad_new + 1)); echo "# iteration $i: a point committed before the kill differs"; }
    fi
  done
  if ! dvsnap capture --env contoso-prod --env contoso-dev >"$T/re.out" 2>&1; then
    bad_recapture=$((bad_recapture + 1)); sed 's/^/#   /' "$T/re.out" | head -5
  fi
  matches_sim contoso-prod >/dev/null && matches_sim contoso-dev >/dev/null || { bad_recapture=$((bad_recapture + 1)); echo "# iteration $i: the new point differs"; }
  digest >"$T/digest.txt"
done
note "$ITER iterations, $killed killed mid-capture (a full pass takes ${full_ms} ms, an incremental one ${delta_ms} ms)"
check_eq "the repository checked clean after every kill" 0 "$bad_check"
check_eq "earlier points never changed" 0 "$bad_old"
check_eq "points committed before a kill are complete" 0 "$bad_new"
check_eq "the capture after every kill succeeded and equals the simulator" 0 "$bad_recapture"
check "at least one capture was really killed" test "$killed" -ge 1
bad_final=0
while read -r env p t h; do
  [ "$(dvsnap cat "$env" "$p" "$t" | sha256sum | cut -c1-16)" = "$h" ] || { bad_final=$((bad_final + 1)); echo "# $env $p $t changed"; }
done <"$T/tables.txt"
check_eq "every table of every point reads back as when it was committed ($(wc -l <"$T/tables.txt") tables)" 0 "$bad_final"
check "the repository reads clean at the end" dvsnap check --read-data
finish
