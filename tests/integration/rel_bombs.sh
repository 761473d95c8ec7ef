#!/usr/bin/env bash
# rel_bombs (reliability goal #18, oversized and hostile input). A hostile https admin API
# (tests/tools/hostile.py, trusted test CA) answers `dvsnap env list` with: a 2 GiB body, an
# endless chunked body, JSON nested 100,000 deep, a 10 MB string. Each is refused with an error
# (never a crash: exit status 1, not a signal; the 10 MB string, within the 64 MiB body cap, may
# also be skipped with a warning) within 30 s, under `ulimit -v` of 1 GiB (skipped in
# sanitizer builds, whose shadow memory needs more), and the server saw the client hang up long
# before the end of the body. Numbers 1e400 (decimal) and 2^63+1 (BigInt) written into dvsim go
# through capture and `dvsnap cat` exactly as text.
. "$(dirname "$0")/../lib.sh"
HOSTILE="python3 $(dirname "$0")/../tools/hostile.py"
cd "$T"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=localhost" -keyout h.key -out h.pem \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -addext basicConstraints=critical,CA:TRUE >/dev/null 2>&1
cd - >/dev/null
$HOSTILE --ready "$T/h.ready" --log "$T/h.log" --cert "$T/h.pem" --key "$T/h.key" admin "$T/h.mode" >"$T/h.out" 2>&1 &
_pids+=($!)
wait_for 10 test -s "$T/h.ready" || { not_ok "hostile server did not start"; cat "$T/h.out"; finish; }
H="https://localhost:$(head -n1 "$T/h.ready")"
printf 'hostile-test-secret\n' >"$T/secret"; chmod 600 "$T/secret"
DVSIM_URL=$H write_config "ca_file = $T/h.pem" "http_timeout = 20" "http_retries = 1"
sed -i "s|^token_url .*|token_url = $H/contoso/oauth2/v2.0/token|" "$T/config"
limit=""
case "$BUILD" in *address*|*thread*) note "sanitizer build: no ulimit -v" ;; *) limit="ulimit -v 1048576;" ;; esac

for m in "big 2147483648" "chunked" "deep 100000" "string 10000000"; do
  echo "$m" >"$T/h.mode"
  : >"$T/h.log"
  t0=$(date +%s%N)
  bash -c "$limit exec \"\$@\"" _ "$DVSNAP" --config "$T/config" env list >"$T/out" 2>"$T/err"; rc=$?
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  case $m in
  string*) # a 10 MB name is within the body cap: the object is skipped or the list refused
    check "$m: handled without a crash (exit $rc, no signal; took ${ms} ms)" test "$rc" -le 1 ;;
  *)
    check_eq "$m: refused with exit status 1 (no crash, no signal; took ${ms} ms)" 1 "$rc"
    check "$m: says why ($(head -c 120 "$T/err"))" test -s "$T/err" ;;
  esac
  check "$m: the hostile body was requested (admin GET with the bearer)" grep -q '^GET .* auth=yes' "$T/h.log"
  check "$m: within 30 s" test "$ms" -lt 30000
  case $m in big*|chunked)
    wait_for 10 grep -q "client closed" "$T/h.log"
    sent=$(sed -n 's/.*client closed after \([0-9]*\) bytes.*/\1/p' "$T/h.log" | sort -n | tail -1)
    check "$m: the client hung up early (server sent ${sent:-?} bytes before the close)" \
      test "${sent:-999999999999}" -lt 1073741824 ;;
  esac
done

# ---- exact numbers through capture and cat ----
start_dvsim --seed demo --records 100
write_config "environments = contoso-dev"
dvsnap init >/dev/null
org="$DVSIM_URL/org/contoso-dev"
tok=$(token contoso-dev)
body='{"new_name":"exact numbers","new_budget":1e400,"new_bignumber":9223372036854775809}'
code=$(curl -s -o "$T/post.out" -w '%{http_code}' -X POST "$org/api/data/v9.2/new_projects" \
  -H "Authorization: Bearer $tok" -H "Content-Type: application/json" -d "$body")
check "dvsim accepted a project with 1e400 and 2^63+1 (HTTP $code)" test "$code" = 204 -o "$code" = 201
check "capture" dvsnap capture
dvsnap cat contoso-dev latest new_project >"$T/projects.json" 2>"$T/cat.err"
line=$(grep '"exact numbers"' "$T/projects.json")
check "the decimal 1e400 round-trips as text" grep -q '"new_budget":1e400[,}]' <<<"$line"
check "the BigInt 2^63+1 round-trips as text" grep -q '"new_bignumber":9223372036854775809[,}]' <<<"$line"
check "cat equals the simulator's dump for that table" cmp -s "$T/projects.json" <(sim_dump contoso-dev new_project)
finish
