#!/usr/bin/env bash
# capture_prune (issue 3): retention and prune. Points are taken at pinned times (DVSNAP_NOW, the
# test clock) 10 days ago, 3 days ago and now; prune removes exactly the points past their
# environment's retention (7 days, 28 for production with Dynamics 365 apps), then the objects no
# point needs; switching contoso-prod to sandbox through the admin API shortens its retention at
# once; what remains reads back unchanged and `check --read-data` passes.
. "$(dirname "$0")/../lib.sh"
start_dvsim --seed demo
write_config
dvsnap init >/dev/null
D10=$(date -u -d '-10 days' +%Y-%m-%dT%H:%M:%SZ)
D3=$(date -u -d '-3 days' +%Y-%m-%dT%H:%M:%SZ)

check "capture 10 days ago" env DVSNAP_NOW="$D10" "$DVSNAP" --config "$T/config" capture
sim_churn contoso-prod 0.02 1 >/dev/null; sim_churn contoso-dev 0.02 2 >/dev/null
check "capture 3 days ago" env DVSNAP_NOW="$D3" "$DVSNAP" --config "$T/config" capture
sim_churn contoso-prod 0.02 3 >/dev/null; sim_churn contoso-dev 0.02 4 >/dev/null
check "capture now" dvsnap capture
check "manual backup now" dvsnap backup contoso-dev --label keep

first() { dvsnap points "$1" | awk 'NR==2 {print $1}'; }
check_eq "contoso-prod keeps points 28 days" "$(date -u -d "$D10 + 28 days" +%Y-%m-%dT%H:%M:%SZ)" \
  "$(dvsnap points contoso-prod | awk 'NR==2 {print $4}')"
check_eq "contoso-dev keeps points 7 days" "$(date -u -d "$D10 + 7 days" +%Y-%m-%dT%H:%M:%SZ)" \
  "$(dvsnap points contoso-dev | awk 'NR==2 {print $4}')"

# what every point reads back as before pruning (hash of every table)
digest() {
  local env p t
  for env in contoso-prod contoso-dev fabrikam-prod; do
    for p in $(dvsnap points "$env" | awk 'NR>1 {print $1}'); do
      for t in $(dvsnap points "$env" "$p" | jq -r '.tables[].name'); do
        echo "$env $p $t $(dvsnap cat "$env" "$p" "$t" | sha256sum | cut -c1-16)"
      done
    done
  done
}
digest >"$T/before.txt"

expected=$(for e in contoso-dev contoso-test contoso-default fabrikam-prod; do echo "$e/$(first $e)"; done | sort)
got=$(dvsnap prune --dry-run | sed -n 's/^would remove \([^ ]*\/[^ :]*\): .*/\1/p' | sort)
check_eq "prune --dry-run names exactly the expired points" "$expected" "$got"
check_eq "--dry-run removed nothing" 3 "$(dvsnap points contoso-dev | awk 'NR>1 && $2=="system"' | wc -l)"

# convert contoso-prod to a sandbox (as the admin center does): its retention drops to 7 days
tok=$(token)
id=$(curl -sf -H "Authorization: Bearer $tok" "$DVSIM_URL/providers/Microsoft.BusinessAppPlatform/scopes/admin/environments?api-version=2021-04-01" \
  | jq -r '.value[] | select(.properties.linkedEnvironmentMetadata.uniqueName == "contoso-prod") | .name')
check "switch contoso-prod to sandbox" curl -sf -X PATCH -H "Authorization: Bearer $tok" -H 'Content-Type: application/json' \
  -d '{"properties":{"environmentSku":"Sandbox"}}' \
  "$DVSIM_URL/providers/Microsoft.BusinessAppPlatform/scopes/admin/environments/$id?api-version=2021-04-01"
expected=$(printf '%s\n%s\n' "$expected" "contoso-prod/$(first contoso-prod)" | sort)
got=$(dvsnap prune --dry-run | sed -n 's/^would remove \([^ ]*\/[^ :]*\): .*/\1/p' | sort)
check_eq "after the switch, prune also names contoso-prod's 10-day-old point" "$expected" "$got"

# a forgotten manual backup that no other point builds on leaves objects nobody needs
sim_churn contoso-dev 0.05 5 >/dev/null
check "manual backup after more churn" dvsnap backup contoso-dev --label scratch
check "forget it" dvsnap forget contoso-dev scratch
dvsnap prune >"$T/prune.out" 2>&1; rc=$?
check_eq "prune succeeds" 0 "$rc"
got=$(sed -n 's/^removed \([^ ]*\/[^ :]*\): .*/\1/p' "$T/prune.out" | sort)
check_eq "prune removed exactly the expired points" "$expected" "$got"
objs=$(sed -n 's/^removed [0-9]* points, \([0-9]*\) objects.*/\1/p' "$T/prune.out")
check "prune removed the objects of the forgotten backup ($objs)" test "${objs:-0}" -ge 1
check "the repository checks clean after prune" dvsnap check --read-data
digest >"$T/after.txt"
check_eq "the pruned points are gone and every other point reads back unchanged" "" \
  "$(grep -v -F -f <(printf '%s\n' $expected | sed 's#/# #; s/$/ /') "$T/before.txt" | diff - "$T/after.txt")"
check_eq "contoso-dev keeps 2 system points and the manual one" "system system manual" \
  "$(dvsnap points contoso-dev | awk 'NR>1 {printf "%s%s", s, $2; s=" "}')"
check_eq "nothing left to prune" "removed 0 points, 0 objects, 0 bytes" "$(dvsnap prune | tail -1)"

# the capture after a forgotten latest point is still right
check "capture after forget" dvsnap capture --env contoso-dev
sim_dump contoso-dev account >"$T/dump.json"
dvsnap cat contoso-dev latest account >"$T/cat.json"
check "it equals the simulator" cmp "$T/cat.json" "$T/dump.json"
finish
