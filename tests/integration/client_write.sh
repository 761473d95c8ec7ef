#!/usr/bin/env bash
# client_write: the write side of backend/dataverse/dataverse.h against a real dvsim, through
# tests/tools/dvread: single requests (upsert by key, conditional headers, errors as answers),
# $batch with and without continue-on-error (a failing item in the middle; per-item statuses
# equal what dvsim applied), and file columns (upload, then a ranged download in 4 MiB chunks
# that returns the same bytes and name).
. "$(dirname "$0")/../lib.sh"
DVREAD="$BUILD/tests/dvread"
dvread() { "$DVREAD" --config "$T/config" "$@"; }

start_dvsim --seed demo
write_config
has_account() { sim_dump contoso-dev account | grep -q "\"accountid\":\"$1\""; }

# ---- single requests ----
A=00000000-0000-4000-8000-00000000a001
out=$(dvread request contoso-dev PATCH "accounts($A)" '{"name":"Upserted by dvread"}' 2>/dev/null | head -1)
check_eq "PATCH by key creates (upsert)" "status 204" "$out"
check "the record exists in dvsim" has_account $A
out=$(dvread request contoso-dev PATCH "accounts($A)" '{"name":"x"}' "If-None-Match: *" 2>/dev/null | head -1)
check_eq "If-None-Match: * on an existing record is 412, returned as an answer" "status 412" "$out"
out=$(dvread request contoso-dev GET "accounts($A)" 2>/dev/null)
check "GET returns the record" grep -q '"name":"Upserted by dvread"' <<<"$out"
out=$(dvread request contoso-dev DELETE "accounts($A)" 2>/dev/null | head -1)
check_eq "DELETE" "status 204" "$out"
check_fails "the record is gone" has_account $A
check_fails "a path outside the Web API is refused" dvread request contoso-dev GET "../../contoso-prod/api/data/v9.2/accounts"

# ---- $batch ----
B1=00000000-0000-4000-8000-00000000b001
B2=00000000-0000-4000-8000-00000000b002
B3=00000000-0000-4000-8000-00000000b003
existing=$(sim_dump contoso-dev account | sed -n 2p | jq -r .accountid)
cat >"$T/batch1" <<EOF
PATCH accounts($B1) {"name":"batch one"}
POST accounts {"accountid":"$existing","name":"duplicate key"}
PATCH accounts($B2) {"name":"batch two"}
EOF
dvread batch contoso-dev "$T/batch1" --continue >"$T/b1" 2>"$T/b1.err"
check_eq "continue-on-error: every item answered, the duplicate failed" \
  "item 1 204
item 2 412
item 3 204" "$(cat "$T/b1")"
check "item 1 applied" has_account $B1
check "item 3 applied after the failure" has_account $B2
cat >"$T/batch2" <<EOF
DELETE accounts($B1)
POST accounts {"accountid":"$existing","name":"duplicate key"}
PATCH accounts($B3) {"name":"never"}
EOF
dvread batch contoso-dev "$T/batch2" >"$T/b2" 2>"$T/b2.err"
check_eq "default: processing stops at the first failure; later items not executed (0)" \
  "item 1 204
item 2 412
item 3 0" "$(cat "$T/b2")"
check_fails "item 1 applied (deleted)" has_account $B1
check_fails "item 3 not applied" has_account $B3

# ---- file columns ----
P=$(sim_dump contoso-dev new_project | sed -n 2p | jq -r .new_projectid)
check "a project to attach to" test -n "$P" -a "$P" != null
head -c 9437185 /dev/urandom >"$T/big.bin"   # 9 MiB + 1 byte: three 4 MiB ranges
seq0=$(curl -sf "$DVSIM_URL/_sim/requests" | jq '[.requests[].seq] | max // 0')
check "upload a 9 MiB file" dvread file-put contoso-dev new_projects "$P" new_document "plan v2 é.bin" "$T/big.bin"
name=$(dvread file-get contoso-dev new_projects "$P" new_document "$T/back.bin" 2>"$T/get.err")
check_eq "the download has the same bytes" "$(sha256sum <"$T/big.bin")" "$(sha256sum <"$T/back.bin")"
check_eq "the file name comes back" "plan v2 é.bin" "$name"
n_get=$(curl -sf "$DVSIM_URL/_sim/requests?since=$seq0" | jq '[.requests[] | select(.method=="GET" and (.path|endswith("/new_document/$value")))] | length')
check_eq "the download used three ranged requests" "3" "$n_get"
Q=00000000-0000-4000-8000-00000000c0de
dvread file-get contoso-dev new_projects "$Q" new_document "$T/none.bin" >/dev/null 2>"$T/none.err"
check "a missing file is -ENOENT" grep -q "rc=-2)" "$T/none.err"
finish
