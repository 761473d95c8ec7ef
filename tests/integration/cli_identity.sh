#!/usr/bin/env bash
# cli_identity (issue 18): object stores reached without a key file, through a local fake of the
# cloud metadata services (tests/tools/fake_metadata.py) in front of the real test servers:
#   - S3 with instance-profile credentials (s3_auth = instance-profile, aws_metadata_endpoint):
#     s3rver's front is started with --session-token, so every request must carry the profile's
#     session token, signed; the same keys without the token are refused;
#   - Azure Blob with a managed identity (azure_auth = managed-identity, azure_identity_endpoint):
#     Azurite over HTTPS (a certificate from a CA made here, trusted through ca_file) with
#     --oauth basic, so every request must carry a bearer token for https://storage.azure.com;
#     without ca_file the store is refused (the certificate is not trusted); an unknown
#     user-assigned identity is refused, saying why;
#   - Azure Blob with a workload identity (azure_auth = workload-identity): the federated token
#     file is exchanged at the token endpoint; a wrong one is refused;
#   - each store: init, capture, cat equal to the simulator, check --read-data clean; no
#     credential or token in a -vv log.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../node/servers.sh"
objstore_servers_available || { echo "not ok - object-storage test servers are not available"; exit 1; }
start_dvsim --seed demo --records 60
TABLES="account contact systemuser"
write_config
cp "$T/config" "$T/config.base"

# ---- the fake metadata service ----
TENANT=72f988bf-86f1-41af-91ab-2d7cd011db47
SESS="sess-$RANDOM$RANDOM"
printf 'federated-token-%s\n' "$RANDOM$RANDOM" >"$T/fed.jwt"
python3 "$(dirname "$0")/../tools/fake_metadata.py" --ready-file "$T/md.ready" --log "$T/md.log" \
  --tenant "$TENANT" --client-id app-1 --federated-token-file "$T/fed.jwt" \
  --aws-key S3RVER --aws-secret S3RVER --aws-session-token "$SESS" >"$T/md.out" 2>&1 &
_pids+=($!)
wait_for 30 test -s "$T/md.ready" || { echo "not ok - fake metadata service did not start"; cat "$T/md.out"; exit 1; }
MD="http://127.0.0.1:$(cat "$T/md.ready")"
md_count() { grep -c "\"method\": \"$1\", \"path\": \"$2\", \"status\": $3" "$T/md.log"; }

# mkcfg NAME LINES...: $T/config.NAME from the base, repository and store lines replaced
mkcfg() {
  local name=$1; shift
  grep -v '^repository' "$T/config.base" >"$T/config.$name"
  printf '%s\n' "$@" >>"$T/config.$name"
  chmod 600 "$T/config.$name"
}
dv() { local c=$1; shift; "$DVSNAP" --config "$T/config.$c" "$@"; }
same_as_sim() {
  local c=$1 t
  for t in $TABLES; do dv "$c" cat contoso-dev latest "$t" | cmp -s - <(sim_dump contoso-dev "$t") || return 1; done
}
round_trip() { # NAME: init, capture, equal, check
  local c=$1
  check "$c: init" dv "$c" init
  check "$c: capture" dv "$c" capture --env contoso-dev
  check "$c: every table read back equals the simulator" same_as_sim "$c"
  check "$c: check --read-data" dv "$c" check --read-data
}

# ---- S3, instance profile ----
start_s3rver s3 0 --session-token "$SESS"
mkcfg s3 "repository = s3://dvsnap-test/repo" "s3_endpoint = $S3_ENDPOINT" "s3_region = us-east-1" \
  "s3_auth = instance-profile" "aws_metadata_endpoint = $MD"
round_trip s3
check "s3: the credentials came from IMDSv2 (session token, role, credentials)" \
  test "$(md_count PUT /latest/api/token 200)" -ge 1 -a \
       "$(md_count GET /latest/meta-data/iam/security-credentials/ 200)" -ge 1 -a \
       "$(md_count GET /latest/meta-data/iam/security-credentials/dvsnap-role 200)" -ge 1
check_eq "s3: the front refused nothing" 0 "$(grep -c 'refused' "$T/s3rver-s3.log")"
mkcfg s3keys "repository = s3://dvsnap-test/repo" "s3_endpoint = $S3_ENDPOINT" "s3_region = us-east-1" \
  "s3_credentials_file = $S3_CREDFILE"
check_fails "s3: the same keys without the session token are refused" dv s3keys points contoso-dev
cp "$T/check.out" "$T/refusal"
check "s3: the refusal is the missing token" grep -q "InvalidToken" "$T/refusal"
mkcfg s3dead "repository = s3://dvsnap-test/repo" "s3_endpoint = $S3_ENDPOINT" "s3_region = us-east-1" \
  "s3_auth = instance-profile" "aws_metadata_endpoint = http://127.0.0.1:9" "http_retries = 2"
start=$(date +%s)
check_fails "s3: no metadata service: refused" dv s3dead points contoso-dev
cp "$T/check.out" "$T/refusal"
check "s3: ...within seconds, saying where the credentials were sought ($(( $(date +%s) - start )) s)" \
  bash -c "[ $(( $(date +%s) - start )) -lt 20 ] && grep -q 'instance metadata' '$T/refusal'"

# ---- Azure over HTTPS with OAuth, a managed identity ----
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=dvsnap test CA" \
  -keyout "$T/ca.key" -out "$T/ca.pem" >/dev/null 2>&1
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$T/srv.key" -out "$T/srv.csr" >/dev/null 2>&1
printf 'subjectAltName=IP:127.0.0.1\n' >"$T/srv.ext"
openssl x509 -req -in "$T/srv.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial -days 2 \
  -extfile "$T/srv.ext" -out "$T/srv.pem" >/dev/null 2>&1
check "a CA and a server certificate for 127.0.0.1" openssl verify -CAfile "$T/ca.pem" "$T/srv.pem"
mkdir -p "$T/azh.data"
"$NODE_DIR/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort 0 --location "$T/azh.data" \
  --disableTelemetry --cert "$T/srv.pem" --key "$T/srv.key" --oauth basic >"$T/azurite-https.log" 2>&1 &
_pids+=($!)
wait_for 60 grep -q 'successfully listens on' "$T/azurite-https.log" || { echo "not ok - azurite (https) did not start"; cat "$T/azurite-https.log"; exit 1; }
AZS_PORT=$(_listen_port "$T/azurite-https.log" 'listens on https:\/\/127\.0\.0\.1:')
AZS="https://127.0.0.1:$AZS_PORT/$AZ_ACCOUNT"
before=$(md_count GET /metadata/identity/oauth2/token 200)
mkcfg azmi "repository = azure://$AZ_ACCOUNT/dvsnap-mi/repo" "azure_endpoint = $AZS" "ca_file = $T/ca.pem" \
  "azure_auth = managed-identity" "azure_identity_endpoint = $MD/metadata/identity/oauth2/token" \
  "azure_client_id = app-1"
round_trip azmi
check "azure: bearer tokens came from the managed identity endpoint" \
  test "$(md_count GET /metadata/identity/oauth2/token 200)" -gt "$before"
mkcfg aznoca "repository = azure://$AZ_ACCOUNT/dvsnap-mi/repo" "azure_endpoint = $AZS" \
  "azure_auth = managed-identity" "azure_identity_endpoint = $MD/metadata/identity/oauth2/token" \
  "azure_client_id = app-1" "http_retries = 1"
check_fails "azure: without ca_file the server's certificate is not trusted" dv aznoca points contoso-dev
cp "$T/check.out" "$T/refusal"
check "azure: ...and the message says so" grep -qiE "certificate|SSL|TLS" "$T/refusal"
mkcfg azother "repository = azure://$AZ_ACCOUNT/dvsnap-mi/repo" "azure_endpoint = $AZS" "ca_file = $T/ca.pem" \
  "azure_auth = managed-identity" "azure_identity_endpoint = $MD/metadata/identity/oauth2/token" \
  "azure_client_id = no-such-identity"
check_fails "azure: an unknown user-assigned identity is refused" dv azother points contoso-dev
cp "$T/check.out" "$T/refusal"
check "azure: ...saying why" grep -q "Identity not found" "$T/refusal"

# ---- Azure, a workload identity ----
mkcfg azwi "repository = azure://$AZ_ACCOUNT/dvsnap-wi/repo" "azure_endpoint = $AZS" "ca_file = $T/ca.pem" \
  "azure_auth = workload-identity" "azure_identity_endpoint = $MD/$TENANT/oauth2/v2.0/token" \
  "azure_client_id = app-1" "azure_federated_token_file = $T/fed.jwt"
round_trip azwi
check "azure: the federated token was exchanged at the token endpoint" \
  test "$(md_count POST "/$TENANT/oauth2/v2.0/token" 200)" -ge 1
printf 'not-the-federated-token\n' >"$T/wrong.jwt"
mkcfg azwrong "repository = azure://$AZ_ACCOUNT/dvsnap-wi/repo" "azure_endpoint = $AZS" "ca_file = $T/ca.pem" \
  "azure_auth = workload-identity" "azure_identity_endpoint = $MD/$TENANT/oauth2/v2.0/token" \
  "azure_client_id = app-1" "azure_federated_token_file = $T/wrong.jwt"
check_fails "azure: a wrong federated token is refused" dv azwrong points contoso-dev
cp "$T/check.out" "$T/refusal"
check "azure: ...with the identity provider's reason" grep -q "AADSTS700024" "$T/refusal"

# ---- no credential in a -vv log ----
dv s3 -vv capture --env contoso-dev >"$T/vv.log" 2>&1
dv azmi -vv capture --env contoso-dev >>"$T/vv.log" 2>&1
dv azwi -vv capture --env contoso-dev >>"$T/vv.log" 2>&1
check "the -vv logs are not empty ($(wc -l <"$T/vv.log") lines)" test -s "$T/vv.log"
check_fails "no session token, federated token, bearer token or secret key in them" \
  grep -qF -e "$SESS" -e "$(cat "$T/fed.jwt")" -e "eyJ" -e "S3RVER:S3RVER" "$T/vv.log"
finish
