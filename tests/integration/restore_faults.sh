#!/usr/bin/env bash
# Restore under failure (issue 5): kill -9 in the middle of the writes, run again: the target
# equals the point with no duplicate records. A 429 storm and dropped connections: same result.
# DVSNAP_LONG=1 uses a bigger tenant and kills at several moments.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/restore_common.bash"
records=${RESTORE_RECORDS:-8000}; kills=1
[ -n "${DVSNAP_LONG:-}" ] && { records=50000; kills=10; }
start_dvsim --seed demo --records "$records"
write_config
dvsnap init >/dev/null 2>&1
check "capture contoso-prod and contoso-dev" dvsnap capture --env contoso-prod --env contoso-dev
entity_defs contoso-dev "$T/defs.json"
# every lookup target inside the set; owners and currencies are contoso-dev's (mapped, never
# written: a strict service refuses writes to users)
tables=account,contact
principal_map contoso-prod latest contoso-dev "$T/map.json"

for i in $(seq 1 $kills); do
  seq=$(last_seq)
  "$DVSNAP" --config "$T/config" restore --json contoso-prod latest --target contoso-dev --tables $tables \
    --yes >"$T/killed.json" 2>"$T/killed.err" &
  pid=$!
  # wait until $batch writes are under way (at least $i batches), then kill -9
  if wait_for 120 bash -c "[ \$(curl -sf '$DVSIM_URL/_sim/requests?since=$seq' | jq '[.requests[] | select(.path | test(\"batch\"))] | length') -ge $i ]"; then
    kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
    ok "restore killed with -9 after $i batch(es)"
  else
    not_ok "no \$batch seen before the restore ended"; wait "$pid"
  fi
done
check_eq "contoso-dev is not yet in administration mode after the kill" Enabled \
  "$(admin_env contoso-dev | jq -r .properties.states.runtime.id)"
if dvsnap restore --json contoso-prod latest --target contoso-dev --tables $tables --yes >"$T/rerun.json" 2>"$T/rerun.err"
then ok "rerun after kill -9 succeeds"; else not_ok "rerun: $(tail -3 "$T/rerun.err")"; fi
for t in ${tables//,/ }; do
  check "after kill + rerun: contoso-dev $t equals the point" same_table contoso-prod latest "$t" contoso-dev "$T/defs.json" "$T/map.json"
  n_point=$(dvsnap cat contoso-prod latest "$t" | jq length)
  sim_dump contoso-dev "$t" | jq -r ".[] | .${t}id" | sort >"$T/keys"
  check_eq "$t: no duplicate records ($n_point in the point)" "$n_point $n_point" "$(wc -l <"$T/keys") $(sort -u "$T/keys" | wc -l)"
done

# a 429 storm and dropped connections; contoso-dev is captured first, as its scheduled backup
# would have been (else the safety backup reads every record and image the rerun wrote, at 4
# requests a second)
# the restore above deleted contoso-dev's own accounts (about a fifth of the table): the capture
# flags that as a mass delete (exit 6, the point before held), which is right and not this test's
# subject; any other failure still fails it
check "capture contoso-dev" bash -c "'$DVSNAP' --config '$T/config' capture --env contoso-dev; rc=\$?; [ \$rc = 0 ] || [ \$rc = 6 ]"
check "churn contoso-dev by 5%" sim_churn contoso-dev 0.05 5
curl -sf -X POST "$DVSIM_URL/_sim/faults" -d '{"max_requests":"4/1","drop_rate":0.1}' >/dev/null
seq=$(last_seq)
if timeout 300 "$DVSNAP" --config "$T/config" restore --json contoso-prod latest --target contoso-dev --tables $tables --yes \
     >"$T/storm.json" 2>"$T/storm.err"; then ok "restore through a 429 storm and dropped connections"
else not_ok "storm restore: $(tail -3 "$T/storm.err")"; fi
throttled=$(curl -sf "$DVSIM_URL/_sim/requests?since=$seq" | jq '[.requests[] | select(.status == 429)] | length')
note "429 answers during the storm: $throttled"
check "the storm did throttle" test "$throttled" -gt 0
curl -sf -X POST "$DVSIM_URL/_sim/faults" -d '{"max_requests":"0/1","drop_rate":0}' >/dev/null
for t in ${tables//,/ }; do
  check "after the storm: contoso-dev $t equals the point" same_table contoso-prod latest "$t" contoso-dev "$T/defs.json" "$T/map.json"
done
finish
