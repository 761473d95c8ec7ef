#!/usr/bin/env bash
# Restore of some tables whose lookups point at records the target lacks (issue 5): contacts of
# contoso-prod restored alone into contoso-dev, which holds none of prod's accounts or users. Each
# contact is written without the lookups the target cannot resolve (never failed, never dropped
# silently): the outcome counts them per table with the first one named, every other field equals
# the point, and a rerun writes nothing.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/restore_common.bash"
start_dvsim --seed demo
write_config
dvsnap init >/dev/null 2>&1
check "capture contoso-prod" dvsnap capture --env contoso-prod
entity_defs contoso-dev "$T/defs.json"

sim_dump contoso-prod account | jq -r '.[].accountid' | sort >"$T/prod.accounts"
sim_dump contoso-dev account | jq -r '.[].accountid' | sort >"$T/dev.accounts"
check_eq "contoso-dev holds none of prod's accounts (the premise)" 0 \
  "$(comm -12 "$T/prod.accounts" "$T/dev.accounts" | wc -l)"
dvsnap cat contoso-prod latest contact | jq -c ".[]" >"$T/point.contact"
n_contacts=$(wc -l <"$T/point.contact")
# a contact's parent customer is an account or another contact: the accounts are the ones
# contoso-dev lacks (the contacts are restored with them)
n_parent=$(jq -c 'select(._parentcustomerid_value != null and
  ."_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname" == "account")' "$T/point.contact" | wc -l)
note "point: $n_contacts contacts, $n_parent with a parent account"

if dvsnap restore --json contoso-prod latest --target contoso-dev --tables contact --yes --wait \
     >"$T/out.json" 2>"$T/err"; then
  ok "restore of contact alone succeeds"
else
  not_ok "restore failed: $(tail -3 "$T/err")"; head -c 2000 "$T/out.json"; finish
fi
note "outcome: $(jq -c '{state,created,updated,deleted,failed,lookups_dropped,batches,retried}' "$T/out.json")"
check_eq "state done, no record failed" "done 0" "$(jq -r '"\(.state) \(.failed)"' "$T/out.json")"
check_eq "every contact of the point was created" "$n_contacts" \
  "$(jq '.tables[] | select(.table == "contact") | .created' "$T/out.json")"
dropped=$(jq '.tables[] | select(.table == "contact") | .lookups_dropped // 0' "$T/out.json")
check "dropped lookups counted: $dropped >= $n_parent parent accounts" test "$dropped" -ge "$n_parent"
check "the first dropped lookup is named" \
  jq -e '.tables[] | select(.table == "contact") | .lookup_note | test("dropped: the target has no such record")' "$T/out.json"
check_eq "the total is in the outcome" "$dropped" "$(jq .lookups_dropped "$T/out.json")"

sim_dump contoso-dev contact >"$T/dev.contact.json"
check_eq "contoso-dev has exactly the point's contacts" \
  "$(jq -r .contactid "$T/point.contact" | sort | md5sum)" \
  "$(jq -r '.[].contactid' "$T/dev.contact.json" | sort | md5sum)"
check_eq "no restored contact has a parent account (none exists in contoso-dev)" 0 \
  "$(jq '[.[] | select(._parentcustomerid_value != null and
      ."_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname" == "account")] | length' "$T/dev.contact.json")"
# every field that is not a lookup equals the point's
fields='{contactid, firstname, lastname, emailaddress1, telephone1, annualincome, birthdate}'
check_eq "plain fields equal the point's" \
  "$(jq -c "$fields" "$T/point.contact" | sort | md5sum)" \
  "$(jq -c ".[] | $fields" "$T/dev.contact.json" | sort | md5sum)"

seq=$(last_seq)
dvsnap restore --json contoso-prod latest --target contoso-dev --tables contact --yes >"$T/out2.json" 2>/dev/null
check_eq "rerun: nothing created or failed" "0 0" "$(jq -r '"\(.created) \(.failed)"' "$T/out2.json")"
finish
