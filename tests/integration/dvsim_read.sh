#!/usr/bin/env bash
# dvsim read side against a real dvsim on loopback: token endpoint errors, 401s, admin API,
# EntityDefinitions, paging (every record once, same bytes as /_sim/dump, same bytes twice),
# $select/$filter/$orderby/$top, annotations, change tracking with churn (delta = exactly the
# changed and deleted records), tracking restrictions, expired delta tokens, bad input, request log.
. "$(dirname "$0")/../lib.sh"
PAGE="$(cd "$(dirname "$0")" && pwd)/dvsim_page.py"
start_dvsim --seed demo
API="$DVSIM_URL/org/contoso-prod/api/data/v9.2"

tok_for() { # tok_for RESOURCE_PATH -> token
  curl -s -X POST "$DVSIM_URL/contoso/oauth2/v2.0/token" --data-urlencode client_id=dvsnap-test \
    --data-urlencode "client_secret@$T/secret" --data-urlencode grant_type=client_credentials \
    --data-urlencode "scope=$DVSIM_URL$1/.default" | jq -r .access_token
}
status() { curl -s -o "$T/body" -w '%{http_code}' "$@"; }
table_file() { { printf '[\n'; LC_ALL=C sort "$1" | sed '$!s/$/,/'; printf ']\n'; }; }

# ---- token endpoint ----
ORG=$(tok_for /org/contoso-prod)
ADMIN=$(tok_for "")
check "org token issued" test -n "$ORG" -a "$ORG" != null
check "admin token issued" test -n "$ADMIN" -a "$ADMIN" != null
st=$(status -X POST "$DVSIM_URL/contoso/oauth2/v2.0/token" -d client_id=dvsnap-test -d client_secret=wrong \
  -d grant_type=client_credentials --data-urlencode "scope=$DVSIM_URL/.default")
check_eq "wrong secret -> 401" 401 "$st"
check_eq "wrong secret -> invalid_client AADSTS7000215" "invalid_client 7000215" "$(jq -r '.error + " " + (.error_codes[0]|tostring)' "$T/body")"
st=$(status -X POST "$DVSIM_URL/contoso/oauth2/v2.0/token" -d client_id=someone-else -d client_secret=x \
  -d grant_type=client_credentials --data-urlencode "scope=$DVSIM_URL/.default")
check_eq "unknown client -> 400 unauthorized_client" "400 unauthorized_client" "$st $(jq -r .error "$T/body")"
st=$(status -X POST "$DVSIM_URL/contoso/oauth2/v2.0/token" --data-urlencode client_id=dvsnap-test \
  --data-urlencode "client_secret@$T/secret" -d grant_type=client_credentials --data-urlencode "scope=$DVSIM_URL/org/nope/.default")
check_eq "unknown resource -> 400 invalid_resource" "400 invalid_resource" "$st $(jq -r .error "$T/body")"
st=$(status -X POST "$DVSIM_URL/other/oauth2/v2.0/token" -d client_id=dvsnap-test)
check_eq "unknown tenant -> 400 invalid_tenant" "400 invalid_tenant" "$st $(jq -r .error "$T/body")"
check_eq "expires_in is given" 3599 "$(curl -s -X POST "$DVSIM_URL/contoso/oauth2/v2.0/token" --data-urlencode client_id=dvsnap-test \
  --data-urlencode "client_secret@$T/secret" -d grant_type=client_credentials --data-urlencode "scope=$DVSIM_URL/.default" | jq .expires_in)"

# ---- 401s ----
check_eq "no bearer -> 401" 401 "$(status "$API/accounts")"
check "401 carries WWW-Authenticate" sh -c "curl -s -D - -o /dev/null '$API/accounts' | grep -qi '^WWW-Authenticate: Bearer'"
check_eq "admin token on an org -> 401" 401 "$(status -H "Authorization: Bearer $ADMIN" "$API/accounts")"
check_eq "contoso-prod token on contoso-dev -> 401" 401 \
  "$(status -H "Authorization: Bearer $ORG" "$DVSIM_URL/org/contoso-dev/api/data/v9.2/accounts")"
check_eq "forged token -> 401" 401 "$(status -H "Authorization: Bearer ${ORG%?}x" "$API/accounts")"
check_eq "org token on the admin API -> 401" 401 \
  "$(status -H "Authorization: Bearer $ORG" "$DVSIM_URL/providers/Microsoft.BusinessAppPlatform/scopes/admin/environments")"

# ---- admin API ----
BAP="$DVSIM_URL/providers/Microsoft.BusinessAppPlatform"
curl -s -H "Authorization: Bearer $ADMIN" "$BAP/scopes/admin/environments?api-version=2020-10-01" >"$T/envs"
check_eq "six environments" "contoso-default contoso-dev contoso-prod contoso-test contoso-trial fabrikam-prod" \
  "$(jq -r '[.value[].properties.linkedEnvironmentMetadata.uniqueName]|sort|join(" ")' "$T/envs")"
prod=$(jq -c '.value[]|select(.properties.linkedEnvironmentMetadata.uniqueName=="contoso-prod")' "$T/envs")
check_eq "contoso-prod facts" "Production P28D unitedstates Enabled true $DVSIM_URL/org/contoso-prod" \
  "$(jq -r '[.properties.environmentSku,.properties.retentionDetails.retentionPeriod,.location,.properties.states.runtime.id,
     (.properties.linkedEnvironmentMetadata.templates|any(startswith("D365_"))),.properties.linkedEnvironmentMetadata.instanceApiUrl]|join(" ")' <<<"$prod")"
check_eq "fabrikam-prod: P7D, no D365 apps" "P7D false" \
  "$(jq -r '.value[]|select(.properties.linkedEnvironmentMetadata.uniqueName=="fabrikam-prod")|[.properties.retentionDetails.retentionPeriod,(.properties.linkedEnvironmentMetadata.templates|any(startswith("D365_")))]|join(" ")' "$T/envs")"
check_eq "contoso-test is a Sandbox in europe" "Sandbox europe" \
  "$(jq -r '.value[]|select(.properties.linkedEnvironmentMetadata.uniqueName=="contoso-test")|[.properties.environmentSku,.location]|join(" ")' "$T/envs")"
id=$(jq -r .name <<<"$prod")
st=$(status -X PATCH -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
  -d '{"properties":{"states":{"runtime":{"id":"AdminMode"}}}}' "$BAP/scopes/admin/environments/$id?api-version=2021-04-01")
check_eq "PATCH admin mode -> 200" 200 "$st"
check_eq "GET shows AdminMode" AdminMode \
  "$(curl -s -H "Authorization: Bearer $ADMIN" "$BAP/scopes/admin/environments/$id" | jq -r .properties.states.runtime.id)"
st=$(status -X PATCH -H "Authorization: Bearer $ADMIN" -d '{"properties":{"states":{"runtime":{"id":"Bogus"}}}}' "$BAP/scopes/admin/environments/$id")
check_eq "PATCH bad state -> 400" 400 "$st"
tid=$(jq -r .properties.tenantId <<<"$prod")
cap=$(curl -s -H "Authorization: Bearer $ADMIN" "$BAP/tenants/$tid/capacity?api-version=2021-04-01")
check "capacity has a Database entry in MB" jq -e '.tenantCapacities[]|select(.capacityType=="Database" and .capacityUnits=="MB" and .maxCapacity>.ratedConsumption)' <<<"$cap"
curl -s -X POST "$DVSIM_URL/_sim/faults" -d '{"capacity_free_mb":500}' >/dev/null
check_eq "capacity_free_mb fault -> 500 MB free" 500 \
  "$(curl -s -H "Authorization: Bearer $ADMIN" "$BAP/tenants/$tid/capacity" | jq '.tenantCapacities[]|select(.capacityType=="Database")|.maxCapacity-.ratedConsumption')"

# ---- metadata ----
curl -s -H "Authorization: Bearer $ORG" "$API/EntityDefinitions?\$expand=Attributes" >"$T/defs"
check_eq "eighteen tables" "account activityparty activitypointer annotation appointment audit businessunit contact email incident new_project new_project_contact opportunity phonecall systemuser task team transactioncurrency" \
  "$(jq -r '[.value[].LogicalName]|sort|join(" ")' "$T/defs")"
check_eq "OwnershipType of each table" "account:UserOwned activityparty:None activitypointer:None annotation:UserOwned appointment:UserOwned audit:None businessunit:BusinessOwned contact:UserOwned email:UserOwned incident:UserOwned new_project:UserOwned new_project_contact:None opportunity:UserOwned phonecall:UserOwned systemuser:BusinessOwned task:UserOwned team:BusinessOwned transactioncurrency:OrganizationOwned" \
  "$(jq -r '[.value[]|"\(.LogicalName):\(.OwnershipType)"]|sort|join(" ")' "$T/defs")"
check_eq "activities: IsActivity, TableType Activity, key activityid" "appointment email phonecall task" \
  "$(jq -r '[.value[]|select(.IsActivity and .TableType=="Activity" and .PrimaryIdAttribute=="activityid")|.LogicalName]|sort|join(" ")' "$T/defs")"
check_eq "custom tables" "new_project new_project_contact" "$(jq -r '[.value[]|select(.IsCustomEntity)|.LogicalName]|sort|join(" ")' "$T/defs")"
check_eq "activitypointer: no attribute valid for create or update" false \
  "$(jq '[.value[]|select(.LogicalName=="activitypointer")|.Attributes[]|(.IsValidForCreate or .IsValidForUpdate)]|any' "$T/defs")"
check_eq "statecode is valid for update only; statuscode options name their state" "false true 5:1" \
  "$(jq -r '.value[]|select(.LogicalName=="incident")|.Attributes as $a|[($a[]|select(.LogicalName=="statecode")|.IsValidForCreate,.IsValidForUpdate), ($a[]|select(.LogicalName=="statuscode")|.OptionSet.Options[]|select(.Value==5)|"\(.Value):\(.State)")]|join(" ")' "$T/defs")"
check_eq "Targets of ownerid, customerid and regardingobjectid" "systemuser,team account,contact account,contact,opportunity,incident" \
  "$(jq -r '[(.value[]|select(.LogicalName=="account")|.Attributes[]|select(.LogicalName=="ownerid")|.Targets|join(",")),
             (.value[]|select(.LogicalName=="incident")|.Attributes[]|select(.LogicalName=="customerid")|.Targets|join(",")),
             (.value[]|select(.LogicalName=="task")|.Attributes[]|select(.LogicalName=="regardingobjectid")|.Targets|join(","))]|join(" ")' "$T/defs")"
check_eq "contact.entityimage: the primary image (Virtual, ImageType)" "contact entityimage Virtual ImageType true" \
  "$(jq -r '.value[]|select(.PrimaryImageAttribute)|.LogicalName as $t|.Attributes[]|select(.LogicalName=="entityimage")|"\($t) \(.LogicalName) \(.AttributeType) \(.AttributeTypeName.Value) \(.IsPrimaryImage)"' "$T/defs")"
check_eq "new_projects has change tracking off" false "$(jq '.value[]|select(.LogicalName=="new_project")|.ChangeTrackingEnabled' "$T/defs")"
check_eq "intersect table" "new_project_contactset true" "$(jq -r '.value[]|select(.IsIntersect)|"\(.EntitySetName) \(.IsIntersect)"' "$T/defs")"
check_eq "account.revenue is Money, valid for create" "Money true" \
  "$(jq -r '.value[]|select(.LogicalName=="account")|.Attributes[]|select(.LogicalName=="revenue")|"\(.AttributeType) \(.IsValidForCreate)"' "$T/defs")"
check_eq "audits are read-only" false "$(jq '[.value[]|select(.LogicalName=="audit")|.Attributes[]|.IsValidForCreate]|any' "$T/defs")"
m2o=$(curl -s -H "Authorization: Bearer $ORG" "$API/EntityDefinitions(LogicalName='contact')/ManyToOneRelationships")
check_eq "contact.parentcustomerid -> account or contact through their navigation properties" "account parentcustomerid_account|contact parentcustomerid_contact" \
  "$(jq -r '[.value[]|select(.ReferencingAttribute=="parentcustomerid")|"\(.ReferencedEntity) \(.ReferencingEntityNavigationPropertyName)"]|sort|join("|")' <<<"$m2o")"
check_eq "contact.ownerid: one relationship to owner (no entity set), as the service lists it" "owner_contacts owner ownerid" \
  "$(jq -r '.value[]|select(.ReferencingAttribute=="ownerid")|"\(.SchemaName) \(.ReferencedEntity) \(.ReferencingEntityNavigationPropertyName)"' <<<"$m2o")"
check_eq "email_activity_parties among email's one-to-many relationships" "activityparty activityid email_activity_parties" \
  "$(curl -s -H "Authorization: Bearer $ORG" "$API/EntityDefinitions(LogicalName='email')/OneToManyRelationships" | jq -r '.value[]|select(.ReferencingEntity=="activityparty")|"\(.ReferencingEntity) \(.ReferencingAttribute) \(.ReferencedEntityNavigationPropertyName)"')"
check_eq "N:N new_project_contact" "new_project_contact contact" \
  "$(curl -s -H "Authorization: Bearer $ORG" "$API/EntityDefinitions(LogicalName='new_project')/ManyToManyRelationships" | jq -r '.value[0]|"\(.IntersectEntityName) \(.Entity2LogicalName)"')"

# ---- paging ----
sim_dump contoso-prod account >"$T/dump_accounts"
out=$(python3 "$PAGE" --token "$ORG" --prefer 'odata.maxpagesize=300,odata.include-annotations="*"' --out "$T/a1" "$API/accounts")
check_eq "1000 accounts in 4 pages" "4 1000" "$(jq -r '"\(.pages) \(.records)"' <<<"$out")"
check_eq "each account exactly once" 1000 "$(cut -c1-52 "$T/a1" | sort -u | wc -l)"
table_file "$T/a1" >"$T/a1.table"
check "paged bytes equal /_sim/dump" cmp "$T/a1.table" "$T/dump_accounts"
python3 "$PAGE" --token "$ORG" --prefer 'odata.maxpagesize=300,odata.include-annotations="*"' --out "$T/a2" "$API/accounts" >/dev/null
check "same bytes the second time" cmp "$T/a1" "$T/a2"
curl -s -H "Authorization: Bearer $ORG" -H 'Prefer: odata.maxpagesize=7' "$API/accounts?\$select=name,revenue" >"$T/p"
check_eq "maxpagesize=7 gives 7 rows and a nextLink" "7 true" "$(jq -r '"\(.value|length) \(has("@odata.nextLink"))"' "$T/p")"
check_eq "\$select keeps key, etag and the columns" '@odata.etag accountid name revenue' "$(jq -r '[.value[0]|keys[]]|sort|join(" ")' "$T/p")"
check "no annotations unless asked" sh -c "! grep -q 'FormattedValue' '$T/p'"
check "Preference-Applied echoes maxpagesize" sh -c "curl -s -D - -o /dev/null -H 'Authorization: Bearer $ORG' -H 'Prefer: odata.maxpagesize=7' '$API/accounts' | grep -qi '^Preference-Applied: odata.maxpagesize=7'"
check "maxpagesize above 5000 is applied as 5000" sh -c "curl -s -D - -o /dev/null -H 'Authorization: Bearer $ORG' -H 'Prefer: odata.maxpagesize=9000' '$API/contacts' | grep -qi '^Preference-Applied: odata.maxpagesize=5000'"

# ---- $filter, $orderby, $top ----
want=$(jq -r '[.[]|select(.customertypecode==3 and .statecode==0)|.accountid]|sort|join(" ")' "$T/dump_accounts")
got=$(python3 "$PAGE" --token "$ORG" --prefer 'odata.maxpagesize=50' --out "$T/f" "$API/accounts?\$filter=customertypecode%20eq%203%20and%20statecode%20eq%200&\$select=name" >/dev/null; jq -r .accountid "$T/f" | sort | tr '\n' ' ' | sed 's/ $//')
check_eq "\$filter eq/and across pages" "$want" "$got"
check "\$filter matched something" test -n "$want"
want=$(jq -r '[.[]|select(.industrycode==null or .address1_city=="Dublin")]|length' "$T/dump_accounts")
got=$(python3 "$PAGE" --token "$ORG" --out "$T/f2" "$API/accounts?\$filter=(industrycode%20eq%20null%20or%20address1_city%20eq%20'dublin')" | jq .records)
check_eq "\$filter or/null/case-insensitive string" "$want" "$got"
want=$(jq -r '[.[]|select(.numberofemployees>200000)]|sort_by(-.numberofemployees)|.[0:5]|map(.accountid)|join(" ")' "$T/dump_accounts")
got=$(curl -s -H "Authorization: Bearer $ORG" "$API/accounts?\$filter=numberofemployees%20gt%20200000&\$orderby=numberofemployees%20desc&\$top=5&\$select=numberofemployees" | jq -r '[.value[].accountid]|join(" ")')
check_eq "\$filter gt + \$orderby desc + \$top" "$want" "$got"

# ---- change tracking ----
sim_dump contoso-prod contact >"$T/c_before"
out=$(python3 "$PAGE" --token "$ORG" --prefer 'odata.track-changes,odata.maxpagesize=700,odata.include-annotations="*"' --out "$T/c0" "$API/contacts")
delta=$(jq -r .deltaLink <<<"$out")
check_eq "initial tracked read: all 2000 contacts and a deltaLink" "2000 true" "$(jq -r '"\(.records) \(.deltaLink != null)"' <<<"$out")"
check "tracked read equals dump" cmp <(table_file "$T/c0") "$T/c_before"
empty=$(python3 "$PAGE" --token "$ORG" --out /dev/null "$delta")
check_eq "delta with no changes is empty" "0 0" "$(jq -r '"\(.records) \(.deleted)"' <<<"$empty")"
churn=$(sim_churn contoso-prod 0.05 7)
check_eq "churn touched contacts" true "$(jq '.updated > 0 and .deleted > 0 and .created > 0' <<<"$churn")"
sim_dump contoso-prod contact >"$T/c_after"
out=$(python3 "$PAGE" --token "$ORG" --prefer 'odata.maxpagesize=40,odata.include-annotations="*"' --out "$T/d1" --deleted "$T/d1.del" "$delta")
raw_lines() { sed '1d;$d;s/,$//' "$1" | LC_ALL=C sort; }
raw_lines "$T/c_before" >"$T/b.lines"
raw_lines "$T/c_after" >"$T/a.lines"
LC_ALL=C comm -13 "$T/b.lines" "$T/a.lines" | jq -r .contactid | LC_ALL=C sort >"$T/want_up"
comm -23 <(jq -r '.[].contactid' "$T/c_before" | LC_ALL=C sort) <(jq -r '.[].contactid' "$T/c_after" | LC_ALL=C sort) >"$T/want_del"
check "delta upserts = exactly the new and changed contacts" cmp "$T/want_up" <(jq -r .contactid "$T/d1" | LC_ALL=C sort)
check "delta deletes = exactly the deleted contacts" cmp "$T/want_del" <(LC_ALL=C sort "$T/d1.del")
check "delta found changes" test -s "$T/want_up" -a -s "$T/want_del"
check "delta records carry the current bytes" sh -c "LC_ALL=C sort '$T/d1' | LC_ALL=C comm -23 - '$T/a.lines' | grep -c . | grep -qx 0"
check_eq "delta paged (maxpagesize 40)" true "$(jq '.pages > 1' <<<"$out")"
delta2=$(jq -r .deltaLink <<<"$out")
check_eq "next delta is empty" "0 0" "$(python3 "$PAGE" --token "$ORG" --out /dev/null "$delta2" | jq -r '"\(.records) \(.deleted)"')"
for q in '$filter=statecode%20eq%200' '$top=5' '$orderby=fullname' ; do
  st=$(status -H "Authorization: Bearer $ORG" -H 'Prefer: odata.track-changes' "$API/contacts?$q")
  check_eq "tracking rejects ${q%%=*}" "400 isn't supported when Change Tracking is enabled" \
    "$st $(jq -r .error.message "$T/body" | grep -o "isn't supported when Change Tracking is enabled")"
done
check_eq "untracked table gives no deltaLink" false \
  "$(curl -s -H "Authorization: Bearer $ORG" -H 'Prefer: odata.track-changes' "$API/new_projects" | jq 'has("@odata.deltaLink")')"
curl -s -X POST "$DVSIM_URL/_sim/faults" -d '{"delta_token_lifetime_s":0}' >/dev/null
expired() { [ "$(status -H "Authorization: Bearer $ORG" "$delta2")" = 400 ] && grep -q 'Version stamp associated with the client has expired. Please perform a full sync.' "$T/body"; }
check "expired delta token -> 400 with the real message" wait_for 5 expired
check_eq "expired error code" 0x80044352 "$(jq -r .error.code "$T/body")"
curl -s -X POST "$DVSIM_URL/_sim/faults" -d '{"delta_token_lifetime_s":604800}' >/dev/null

# ---- bad input ----
check_eq "unknown entity set -> 404" 404 "$(status -H "Authorization: Bearer $ORG" "$API/nosuchthings")"
check_eq "bad \$filter -> 400" "400 0x80060888" "$(status -H "Authorization: Bearer $ORG" "$API/accounts?\$filter=name%20eq" ) $(jq -r .error.code "$T/body")"
check_eq "unknown column in \$filter -> 400" 400 "$(status -H "Authorization: Bearer $ORG" "$API/accounts?\$filter=nope%20eq%201")"
check_eq "\$skip -> 400" 400 "$(status -H "Authorization: Bearer $ORG" "$API/accounts?\$skip=5")"
check_eq "bad \$skiptoken -> 400" 400 "$(status -H "Authorization: Bearer $ORG" "$API/accounts?\$skiptoken=garbage")"
check_eq "bad \$select -> 400" 400 "$(status -H "Authorization: Bearer $ORG" "$API/accounts?\$select=nope")"
check_eq "missing record -> 404 0x80040217" "404 0x80040217" \
  "$(status -H "Authorization: Bearer $ORG" "$API/accounts(00000000-0000-0000-0000-000000000001)") $(jq -r .error.code "$T/body")"
first=$(head -n1 "$T/a1" | jq -r .accountid)
check_eq "GET by key" "$first" "$(curl -s -H "Authorization: Bearer $ORG" "$API/accounts($first)?\$select=name" | jq -r .accountid)"
check "dvsim still alive" kill -0 "$DVSIM_PID"

# ---- request log ----
curl -s "$DVSIM_URL/_sim/requests" >"$T/log"
check "request log lists requests with status and token fingerprint" \
  jq -e '(.requests|map(select(.status==401))|length) > 3 and (.requests|map(select(.token|length==16))|length) > 10' "$T/log"
check "request log never holds a token" sh -c "! grep -qF '${ORG:0:40}' '$T/log'"
since=$(jq .last "$T/log")
curl -s -H "Authorization: Bearer $ORG" "$API/accounts?\$top=1" >/dev/null
check_eq "?since= gives only newer requests: exactly that one" "1 $((since + 1)) GET /org/contoso-prod/api/data/v9.2/accounts" \
  "$(curl -s "$DVSIM_URL/_sim/requests?since=$since" | jq -r '"\(.requests|length) \(.requests[0].seq) \(.requests[0].method) \(.requests[0].path)"')"

# ---- --public-url: every generated URL uses the front's base (e.g. a TLS proxy) ----
start_dvsim --seed demo --public-url https://front.example:8443/
tokp() { curl -s -X POST "$DVSIM_URL/contoso/oauth2/v2.0/token" --data-urlencode client_id=dvsnap-test \
  --data-urlencode "client_secret@$T/secret" -d grant_type=client_credentials --data-urlencode "scope=https://front.example:8443$1/.default" | jq -r .access_token; }
check_eq "instanceApiUrl uses --public-url" https://front.example:8443/org/contoso-prod \
  "$(curl -s -H "Authorization: Bearer $(tokp "")" "$DVSIM_URL/providers/Microsoft.BusinessAppPlatform/scopes/admin/environments" | jq -r '.value[]|select(.name|startswith("8a1d"))|.properties.linkedEnvironmentMetadata.instanceApiUrl')"
check "nextLink uses --public-url" sh -c "curl -s -H 'Authorization: Bearer $(tokp /org/contoso-prod)' -H 'Prefer: odata.maxpagesize=1' '$DVSIM_URL/org/contoso-prod/api/data/v9.2/accounts' | jq -r '.\"@odata.nextLink\"' | grep -q '^https://front.example:8443/org/contoso-prod/api/data/v9.2/accounts?'"
finish
