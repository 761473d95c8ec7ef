#!/usr/bin/env bash
# dvsim enforces the write rules of the real Dataverse (issue 14), each answered in the service's
# error shape and code: principal and configuration tables refuse writes, activitypointer and
# activityparty refuse writes, ownerid binds users and teams but not /owners, binds to the wrong
# set or a missing record, state and status on create and update, CloseIncident and
# Win/LoseOpportunity (alone and in $batch), closed cases and opportunities refusing changes until
# reopened, overriddencreatedon and the columns the service derives, parties written inside their
# activity, the simulated plug-in and flow with the bypass headers and privilege, WhoAmI and
# RetrieveUserPrivileges, image columns (thumbnail, ?size=full, upload) and the request log's
# bypass headers. Every check would fail against a dvsim without the rule.
. "$(dirname "$0")/../lib.sh"
start_dvsim --seed demo
ENV=contoso-dev
API="$DVSIM_URL/org/$ENV/api/data/v9.2"
TOK=$(token "$ENV")
H=(-H "Authorization: Bearer $TOK" -H 'Content-Type: application/json' -H 'OData-Version: 4.0')
req() { # req METHOD PATH [BODY] [extra curl args...] -> status; body in $T/body, headers in $T/hdr
  local m=$1 p=$2 b=${3:-}; shift 3 2>/dev/null || shift $#
  curl -s -o "$T/body" -D "$T/hdr" -w '%{http_code}' -X "$m" "${H[@]}" ${b:+--data-binary "$b"} "$@" "$API/$p"
}
err() { jq -r '.error.code' "$T/body"; }
msg() { jq -r '.error.message' "$T/body"; }
get() { curl -s "${H[@]}" -H 'Prefer: odata.include-annotations="*"' "$API/$1"; }
effects() { curl -s "$DVSIM_URL/_sim/effects?env=$ENV" | jq -r '"\(.plugin_runs) \(.flow_runs)"'; }
dump() { sim_dump "$ENV" "$1"; }
batch() { # batch FILE [extra curl args...] -> status; response in $T/bresp
  local f=$1; shift
  curl -s -o "$T/bresp" -w '%{http_code}' -X POST -H "Authorization: Bearer $TOK" \
    -H 'Content-Type: multipart/mixed; boundary=batch_R' "$@" --data-binary "@$f" "$API/\$batch"
}
part() { # part METHOD URL [BODY] [extra header line] -> one top-level part on stdout
  printf -- '--batch_R\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n%s %s HTTP/1.1\r\nContent-Type: application/json\r\n%s\r\n%s\r\n' \
    "$1" "$2" "${4:+$4$'\r\n'}" "${3:-}"
}
statuses() { grep -a '^HTTP/1.1' "$T/bresp" | cut -d' ' -f2 | tr -d '\r' | paste -sd' '; }

# fixtures of contoso-dev
dump systemuser >"$T/users"
dump team >"$T/teams"
dump businessunit >"$T/bus"
dump transactioncurrency >"$T/cur"
USER=$(jq -r '[.[]|select(.fullname != "# dvsnap")][0].systemuserid' "$T/users")
USER_BU=$(jq -r --arg u "$USER" '.[]|select(.systemuserid==$u)|._businessunitid_value' "$T/users")
APP=$(jq -r '.[]|select(.fullname == "# dvsnap")|.systemuserid' "$T/users")
SALES_TEAM=$(jq -r '.[]|select(.name=="Sales Team")|.teamid' "$T/teams")
SALES_BU=$(jq -r '.[]|select(.name=="Sales")|.businessunitid' "$T/bus")
ROOT_BU=$(jq -r '.[]|select(._parentbusinessunitid_value==null)|.businessunitid' "$T/bus")
EUR=$(jq -r '.[]|select(.isocurrencycode=="EUR")|.transactioncurrencyid' "$T/cur")
ACC=$(dump account | jq -r '.[0].accountid')
CON=$(dump contact | jq -r '[.[]|select(.entityimage==null)][0].contactid')
MISSING=00000000-0000-0000-0000-00000000dead
check "fixtures found" test -n "$USER" -a -n "$USER_BU" -a -n "$SALES_TEAM" -a -n "$EUR" -a -n "$ACC" -a -n "$CON"

# ---- 1. principal and configuration tables refuse writes ----
for tb in systemuser team businessunit transactioncurrency; do dump $tb >"$T/before.$tb"; done
st=$(req POST systemusers "{\"firstname\":\"New\",\"lastname\":\"User\",\"azureactivedirectoryobjectid\":\"$MISSING\"}")
check_eq "create a systemuser -> 403 0x80040220 missing prvCreateUser" "403 0x80040220 true" \
  "$st $(err) $(msg | grep -q 'is missing prvCreateUser privilege (Id=' && echo true)"
check_eq "update a systemuser -> 403 missing prvWriteUser" "403 true" "$(req PATCH "systemusers($USER)" '{"firstname":"X"}') $(msg | grep -q prvWriteUser && echo true)"
check_eq "delete a systemuser -> 405: no such message for users" "405 0x80040800 The 'Delete' method does not support entities of type 'systemuser'." \
  "$(req DELETE "systemusers($USER)") $(err) $(msg | cut -d. -f1)."
check_eq "create a team -> 403 missing prvCreateTeam" "403 true" "$(req POST teams '{"name":"Restored"}') $(msg | grep -q prvCreateTeam && echo true)"
check_eq "delete a team -> 403 missing prvDeleteTeam" "403 true" "$(req DELETE "teams($SALES_TEAM)") $(msg | grep -q prvDeleteTeam && echo true)"
check_eq "rename a business unit -> 403 missing prvWriteBusinessUnit" "403 true" \
  "$(req PATCH "businessunits($SALES_BU)" '{"name":"Renamed"}') $(msg | grep -q prvWriteBusinessUnit && echo true)"
check_eq "create a currency -> 403 missing prvCreateTransactionCurrency" "403 true" \
  "$(req POST transactioncurrencies '{"isocurrencycode":"CHF"}') $(msg | grep -q prvCreateTransactionCurrency && echo true)"
check_eq "upsert a team by key -> 403" 403 "$(req PATCH "teams($MISSING)" '{"name":"Upserted"}')"
{ part PATCH "teams($SALES_TEAM)" '{"name":"From a batch"}'; printf -- '--batch_R--\r\n'; } >"$T/b_team"
check_eq "a team update inside \$batch -> its part 403" 403 "$(batch "$T/b_team" -H 'Prefer: odata.continue-on-error' >/dev/null; statuses)"
bad=""; for tb in systemuser team businessunit transactioncurrency; do dump $tb | cmp -s - "$T/before.$tb" || bad="$bad $tb"; done
check_eq "principal and configuration tables unchanged" "" "$bad"

# ---- 2. activitypointer and activityparty refuse writes ----
PTR=$(dump activitypointer | jq -r '.[0].activityid')
PARTY=$(dump activityparty | jq -r '.[0].activitypartyid')
check_eq "create an activityparty alone -> 405 the service's message" "405 0x80040800 The 'Create' method does not support entities of type 'activityparty'." \
  "$(req POST activityparties '{"participationtypemask":1}') $(err) $(msg | cut -d. -f1)."
check_eq "update an activitypointer -> 405" "405 The 'Update' method does not support entities of type 'activitypointer'." \
  "$(req PATCH "activitypointers($PTR)" '{"subject":"x"}') $(msg | cut -d. -f1)."
check_eq "delete an activityparty -> 405" 405 "$(req DELETE "activityparties($PARTY)")"

# ---- 3. owner and lookup binds ----
st=$(req POST accounts "{\"name\":\"Owned by owners\",\"ownerid@odata.bind\":\"/owners($USER)\"}")
check_eq "ownerid bound to /owners(..) -> 400 0x8006088a, no such entity set" "400 0x8006088a Resource not found for the segment 'owners'." "$st $(err) $(msg)"
st=$(req POST accounts "{\"name\":\"Owned by a user\",\"ownerid@odata.bind\":\"/systemusers($USER)\"}")
A1=$(grep -i '^OData-EntityId:' "$T/hdr" | sed -E 's/.*\(([0-9a-f-]{36})\).*/\1/')
check_eq "ownerid bound to /systemusers(..) -> 204" 204 "$st"
check_eq "a user owner: owninguser and the user's business unit follow, no owning team" "$USER systemuser $USER null $USER_BU" \
  "$(get "accounts($A1)" | jq -r '[._ownerid_value, ."_ownerid_value@Microsoft.Dynamics.CRM.lookuplogicalname", ._owninguser_value, ._owningteam_value, ._owningbusinessunit_value]|map(tostring)|join(" ")')"
st=$(req PATCH "accounts($A1)" "{\"ownerid@odata.bind\":\"/teams($SALES_TEAM)\"}")
check_eq "ownerid bound to /teams(..) -> 204" 204 "$st"
check_eq "a team owner: owningteam and the team's business unit follow, no owning user" "$SALES_TEAM team null $SALES_TEAM $SALES_BU" \
  "$(get "accounts($A1)" | jq -r '[._ownerid_value, ."_ownerid_value@Microsoft.Dynamics.CRM.lookuplogicalname", ._owninguser_value, ._owningteam_value, ._owningbusinessunit_value]|map(tostring)|join(" ")')"
check_eq "ownerid bound to a missing user -> 404 0x80040217" "404 0x80040217 systemuser With Id = $MISSING Does Not Exist" \
  "$(req PATCH "accounts($A1)" "{\"ownerid@odata.bind\":\"/systemusers($MISSING)\"}") $(err) $(msg)"
check_eq "ownerid bound to a missing team -> 404" 404 "$(req PATCH "accounts($A1)" "{\"ownerid@odata.bind\":\"/teams($MISSING)\"}")"
check_eq "ownerid bound to an account -> 400" "400 0x80060888" "$(req PATCH "accounts($A1)" "{\"ownerid@odata.bind\":\"/accounts($ACC)\"}") $(err)"
check_eq "parentcustomerid_account bound to a contact -> 400" 400 \
  "$(req PATCH "contacts($CON)" "{\"parentcustomerid_account@odata.bind\":\"/contacts($CON)\"}")"
check_eq "parentcustomerid_contact bound to a contact -> 204, lookuplogicalname contact" "204 contact" \
  "$(req PATCH "contacts($CON)" "{\"parentcustomerid_contact@odata.bind\":\"/contacts($CON)\"}") $(get "contacts($CON)" | jq -r '."_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"')"
check_eq "an owning* column in a body -> 400: no such property" 400 "$(req PATCH "accounts($A1)" "{\"_owninguser_value\":\"$USER\"}")"
check_eq "owninguser through a navigation property -> ignored (not valid for update)" "204 $SALES_TEAM" \
  "$(req PATCH "accounts($A1)" "{\"owninguser@odata.bind\":\"/systemusers($USER)\"}") $(get "accounts($A1)" | jq -r ._ownerid_value)"

# ---- 4. state and status on create ----
st=$(req POST accounts '{"name":"Created with statecode 1","statecode":1}')
A2=$(grep -i '^OData-EntityId:' "$T/hdr" | sed -E 's/.*\(([0-9a-f-]{36})\).*/\1/')
check_eq "statecode on create is not valid for create: ignored, the record is created active" "204 0 1" \
  "$st $(get "accounts($A2)" | jq -r '"\(.statecode) \(.statuscode)"')"
st=$(req POST accounts '{"accountid":"00000000-0000-0000-0000-0000000014a1","name":"Inactive at birth","statecode":1,"statuscode":2}')
check_eq "a status of another state on create -> 400 0x80048408 with the service's message" \
  "400 0x80048408 2 is not a valid status code for state code AccountState.Active on account with Id 00000000-0000-0000-0000-0000000014a1." "$st $(err) $(msg)"
check_eq "nothing was created" 404 "$(req GET "accounts(00000000-0000-0000-0000-0000000014a1)")"
check_eq "a resolved status on a new case -> 400 IncidentState.Active" "400 true" \
  "$(req POST incidents '{"title":"Born resolved","statuscode":5}') $(msg | grep -q 'state code IncidentState.Active on incident' && echo true)"
check_eq "an open status of another kind on create -> 204 (task In Progress)" "204 0 3" \
  "$(req POST tasks '{"subject":"In progress at birth","statuscode":3}') $(get "tasks($(grep -i '^OData-EntityId:' "$T/hdr" | sed -E 's/.*\(([0-9a-f-]{36})\).*/\1/'))" | jq -r '"\(.statecode) \(.statuscode)"')"

# ---- 5. state by update ----
check_eq "statecode and statuscode together in an update set the state" "204 1 2 Inactive" \
  "$(req PATCH "accounts($A2)" '{"statecode":1,"statuscode":2}') $(get "accounts($A2)" | jq -r '"\(.statecode) \(.statuscode) \(."statecode@OData.Community.Display.V1.FormattedValue")"')"
check_eq "statecode alone takes its state's first status" "204 0 1" \
  "$(req PATCH "accounts($A2)" '{"statecode":0}') $(get "accounts($A2)" | jq -r '"\(.statecode) \(.statuscode)"')"
check_eq "a status that does not belong to the new state -> 400 0x80048408" "400 0x80048408 true" \
  "$(req PATCH "accounts($A2)" '{"statecode":0,"statuscode":2}') $(err) $(msg | grep -q 'for state code AccountState.Active on account with Id' && echo true)"
check_eq "a status alone must belong to the current state" "400 0x80048408" "$(req PATCH "accounts($A2)" '{"statuscode":2}') $(err)"
st=$(req POST incidents '{"title":"Printer on fire"}')
I1=$(grep -i '^OData-EntityId:' "$T/hdr" | sed -E 's/.*\(([0-9a-f-]{36})\).*/\1/')
check_eq "resolve a case by update -> 400: use CloseIncident" "400 0x80040203 This message can not be used to set the state of incident to Resolved. In order to set state of incident to Resolved, use the CloseIncidentRequest message instead." \
  "$(req PATCH "incidents($I1)" '{"statecode":1,"statuscode":5}') $(err) $(msg)"
st=$(req POST opportunities '{"name":"Big deal","estimatedvalue":1000}')
O1=$(grep -i '^OData-EntityId:' "$T/hdr" | sed -E 's/.*\(([0-9a-f-]{36})\).*/\1/')
check_eq "win an opportunity by update -> 400 0x80100005: use the won message" "400 0x80100005 This message can not be used to set the state of opportunity to won. In order to set state of opportunity to won, use the won message instead." \
  "$(req PATCH "opportunities($O1)" '{"statecode":1,"statuscode":3}') $(err) $(msg)"
check_eq "lose an opportunity by update -> 400 0x80100005" "400 true" \
  "$(req PATCH "opportunities($O1)" '{"statecode":2,"statuscode":4}') $(msg | grep -q 'use the lost message instead' && echo true)"
st=$(req POST incidents '{"title":"Cancel me"}')
I2=$(grep -i '^OData-EntityId:' "$T/hdr" | sed -E 's/.*\(([0-9a-f-]{36})\).*/\1/')
check_eq "cancel a case by update -> 204 (2, 6)" "204 2 6" "$(req PATCH "incidents($I2)" '{"statecode":2,"statuscode":6}') $(get "incidents($I2)" | jq -r '"\(.statecode) \(.statuscode)"')"
check_eq "a cancelled case refuses a field update -> 400 0x8004022e" "400 0x8004022e The object cannot be updated because it is read-only." \
  "$(req PATCH "incidents($I2)" '{"title":"still cancelled"}') $(err) $(msg)"

# ---- 6. CloseIncident ----
close() { printf '{"IncidentResolution":{"subject":"Fixed","incidentid@odata.bind":"/incidents(%s)"},"Status":%s}' "$1" "$2"; }
check_eq "CloseIncident with a status of another state -> 400 0x80048408" "400 0x80048408" "$(req POST CloseIncident "$(close "$I1" 6)") $(err)"
check_eq "CloseIncident without Status -> 400" "400 0x80040203" "$(req POST CloseIncident "{\"IncidentResolution\":{\"incidentid@odata.bind\":\"/incidents($I1)\"}}") $(err)"
check_eq "CloseIncident of a missing case -> 404" 404 "$(req POST CloseIncident "$(close "$MISSING" 5)")"
check_eq "CloseIncident -> 204, the case resolved (1, 5)" "204 1 5 Resolved" \
  "$(req POST CloseIncident "$(close "$I1" 5)") $(get "incidents($I1)" | jq -r '"\(.statecode) \(.statuscode) \(."statecode@OData.Community.Display.V1.FormattedValue")"')"
check_eq "CloseIncident again -> 400 0x800404cf" "400 0x800404cf" "$(req POST CloseIncident "$(close "$I1" 5)") $(err)"
check_eq "a resolved case refuses a field update -> 400 0x800404cf" "400 0x800404cf This case has already been resolved. Close and reopen the case record to see the updates." \
  "$(req PATCH "incidents($I1)" '{"title":"edited after resolution"}') $(err) $(msg)"
check_eq "a resolved case refuses a state other than active" "400 0x800404cf" "$(req PATCH "incidents($I1)" '{"statecode":2,"statuscode":6}') $(err)"
check_eq "reopen by an update to statecode 0 -> 204 (0, 1)" "204 0 1" \
  "$(req PATCH "incidents($I1)" '{"statecode":0,"statuscode":1}') $(get "incidents($I1)" | jq -r '"\(.statecode) \(.statuscode)"')"
check_eq "a reopened case takes field updates" "204 edited after reopening" \
  "$(req PATCH "incidents($I1)" '{"title":"edited after reopening"}') $(get "incidents($I1)" | jq -r .title)"
{ printf -- '--batch_R\r\nContent-Type: multipart/mixed; boundary=changeset_C\r\n\r\n'
  printf -- '--changeset_C\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 1\r\n\r\nPATCH incidents(%s) HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{"title":"closed in a batch"}\r\n' "$I1"
  printf -- '--changeset_C\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 2\r\n\r\nPOST CloseIncident HTTP/1.1\r\nContent-Type: application/json\r\n\r\n%s\r\n' "$(close "$I1" 1000)"
  printf -- '--changeset_C--\r\n--batch_R--\r\n'; } >"$T/b_close"
check_eq "CloseIncident inside a \$batch change set -> 204s, the case resolved (1, 1000)" "200 204 204 1 1000 closed in a batch" \
  "$(batch "$T/b_close") $(statuses) $(get "incidents($I1)" | jq -r '"\(.statecode) \(.statuscode) \(.title)"')"

# ---- 7. WinOpportunity and LoseOpportunity ----
oclose() { printf '{"OpportunityClose":{"subject":"Done","opportunityid@odata.bind":"/opportunities(%s)","actualend":"2025-03-04T05:06:07Z"},"Status":%s}' "$1" "$2"; }
check_eq "LoseOpportunity with a won status -> 400 0x80048408" "400 0x80048408" "$(req POST LoseOpportunity "$(oclose "$O1" 3)") $(err)"
check_eq "WinOpportunity -> 204, won (1, 3), actualclosedate from the close" "204 1 3 2025-03-04" \
  "$(req POST WinOpportunity "$(oclose "$O1" 3)") $(get "opportunities($O1)" | jq -r '"\(.statecode) \(.statuscode) \(.actualclosedate)"')"
check_eq "a won opportunity refuses a field update -> 400 0x8004022e" "400 0x8004022e" "$(req PATCH "opportunities($O1)" '{"name":"bigger"}') $(err)"
check_eq "WinOpportunity of a won opportunity -> 400" 400 "$(req POST WinOpportunity "$(oclose "$O1" 3)")"
check_eq "reopen by an update to statecode 0 -> 204 (0, 2)" "204 0 2" \
  "$(req PATCH "opportunities($O1)" '{"statecode":0,"statuscode":2}') $(get "opportunities($O1)" | jq -r '"\(.statecode) \(.statuscode)"')"
{ part POST LoseOpportunity "$(oclose "$O1" 5)"; printf -- '--batch_R--\r\n'; } >"$T/b_lose"
check_eq "LoseOpportunity inside \$batch -> 204, lost (2, 5 Out-Sold)" "200 204 2 5" \
  "$(batch "$T/b_lose") $(statuses) $(get "opportunities($O1)" | jq -r '"\(.statecode) \(.statuscode)"')"

# ---- 8. overriddencreatedon and the columns the service derives ----
st=$(req POST accounts '{"name":"Old customer","overriddencreatedon":"2019-05-06T07:08:09Z","revenue":1000}')
A3=$(grep -i '^OData-EntityId:' "$T/hdr" | sed -E 's/.*\(([0-9a-f-]{36})\).*/\1/')
check_eq "overriddencreatedon on create sets createdon" "204 2019-05-06T07:08:09Z" "$st $(get "accounts($A3)" | jq -r .createdon)"
check_eq "a new record is priced in the base currency: exchangerate 1, revenue_base = revenue" "US Dollar 1 1000" \
  "$(get "accounts($A3)" | jq -r '[."_transactioncurrencyid_value@OData.Community.Display.V1.FormattedValue", .exchangerate, .revenue_base]|map(tostring)|join(" ")')"
check_eq "overriddencreatedon in an update is ignored (not valid for update)" "204 2019-05-06T07:08:09Z" \
  "$(req PATCH "accounts($A3)" '{"overriddencreatedon":"2001-01-01T00:00:00Z"}') $(get "accounts($A3)" | jq -r .createdon)"
check_eq "createdon, modifiedon, versionnumber, exchangerate, revenue_base in a body are ignored" "204 2019-05-06T07:08:09Z 1 1000" \
  "$(req PATCH "accounts($A3)" '{"createdon":"2000-01-01T00:00:00Z","modifiedon":"2000-01-01T00:00:00Z","versionnumber":1,"exchangerate":5,"revenue_base":1}') $(get "accounts($A3)" | jq -r '"\(.createdon) \(.exchangerate) \(.revenue_base)"')"
check_eq "another currency: exchangerate follows it and revenue_base = revenue / rate" "204 0.92 1086.96" \
  "$(req PATCH "accounts($A3)" "{\"transactioncurrencyid@odata.bind\":\"/transactioncurrencies($EUR)\"}") $(get "accounts($A3)" | jq -r '"\(.exchangerate) \(.revenue_base)"')"

# ---- 9. activities and their parties ----
C2=$(dump contact | jq -r '.[1].contactid')
EMAIL_BODY=$(cat <<JSON
{"subject":"Quote for Zoë","regardingobjectid_account_email@odata.bind":"/accounts($ACC)",
 "email_activity_parties":[{"participationtypemask":1,"partyid_systemuser@odata.bind":"/systemusers($USER)"},
  {"participationtypemask":2,"partyid_contact@odata.bind":"/contacts($C2)","addressused":"zoe@example.com"},
  {"participationtypemask":2,"addressused":"unknown@example.org"}]}
JSON
)
st=$(req POST emails "$EMAIL_BODY")
E1=$(grep -i '^OData-EntityId:' "$T/hdr" | sed -E 's/.*\(([0-9a-f-]{36})\).*/\1/')
check_eq "an e-mail created with its parties -> 204" 204 "$st"
parties() { curl -s "${H[@]}" -H 'Prefer: odata.include-annotations="*"' "$API/activityparties?\$filter=_activityid_value%20eq%20$1" |
  jq -r '[.value[]|"\(.participationtypemask):\(."_partyid_value@Microsoft.Dynamics.CRM.lookuplogicalname" // "none"):\(.addressused // "")"]|sort|join(" ")'; }
check_eq "its parties are activityparty rows" "1:systemuser: 2:contact:zoe@example.com 2:none:unknown@example.org" "$(parties "$E1")"
check_eq "its activitypointer row" "email Quote for Zoë account 0" \
  "$(get "activitypointers($E1)" | jq -r '"\(.activitytypecode) \(.subject) \(."_regardingobjectid_value@Microsoft.Dynamics.CRM.lookuplogicalname") \(.statecode)"')"
old_parties=$(curl -s "${H[@]}" "$API/activityparties?\$filter=_activityid_value%20eq%20$E1" | jq -r '[.value[].activitypartyid]|sort|join(" ")')
delta=$(curl -s "${H[@]}" -H 'Prefer: odata.track-changes' "$API/activityparties?\$select=participationtypemask" | jq -r '."@odata.deltaLink"')
st=$(req PATCH "emails($E1)" "{\"email_activity_parties\":[{\"participationtypemask\":3,\"partyid_systemuser@odata.bind\":\"/systemusers($USER)\"}]}")
check_eq "an update with parties replaces them" "204 3:systemuser:" "$st $(parties "$E1")"
check_eq "change tracking shows the old parties deleted and the new one created" "$old_parties|1" \
  "$(curl -s "${H[@]}" "$delta" | jq -r '([.value[]|select(has("@odata.context") and (."@odata.context"|test("deletedEntity")))|.id]|sort|join(" ")) + "|" + ([.value[]|select(has("activitypartyid"))]|length|tostring)')"
check_eq "a party bound to a missing contact -> 404, nothing changed" "404 3:systemuser:" \
  "$(req PATCH "emails($E1)" "{\"subject\":\"x\",\"email_activity_parties\":[{\"participationtypemask\":2,\"partyid_contact@odata.bind\":\"/contacts($MISSING)\"}]}") $(parties "$E1")"
check_eq "a party with an unknown participation type -> 400" "400 0x8004431a" \
  "$(req PATCH "emails($E1)" "{\"email_activity_parties\":[{\"participationtypemask\":99,\"addressused\":\"a@b.c\"}]}") $(err)"
check_eq "regarding bound through the account property to a contact -> 400" 400 \
  "$(req PATCH "emails($E1)" "{\"regardingobjectid_account_email@odata.bind\":\"/contacts($C2)\"}")"
check_eq "completing the e-mail updates its activitypointer row" "204 1 Completed" \
  "$(req PATCH "emails($E1)" '{"statecode":1,"statuscode":3}') $(get "activitypointers($E1)" | jq -r '"\(.statecode) \(."statecode@OData.Community.Display.V1.FormattedValue")"')"
check_eq "deleting the e-mail removes its activitypointer row and parties" "204 404 " \
  "$(req DELETE "emails($E1)") $(req GET "activitypointers($E1)") $(parties "$E1")"

# ---- 10. the simulated plug-in and flow, the bypass headers and privilege ----
tasks_about() { curl -s "${H[@]}" "$API/tasks?\$filter=_regardingobjectid_value%20eq%20$1&\$select=subject" | jq -r '[.value[].subject]|join("|")'; }
e0=$(effects)
st=$(req POST accounts '{"name":"Plugged"}')
P1=$(grep -i '^OData-EntityId:' "$T/hdr" | sed -E 's/.*\(([0-9a-f-]{36})\).*/\1/')
check_eq "a create without bypass runs the plug-in: a follow-up task regarding the account" "204 Plug-in follow-up: Plugged" "$st $(tasks_about "$P1")"
check_eq "the plug-in's task is in activitypointer too" "task" \
  "$(curl -s "${H[@]}" "$API/activitypointers?\$filter=_regardingobjectid_value%20eq%20$P1" | jq -r '.value[0].activitytypecode')"
e1=$(effects)
check_eq "one plug-in run and one flow run counted" "$(( ${e0% *} + 1 )) $(( ${e0#* } + 1 ))" "$e1"
st=$(req POST accounts '{"name":"Bypassed"}' -H 'MSCRM.BypassBusinessLogicExecution: CustomSync,CustomAsync')
P2=$(grep -i '^OData-EntityId:' "$T/hdr" | sed -E 's/.*\(([0-9a-f-]{36})\).*/\1/')
e2=$(effects)
check_eq "with BypassBusinessLogicExecution: no task, no plug-in run, the flow still runs" "204  ${e1% *} $(( ${e1#* } + 1 ))" "$st $(tasks_about "$P2") $e2"
st=$(req PATCH "contacts($CON)" '{"jobtitle":"Quiet"}' -H 'MSCRM.BypassCustomPluginExecution: true' -H 'MSCRM.SuppressCallbackRegistrationExpanderJob: true')
check_eq "BypassCustomPluginExecution and SuppressCallbackRegistrationExpanderJob: nothing runs" "204 $e2" "$st $(effects)"
check_eq "an update without bypass runs the plug-in too" "204 true" \
  "$(req PATCH "contacts($CON)" '{"jobtitle":"Loud"}') $(tasks_about "$CON" | grep -q 'Plug-in follow-up' && echo true)"
e3=$(effects)
{ part POST accounts '{"name":"Batch bypassed one"}'; part POST accounts '{"name":"Batch bypassed two"}'; printf -- '--batch_R--\r\n'; } >"$T/b_outer"
st=$(batch "$T/b_outer" -H 'MSCRM.BypassBusinessLogicExecution: CustomSync' -H 'MSCRM.SuppressCallbackRegistrationExpanderJob: true')
check_eq "a bypass header on the outer \$batch applies to every part" "200 204 204 $e3" "$st $(statuses) $(effects)"
{ part POST accounts '{"name":"Part bypassed"}' 'MSCRM.BypassCustomPluginExecution: true'; part POST accounts '{"name":"Part not bypassed"}'; printf -- '--batch_R--\r\n'; } >"$T/b_part"
st=$(batch "$T/b_part")
check_eq "a bypass header on a part applies to that part only" "200 204 204 $(( ${e3% *} + 1 )) $(( ${e3#* } + 2 ))" "$st $(statuses) $(effects)"
check_eq "the plug-in ran for the part without the header" "Plug-in follow-up: Part not bypassed" \
  "$(dump task | jq -r '[.[]|select(.subject|startswith("Plug-in follow-up: Part"))|.subject]|join("|")')"
privs() { curl -s "${H[@]}" "$API/systemusers($1)/Microsoft.Dynamics.CRM.RetrieveUserPrivileges()"; }
check_eq "RetrieveUserPrivileges lists prvBypassCustomBusinessLogic (Global, its real id)" "Global 0ea552b0-a491-4470-9a1b-82068deccf66" \
  "$(privs "$APP" | jq -r '.RolePrivileges[]|select(.PrivilegeName=="prvBypassCustomBusinessLogic")|"\(.Depth) \(.PrivilegeId)"')"
check_eq "the application user has no privilege to write principals" "" \
  "$(privs "$APP" | jq -r '[.RolePrivileges[].PrivilegeName|select(test("^prv(Create|Write|Delete)(User|Team|BusinessUnit|TransactionCurrency)$"))]|join(" ")')"
check_eq "another user: read privileges only" true "$(privs "$USER" | jq '(.RolePrivileges|length) > 0 and all(.RolePrivileges[]; .PrivilegeName|startswith("prvRead"))')"
check_eq "RetrieveUserPrivileges of a missing user -> 404" 404 "$(req GET "systemusers($MISSING)/Microsoft.Dynamics.CRM.RetrieveUserPrivileges()")"
who=$(curl -s "${H[@]}" "$API/WhoAmI")
check_eq "WhoAmI: this org's application user and root business unit" "$APP $ROOT_BU" "$(jq -r '"\(.UserId) \(.BusinessUnitId)"' <<<"$who")"
check "WhoAmI: an OrganizationId" jq -e '.OrganizationId|test("^[0-9a-f-]{36}$")' <<<"$who"
check "the application user has another id in contoso-prod" test "$APP" != "$(sim_dump contoso-prod systemuser | jq -r '.[]|select(.fullname=="# dvsnap")|.systemuserid')"
check_eq "/_sim/config switches the bypass privilege off" false \
  "$(curl -s -X POST "$DVSIM_URL/_sim/config" -d '{"bypass_privilege":false}' | jq .bypass_privilege)"
e4=$(effects)
check_eq "without the privilege, BypassBusinessLogicExecution -> 403 0x80040220 naming it" "403 0x80040220 true" \
  "$(req POST accounts '{"name":"Refused"}' -H 'MSCRM.BypassBusinessLogicExecution: CustomSync') $(err) $(msg | grep -q 'is missing prvBypassCustomBusinessLogic privilege (Id=0ea552b0-a491-4470-9a1b-82068deccf66)' && echo true)"
check_eq "without the privilege, BypassCustomPluginExecution -> 403 naming prvBypassCustomPlugins" "403 true" \
  "$(req PATCH "accounts($A3)" '{"name":"Refused"}' -H 'MSCRM.BypassCustomPluginExecution: true') $(msg | grep -q 'is missing prvBypassCustomPlugins privilege' && echo true)"
check_eq "without the privilege, a bypass on the outer \$batch -> each part 403" "403 403" \
  "$(batch "$T/b_outer" -H 'MSCRM.BypassBusinessLogicExecution: CustomSync' -H 'Prefer: odata.continue-on-error' >/dev/null; statuses)"
check_eq "nothing ran for the refused writes" "$e4" "$(effects)"
check_eq "RetrieveUserPrivileges no longer lists the bypass privileges" 0 \
  "$(privs "$APP" | jq '[.RolePrivileges[]|select(.PrivilegeName|startswith("prvBypass"))]|length')"
check_eq "a write without a bypass header still works" 204 "$(req POST accounts '{"name":"Not bypassed"}')"
curl -s -X POST "$DVSIM_URL/_sim/config" -d '{"bypass_privilege":true}' >/dev/null

# ---- 11. image columns ----
IMG=$(dump contact | jq -r '[.[]|select(.entityimage!=null)][0].contactid')
curl -s -o "$T/thumb" -D "$T/thdr" "${H[@]}" "$API/contacts($IMG)/entityimage/\$value"
curl -s -o "$T/full" -D "$T/fhdr" "${H[@]}" "$API/contacts($IMG)/entityimage/\$value?size=full"
check "\$value gives the thumbnail: the record's entityimage" cmp "$T/thumb" <(get "contacts($IMG)" | jq -r .entityimage | base64 -d)
check "?size=full gives the full image, larger than the thumbnail" test "$(stat -c %s "$T/full")" -gt "$(stat -c %s "$T/thumb")"
check_eq "the full image's x-ms-file-size" "$(stat -c %s "$T/full")" "$(grep -i '^x-ms-file-size:' "$T/fhdr" | tr -d '\r' | cut -d' ' -f2)"
check_eq "Range on the full image -> 206 with 100 bytes" "206 100" \
  "$(curl -s -o "$T/part" -w '%{http_code}' "${H[@]}" -H 'Range: bytes=10-109' "$API/contacts($IMG)/entityimage/\$value?size=full") $(stat -c %s "$T/part")"
check_eq "a contact without an image -> 204" 204 "$(req GET "contacts($CON)/entityimage/\$value")"
st=$(curl -s -o /dev/null -w '%{http_code}' -X PATCH -H "Authorization: Bearer $TOK" -H 'Content-Type: application/octet-stream' \
  -H 'x-ms-file-name: restored.png' --data-binary "@$T/full" "$API/contacts($CON)/entityimage")
check_eq "upload a full image through the file API -> 204" 204 "$st"
check "the uploaded bytes come back with ?size=full" cmp "$T/full" <(curl -s "${H[@]}" "$API/contacts($CON)/entityimage/\$value?size=full")
check "the same full image gives the same thumbnail" cmp "$T/thumb" <(curl -s "${H[@]}" "$API/contacts($CON)/entityimage/\$value")
check "the record shows the thumbnail and an image id" sh -c "curl -s -H 'Authorization: Bearer $TOK' '$API/contacts($CON)' | jq -e '(.entityimage|length) > 100 and (.entityimageid|length) == 36'"
head -c 5000 /dev/urandom >"$T/new.png"
st=$(req POST contacts "{\"lastname\":\"Pictured\",\"entityimage\":\"$(base64 -w0 "$T/new.png")\"}")
C3=$(grep -i '^OData-EntityId:' "$T/hdr" | sed -E 's/.*\(([0-9a-f-]{36})\).*/\1/')
check_eq "entityimage as Base64 in a create (the primary image) -> 204" 204 "$st"
check "it is the full image" cmp "$T/new.png" <(curl -s "${H[@]}" "$API/contacts($C3)/entityimage/\$value?size=full")
check_eq "entityimage that is not Base64 -> 400" 400 "$(req PATCH "contacts($C3)" '{"entityimage":"not base64 !"}')"
check_eq "DELETE the image -> 204, the record's image null, \$value 204" "204 null 204" \
  "$(req DELETE "contacts($C3)/entityimage") $(get "contacts($C3)" | jq -r .entityimage) $(req GET "contacts($C3)/entityimage/\$value")"

# ---- 12. the request log ----
seq0=$(curl -s "$DVSIM_URL/_sim/requests" | jq .last)
req PATCH "accounts($A3)" '{"name":"Logged"}' -H 'MSCRM.BypassBusinessLogicExecution: CustomSync,CustomAsync' -H 'MSCRM.SuppressCallbackRegistrationExpanderJob: true' >/dev/null
batch "$T/b_part" -H 'MSCRM.BypassBusinessLogicExecution: CustomAsync' >/dev/null
curl -s "$DVSIM_URL/_sim/requests?since=$seq0" >"$T/log"
curl -s "$DVSIM_URL/_sim/requests?since=$seq0&parts=1" >"$T/logp"
check_eq "the log keeps a write's bypass headers" "CustomSync,CustomAsync false true" \
  "$(jq -r '.requests[]|select(.method=="PATCH")|"\(.bypass_business_logic) \(.bypass_custom_plugins) \(.suppress_flows)"' "$T/log")"
check_eq "without parts=1 the log lists the \$batch, not its parts" "POST /org/$ENV/api/data/v9.2/\$batch" "$(jq -r '.requests[]|select(.method=="POST")|"\(.method) \(.path)"' "$T/log")"
check_eq "with parts=1, each part with the headers that applied to it" "/org/$ENV/api/data/v9.2/accounts CustomAsync true|/org/$ENV/api/data/v9.2/accounts CustomAsync false" \
  "$(jq -r '[.requests[]|select(.batch_part)|"\(.path) \(.bypass_business_logic) \(.bypass_custom_plugins)"]|join("|")' "$T/logp")"
all=$(curl -s "$DVSIM_URL/_sim/requests?parts=1")
check_eq "no write to a principal table ever succeeded" 0 \
  "$(jq '[.requests[]|select(.method!="GET" and (.path|test("/(systemusers|teams|businessunits|transactioncurrencies)")) and .status < 400)]|length' <<<"$all")"

# ---- --no-bypass-privilege ----
start_dvsim --seed demo --no-bypass-privilege
API="$DVSIM_URL/org/$ENV/api/data/v9.2"
TOK=$(token "$ENV")
H=(-H "Authorization: Bearer $TOK" -H 'Content-Type: application/json' -H 'OData-Version: 4.0')
check_eq "--no-bypass-privilege: /_sim/config says so" false "$(curl -s "$DVSIM_URL/_sim/config" | jq .bypass_privilege)"
check_eq "--no-bypass-privilege: a bypass header -> 403" 403 "$(req POST accounts '{"name":"x"}' -H 'MSCRM.BypassBusinessLogicExecution: CustomSync')"
curl -s -X POST "$DVSIM_URL/_sim/config" -d '{"bypass_privilege":true}' >/dev/null
curl -s -X POST "$DVSIM_URL/_sim/reset" >/dev/null
check_eq "/_sim/reset goes back to the start-up setting" false "$(curl -s "$DVSIM_URL/_sim/config" | jq .bypass_privilege)"
check "dvsim still alive" kill -0 "$DVSIM_PID"
finish
