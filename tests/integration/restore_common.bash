# Shared helpers for tests/integration/restore_*.sh (sourced after tests/lib.sh; not a test).
NORM="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/restore_norm.py"
PRINCIPALS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/restore_principals.py"

# scope_token RESOURCE: a bearer token for RESOURCE (the secret goes through stdin, without its
# trailing newline, never through argv).
scope_token() {
  tr -d '\n' <"$T/secret" | curl -sf -X POST "$DVSIM_URL/contoso/oauth2/v2.0/token" \
    --data-urlencode "client_id=dvsnap-test" --data-urlencode "client_secret@-" \
    --data-urlencode "grant_type=client_credentials" \
    --data-urlencode "scope=$1/.default" | jq -r .access_token
}
# org_token ENV: a bearer token for ENV's Web API.
org_token() { scope_token "$DVSIM_URL/org/$1"; }
# org_get ENV PATH: GET a Web API path of ENV.
org_get() {
  curl -sf -H "Authorization: Bearer $(org_token "$1")" -H "Accept: application/json" \
    "$DVSIM_URL/org/$1/api/data/v9.2/$2"
}
# entity_defs ENV FILE: table definitions with attributes and N:N relationships.
entity_defs() {
  org_get "$1" 'EntityDefinitions?$expand=Attributes,ManyToManyRelationships' >"$2" ||
    org_get "$1" 'EntityDefinitions?$expand=Attributes' >"$2"
}
# admin_env ENV: the admin API's object for ENV.
admin_env() {
  curl -sf -H "Authorization: Bearer $(scope_token "$DVSIM_URL")" \
    "$DVSIM_URL/providers/Microsoft.BusinessAppPlatform/scopes/admin/environments?api-version=2020-10-01" |
    jq --arg e "$1" '.value[] | select(.properties.linkedEnvironmentMetadata.uniqueName == $e)'
}
# last_seq: the newest request number in dvsim's log (0 when empty).
last_seq() { curl -sf "$DVSIM_URL/_sim/requests" | jq '[.requests[].seq] | max // 0'; }
# writes_since SEQ: requests that change data (not the token endpoint, not /_sim/), one per line.
writes_since() {
  curl -sf "$DVSIM_URL/_sim/requests?since=$1" |
    jq -r '.requests[] | select(.method == "POST" or .method == "PATCH" or .method == "PUT" or .method == "DELETE")
           | select((.path | test("oauth2|^/_sim/")) | not) | "\(.method) \(.path) \(.status)"'
}
# caller_id ENV: the user dvsnap's token acts as in ENV (WhoAmI).
caller_id() { org_get "$1" WhoAmI | jq -r .UserId; }
# principal_map SRC_ENV POINT DST_ENV OUT [MAP_FILE]: the mapping of the point's users, teams,
# business units and currencies to DST_ENV's as restore_principals.py computes it (fallback: the
# caller), into OUT.
principal_map() {
  local d="$T/principals.$$" t
  mkdir -p "$d"
  for t in systemuser team businessunit transactioncurrency; do
    dvsnap cat "$1" "$2" "$t" >"$d/pt.$t.json" 2>/dev/null || rm -f "$d/pt.$t.json"
    sim_dump "$3" "$t" >"$d/dst.$t.json" 2>/dev/null || rm -f "$d/dst.$t.json"
  done
  python3 "$PRINCIPALS" "$d" "$(caller_id "$3")" ${5:+"$5"} >"$4"
}
# same_table SRC_ENV POINT TABLE DST_ENV DEFS [MAPPING]: the point's table equals DST_ENV's
# table now, after restore_norm, the point's side mapped by MAPPING when given (prints a short
# diff when not).
same_table() {
  dvsnap cat "$1" "$2" "$3" >"$T/pt.$3.json" || return 1
  sim_dump "$4" "$3" >"$T/dst.$3.json" || return 1
  python3 "$NORM" "$T/pt.$3.json" "$5" "$3" ${6:+"$6"} >"$T/pt.$3.norm" || return 1
  python3 "$NORM" "$T/dst.$3.json" "$5" "$3" >"$T/dst.$3.norm" || return 1
  if ! cmp -s "$T/pt.$3.norm" "$T/dst.$3.norm"; then
    echo "table $3 differs: point $(wc -l <"$T/pt.$3.norm") lines, target $(wc -l <"$T/dst.$3.norm") lines"
    diff "$T/pt.$3.norm" "$T/dst.$3.norm" | head -6 | cut -c1-300
    return 1
  fi
}
