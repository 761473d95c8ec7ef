#!/usr/bin/env bash
# client_read: backend/dataverse/dataverse.h against a real dvsim over loopback, through tests/tools/dvread.
# Environments from the admin API; table definitions; a full read of every table rendered in the
# table-file format equals /_sim/dump byte for byte (exact decimals and 64-bit integers,
# annotations); change tracking after churn returns exactly what changed; an expired delta token
# is -ESTALE; a 429 storm is survived with no request before Retry-After; the secret and the
# tokens never reach the debug log; capacity and administration mode.
. "$(dirname "$0")/../lib.sh"
DVREAD="$BUILD/tests/dvread"
dvread() { "$DVREAD" --config "$T/config" "$@"; }

start_dvsim --seed demo
write_config

# ---- environments ----
dvread envs >"$T/envs" 2>"$T/envs.err"
check "dvread envs succeeds" test -s "$T/envs"
check_eq "six environments listed" "6" "$(wc -l <"$T/envs" | tr -d ' ')"
check_eq "contoso-prod: production, unitedstates, 28 days, D365 apps" \
  "contoso-prod Production unitedstates 28 d365" \
  "$(awk -F'\t' '$1=="contoso-prod"{print $1,$2,$3,$5,$6}' "$T/envs")"
check_eq "fabrikam-prod: 7 days, no D365 apps" "7 -" \
  "$(awk -F'\t' '$1=="fabrikam-prod"{print $5,$6}' "$T/envs")"
check_eq "contoso-default is the default environment" "default" \
  "$(awk -F'\t' '$1=="contoso-default"{print $7}' "$T/envs")"
check_eq "instanceApiUrl of contoso-dev" "$DVSIM_URL/org/contoso-dev" \
  "$(awk -F'\t' '$1=="contoso-dev"{print $9}' "$T/envs")"

# ---- definitions ----
dvread tables contoso-prod >"$T/tables" 2>"$T/tables.err"
check "table definitions listed" grep -q "^account	accounts	accountid	tracked" "$T/tables"
check "a table without change tracking exists" grep -q "	untracked	" "$T/tables"
check "lookups known for contact" grep -qE "^contact	.*lookups=[1-9]" "$T/tables"

# ---- full reads equal the simulator's dump, every table ----
n_ok=0 n_bad=0
while IFS=$'\t' read -r table set pk track flags rest; do
  dvread read contoso-prod "$table" >"$T/read.$table" 2>"$T/read.$table.err" || { n_bad=$((n_bad+1)); note "read $table failed: $(tail -2 "$T/read.$table.err")"; continue; }
  sim_dump contoso-prod "$table" >"$T/dump.$table"
  if cmp -s "$T/read.$table" "$T/dump.$table"; then n_ok=$((n_ok+1)); else n_bad=$((n_bad+1)); note "$table differs: $(diff "$T/dump.$table" "$T/read.$table" | head -3)"; fi
done <"$T/tables"
check_eq "every table read equals /_sim/dump byte for byte" "0" "$n_bad"
note "tables compared: $n_ok"
check "exact long decimals survive (new_budget)" grep -qE '"new_budget":[0-9]{12,}\.[0-9]{8,}' "$T/read.new_project"
check "64-bit integers above 2^53 survive (new_bignumber)" grep -qE '"new_bignumber":900719925474[0-9]{4}[,}]' "$T/read.new_project"
check "formatted values and lookup names are kept" \
  grep -q 'lookuplogicalname' "$T/read.contact"

# ---- change tracking ----
seq0=$(curl -sf "$DVSIM_URL/_sim/requests" | jq '[.requests[].seq] | max // 0')
dvread read contoso-prod account --delta-out "$T/link" >"$T/full.account" 2>/dev/null
check "a delta link was returned" grep -q 'deltatoken' "$T/link"
full_bytes=$(curl -sf "$DVSIM_URL/_sim/requests?since=$seq0" | jq '[.requests[] | select(.path | endswith("/accounts")) | .bytes] | add')
sim_dump contoso-prod account >"$T/before"
sim_churn contoso-prod 0.05 7 >/dev/null
sim_dump contoso-prod account >"$T/after"
seq1=$(curl -sf "$DVSIM_URL/_sim/requests" | jq '[.requests[].seq] | max // 0')
dvread read contoso-prod account --delta-in "$T/link" --delta-out "$T/link2" >"$T/delta" 2>"$T/delta.err"
check "delta read succeeds" test -s "$T/link2"
# expected: lines added or changed, and ids removed, between the two dumps
diff <(sed -e '1d;$d' -e 's/,$//' "$T/before" | sort) <(sed -e '1d;$d' -e 's/,$//' "$T/after" | sort) \
  | sed -n 's/^> //p' | sort >"$T/want.upserts"
sed -n 's/^upsert //p' "$T/delta" | sort >"$T/got.upserts"
check_eq "delta upserts equal the changed and new records" "$(cat "$T/want.upserts")" "$(cat "$T/got.upserts")"
comm -23 <(jq -r '.[].accountid' "$T/before" | sort) <(jq -r '.[].accountid' "$T/after" | sort) >"$T/want.deletes"
sed -n 's/^delete //p' "$T/delta" | sort >"$T/got.deletes"
check_eq "delta deletes equal the removed records" "$(cat "$T/want.deletes")" "$(cat "$T/got.deletes")"
note "churn: $(wc -l <"$T/want.upserts") upserts, $(wc -l <"$T/want.deletes") deletes"
delta_bytes=$(curl -sf "$DVSIM_URL/_sim/requests?since=$seq1" | jq '[.requests[] | select(.path | endswith("/accounts")) | .bytes] | add')
note "account bytes: full read $full_bytes, delta read $delta_bytes"
check "the delta read fetched changes only (under a fifth of the full read)" \
  test "$delta_bytes" -gt 0 -a "$((delta_bytes * 5))" -lt "$full_bytes"
check "the delta link is on the environment's Web API" grep -q "^$DVSIM_URL/org/contoso-prod/api/data/v9.2/accounts" "$T/link2"

# ---- expired delta token -> -ESTALE ----
curl -sf -X POST "$DVSIM_URL/_sim/faults" -d '{"delta_token_lifetime_s":0}' >/dev/null
sleep 1.1  # a token lifetime of 0 s expires once the clock second passes
dvread read contoso-prod account --delta-in "$T/link2" >/dev/null 2>"$T/stale.err"; rc=$?
check_eq "expired delta token fails" "1" "$rc"
check "the failure is -ESTALE (full read needed)" grep -q "rc=-$(grep -w ESTALE /usr/include/asm-generic/errno.h | awk '{print $3}')" "$T/stale.err"
curl -sf -X POST "$DVSIM_URL/_sim/faults" -d '{"delta_token_lifetime_s":604800}' >/dev/null

# ---- 429: never before Retry-After ----
# One request per 2 s per token: the definitions pass, the page gets a 429 with Retry-After, and
# the read must succeed with exactly one 429 for that token. A request sent before Retry-After
# had passed would get a second 429 (dvsim also lengthens the block for clients that push on).
curl -sf -X POST "$DVSIM_URL/_sim/faults" -d '{"max_requests":"1/2"}' >/dev/null
seq2=$(curl -sf "$DVSIM_URL/_sim/requests" | jq '[.requests[].seq] | max // 0')
start=$(date +%s%N)
timeout 60 "$DVREAD" -v --config "$T/config" read contoso-prod contact >"$T/throttled" 2>"$T/throttled.err"
took=$(( ($(date +%s%N) - start) / 1000000 ))
curl -sf -X POST "$DVSIM_URL/_sim/faults" -d '{"max_requests":"6000/300"}' >/dev/null
check "read under throttling succeeds" test -s "$T/throttled"
check "throttled read equals the dump" cmp -s "$T/throttled" <(sim_dump contoso-prod contact)
check "the client counted one 429 and one retry" grep -q "retries=1 throttled=1" "$T/throttled.err"
curl -sf "$DVSIM_URL/_sim/requests?since=$seq2" >"$T/req.json"
check_eq "dvsim saw exactly one 429" "1" "$(jq '[.requests[] | select(.status == 429)] | length' "$T/req.json")"
check "the retry waited out Retry-After (>= 1.9 s)" test "$took" -ge 1900
note "throttled read: $(tail -1 "$T/throttled.err"), ${took} ms"

# ---- secrets never in logs ----
secret=$(cat "$T/secret")
"$DVREAD" -v --config "$T/config" envs >/dev/null 2>"$T/debug.log"
tok=$(token)
check_fails "the secret is not in the debug log" grep -qF "$secret" "$T/debug.log" "$T/throttled.err"
check_fails "no bearer token in the debug log" grep -qF "${tok:-no-token}" "$T/debug.log" "$T/throttled.err"

# ---- capacity, administration mode ----
mb=$(dvread capacity contoso-dev 2>/dev/null)
check "free capacity is a number" test -n "$mb" -a "$mb" -eq "$mb"
check "set administration mode" dvread runtime contoso-dev AdminMode
check_eq "contoso-dev is in administration mode" "AdminMode" \
  "$(dvread envs 2>/dev/null | awk -F'\t' '$1=="contoso-dev"{print $8}')"
check "back to Enabled" dvread runtime contoso-dev Enabled

# ---- refusals ----
chmod 644 "$T/secret"
check_fails "a secret readable by others is refused" dvread envs
chmod 600 "$T/secret"
finish
