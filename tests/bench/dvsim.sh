#!/usr/bin/env bash
# Benchmark: dvsim's page-serving rate. Seeds --records N (default 200000: 200k accounts, 400k
# contacts in contoso-prod), then pages every account with maxpagesize 5000 and every annotation
# on the wire (a keep-alive python client follows @odata.nextLink without parsing the JSON), twice, and reports the
# faster pass. Prints:
#   BENCH dvsim_seed_rate <records/s> records/s
#   BENCH dvsim_page_rate <records/s> records/s
#   BENCH dvsim_page_bytes <MB/s> MB/s
set -u
BUILD=${BUILD:-$(cd "$(dirname "$0")/../.." && pwd)/build}
N=${DVSIM_BENCH_RECORDS:-200000}
T=$(mktemp -d /tmp/dvsim-bench.XXXXXX)
cleanup() { [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
"$BUILD/dvsim" --listen 127.0.0.1:0 --ready-file "$T/ready" --db "$T/db" --records "$N" >"$T/log" 2>&1 &
PID=$!
for _ in $(seq 1 6000); do [ -s "$T/ready" ] && break; kill -0 $PID 2>/dev/null || break; sleep 0.1; done
[ -s "$T/ready" ] || { echo "dvsim did not start"; cat "$T/log"; exit 1; }
U="http://127.0.0.1:$(cat "$T/ready")"
seeded=$(grep -o 'seeded [0-9]* records in [0-9.]* s' "$T/log")
echo "# $seeded"
recs=$(awk '{print $2}' <<<"$seeded"); secs=$(awk '{print $5}' <<<"$seeded")
awk -v r="$recs" -v s="$secs" 'BEGIN{printf "BENCH dvsim_seed_rate %.0f records/s (%d records in %.1f s)\n", r/s, r, s}'
TOK=$(curl -s -X POST "$U/contoso/oauth2/v2.0/token" -d client_id=bench -d client_secret=x \
  -d grant_type=client_credentials --data-urlencode "scope=$U/org/contoso-prod/.default" | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
cat >"$T/pager.py" <<'PY'
import http.client, re, sys, time, urllib.parse
url, tok, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
u = urllib.parse.urlsplit(url)
conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
hdrs = {'Authorization': 'Bearer ' + tok, 'Prefer': 'odata.maxpagesize=5000,odata.include-annotations="*"'}
link, pages, size = url, 0, 0
t0 = time.time()
while link:
    s = urllib.parse.urlsplit(link)
    conn.request('GET', s.path + ('?' + s.query if s.query else ''), headers=hdrs)
    body = conn.getresponse().read()
    pages += 1; size += len(body)
    m = re.search(rb'"@odata.nextLink":"([^"]*)"', body[-2000:])
    link = m.group(1).decode() if m else None
dt = time.time() - t0
print(int(n / dt), int(size / 1e6 / dt), pages, size, int(dt * 1000))
PY
best=0; bestb=0
for pass in 1 2; do
  read -r rate mbs pages bytes ms < <(python3 "$T/pager.py" "$U/org/contoso-prod/api/data/v9.2/accounts" "$TOK" "$N")
  echo "# pass $pass: $N accounts, $pages pages, $bytes bytes in $ms ms"
  [ "$rate" -gt "$best" ] && best=$rate && bestb=$mbs
done
echo "BENCH dvsim_page_rate $best records/s (accounts, 5000 per page, all annotations, keep-alive client)"
echo "BENCH dvsim_page_bytes $bestb MB/s"
