#!/usr/bin/env bash
# cli_health (issue 18): `dvsnap status` and the Prometheus metrics.
#   - status of an environment never captured exits 7 (stale); after a capture 0; aged past
#     stale_after (--now, or DVSNAP_NOW) 7 again, with its age and lag; a longer stale_after
#     makes the same age fine;
#   - a capture that fails for one environment (its writer lock held: exit 11) is recorded: status
#     names the failure and its reason while the point is still fresh (exit 0); the next capture
#     clears it ("since recovered");
#   - metrics_file is valid text exposition (promtool check metrics, installed with apt-get when
#     missing; and a strict parser here), rewritten after each pass, and its counters move:
#     captures by result, records changed, requests, bytes stored, the last success time;
#   - `dvsnap mount --metrics-listen` serves the same text at /metrics (404 elsewhere), and its
#     capture loop records its passes like `dvsnap capture` does; a port in use is refused before
#     mounting.
. "$(dirname "$0")/../lib.sh"
start_dvsim --seed demo --records 100
write_config "environments = contoso-prod contoso-dev" "metrics_file = $T/metrics/dvsnap.prom"
dvsnap init >/dev/null
M="$T/metrics/dvsnap.prom"

# metric NAME ENV [RESULT]: the sample's value in the metrics file (or $2=- for no labels)
metric() {
  python3 - "$M" "$@" <<'PY'
import sys
path, name, env = sys.argv[1], sys.argv[2], sys.argv[3]
result = sys.argv[4] if len(sys.argv) > 4 else None
want = {} if env == "-" else {"environment": env}
if result:
    want["result"] = result
for line in open(path):
    if line.startswith("#") or not line.strip():
        continue
    head, value = line.rsplit(" ", 1)
    metric, labels = (head.split("{", 1) + [""])[:2]
    got = {}
    for part in labels.rstrip("}").split(",") if labels else []:
        k, v = part.split("=", 1)
        got[k] = v.strip('"')
    if metric == name and got == want:
        print(value.strip())
        sys.exit(0)
sys.exit(1)
PY
}
# strict: every line is a comment (HELP/TYPE of the family that follows) or a sample of a declared
# family, names and labels well-formed, values numbers, each family's samples together
strict_parse() {
  python3 - "$1" <<'PY'
import re, sys
name_re = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*$')
sample_re = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*)?\})? (-?[0-9.eE+-]+|NaN|\+Inf|-Inf)$')
types, seen_done, current = {}, set(), None
text = open(sys.argv[1]).read()
if not text.endswith("\n"):
    sys.exit("no final newline")
for n, line in enumerate(text.split("\n")[:-1], 1):
    if line.startswith("# HELP ") or line.startswith("# TYPE "):
        parts = line.split(" ", 3)
        if len(parts) < 4 or not name_re.match(parts[2]):
            sys.exit("line %d: bad comment" % n)
        if line.startswith("# TYPE "):
            if parts[3] not in ("counter", "gauge", "histogram", "summary", "untyped"):
                sys.exit("line %d: bad type" % n)
            if parts[2] in types:
                sys.exit("line %d: %s declared twice" % (n, parts[2]))
            types[parts[2]] = parts[3]
            if current:
                seen_done.add(current)
            current = parts[2]
        continue
    m = sample_re.match(line)
    if not m:
        sys.exit("line %d: not a sample: %r" % (n, line))
    if m.group(1) != current or m.group(1) in seen_done:
        sys.exit("line %d: %s outside its family" % (n, m.group(1)))
    float(m.group(4))
    if types[current] == "counter" and not current.endswith("_total"):
        sys.exit("counter %s lacks _total" % current)
print("%d families" % len(types))
PY
}

# ---- promtool (Debian's prometheus package brings it) ----
if ! command -v promtool >/dev/null; then
  note "installing prometheus for promtool"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >"$T/apt.log" 2>&1 ||
    { apt-get update -qq >>"$T/apt.log" 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >>"$T/apt.log" 2>&1; }
fi
PROMTOOL=$(command -v promtool || true)
[ -n "$PROMTOOL" ] && note "promtool: $("$PROMTOOL" --version 2>&1 | head -1)" || note "promtool is not installable here: the strict parser alone checks the format"
valid_metrics() { # FILE: promtool (when here) and the strict parser
  if [ -n "$PROMTOOL" ]; then "$PROMTOOL" check metrics <"$1" || return 1; fi
  strict_parse "$1"
}

# ---- never captured ----
dvsnap status contoso-prod >"$T/s0.out" 2>&1
check_eq "status of an environment never captured exits 7" 7 "$?"
check_eq "it says never" never "$(dvsnap status --json contoso-prod | jq -r '.environments[0].state')"

# ---- captured: fresh ----
check "first capture" dvsnap capture
dvsnap status >"$T/s1.out"; rc=$?
check_eq "status after a capture exits 0" 0 "$rc"
check "the table lists both environments as ok" bash -c "grep -q '^contoso-prod  *ok ' '$T/s1.out' && grep -q '^contoso-dev  *ok ' '$T/s1.out'"
dvsnap status --json >"$T/s1.json"
check_eq "status --json: every environment ok, not stale, age under a minute" "ok false true|ok false true" \
  "$(jq -r '[.environments[] | "\(.state) \(.stale) \(.age_seconds < 60)"] | join("|")' "$T/s1.json")"
check_eq "status --json: stale_after is twice capture_every (15m)" 1800 "$(jq .stale_after_seconds "$T/s1.json")"

# ---- aged: stale ----
later=$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)
dvsnap status --now "$later" >/dev/null 2>&1
check_eq "an hour later (--now) status exits 7" 7 "$?"
DVSNAP_NOW=$later "$DVSNAP" --config "$T/config" status >/dev/null 2>&1
check_eq "the same with DVSNAP_NOW" 7 "$?"
dvsnap status --json --now="$later" >"$T/s2.json"
check_eq "status --json: both stale, age >= 3600, lag >= 2700" "stale true true true|stale true true true" \
  "$(jq -r '[.environments[] | "\(.state) \(.stale) \(.age_seconds >= 3600) \(.lag_seconds >= 2700)"] | join("|")' "$T/s2.json")"
check_eq "status --json carries its exit code" 7 "$(jq .exit_code "$T/s2.json")"
DVSNAP_STALE_AFTER=2h "$DVSNAP" --config "$T/config" status --now "$later" >/dev/null 2>&1
check_eq "with stale_after = 2h the same age is fine (exit 0)" 0 "$?"

# ---- the metrics file ----
check "metrics_file was written" test -s "$M"
check "it is valid text exposition" valid_metrics "$M"
check_eq "one ok capture of contoso-prod" 1 "$(metric dvsnap_captures_total contoso-prod ok)"
req1=$(metric dvsnap_capture_requests_total contoso-prod)
rec1=$(metric dvsnap_capture_records_changed_total contoso-prod)
bytes1=$(metric dvsnap_capture_stored_bytes_total contoso-prod)
ts1=$(metric dvsnap_last_success_timestamp_seconds contoso-prod)
check "requests, records changed and bytes stored were counted ($req1, $rec1, $bytes1)" \
  test "$req1" -gt 0 -a "$rec1" -gt 0 -a "$bytes1" -gt 0
check_eq "stale_after is exported" 1800 "$(metric dvsnap_stale_after_seconds -)"

# ---- one environment fails: its writer lock is held ----
sim_churn contoso-prod 0.05 3 >/dev/null
sleep 1.1 # a later second for the timestamps
exec 8>"$T/repo/locks/contoso-dev.lock"
flock 8
dvsnap capture >"$T/c2.out" 2>"$T/c2.err"; rc=$?
exec 8>&-
check_eq "a capture with contoso-dev's lock held exits 11" 11 "$rc"
check "it says why" grep -q "contoso-dev: capture failed: .*another capture of contoso-dev" "$T/c2.err"
check "valid metrics after the failed pass" valid_metrics "$M"
check_eq "contoso-dev: one failed capture counted" 1 "$(metric dvsnap_captures_total contoso-dev failed)"
check "contoso-dev: its last failure has a time" test "$(metric dvsnap_last_failure_timestamp_seconds contoso-dev)" -gt 0
check_eq "contoso-dev: last capture not ok" 0 "$(metric dvsnap_last_capture_ok contoso-dev)"
check_eq "contoso-prod: two ok captures" 2 "$(metric dvsnap_captures_total contoso-prod ok)"
check "contoso-prod: requests moved" test "$(metric dvsnap_capture_requests_total contoso-prod)" -gt "$req1"
check "contoso-prod: records changed moved" test "$(metric dvsnap_capture_records_changed_total contoso-prod)" -gt "$rec1"
check "contoso-prod: bytes stored moved" test "$(metric dvsnap_capture_stored_bytes_total contoso-prod)" -gt "$bytes1"
check "contoso-prod: last success moved" test "$(metric dvsnap_last_success_timestamp_seconds contoso-prod)" -gt "$ts1"
dvsnap status >"$T/s3.out"; rc=$?
check_eq "the point is still fresh: status exits 0" 0 "$rc"
check "status shows contoso-dev failing" grep -q "^contoso-dev  *failing " "$T/s3.out"
check "and the failure's reason" grep -q "contoso-dev: last failure .*: .*another capture of contoso-dev is running" "$T/s3.out"
check_eq "status --json: failing, with the error" "failing true" \
  "$(dvsnap status --json contoso-dev | jq -r '.environments[0] | "\(.state) \(.last_error | test("another capture"))"')"

# ---- recovered ----
check "the next capture" dvsnap capture
dvsnap status >"$T/s4.out"
check "contoso-dev ok again" grep -q "^contoso-dev  *ok " "$T/s4.out"
check "the failure is shown as recovered" grep -q "contoso-dev: last failure .*(since recovered)" "$T/s4.out"

# ---- the mount serves the metrics, and records its capture loop's passes ----
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ok_before=$(metric dvsnap_captures_total contoso-prod ok)
mount_dvsnap "$T/mnt" --metrics-listen "127.0.0.1:$PORT" --capture-every 3s
URL="http://127.0.0.1:$PORT/metrics"
check "the mount serves /metrics" wait_for 20 curl -sf -o "$T/http.prom" "$URL"
check_eq "as text/plain version 0.0.4" "text/plain; version=0.0.4; charset=utf-8" \
  "$(curl -sf -o /dev/null -w '%{content_type}' "$URL")"
check_eq "anything else is 404" 404 "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/other")"
served_more() { # the mount's metrics count more ok captures of contoso-prod than before it
  curl -sf "$URL" >"$T/http.prom" || return 1
  local v; v=$(M="$T/http.prom" metric dvsnap_captures_total contoso-prod ok) || return 1
  [ "$v" -gt "$ok_before" ]
}
check "the mount's capture loop records its passes (ok captures of contoso-prod above $ok_before)" \
  wait_for 30 served_more
check "what it serves is valid text exposition" valid_metrics "$T/http.prom"
mkdir -p "$T/mnt2"
dvsnap mount --foreground --metrics-listen "127.0.0.1:$PORT" "$T/mnt2" >"$T/m2.out" 2>&1
check_eq "a second mount on the same metrics port is refused before mounting (exit 2)" 2 "$?"
check "...saying the address is in use" grep -q "metrics_listen 127.0.0.1:$PORT: Address already in use" "$T/m2.out"
same() { curl -sf "$URL" >"$T/http2.prom" && cmp -s "$T/http2.prom" "$M"; }
check "it serves what metrics_file holds (between passes)" wait_for 20 same
finish
