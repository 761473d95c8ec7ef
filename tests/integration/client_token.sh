#!/usr/bin/env bash
# client_token: tokens are refreshed before they expire. dvsim issues 4-second tokens and lets
# each token send two requests a second; reading every table of contoso-prod with two threads
# then lasts well past one token's life. The read must succeed with every table complete, dvsim
# must have issued several org tokens, and no request may have been answered 401 (a token used
# after expiry).
. "$(dirname "$0")/../lib.sh"
DVREAD="$BUILD/tests/dvread"

start_dvsim --seed demo --token-lifetime 4
write_config
curl -sf -X POST "$DVSIM_URL/_sim/faults" -d '{"max_requests":"2/1"}' >/dev/null
start=$(date +%s)
timeout 120 "$DVREAD" --config "$T/config" readall contoso-prod 2 >"$T/counts" 2>"$T/err"; rc=$?
took=$(( $(date +%s) - start ))
curl -sf -X POST "$DVSIM_URL/_sim/faults" -d '{"max_requests":"6000/300"}' >/dev/null
check_eq "readall succeeded" "0" "$rc"
bad=0
while IFS=$'\t' read -r table n; do
  want=$(sim_dump contoso-prod "$table" | jq length)
  [ "$want" = "$n" ] || { bad=$((bad + 1)); note "$table: read $n, dvsim has $want"; }
done <"$T/counts"
check_eq "every table complete" "0" "$bad"
curl -sf "$DVSIM_URL/_sim/requests" >"$T/req.json"
tokens=$(jq '[.requests[] | select(.path | endswith("/oauth2/v2.0/token"))] | length' "$T/req.json")
fps=$(jq '[.requests[] | select(.path | startswith("/org/contoso-prod")) | .token] | unique | length' "$T/req.json")
note "read took ${took}s; token requests: $tokens; distinct org tokens used: $fps; $(tail -1 "$T/err")"
check "the read outlived one token" test "$took" -ge 5
check "several org tokens were used (refreshed)" test "$fps" -ge 2
check_eq "no request was refused with 401" "0" "$(jq '[.requests[] | select(.status == 401)] | length' "$T/req.json")"
finish
