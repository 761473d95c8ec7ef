#!/usr/bin/env bash
# dvsim service protection and faults: 429 + integer Retry-After + the real codes and messages
# once the per-token window is exceeded, 200 again after waiting, a longer wait for a client that
# keeps pushing, the concurrency limit, and injected 500/503, latency, dropped connections and
# truncated JSON (set at runtime through /_sim/faults). Also expired access tokens (401).
. "$(dirname "$0")/../lib.sh"
start_dvsim --seed demo --max-requests 20/2 --max-concurrency 3
API="$DVSIM_URL/org/contoso-trial/api/data/v9.2"
tok() { token contoso-trial; }
TOK=$(tok)
get() { curl -s -o "$T/body" -D "$T/hdr" -w '%{http_code}' -H "Authorization: Bearer $1" "$API/systemusers?\$top=1&\$select=fullname"; }
retry_after() { grep -i '^Retry-After:' "$T/hdr" | tr -d '\r' | cut -d' ' -f2; }

codes=""
for i in $(seq 1 20); do codes="$codes$(get "$TOK") "; done
check_eq "20 requests inside the window succeed" "$(printf '200 %.0s' $(seq 1 20))" "$codes"
check_eq "the 21st -> 429" 429 "$(get "$TOK")"
ra=$(retry_after)
check "Retry-After is a whole number of seconds (1..2)" test "$ra" -ge 1 -a "$ra" -le 2
check_eq "429 code and message" "0x80072322|Number of requests exceeded the limit of 20 over time window of 2 seconds." \
  "$(jq -r '.error.code + "|" + .error.message' "$T/body")"
sleep "$ra"   # the protocol's own wait, not synchronisation
check_eq "after Retry-After -> 200" 200 "$(get "$TOK")"
TOK2=$(tok)
check_eq "another token has its own window" 200 "$(get "$TOK2")"

# a client that keeps pushing waits longer
for i in $(seq 1 25); do get "$TOK" >/dev/null; done
get "$TOK" >/dev/null; first=$(retry_after)
for i in $(seq 1 4); do get "$TOK" >/dev/null; done
get "$TOK" >/dev/null; later=$(retry_after)
check "pushing while throttled lengthens Retry-After ($first -> $later)" test "$later" -gt "$first"

# concurrency: slow requests, more at once than allowed
curl -s -X POST "$DVSIM_URL/_sim/faults" -d '{"latency_ms":1500,"max_requests":"100000/300"}' >/dev/null
TOK3=$(tok)
cpids=()
for i in 1 2 3 4 5 6; do
  curl -s --max-time 20 -o "$T/conc.$i" -w '%{http_code}\n' -H "Authorization: Bearer $TOK3" "$API/systemusers?\$top=1" >"$T/conc.st.$i" &
  cpids+=($!)
done
wait "${cpids[@]}"
n429=$(cat "$T"/conc.st.* | grep -c 429); n200=$(cat "$T"/conc.st.* | grep -c 200)
check "concurrency limit 3: some of 6 parallel requests get 429 ($n429), at most 3 succeed ($n200)" test "$n429" -ge 3 -a "$n200" -le 3 -a "$n200" -ge 1
check "concurrency 429 has code 0x80072326" sh -c "cat '$T'/conc.[0-9] | grep -q '0x80072326'"

# faults
curl -s -X POST "$DVSIM_URL/_sim/faults" -d '{"latency_ms":300,"max_concurrency":52}' >/dev/null
t=$(curl -s -o /dev/null -w '%{time_total}' -H "Authorization: Bearer $TOK3" "$API/systemusers?\$top=1")
check "latency_ms 300 -> a slow answer ($t s)" awk -v t="$t" 'BEGIN{exit !(t >= 0.3)}'
curl -s -X POST "$DVSIM_URL/_sim/faults" -d '{"latency_ms":0,"fail_rate":1}' >/dev/null
st=""; for i in 1 2 3 4 5 6; do st="$st$(get "$TOK3") "; done
check "fail_rate 1 -> only 500/503 answers ($st)" sh -c "echo '$st' | grep -qvE '(200|429|401)'"
check "fail_rate answers carry a JSON error" jq -e .error.code "$T/body"
curl -s -X POST "$DVSIM_URL/_sim/faults" -d '{"fail_rate":0,"drop_rate":1}' >/dev/null
curl -s -o /dev/null -H "Authorization: Bearer $TOK3" "$API/accounts"; rc=$?
check "drop_rate 1 -> the connection breaks mid-body (curl $rc)" test "$rc" = 18 -o "$rc" = 56
curl -s -X POST "$DVSIM_URL/_sim/faults" -d '{"drop_rate":0,"truncate_rate":1}' >/dev/null
st=$(curl -s -o "$T/trunc" -w '%{http_code}' -H "Authorization: Bearer $TOK3" "$API/accounts")
check_eq "truncate_rate 1 -> 200" 200 "$st"
check_fails "truncate_rate 1 -> the JSON does not parse" jq . "$T/trunc"
curl -s -X POST "$DVSIM_URL/_sim/faults" -d '{"truncate_rate":0}' >/dev/null
check_eq "faults off -> 200" 200 "$(get "$TOK3")"
check_eq "bad fault setting -> 400" 400 "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$DVSIM_URL/_sim/faults" -d '{"fail_rate":7}')"
check_eq "/_sim/ is never faulted or throttled" 200 "$(curl -s -o /dev/null -w '%{http_code}' "$DVSIM_URL/_sim/faults")"

check "dvsim still alive" kill -0 "$DVSIM_PID"

# an access token past its lifetime: a second dvsim with --token-lifetime 3
start_dvsim --seed demo --token-lifetime 3
API="$DVSIM_URL/org/contoso-trial/api/data/v9.2"
old=$(tok)
check_eq "fresh token works" 200 "$(get "$old")"
check_eq "expires_in follows --token-lifetime" 3 "$(curl -s -X POST "$DVSIM_URL/contoso/oauth2/v2.0/token" --data-urlencode client_id=dvsnap-test \
  --data-urlencode "client_secret@$T/secret" -d grant_type=client_credentials --data-urlencode "scope=$DVSIM_URL/.default" | jq .expires_in)"
expired() { [ "$(get "$old")" = 401 ]; }
check "expired token -> 401" wait_for 8 expired
check "the 401 says the ticket expired" grep -q ExpiredAuthTicket "$T/body"
check "dvsim still alive" kill -0 "$DVSIM_PID"
finish
