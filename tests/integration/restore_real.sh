#!/usr/bin/env bash
# A restore that a real tenant accepts (issue 14), against dvsim's strict write rules:
#  1. prod -> dev (other users, teams, business units and currency ids): the dry run lists the
#     mapping decisions, the unmapped principals and the excluded tables and writes nothing; the
#     restore leaves every data table equal to the point under the mapping (owners are dev's own
#     users and teams of the same people, currencies by ISO code), inactive rows inactive with
#     their status, closed cases and won/lost opportunities closed, createdon kept, emails with
#     the same parties, images full-size; no plug-in side effect; no write to a principal or
#     configuration table; a rerun writes nothing;
#  2. the users with no match in dev: their rows get the fallback owner (the application user),
#     counted and named; a map file entry fixes one on the next run;
#  3. without the bypass privilege: refused before any write, naming it; with
#     --allow-business-logic it runs, and the outcome and the plug-in's rows say business logic
#     ran;
#  4. dev onto itself (a sandbox restored from its own point): equal again, a rerun writes nothing.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/restore_common.bash"
start_dvsim --seed demo
write_config
dvsnap init >/dev/null 2>&1
check "capture contoso-prod and contoso-dev" dvsnap capture --env contoso-prod --env contoso-dev
entity_defs contoso-dev "$T/defs.json"
principal_map contoso-prod latest contoso-dev "$T/map.json"
app_dev=$(caller_id contoso-dev)
note "principals: $(jq -c '{mapped: (.map | length), unmapped: .unmapped}' "$T/map.json"), application user in dev $app_dev"
effects() { curl -sf "$DVSIM_URL/_sim/effects?env=$1" | jq -r '"\(.plugin_runs) \(.flow_runs)"'; }
# principal_writes SEQ: write requests since SEQ, the parts of each $batch included (dvsim's
# request log lists them with parts=1), to principal, configuration or read-only tables
principal_writes() {
  curl -sf "$DVSIM_URL/_sim/requests?since=$1&parts=1" |
    jq -r '.requests[] | select(.method == "POST" or .method == "PATCH" or .method == "PUT" or .method == "DELETE")
           | "\(.method) \(.path) \(.status)"' |
    grep -Ei '/(systemusers|teams|businessunits|transactioncurrencies|activitypointers|activityparties)([(/ ?]|$)' || true
}
data_tables="account contact opportunity incident annotation new_project email task phonecall appointment"

# ---- 1. dry run
seq=$(last_seq)
if dvsnap restore --json contoso-prod latest --target contoso-dev --dry-run >"$T/dry.json" 2>"$T/dry.err"; then
  ok "dry run"
else not_ok "dry run: $(tail -3 "$T/dry.err")"; fi
check_eq "dry run: no write request" "" "$(writes_since "$seq")"
check "dry run: users matched by Entra object id" jq -e '.mapping.systemuser.by.entra_object_id > 0' "$T/dry.json"
check "dry run: the user with another Entra id matched by domain name" jq -e '.mapping.systemuser.by.domainname >= 1' "$T/dry.json"
check "dry run: business units root to root and by name" jq -e '.mapping.businessunit.by.root_business_unit == 1 and .mapping.businessunit.by.name >= 2' "$T/dry.json"
check "dry run: currencies by ISO code" jq -e '.mapping.transactioncurrency.by.iso_code == 3' "$T/dry.json"
check "dry run: teams by name and default team" jq -e '.mapping.team.by.name >= 2 and .mapping.team.by.default_team >= 1' "$T/dry.json"
check "dry run: each decision names its rule" jq -e '[.mapping.systemuser.decisions[] | .rule] | length > 0 and all(. != null)' "$T/dry.json"
check_eq "dry run: the unmapped users are the ones restore_principals.py finds" \
  "$(jq -r '.unmapped | join(" ")' "$T/map.json")" \
  "$(jq -r '[.unmapped_principals[] | .id] | sort | join(" ")' "$T/dry.json")"
check "dry run: unmapped principals are named" jq -e '.unmapped_principals | length >= 2 and all(.name != null)' "$T/dry.json"
for t in systemuser team businessunit transactioncurrency activitypointer activityparty; do
  check "dry run: $t excluded with a reason" jq -e --arg t "$t" '.excluded_tables | any(.table == $t and (.reason | length) > 10)' "$T/dry.json"
done
check "dry run: the fallback owner is the application user" jq -e --arg u "$app_dev" '.fallback_owner == "systemuser:\($u)"' "$T/dry.json"

# ---- 1. the restore
effects0=$(effects contoso-dev)
seq=$(last_seq)
if dvsnap restore --json contoso-prod latest --target contoso-dev --yes --wait >"$T/out.json" 2>"$T/err"; then
  ok "restore contoso-prod/latest into contoso-dev"
else
  not_ok "restore failed: $(tail -3 "$T/err")"; head -c 3000 "$T/out.json"; finish
fi
note "outcome: $(jq -c '{state,created,updated,deleted,failed,states_set,lookups_dropped,fallback_owner_rows,parties_unmapped,batches,business_logic}' "$T/out.json")"
check_eq "state done, nothing failed, business logic bypassed" "done 0 bypassed" \
  "$(jq -r '"\(.state) \(.failed) \(.business_logic)"' "$T/out.json")"
restored=$(jq -r '.tables[] | select(.note == null) | .table' "$T/out.json")
for t in $data_tables; do
  check "$t was restored" grep -qx "$t" <<<"$restored"
done
for t in $restored; do
  check "contoso-dev $t equals the point under the mapping" same_table contoso-prod latest "$t" contoso-dev "$T/defs.json" "$T/map.json"
done
# state, explicitly: counts of (statecode, statuscode) per table
for t in account contact opportunity incident email task phonecall appointment; do
  want=$(dvsnap cat contoso-prod latest "$t" | jq -c '[.[] | "\(.statecode)/\(.statuscode)"] | group_by(.) | map({(.[0]): length}) | add')
  got=$(sim_dump contoso-dev "$t" | jq -c '[.[] | "\(.statecode)/\(.statuscode)"] | group_by(.) | map({(.[0]): length}) | add')
  check_eq "$t: the same states and statuses ($want)" "$want" "$got"
done
check "some accounts are inactive, some cases resolved, some opportunities won and lost" bash -c "
  dvsnap_cat() { '$DVSNAP' --config '$T/config' cat contoso-prod latest \"\$1\"; }
  [ \$(dvsnap_cat account | jq '[.[] | select(.statecode == 1)] | length') -gt 0 ] &&
  [ \$(dvsnap_cat incident | jq '[.[] | select(.statecode == 1)] | length') -gt 0 ] &&
  [ \$(dvsnap_cat opportunity | jq '[.[] | select(.statecode == 1)] | length') -gt 0 ] &&
  [ \$(dvsnap_cat opportunity | jq '[.[] | select(.statecode == 2)] | length') -gt 0 ]"
check "cases closed through CloseIncident, opportunities through Win/LoseOpportunity" bash -c "
  curl -sf '$DVSIM_URL/_sim/requests?since=$seq&parts=1' | jq -e '[.requests[].path] | (any(test(\"CloseIncident\")) and any(test(\"WinOpportunity\")) and any(test(\"LoseOpportunity\")))' >/dev/null"
# createdon kept
for t in $data_tables; do
  pk=$(jq -r --arg t "$t" '.value[] | select(.LogicalName == $t) | .PrimaryIdAttribute' "$T/defs.json")
  check_eq "$t: createdon equal" \
    "$(dvsnap cat contoso-prod latest "$t" | jq -r --arg pk "$pk" '.[] | "\(.[$pk]) \(.createdon)"' | sort | md5sum)" \
    "$(sim_dump contoso-dev "$t" | jq -r --arg pk "$pk" '.[] | "\(.[$pk]) \(.createdon)"' | sort | md5sum)"
done
# parties: (activity, mask, mapped party id or the address used), masks 8 and 9 aside
parties() { # FILE MAPPING|"": one line per party
  jq -r --slurpfile m "${2:-/dev/null}" '
    ($m[0] // {map: {}, unmapped: []}) as $mp
    | .[] | select(.participationtypemask != 8 and .participationtypemask != 9)
    | (._partyid_value // "" | ascii_downcase) as $p
    | (if $p == "" then "addr:\(.addressused)"
       elif ($mp.map[$p] // null) != null then $mp.map[$p]
       elif ($mp.unmapped | index($p)) != null then "addr:\(.addressused)"
       else $p end) as $who
    | select($who != "addr:null")  # a party without a match and without an address is left out
    | "\(._activityid_value | ascii_downcase) \(.participationtypemask) \($who)"' "$1" | sort
}
dvsnap cat contoso-prod latest activityparty >"$T/pt.parties.json"
sim_dump contoso-dev activityparty >"$T/dst.parties.json"
check "the point has email parties" test "$(jq length "$T/pt.parties.json")" -gt 0
check_eq "activities have the same parties (users mapped)" \
  "$(parties "$T/pt.parties.json" "$T/map.json" | md5sum)" "$(parties "$T/dst.parties.json" | md5sum)"
# images: full size in contoso-dev equals contoso-prod's at the point
ptok=$(org_token contoso-prod); dtok=$(org_token contoso-dev); bad=0; n_img=0
for id in $(dvsnap cat contoso-prod latest contact | jq -r '.[] | select(.entityimage != null) | .contactid'); do
  n_img=$((n_img + 1))
  a=$(curl -sf -H "Authorization: Bearer $ptok" "$DVSIM_URL/org/contoso-prod/api/data/v9.2/contacts($id)/entityimage/\$value?size=full" | sha256sum)
  b=$(curl -sf -H "Authorization: Bearer $dtok" "$DVSIM_URL/org/contoso-dev/api/data/v9.2/contacts($id)/entityimage/\$value?size=full" | sha256sum)
  [ "$a" = "$b" ] || bad=$((bad + 1))
done
check "contacts with images: $n_img" test "$n_img" -gt 0
check_eq "full-size images equal the point's" 0 "$bad"
check_eq "no plug-in ran, no flow ran" "$effects0" "$(effects contoso-dev)"
check_eq "no write request to a principal, configuration or read-only table" "" "$(principal_writes "$seq")"
check "every write request and every \$batch part carried the bypass" bash -c "
  curl -sf '$DVSIM_URL/_sim/requests?since=$seq&parts=1' | jq -e '[.requests[] | select((.method == \"PATCH\" or .method == \"POST\" or .method == \"DELETE\") and (.path | test(\"/org/contoso-dev/api/\")))] | length > 0 and all((.bypass_business_logic // \"\" | test(\"CustomSync\")) and .suppress_flows)' >/dev/null"

# ---- 2. unmapped users: the fallback owner, counted and named
check "rows of unmapped users were given the fallback owner" jq -e '.fallback_owner_rows > 0' "$T/out.json"
check "each unmapped user is named with its rows" jq -e '[.unmapped_principals[] | select(.table == "systemuser" and .rows_given_fallback_owner > 0)] | length >= 1' "$T/out.json"
leaver=$(jq -r '[.unmapped_principals[] | select(.table == "systemuser" and .rows_given_fallback_owner > 0)][0].id' "$T/out.json")
rows=$(jq -r --arg l "$leaver" '.unmapped_principals[] | select(.id == $l) | .rows_given_fallback_owner' "$T/out.json")
note "leaver $leaver: $rows rows given the fallback owner"
owned=0
for t in $restored; do
  n=$(sim_dump contoso-dev "$t" | jq --arg u "$app_dev" '[.[] | select((._ownerid_value // "" | ascii_downcase) == ($u | ascii_downcase))] | length')
  owned=$((owned + n))
done
check "the application user owns at least those $rows rows in contoso-dev ($owned)" test "$owned" -ge "$rows"
# a map file entry fixes it: the leaver's rows go to a dev-only user
dev_user=$(sim_dump contoso-dev systemuser | jq -r --slurpfile m "$T/map.json" \
  '[.[] | .systemuserid | ascii_downcase | select(. as $id | ($m[0].map | to_entries | map(.value) | index($id)) == null)] | map(select(. != "'"$app_dev"'")) | .[0]')
printf '# the leaver goes to a user of contoso-dev\nsystemuser %s %s\n' "$leaver" "$dev_user" >"$T/map.txt"
principal_map contoso-prod latest contoso-dev "$T/map2.json" "$T/map.txt"
if dvsnap restore --json contoso-prod latest --target contoso-dev --yes --map "$T/map.txt" >"$T/out2.json" 2>"$T/err2"; then
  ok "restore with a map file"
else not_ok "restore with a map file: $(tail -3 "$T/err2")"; fi
check_eq "the map file's pair decided the leaver" "map_file $dev_user" \
  "$(jq -r --arg l "$leaver" '.mapping.systemuser.decisions[] | select(.source == $l) | "\(.rule) \(.target)"' "$T/out2.json")"
check "the leaver is no longer unmapped" jq -e --arg l "$leaver" '[.unmapped_principals[] | select(.id == $l)] | length == 0' "$T/out2.json"
# the records that name the leaver: the rows it owns and the activities it is a party of
touched=$( {
  for t in $restored; do
    pk=$(jq -r --arg t "$t" '.value[] | select(.LogicalName == $t) | .PrimaryIdAttribute' "$T/defs.json")
    dvsnap cat contoso-prod latest "$t" | jq -r --arg pk "$pk" --arg l "$leaver" \
      '.[] | select((._ownerid_value // "" | ascii_downcase) == $l) | .[$pk]'
  done
  jq -r --arg l "$leaver" '.[] | select((._partyid_value // "" | ascii_downcase) == $l and
      .participationtypemask != 8 and .participationtypemask != 9) | ._activityid_value' "$T/pt.parties.json"
} | sort -u | wc -l)
check_eq "only the records that name the leaver were written ($touched)" "$touched 0 0" \
  "$(jq -r '"\(.updated) \(.created) \(.deleted)"' "$T/out2.json")"
for t in $restored; do
  check "after the map file: contoso-dev $t equals the point" same_table contoso-prod latest "$t" contoso-dev "$T/defs.json" "$T/map2.json"
done

# ---- 1. a rerun writes nothing
seq=$(last_seq)
dvsnap restore --json contoso-prod latest --target contoso-dev --yes --map "$T/map.txt" >"$T/out3.json" 2>"$T/err3"
check_eq "rerun: nothing created, updated, deleted or failed" "0 0 0 0 0" \
  "$(jq -r '"\(.created) \(.updated) \(.deleted) \(.failed) \(.states_set)"' "$T/out3.json")"
check_eq "rerun: no write request but administration mode" "" "$(writes_since "$seq" | grep -v providers/Microsoft.BusinessAppPlatform)"

# ---- 3. without the bypass privilege
check "churn contoso-dev by 5%" sim_churn contoso-dev 0.05 9
curl -sf -X POST "$DVSIM_URL/_sim/config" -d '{"bypass_privilege":false}' >/dev/null
seq=$(last_seq)
dvsnap restore --json contoso-prod latest --target contoso-dev --yes --map "$T/map.txt" </dev/null >"$T/nopriv.json" 2>"$T/nopriv.err"; rc=$?
check_eq "refused without the privilege (exit 3)" 3 "$rc"
check "the refusal names prvBypassCustomBusinessLogic" grep -q prvBypassCustomBusinessLogic "$T/nopriv.err"
check_eq "refused before any write" "" "$(writes_since "$seq")"
effects0=$(effects contoso-dev)
if dvsnap restore --json contoso-prod latest --target contoso-dev --yes --map "$T/map.txt" --allow-business-logic \
     >"$T/logic.json" 2>"$T/logic.err"; then ok "restore with --allow-business-logic"
else not_ok "restore with --allow-business-logic: $(tail -3 "$T/logic.err")"; fi
check_eq "the outcome says business logic ran" "done ran" "$(jq -r '"\(.state) \(.business_logic)"' "$T/logic.json")"
check "the simulated plug-in ran" test "$(effects contoso-dev | cut -d' ' -f1)" -gt "$(cut -d' ' -f1 <<<"$effects0")"
curl -sf -X POST "$DVSIM_URL/_sim/config" -d '{"bypass_privilege":true}' >/dev/null

# ---- 4. dev onto itself
check "capture contoso-dev" dvsnap capture --env contoso-dev
point=$(dvsnap points contoso-dev | grep -oE '[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{6}Z' | tail -1)
check "churn contoso-dev by 5%" sim_churn contoso-dev 0.05 13
if dvsnap restore --json contoso-dev "$point" --target contoso-dev --yes >"$T/self.json" 2>"$T/self.err"; then
  ok "restore contoso-dev onto itself"
else not_ok "self restore: $(tail -3 "$T/self.err")"; fi
check_eq "self: done, nothing failed, nobody given the fallback owner" "done 0 0" \
  "$(jq -r '"\(.state) \(.failed) \(.fallback_owner_rows)"' "$T/self.json")"
check "self: every principal matched by its own id" jq -e '[.mapping[] | .unmapped] | add == 0' "$T/self.json"
entity_defs contoso-dev "$T/defs.json"
for t in $(jq -r '.tables[] | select(.note == null) | .table' "$T/self.json"); do
  check "self: contoso-dev $t equals the point" same_table contoso-dev "$point" "$t" contoso-dev "$T/defs.json"
done
seq=$(last_seq)
dvsnap restore --json contoso-dev "$point" --target contoso-dev --yes >"$T/self2.json" 2>/dev/null
check_eq "self rerun: nothing written" "0 0 0 0" "$(jq -r '"\(.created) \(.updated) \(.deleted) \(.failed)"' "$T/self2.json")"
check_eq "self rerun: no write request but administration mode" "" "$(writes_since "$seq" | grep -v providers/Microsoft.BusinessAppPlatform)"
finish
