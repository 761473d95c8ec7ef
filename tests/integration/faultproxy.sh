# faultproxy: the fault proxy really makes each network fault it promises (the reliability tests
# depend on it). Upstream is a small python3 HTTP server on loopback; curl is the client.
. "$(dirname "$0")/../lib.sh"

head -c 200000 /dev/urandom >"$T/blob"
want=$(sha256sum <"$T/blob" | cut -d' ' -f1)
cat >"$T/up.py" <<'PY'
import http.server, sys, os
os.chdir(sys.argv[1])
class H(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a): pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
open(sys.argv[2] + ".tmp", "w").write("%d\n" % s.server_address[1]); os.rename(sys.argv[2] + ".tmp", sys.argv[2])
s.serve_forever()
PY
python3 "$T/up.py" "$T" "$T/up.ready" & _pids+=($!)
wait_for 10 test -s "$T/up.ready" || { not_ok "upstream did not start"; finish; }
"$BUILD/tests/faultproxy" --target "127.0.0.1:$(cat "$T/up.ready")" --ready-file "$T/px.ready" \
  --mode-file "$T/mode" --log "$T/px.log" & _pids+=($!)
wait_for 10 test -s "$T/px.ready" || { not_ok "proxy did not start"; finish; }
url="http://127.0.0.1:$(cat "$T/px.ready")/blob"

fetch() { curl -s -o "$T/got" --max-time "${1:-10}" "$url"; echo $?; }

echo pass >"$T/mode"
check_eq "pass relays the whole body" "0 $want" "$(fetch) $(sha256sum <"$T/got" | cut -d' ' -f1)"
echo "truncate 5000" >"$T/mode"
rc=$(fetch); check_eq "truncate: curl sees a partial transfer (18)" 18 "$rc"
check "truncate: fewer bytes than sent" test "$(stat -c %s "$T/got")" -lt 200000
echo "reset_after 3000" >"$T/mode"
rc=$(fetch); check "reset_after: curl fails (recv error 56 or partial 18)" test "$rc" = 56 -o "$rc" = 18
echo refuse >"$T/mode"
rm -f "$T/got"; rc=$(fetch)
check "refuse: curl fails and receives no body" test "$rc" != 0 -a ! -s "$T/got"
echo stall >"$T/mode"
rc=$(fetch 2); check_eq "stall: curl times out (28)" 28 "$rc"
echo "trickle 2000" >"$T/mode"
rc=$(fetch 2); check_eq "trickle: curl times out (28) on a slow body" 28 "$rc"
echo bad_length >"$T/mode"
rc=$(fetch); check_eq "bad_length: curl sees a short body (18)" 18 "$rc"
echo "refuse times=1" >"$T/mode"
rc1=$(fetch); rc2=$(fetch)
check "times=1: first connection refused" test "$rc1" != 0
check_eq "times=1: second connection passes" "0 $want" "$rc2 $(sha256sum <"$T/got" | cut -d' ' -f1)"
check "the proxy logs every connection" test "$(wc -l <"$T/px.log")" -ge 9
finish
