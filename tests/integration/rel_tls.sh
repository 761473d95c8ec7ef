#!/usr/bin/env bash
# rel_tls (reliability goal #17, TLS and URL policy). A local CA (openssl) signs a certificate for
# localhost; a TLS front (tests/tools/hostile.py relay) puts dvsim behind https, and dvsim
# --public-url makes every URL it generates point at the front. Then:
#  - a full capture over https with the CA in ca_file succeeds and equals the simulator; the front
#    saw no failed handshakes (nothing tried cleartext);
#  - a self-signed certificate and a CA-signed certificate for another host name: refused before
#    any request reaches dvsim (the front may complete its side of the handshake for the wrong
#    name: the client rejects the name after it);
#  - a hostile https admin API (trusted certificate) that redirects to http://, file://, the same
#    host on another port, or endlessly to itself, or sends a nextLink to a second listener: every
#    case fails closed, within a bound; the second listeners (https and plain http) log no request
#    at all, so no bearer left the configured origin; the endless redirect stops after at most 5;
#  - a cleartext admin_url to a non-loopback host is refused by the configuration.
. "$(dirname "$0")/../lib.sh"
HOSTILE="python3 $(dirname "$0")/../tools/hostile.py"

# ---- a CA and three certificates ----
cd "$T"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=dvsnap test CA" -keyout ca.key -out ca.pem \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign >/dev/null 2>&1
mkcert() { # NAME SAN
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$1" -keyout "$1.key" -out "$1.csr" >/dev/null 2>&1
  printf 'subjectAltName=%s\n' "$2" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile "$1.ext" \
    -out "$1.pem" >/dev/null 2>&1
}
mkcert localhost "DNS:localhost,IP:127.0.0.1"
mkcert wronghost "DNS:wronghost.test"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=localhost" -keyout self.key -out self.pem \
  -addext subjectAltName=DNS:localhost >/dev/null 2>&1
cd - >/dev/null
check "the test CA signed the localhost certificate" openssl verify -CAfile "$T/ca.pem" "$T/localhost.pem"

# serve NAME CERT MODE ARGS...: start hostile.py; sets PORT_<NAME>
serve() {
  local name=$1 cert=$2; shift 2
  local tls=(); [ "$cert" = none ] || tls=(--cert "$T/$cert.pem" --key "$T/$cert.key")
  $HOSTILE --ready "$T/$name.ready" --log "$T/$name.log" "${tls[@]}" "$@" >"$T/$name.out" 2>&1 &
  _pids+=($!)
  wait_for 10 test -s "$T/$name.ready" || { not_ok "$name did not start"; cat "$T/$name.out"; finish; }
  : >>"$T/$name.log"
  printf -v "PORT_$name" '%s' "$(head -n1 "$T/$name.ready")"
}
# https_config URL_BASE: admin and token through URL_BASE, trusting the test CA
https_config() {
  write_config "ca_file = $T/ca.pem" "http_timeout = 10" "http_retries = 2" "environments = contoso-dev"
  sed -i -e "s|^admin_url .*|admin_url = $1|" -e "s|^token_url .*|token_url = $1/contoso/oauth2/v2.0/token|" "$T/config"
}
nreq() { curl -sf "$DVSIM_URL/_sim/requests" | jq '.requests | length'; }

# ---- a real capture over https ----
serve front localhost relay "$T/dvsim.ready"
start_dvsim --seed demo --records 200 --public-url "https://localhost:$PORT_front"
https_config "https://localhost:$PORT_front"
dvsnap init >/dev/null
check "capture over https through the front (CA in ca_file) succeeds" dvsnap -v capture
envdoc=$(repo_manifest envs/contoso-dev.json)   # sealed in the store: opened
check "the environment's Web API URL (from dvsim) is the https front" \
  grep -qF "https://localhost:$PORT_front/org/contoso-dev" <<<"$envdoc"
bad=""
for t in $(dvsnap points contoso-dev latest | jq -r '.tables[].name'); do
  dvsnap cat contoso-dev latest "$t" | cmp -s - <(sim_dump contoso-dev "$t") || bad="$bad $t"
done
check_eq "every table captured over https equals the simulator" "" "$bad"
check "the front relayed connections ($(grep -c '^connection' "$T/front.log"))" grep -q '^connection' "$T/front.log"
check_eq "no client tried cleartext or failed a handshake at the front" 0 "$(grep -c handshake-failed "$T/front.log")"

# ---- untrusted and wrong-host certificates ----
for bad_cert in self wronghost; do
  serve "f_$bad_cert" "$bad_cert" relay "$T/dvsim.ready"
  port_var="PORT_f_$bad_cert"
  https_config "https://localhost:${!port_var}"
  before=$(nreq)
  t0=$(date +%s)
  check_fails "a $bad_cert certificate is refused" dvsnap env list
  cp "$T/check.out" "$T/$bad_cert.err"
  check "the refusal is about the certificate" grep -qiE "certificate|ssl|tls|verify|peer" "$T/$bad_cert.err"
  check "refused quickly ($(( $(date +%s) - t0 ))s)" test $(( $(date +%s) - t0 )) -lt 30
  check_eq "with a $bad_cert certificate no request reached dvsim" "$before" "$(nreq)"
done

# ---- a hostile admin API: redirects and nextLinks ----
serve evil localhost admin "$T/evil.mode"
serve second localhost listen
serve plain none listen
https_config "https://localhost:$PORT_evil"
for m in "redirect http://localhost:$PORT_plain/stolen" "redirect file:///etc/passwd" \
         "redirect https://localhost:$PORT_second/stolen" "redirect https://127.0.0.1:$PORT_evil/other-host" \
         "nextlink https://localhost:$PORT_second/page2" "nextlink http://localhost:$PORT_evil/page2" "loop"; do
  echo "$m" >"$T/evil.mode"
  : >"$T/evil.log"
  t0=$(date +%s)
  check_fails "$m: fails closed" timeout 60 "$DVSNAP" --config "$T/config" env list
  check "$m: within 30 s" test $(( $(date +%s) - t0 )) -lt 30
  check "$m: the bearer was sent only to the configured origin" \
    test "$(grep -c 'auth=yes' "$T/evil.log")" -ge 1
done
check_eq "the second https listener saw no request at all" "" "$(cat "$T/second.log")"
check_eq "the plain http listener saw no request at all" "" "$(cat "$T/plain.log")"
gets=$(grep -c '^GET' "$T/evil.log")
check "the endless redirect stopped after at most 5 redirects ($gets GETs per attempt, 2 attempts)" test "$gets" -le 12

# ---- cleartext configuration ----
write_config "environments = contoso-dev"
sed -i -e "s|^admin_url .*|admin_url = http://api.bap.example.com|" "$T/config"
check_fails "a cleartext admin_url to a non-loopback host is refused" dvsnap env list
cp "$T/check.out" "$T/cleartext.err"
check "the refusal says https" grep -qi "https" "$T/cleartext.err"
finish
