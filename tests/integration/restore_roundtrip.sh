#!/usr/bin/env bash
# Restore round trip (issue 5): capture contoso-prod, churn it, restore the earlier point into
# contoso-dev; every restored table of contoso-dev then equals the point (restore_norm.py, an
# independent normalisation, with the point's principals mapped to contoso-dev's by
# restore_principals.py), N:N pairs and file bytes included; the target is left in
# administration mode with a safety backup; a rerun writes nothing; a target that differs by k
# records costs at most ceil(k/1000) + 3 write requests.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/restore_common.bash"
start_dvsim --seed demo ${RESTORE_SIM_ARGS:-}
write_config
dvsnap init >/dev/null 2>&1
# one file larger than a 4 MiB chunk: captured in ranges, restored through a chunked upload session
big=$(curl -sf -H "Authorization: Bearer $(org_token contoso-prod)" \
  "$DVSIM_URL/org/contoso-prod/api/data/v9.2/new_projects?\$top=1&\$select=new_projectid" | jq -r '.value[0].new_projectid')
head -c 9000000 /dev/urandom >"$T/big.bin"
check_eq "a 9 MB file is uploaded to a contoso-prod record" 204 "$(curl -s -o /dev/null -w '%{http_code}' -X PATCH \
  -H "Authorization: Bearer $(org_token contoso-prod)" -H 'Content-Type: application/octet-stream' \
  -H 'x-ms-file-name: big plan.bin' --data-binary "@$T/big.bin" \
  "$DVSIM_URL/org/contoso-prod/api/data/v9.2/new_projects($big)/new_document")"
check "capture contoso-prod and contoso-dev" dvsnap capture --env contoso-prod --env contoso-dev
entity_defs contoso-dev "$T/defs.json"
entity_defs contoso-prod "$T/pdefs.json"
# users, teams, business units and currencies have other ids in contoso-dev: the point's lookups
# to them compare through the mapping (restore_principals.py, independent of the C code)
principal_map contoso-prod latest contoso-dev "$T/map.json"
note "principals: $(jq -c '{mapped: (.map | length), unmapped: (.unmapped | length)}' "$T/map.json")"

# file-column bytes in contoso-prod at the point, before the churn
filetab=$(jq -r '[.value[] | select(any(.Attributes[]?; .AttributeType == "File" or .AttributeTypeName.Value == "FileType")) | .LogicalName][0] // empty' "$T/pdefs.json")
fileset=$(jq -r --arg t "$filetab" '.value[] | select(.LogicalName == $t) | .EntitySetName' "$T/pdefs.json")
filecol=$(jq -r --arg t "$filetab" '.value[] | select(.LogicalName == $t) | [.Attributes[] | select(.AttributeType == "File" or .AttributeTypeName.Value == "FileType") | .LogicalName][0]' "$T/pdefs.json")
filepk=$(jq -r --arg t "$filetab" '.value[] | select(.LogicalName == $t) | .PrimaryIdAttribute' "$T/pdefs.json")
: >"$T/files.prod"
if [ -n "$filetab" ]; then
  ptok=$(org_token contoso-prod)
  for id in $(sim_dump contoso-prod "$filetab" | jq -r --arg c "$filecol" --arg pk "$filepk" '.[] | select(.[$c] != null) | .[$pk]'); do
    h=$(curl -sf -H "Authorization: Bearer $ptok" "$DVSIM_URL/org/contoso-prod/api/data/v9.2/$fileset($id)/$filecol/\$value" | sha256sum | cut -c1-64)
    echo "$id $h" >>"$T/files.prod"
  done
fi
note "file table: ${filetab:-none}, $(wc -l <"$T/files.prod") files"
check "churn contoso-prod after the point" sim_churn contoso-prod 0.05 7

seq=$(last_seq)
start=$(date +%s%N)
if dvsnap restore --json contoso-prod latest --target contoso-dev --yes --wait >"$T/out.json" 2>"$T/err"; then
  ok "restore contoso-prod/latest into contoso-dev"
else
  not_ok "restore failed: $(tail -3 "$T/err")"; cat "$T/out.json" | head -c 2000; finish
fi
ms=$(( ($(date +%s%N) - start) / 1000000 ))
note "restore: $(jq -c '{created,updated,deleted,unchanged,failed,requests,write_requests,batches}' "$T/out.json") in ${ms} ms"
check_eq "outcome state done, nothing failed" "done 0" "$(jq -r '"\(.state) \(.failed)"' "$T/out.json")"
restored=$(jq -r '.tables[] | select(.note == null) | .table' "$T/out.json")
for t in account contact annotation; do
  check "$t was restored" grep -qx "$t" <<<"$restored"
done
inter=$(jq -r '[.value[] | select(.IsIntersect == true) | .LogicalName] | join(" ")' "$T/defs.json")
for t in $inter; do check "N:N table $t was restored" grep -qx "$t" <<<"$restored"; done
for t in $restored; do
  check "contoso-dev $t equals the point" same_table contoso-prod latest "$t" contoso-dev "$T/defs.json" "$T/map.json"
done
check "audit was skipped, not written" jq -e '[.tables[] | select(.note != null and (.note | test("audit")))] | length >= 1' "$T/out.json"
# files: bytes in contoso-dev equal contoso-prod's at the point
if [ -s "$T/files.prod" ]; then
  dtok=$(org_token contoso-dev); bad=0
  while read -r id h; do
    g=$(curl -sf -H "Authorization: Bearer $dtok" "$DVSIM_URL/org/contoso-dev/api/data/v9.2/$fileset($id)/$filecol/\$value" | sha256sum | cut -c1-64)
    [ "$g" = "$h" ] || { bad=$((bad + 1)); echo "file $id: $g != $h"; }
  done <"$T/files.prod"
  check_eq "file-column bytes equal the point's ($(wc -l <"$T/files.prod") files)" 0 "$bad"
fi
check "the 9 MB file is among them" grep -q "^$big $(sha256sum <"$T/big.bin" | cut -c1-64)\$" "$T/files.prod"
curl -sf "$DVSIM_URL/_sim/requests?since=$seq" >"$T/req.json"
check_eq "it went up as a chunked session: one opening PATCH and 3 parts of 4 MiB at most" "200 206 206 204" \
  "$(jq -r --arg id "$big" '[.requests[] | select(.method == "PATCH" and (.path | startswith("/org/contoso-dev/") and contains($id) and endswith("/new_document"))) | .status] | map(tostring) | join(" ")' "$T/req.json")"
check_eq "contoso-dev is in administration mode" AdminMode "$(admin_env contoso-dev | jq -r .properties.states.runtime.id)"
op=$(jq -r .operation "$T/out.json")
check "a safety backup pre-restore-$op of contoso-dev exists" bash -c "'$DVSNAP' --config '$T/config' points contoso-dev | grep -q 'pre-restore-$op'"
check_eq "safety point named in the outcome" true "$(jq -r '.safety_point != null' "$T/out.json")"
n_batches=$(writes_since "$seq" | grep -c 'batch')
check_eq "write requests counted by dvsim equal the outcome's batches" "$(jq .batches "$T/out.json")" "$n_batches"

# rerun: nothing to write
seq=$(last_seq)
check "rerun succeeds" dvsnap restore contoso-prod latest --target contoso-dev --yes
dvsnap restore --json contoso-prod latest --target contoso-dev --yes >"$T/out2.json" 2>/dev/null
check_eq "second rerun writes no record" "0 0 0" "$(jq -r '"\(.created) \(.updated) \(.deleted)"' "$T/out2.json")"
check "rerun sends no \$batch" bash -c "! ( curl -sf '$DVSIM_URL/_sim/requests?since=$seq' | jq -r '.requests[].path' | grep -q batch )"

# k records differ -> at most ceil(k/1000) + 3 write requests
check "churn contoso-dev by 3%" sim_churn contoso-dev 0.03 11
seq=$(last_seq)
dvsnap restore --json contoso-prod latest --target contoso-dev --yes >"$T/out3.json" 2>"$T/err3"
k=$(jq '.created + .updated + .deleted + ([.tables[].associated, .tables[].disassociated] | add)' "$T/out3.json")
w=$(writes_since "$seq" | wc -l)
note "k=$k differing records, $w write requests"
check "k > 0 after churn" test "$k" -gt 0
check "write requests ($w) <= ceil(k/1000) + 3" test "$w" -le $(( (k + 999) / 1000 + 3 ))
for t in $restored; do
  check "after churn + restore: contoso-dev $t equals the point" same_table contoso-prod latest "$t" contoso-dev "$T/defs.json" "$T/map.json"
done
finish
