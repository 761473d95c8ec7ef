#!/usr/bin/env bash
# dvsim write side against a real dvsim: create (POST, chosen key, 412 on duplicates), upsert with
# If-Match / If-None-Match, delete, @odata.bind, N:N $ref, audits written for every write,
# file columns ($value with Range, PATCH upload), $batch with and without change sets and
# continue-on-error, the 1000-request limit, and bad input (malformed JSON, unknown columns).
. "$(dirname "$0")/../lib.sh"
start_dvsim --seed demo
API="$DVSIM_URL/org/contoso-dev/api/data/v9.2"
TOK=$(token contoso-dev)
H=(-H "Authorization: Bearer $TOK" -H 'Content-Type: application/json' -H 'OData-Version: 4.0')
req() { # req METHOD PATH [BODY] [extra curl args...] -> prints status; body in $T/body, headers in $T/hdr
  local m=$1 p=$2 b=${3:-}; shift 3 2>/dev/null || shift $#
  curl -s -o "$T/body" -D "$T/hdr" -w '%{http_code}' -X "$m" "${H[@]}" ${b:+--data-binary "$b"} "$@" "$API/$p"
}
audits() { curl -s "${H[@]}" "$API/audits?\$filter=_objectid_value%20eq%20$1&\$select=operation" | jq -r '[.value[].operation]|sort|join(",")'; }

# ---- create ----
st=$(req POST accounts '{"name":"Zoë Café \"Ltd\"","revenue":12345678901234.1234,"numberofemployees":7,"customertypecode":3}')
check_eq "POST -> 204" 204 "$st"
loc=$(grep -i '^OData-EntityId:' "$T/hdr" | tr -d '\r' | cut -d' ' -f2)
id=$(sed -E 's/.*\(([0-9a-f-]{36})\).*/\1/' <<<"$loc")
check "OData-EntityId names the new record" test ${#id} = 36
curl -s "${H[@]}" -H 'Prefer: odata.include-annotations="*"' "$API/accounts($id)" >"$T/acc"
check_eq "stored values and formatted values" 'Zoë Café "Ltd"|Customer|Active|# dvsnap' \
  "$(jq -r '[.name, ."customertypecode@OData.Community.Display.V1.FormattedValue", ."statecode@OData.Community.Display.V1.FormattedValue", ."_ownerid_value@OData.Community.Display.V1.FormattedValue"]|join("|")' "$T/acc")"
check "money keeps its exact digits" grep -q '"revenue":12345678901234.1234,' "$T/acc"
check_eq "unset columns are null" null "$(jq .telephone1 "$T/acc")"
st=$(req POST accounts '{"accountid":"00000000-0000-0000-0000-0000000000a1","name":"Chosen key"}' -H 'Prefer: return=representation')
check_eq "POST with a chosen key and return=representation -> 201" "201 00000000-0000-0000-0000-0000000000a1" "$st $(jq -r .accountid "$T/body")"
st=$(req POST accounts '{"accountid":"00000000-0000-0000-0000-0000000000a1","name":"again"}')
check_eq "POST with an existing key -> 412 0x80040237" "412 0x80040237" "$st $(jq -r .error.code "$T/body")"
check_eq "create was audited" 1 "$(audits 00000000-0000-0000-0000-0000000000a1)"

# ---- upsert, If-Match, If-None-Match ----
K=00000000-0000-0000-0000-0000000000b2
st=$(req PATCH "accounts($K)" '{"name":"upsert-created"}' -H 'If-Match: *')
check_eq "PATCH If-Match:* on a missing record -> 404" 404 "$st"
st=$(req PATCH "accounts($K)" '{"name":"upsert-created"}')
check_eq "PATCH on a missing record creates it (204)" 204 "$st"
st=$(req PATCH "accounts($K)" '{"name":"again"}' -H 'If-None-Match: *')
check_eq "PATCH If-None-Match:* on an existing record -> 412" "412 0x80040237" "$st $(jq -r .error.code "$T/body")"
etag=$(curl -s "${H[@]}" "$API/accounts($K)?\$select=name" | jq -r '."@odata.etag"')
st=$(req PATCH "accounts($K)" '{"name":"stale"}' -H 'If-Match: W/"1"')
check_eq "PATCH with a stale ETag -> 412" "412 0x80060882" "$st $(jq -r .error.code "$T/body")"
st=$(req PATCH "accounts($K)" '{"name":"fresh"}' -H "If-Match: $etag" -H 'Prefer: return=representation')
check_eq "PATCH with the current ETag -> 200 with the new name" "200 fresh" "$st $(jq -r .name "$T/body")"
check "the ETag changed" test "$(jq -r '."@odata.etag"' "$T/body")" != "$etag"
check_eq "upsert create + update audited" 1,2 "$(audits $K)"
check_eq "If-None-Match with the current ETag on GET -> 304" 304 \
  "$(curl -s -o /dev/null -w '%{http_code}' "${H[@]}" -H "If-None-Match: $(jq -r '."@odata.etag"' "$T/body")" "$API/accounts($K)")"

# ---- lookups ----
C=00000000-0000-0000-0000-0000000000c3
st=$(req PATCH "contacts($C)" "{\"firstname\":\"Ana\",\"lastname\":\"Ñúñez\",\"parentcustomerid_account@odata.bind\":\"/accounts($K)\"}")
check_eq "PATCH with @odata.bind -> 204" 204 "$st"
curl -s "${H[@]}" -H 'Prefer: odata.include-annotations="*"' "$API/contacts($C)" >"$T/c"
check_eq "lookup, its target and name; fullname computed" "$K|account|fresh|Ana Ñúñez" \
  "$(jq -r '[._parentcustomerid_value, ."_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname", ."_parentcustomerid_value@OData.Community.Display.V1.FormattedValue", .fullname]|join("|")' "$T/c")"
st=$(req PATCH "contacts($C)" '{"parentcustomerid_account@odata.bind":"/accounts(00000000-0000-0000-0000-00000000dead)"}')
check_eq "bind to a missing record -> 404" 404 "$st"
st=$(req PATCH "contacts($C)" '{"parentcustomerid_account@odata.bind":null}')
check_eq "bind null clears the lookup" "204 null" "$st $(curl -s "${H[@]}" "$API/contacts($C)?\$select=_parentcustomerid_value" | jq ._parentcustomerid_value)"

# ---- N:N ----
P=$(curl -s "${H[@]}" "$API/new_projects?\$top=1&\$select=new_name" | jq -r '.value[0].new_projectid')
st=$(req POST "new_projects($P)/new_project_contact/\$ref" "{\"@odata.id\":\"$API/contacts($C)\"}")
check_eq "associate N:N -> 204" 204 "$st"
check_eq "intersect row exists" 1 "$(curl -s "${H[@]}" "$API/new_project_contactset?\$filter=contactid%20eq%20$C" | jq '.value|length')"
st=$(req DELETE "new_projects($P)/new_project_contact/\$ref?\$id=$API/contacts($C)")
check_eq "disassociate N:N -> 204" 204 "$st"
check_eq "intersect row gone" 0 "$(curl -s "${H[@]}" "$API/new_project_contactset?\$filter=contactid%20eq%20$C" | jq '.value|length')"
check_eq "direct write to the intersect set -> 405" 405 "$(req POST new_project_contactset '{}')"
check_eq "audits are read-only -> 405" 405 "$(req POST audits '{}')"

# ---- delete ----
st=$(req DELETE "accounts($K)" "" -H 'If-Match: W/"1"')
check_eq "DELETE with a stale ETag -> 412" 412 "$st"
check_eq "DELETE -> 204" 204 "$(req DELETE "accounts($K)")"
check_eq "DELETE again -> 404 0x80040217" "404 0x80040217" "$(req DELETE "accounts($K)") $(jq -r .error.code "$T/body")"
check_eq "create, update, delete audited" 1,2,3 "$(audits $K)"

# ---- files ----
FP=$(curl -s "${H[@]}" "$API/new_projects?\$filter=new_document%20ne%20null&\$top=1&\$select=new_document_name" | jq -r '.value[0].new_projectid')
curl -s -D "$T/fh" -o "$T/file" "${H[@]}" "$API/new_projects($FP)/new_document/\$value"
size=$(grep -i '^x-ms-file-size:' "$T/fh" | tr -d '\r' | cut -d' ' -f2)
check_eq "file \$value: size header matches the bytes" "$size" "$(stat -c %s "$T/file")"
check "file \$value: x-ms-file-name" grep -qi '^x-ms-file-name: ' "$T/fh"
st=$(curl -s -D "$T/fh2" -o "$T/chunk" -w '%{http_code}' "${H[@]}" -H 'Range: bytes=100-199' "$API/new_projects($FP)/new_document/\$value")
check_eq "Range -> 206 with 100 bytes" "206 100" "$st $(stat -c %s "$T/chunk")"
check "Range bytes are the right slice" cmp "$T/chunk" <(tail -c +101 "$T/file" | head -c 100)
head -c 300000 /dev/urandom >"$T/up"
st=$(curl -s -o "$T/body" -w '%{http_code}' -X PATCH -H "Authorization: Bearer $TOK" -H 'Content-Type: application/octet-stream' \
  -H 'x-ms-file-name: new plan (v2).bin' --data-binary "@$T/up" "$API/new_projects($FP)/new_document")
check_eq "file upload -> 204" 204 "$st"
curl -s -o "$T/down" "${H[@]}" "$API/new_projects($FP)/new_document/\$value"
check "uploaded bytes come back" cmp "$T/up" "$T/down"
check_eq "record shows the new file name" "new plan (v2).bin" \
  "$(curl -s "${H[@]}" "$API/new_projects($FP)?\$select=new_document_name" | jq -r .new_document_name)"
N=$(curl -s "${H[@]}" "$API/annotations?\$filter=isdocument%20eq%20true&\$top=1&\$select=filename" | jq -r '.value[0].annotationid')
check "note documentbody \$value is the Base64 text" sh -c "curl -s -H 'Authorization: Bearer $TOK' '$API/annotations($N)/documentbody/\$value' | base64 -d >/dev/null"

# ---- $batch ----
batch() { # batch FILE [prefer] -> status; response in $T/bresp
  curl -s -o "$T/bresp" -D "$T/bhdr" -w '%{http_code}' -X POST -H "Authorization: Bearer $TOK" \
    -H 'Content-Type: multipart/mixed; boundary=batch_AAA' ${2:+-H "Prefer: $2"} --data-binary "@$1" "$API/\$batch"
}
part() { # part METHOD URL [BODY] [CONTENT-ID]
  printf -- '--batch_AAA\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n%s\r\n%s %s HTTP/1.1\r\nContent-Type: application/json; type=entry\r\n\r\n%s\r\n' \
    "${4:+Content-ID: $4$'\r\n'}" "$1" "$2" "${3:-}"
}
B1=00000000-0000-0000-0000-0000000000d1; B2=00000000-0000-0000-0000-0000000000d2
{ part PATCH "$API/accounts($B1)" '{"name":"batch one"}' 1
  part PATCH "accounts($B2)" '{"name":"batch two","customertypecode":999}' 2
  part GET "/org/contoso-dev/api/data/v9.2/accounts($B1)?\$select=name" "" 3
  printf -- '--batch_AAA--\r\n'; } >"$T/b1"
st=$(batch "$T/b1")
check_eq "batch stops at the failing item: outer status is its error" 400 "$st"
check "batch answer is multipart/mixed batchresponse_" grep -qi '^Content-Type: multipart/mixed; boundary=batchresponse_' "$T/bhdr"
check_eq "item 1 done, item 2 failed, item 3 not run" "HTTP/1.1 204 No Content|HTTP/1.1 400 Bad Request" \
  "$(grep -a '^HTTP/1.1' "$T/bresp" | tr -d '\r' | paste -sd'|')"
check_eq "item 1 was committed" "batch one" "$(curl -s "${H[@]}" "$API/accounts($B1)?\$select=name" | jq -r .name)"
st=$(batch "$T/b1" odata.continue-on-error)
check_eq "continue-on-error: 200 with every item answered" "200 HTTP/1.1 204 No Content|HTTP/1.1 400 Bad Request|HTTP/1.1 200 OK" \
  "$st $(grep -a '^HTTP/1.1' "$T/bresp" | tr -d '\r' | paste -sd'|')"
check "continue-on-error: Content-IDs echoed" sh -c "grep -a -c '^Content-ID: [123]' '$T/bresp' | grep -qx 3"
# change set: a failing item rolls back the others
{ printf -- '--batch_AAA\r\nContent-Type: multipart/mixed; boundary=changeset_X\r\n\r\n'
  printf -- '--changeset_X\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 1\r\n\r\nPOST accounts HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{"accountid":"00000000-0000-0000-0000-0000000000e1","name":"cs new"}\r\n'
  printf -- '--changeset_X\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 2\r\n\r\nPOST contacts HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{"lastname":"linked","parentcustomerid_account@odata.bind":"$1"}\r\n'
  printf -- '--changeset_X\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 3\r\n\r\nPATCH accounts(00000000-0000-0000-0000-0000000000e1) HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{"nosuchcolumn":1}\r\n'
  printf -- '--changeset_X--\r\n--batch_AAA--\r\n'; } >"$T/b2"
st=$(batch "$T/b2" odata.continue-on-error)
check_eq "change set with a failing item: one error answer" "HTTP/1.1 400 Bad Request" "$(grep -a '^HTTP/1.1' "$T/bresp" | tr -d '\r' | paste -sd'|')"
check_eq "change set rolled back: the account does not exist" 404 \
  "$(curl -s -o /dev/null -w '%{http_code}' "${H[@]}" "$API/accounts(00000000-0000-0000-0000-0000000000e1)")"
sed 's/{"nosuchcolumn":1}/{"name":"cs renamed"}/' "$T/b2" >"$T/b3"
st=$(batch "$T/b3")
check_eq "change set commits: three answers" "200 HTTP/1.1 204 No Content|HTTP/1.1 204 No Content|HTTP/1.1 204 No Content" \
  "$st $(grep -a '^HTTP/1.1' "$T/bresp" | tr -d '\r' | paste -sd'|')"
check_eq "Content-ID \$1 linked the contact to the new account" 1 \
  "$(curl -s "${H[@]}" "$API/contacts?\$filter=_parentcustomerid_value%20eq%2000000000-0000-0000-0000-0000000000e1" | jq '.value|length')"
check_eq "the change set's PATCH applied" "cs renamed" "$(curl -s "${H[@]}" "$API/accounts(00000000-0000-0000-0000-0000000000e1)?\$select=name" | jq -r .name)"
{ for i in $(seq 1 1001); do part GET "accounts?\$top=1"; done; printf -- '--batch_AAA--\r\n'; } >"$T/b4"
check_eq "1001 requests -> 400" 400 "$(batch "$T/b4")"
{ for i in $(seq 1 2000); do part GET "accounts?\$top=1"; done; printf -- '--batch_AAA--\r\n'; } >"$T/b5"
check_eq "2000 requests -> 400 with the limit message" "400 true" "$(batch "$T/b5") $(jq '.error.message|test("limit of 1000")' "$T/bresp")"
{ printf -- '--batch_AAA\r\nContent-Type: multipart/mixed; boundary=changeset_Y\r\n\r\n'
  printf -- '--changeset_Y\r\nContent-Type: application/http\r\n\r\nGET accounts HTTP/1.1\r\n\r\n\r\n--changeset_Y--\r\n--batch_AAA--\r\n'; } >"$T/b6"
check_eq "GET inside a change set -> 400" 400 "$(batch "$T/b6")"
check_eq "garbage batch body -> 400" 400 "$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $TOK" -H 'Content-Type: multipart/mixed; boundary=zz' --data-binary 'nonsense' "$API/\$batch")"

# ---- bad input ----
check_eq "malformed JSON -> 400 0x80048d19" "400 0x80048d19" "$(req POST accounts '{"name":') $(jq -r .error.code "$T/body")"
check_eq "unknown column -> 400" 400 "$(req POST accounts '{"nosuch":1}')"
check_eq "wrong type -> 400" 400 "$(req POST accounts '{"numberofemployees":"many"}')"
check_eq "option outside the set -> 400 0x8004431a" "400 0x8004431a" "$(req POST accounts '{"customertypecode":999}') $(jq -r .error.code "$T/body")"
check_eq "JSON array body -> 400" 400 "$(req POST accounts '[1,2]')"
check_eq "deeply nested body -> 400" 400 "$(req POST accounts "$(printf '%.0s[' $(seq 1 5000))")"
check_eq "PATCH on a collection -> 405" 405 "$(req PATCH accounts '{}')"
check "dvsim still alive" kill -0 "$DVSIM_PID"
finish
