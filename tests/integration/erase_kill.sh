#!/usr/bin/env bash
# erase_kill (issue 17): kill -9 during `dvsnap erase`, in a loop (20 times; 100 with
# DVSNAP_LONG=1). Each iteration adds a person to contoso-dev (a contact with a unique e-mail
# address, captured in two points, updated in between), then erases them under strace with 20 ms
# injected before every fsync, unlink and rename (a slow disk: the kill lands inside the part
# that changes the repository) and kills the erase at a random moment. After every kill:
# `check --read-data` is clean, and each point of the iteration shows every other record exactly
# as before (the person is either still there or gone: the old or the new state). Every fourth
# iteration a capture runs before the rerun (on the points as the kill left them; its state is
# rebuilt since an erasure is unfinished) and checks clean. The same erase run again finishes
# (the journal of the killed run first), and then no point holds the person and no journal is
# left. At the end the repository checks clean and the log has an entry per
# erasure.
. "$(dirname "$0")/../lib.sh"
start_dvsim --seed demo
write_config
dvsnap init >/dev/null
ITER=20; [ -n "${DVSNAP_LONG:-}" ] && ITER=100
ENV=contoso-dev
SLOW='fsync,fdatasync,unlink,unlinkat,rename,renameat,renameat2'
STRACE=(strace -f -qq -o /dev/null -e trace="$SLOW" -e inject="$SLOW":delay_enter=20000)
tok=$(token $ENV)
API=$DVSIM_URL/org/$ENV/api/data/v9.2
# the test's own writes bypass dvsim's simulated plug-in, so the person has only the records made here
api() { curl -sf -o /dev/null -X "$1" -H "Authorization: Bearer $tok" -H 'Content-Type: application/json' \
  -H 'MSCRM.BypassBusinessLogicExecution: CustomSync,CustomAsync' ${3:+-d "$3"} "$API/$2"; }
check "a first point" dvsnap capture --env $ENV

# hash of each of the iteration's points' contact and audit tables without the person's lines
view() { # view ID POINTS...
  local id=$1 p t; shift
  for p in "$@"; do for t in contact audit; do
    echo "$p $t $(dvsnap cat $ENV "$p" $t | grep -a -v -F "$id" | sed 's/,$//' | sha256sum | cut -c1-16)"
  done; done
}
has_person() { # has_person ID POINTS...: how many of the points still show the contact
  local id=$1 p n=0; shift
  for p in "$@"; do dvsnap cat $ENV "$p" contact | grep -a -q -F "$id" && n=$((n + 1)); done
  echo $n
}
journal_left() { repo_get "erase/$ENV.journal.json" >/dev/null 2>&1; }

erase_ms=0; killed=0; mid=0; bad_check=0; bad_view=0; bad_rerun=0; left=0; journals=0
for i in $(seq 1 "$ITER"); do
  id=$(printf '22222222-0000-4000-8000-%012d' "$i"); email="erase.kill.$i.zq@example.org"
  api PATCH "contacts($id)" "{\"firstname\":\"Killtest$i\",\"lastname\":\"Qzv\",\"emailaddress1\":\"$email\"}"
  sim_churn $ENV 0.01 "$i" >/dev/null
  dvsnap capture --env $ENV >/dev/null 2>&1
  api PATCH "contacts($id)" "{\"jobtitle\":\"Killtest job $i\"}"
  dvsnap capture --env $ENV >/dev/null 2>&1
  pts=$(dvsnap points $ENV | awk 'NR>1 {print $1}' | tail -2)
  view "$id" $pts >"$T/before"
  start=$(date +%s%N)
  "${STRACE[@]}" "$DVSNAP" --config "$T/config" erase $ENV --where "emailaddress1=$email" --yes >"$T/killed.out" 2>&1 &
  spid=$!
  if [ "$i" -gt 1 ]; then # the first run is not killed: it measures how long an erase takes
    sleep "$(awk -v ms=$(( RANDOM % (erase_ms + 1) )) 'BEGIN {printf "%.3f", ms / 1000}')"
    pid=$(pgrep -P "$spid" -x dvsnap || true)
    if [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; then killed=$((killed + 1)); fi
  fi
  wait "$spid" 2>/dev/null
  [ "$i" -eq 1 ] && erase_ms=$(( ($(date +%s%N) - start) / 1000000 ))
  journal_left && { mid=$((mid + 1)); journals=$((journals + 1)); }
  if ! dvsnap check --read-data >"$T/check.out" 2>&1; then
    bad_check=$((bad_check + 1)); echo "# iteration $i: check failed"; sed 's/^/#   /' "$T/check.out" | head -5
  fi
  if ! view "$id" $pts | cmp -s - "$T/before"; then
    bad_view=$((bad_view + 1)); echo "# iteration $i: another record changed"
  fi
  if [ $((i % 4)) -eq 0 ]; then # a capture between the kill and the rerun builds on what is there
    sim_churn $ENV 0.01 "$((1000 + i))" >/dev/null
    dvsnap capture --env $ENV >/dev/null 2>&1 || { bad_check=$((bad_check + 1)); echo "# iteration $i: capture failed"; }
    pts="$pts $(dvsnap points $ENV | awk 'END {print $1}')"
    dvsnap check --read-data >/dev/null 2>&1 || { bad_check=$((bad_check + 1)); echo "# iteration $i: check after the capture failed"; }
  fi
  if ! dvsnap erase $ENV --where "emailaddress1=$email" --yes >"$T/rerun.out" 2>&1 && \
     ! grep -q "interrupted is finished" "$T/rerun.out"; then
    # the killed run may have finished: then the rerun finds nothing (exit 1) and that is right
    [ "$(has_person "$id" $pts)" = 0 ] || { bad_rerun=$((bad_rerun + 1)); echo "# iteration $i: rerun failed"; sed 's/^/#   /' "$T/rerun.out" | head -5; }
  fi
  [ "$(has_person "$id" $pts)" = 0 ] || left=$((left + 1))
  journal_left && { bad_rerun=$((bad_rerun + 1)); echo "# iteration $i: a journal is left"; }
done
note "$ITER erasures, $killed killed (a slowed erase takes about ${erase_ms} ms), $mid of them mid-erase (a journal was left); every rerun finished"
check_eq "check --read-data was clean after every kill" 0 "$bad_check"
check_eq "every other record stayed as it was after every kill" 0 "$bad_view"
check_eq "every rerun finished the erasure" 0 "$bad_rerun"
check_eq "no point shows an erased person" 0 "$left"
check "at least one erase was killed mid-way" test "$mid" -ge 1
check "the repository checks clean at the end" dvsnap check --read-data
check "the log has an entry per erasure" test "$(dvsnap erase $ENV --log | jq -s length)" -ge "$ITER"
check "a capture after it all works" dvsnap capture --env $ENV
finish
