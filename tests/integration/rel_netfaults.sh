#!/usr/bin/env bash
# rel_netfaults (reliability goals #9 network faults mid-transfer and #8 concurrency cap).
# tests/tools/faultproxy sits between dvsnap and dvsim (admin, token and Web API all go through it:
# dvsim derives instanceApiUrl and nextLinks from the Host the client used). For each fault that
# hits the next few connections (reset after k bytes, clean close after k bytes, a wrong
# Content-Length, refused connections, a stall, a 300 B/s trickle) and for dvsim's own truncated
# JSON bodies: a fresh repository's capture either completes with every table equal to the
# simulator's dump (no partial page was committed) or fails cleanly with no point; it completes
# within a fixed bound. Permanent refusal and a permanent stall fail within the bound of
# http_timeout x retries, with no point. With dvsim --max-concurrency 2 and max_concurrency = 2 the
# simulator sees no 429 (the client never exceeds its cap) and the capture completes; the control
# with max_concurrency = 8 against the same cap is throttled and still completes exactly (300 ms of
# server latency makes requests overlap). dvsim's own truncated-JSON 200 bodies (30% of every 200:
# tokens, admin API, definitions, pages) are asked for again (GETs and token requests, at most 4
# times each): the capture completes equal to the simulator; with every 200 truncated it fails
# within the bound, clearly, with no point.
. "$(dirname "$0")/../lib.sh"
ENV=contoso-prod
start_dvsim --seed demo --records 400
"$BUILD/tests/faultproxy" --listen 127.0.0.1:0 --target "127.0.0.1:$DVSIM_PORT" \
  --ready-file "$T/px.ready" --mode-file "$T/mode" --log "$T/px.log" >"$T/px.out" 2>&1 &
_pids+=($!)
wait_for 10 test -s "$T/px.ready" || { not_ok "faultproxy did not start"; finish; }
PX="http://127.0.0.1:$(head -n1 "$T/px.ready")"
echo pass >"$T/mode"

# config through the proxy; short timeouts so stalls end quickly
proxied_config() {
  write_config "http_timeout = 6" "http_retries = ${1:-4}" "max_concurrency = ${2:-4}"
  sed -i -e "s|^admin_url .*|admin_url = $PX|" -e "s|^token_url .*|token_url = $PX/contoso/oauth2/v2.0/token|" \
    -e "s|^environments .*|environments = $ENV|" "$T/config"
}
fresh_repo() { rm -rf "$T/repo" "$T/cache"; mkdir -p "$T/repo"; dvsnap init >/dev/null; }
# every table of the latest point equals the simulator's dump (prints the tables that differ)
differs() {
  local t bad=""
  dvsnap points "$ENV" latest >"$T/latest.json" || { echo "no-point"; return; }
  for t in $(jq -r '.tables[].name' "$T/latest.json"); do
    dvsnap cat "$ENV" latest "$t" >"$T/cat.json" 2>/dev/null || bad="$bad $t(cat)"
    sim_dump "$ENV" "$t" | cmp -s - "$T/cat.json" || bad="$bad $t"
  done
  [ "$(jq '.tables | length' "$T/latest.json")" -ge 5 ] || bad="$bad (only $(jq '.tables | length' "$T/latest.json") tables)"
  echo "$bad"
}
n_points() { dvsnap points "$ENV" 2>/dev/null | grep -c 'T[0-9]*Z'; }
faults_applied() { awk -v m="$1" '$2 == m' "$T/px.log" | wc -l; }
secs() { echo $(( ($(date +%s%N) - $1) / 1000000000 )); }

proxied_config
fresh_repo
check "a capture through the proxy (pass) completes" dvsnap capture
check_eq "and equals the simulator" "" "$(differs)"

# ---- transient faults: retried, exact result ----
for fault in "reset_after 3000 times=3" "truncate 5000 times=3" "bad_length times=1" \
             "refuse times=3" "stall times=1" "trickle 300 times=1"; do
  mode=${fault%% *}
  fresh_repo
  : >"$T/px.log"
  echo "$fault" >"$T/mode"
  t0=$(date +%s%N)
  timeout 120 "$DVSNAP" --config "$T/config" capture >"$T/cap.log" 2>&1; rc=$?
  took=$(secs "$t0")
  echo pass >"$T/mode"
  check "$fault: the fault was injected ($(faults_applied "$mode") connections)" test "$(faults_applied "$mode")" -ge 1
  if [ "$rc" = 0 ]; then
    check_eq "$fault: capture retried and completed in ${took}s; every table equals the simulator" "" "$(differs)"
  else
    check_eq "$fault: capture failed cleanly (exit $rc) and left no point" 0 "$(n_points)"
  fi
  check "$fault: finished within 60 s (${took}s)" test "$took" -lt 60
  check "$fault: the capture completed (retries cover the bad connections)" test "$rc" = 0
done

# ---- dvsim's own truncated JSON bodies (valid framing, broken JSON) ----
fresh_repo
curl -sf -X POST "$DVSIM_URL/_sim/faults" -d '{"truncate_rate":0.3}' >/dev/null
t0=$(date +%s%N)
timeout 120 "$DVSNAP" --config "$T/config" capture >"$T/cap.log" 2>&1; rc=$?
took=$(secs "$t0")
curl -sf -X POST "$DVSIM_URL/_sim/faults" -d '{"truncate_rate":0}' >/dev/null
check_eq "truncated JSON (30% of 200s): the capture completed in ${took}s" 0 "$rc"
tail -3 "$T/cap.log" | sed 's/^/#   /'
check_eq "truncated JSON (30%): every table equals the simulator" "" "$(differs)"
check "truncated JSON (30%): the client said it asked again" grep -q "malformed JSON.*asking again" "$T/cap.log"
fresh_repo
curl -sf -X POST "$DVSIM_URL/_sim/faults" -d '{"truncate_rate":1}' >/dev/null
t0=$(date +%s%N)
timeout 120 "$DVSNAP" --config "$T/config" capture >"$T/cap.log" 2>&1; rc=$?
took=$(secs "$t0")
curl -sf -X POST "$DVSIM_URL/_sim/faults" -d '{"truncate_rate":0}' >/dev/null
check "truncated JSON (every 200): the capture failed (exit $rc, ${took}s)" test "$rc" -ne 0 -a "$rc" -ne 124
check "truncated JSON (every 200): the error says malformed JSON" grep -qi "malformed JSON" "$T/cap.log"
check_eq "truncated JSON (every 200): no point" 0 "$(n_points)"

# ---- permanent faults: bounded failure, no point ----
proxied_config 2
fresh_repo
for fault in refuse stall; do
  echo "$fault" >"$T/mode"
  t0=$(date +%s%N)
  timeout 150 "$DVSNAP" --config "$T/config" capture >"$T/cap.log" 2>&1; rc=$?
  took=$(secs "$t0")
  echo pass >"$T/mode"
  check "permanent $fault: capture fails (exit $rc)" test "$rc" != 0 -a "$rc" != 124
  check "permanent $fault: it says what failed" test -s "$T/cap.log"
  check "permanent $fault: within the bound (2 attempts x 6 s + waits; took ${took}s)" test "$took" -le 45
  check_eq "permanent $fault: no point was recorded" 0 "$(n_points)"
done

# ---- concurrency cap (#8) ----
kill "$DVSIM_PID"; wait "$DVSIM_PID" 2>/dev/null
start_dvsim --seed demo --records 400 --max-concurrency 2 --latency-ms 300
for c in 2 8; do
  write_config "max_concurrency = $c" "environments = $ENV"
  fresh_repo
  before=$(curl -sf "$DVSIM_URL/_sim/requests" | jq '[.requests[].seq] | max // 0')
  t0=$(date +%s%N)
  check "max_concurrency $c against a server cap of 2: capture completes" timeout 120 "$DVSNAP" --config "$T/config" capture
  took=$(secs "$t0")
  throttled=$(curl -sf "$DVSIM_URL/_sim/requests?since=$before" | jq '[.requests[] | select(.status == 429)] | length')
  total=$(curl -sf "$DVSIM_URL/_sim/requests?since=$before" | jq '.requests | length')
  check_eq "max_concurrency $c: every table equals the simulator" "" "$(differs)"
  note "max_concurrency $c: $total requests, $throttled answered 429, ${took}s"
  if [ "$c" = 2 ]; then
    check_eq "max_concurrency 2: the server never saw more than 2 at once (no 429 of $total)" 0 "$throttled"
  else
    c8_throttled=$throttled
  fi
done
check "control: max_concurrency 8 overran the server's cap ($c8_throttled 429s) and still completed" \
  test "${c8_throttled:-0}" -ge 1
finish
