# Object-storage test servers (sourced after tests/lib.sh): Azurite (Azure Blob) and s3rver (S3),
# both from the npm registry, pinned in tests/node/package-lock.json and installed by `npm ci` into
# tests/node/node_modules on first use. s3rver runs behind tests/node/s3front.js, which checks
# Signature V4 and honours If-None-Match: * as AWS S3 does (s3rver itself does neither). s3rver's list continuation tokens use DES, which Node's
# OpenSSL 3 only offers with --openssl-legacy-provider (test server only). Each server listens on 127.0.0.1 with a kernel-chosen port
# (read back from its log), keeps its data under $T and is stopped by lib.sh's cleanup on exit.
#
#   objstore_servers_available   0 when node/npm are here and the packages are (or get) installed
#   start_azurite [NAME]         sets AZ_PORT AZ_PID AZ_ENDPOINT AZ_KEYFILE; log $T/azurite-NAME.log
#   start_s3rver [NAME [PORT [OPTION...]]]  s3rver behind s3front (OPTIONs: s3front.js's); sets S3_PORT S3_PID S3_ENDPOINT S3_CREDFILE;
#                                refusals are logged in $T/s3rver-NAME.log ("s3front: refused ...")
#   start_azfront NAME [OPTION...]  tests/node/azfront.js before the running Azurite (AZ_PORT):
#                                blob immutability policies enforced (OPTIONs: azfront.js's); sets
#                                AZF_PORT AZF_ENDPOINT; log $T/azfront-NAME.log
#   stop_pid PID                 kill -9 one server (fault tests)
#   objstore_env                 exports DVSNAP_* variables for tests/tools/objtool
NODE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Azurite's published well-known development account (not a secret).
AZ_ACCOUNT=devstoreaccount1
AZ_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
OBJTOOL="$BUILD/tests/objtool"

objstore_servers_available() {
  command -v node >/dev/null && command -v npm >/dev/null || return 1
  if [ ! -x "$NODE_DIR/node_modules/.bin/azurite-blob" ] || [ ! -x "$NODE_DIR/node_modules/.bin/s3rver" ]; then
    # One installer at a time (parallel test scripts share the directory).
    ( flock 9; [ -x "$NODE_DIR/node_modules/.bin/s3rver" ] && [ -x "$NODE_DIR/node_modules/.bin/azurite-blob" ] ||
      (cd "$NODE_DIR" && timeout 600 npm ci --no-audit --no-fund --loglevel=error) ) 9>"$NODE_DIR/.install.lock" >&2 || return 1
  fi
  [ -x "$NODE_DIR/node_modules/.bin/azurite-blob" ] && [ -x "$NODE_DIR/node_modules/.bin/s3rver" ]
}

# _listen_port LOG REGEX: the port printed in LOG after REGEX, once it appears.
_listen_port() { sed -n "s/.*$2\([0-9][0-9]*\).*/\1/p" "$1" | head -n1; }

start_azurite() {
  local name=${1:-az} port=${2:-0}
  mkdir -p "$T/$name.data"
  printf '%s\n' "$AZ_KEY" >"$T/$name.key"; chmod 600 "$T/$name.key"
  "$NODE_DIR/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$port" \
    --location "$T/$name.data" --disableTelemetry >"$T/azurite-$name.log" 2>&1 &
  AZ_PID=$!
  _pids+=("$AZ_PID")
  if ! wait_for 60 grep -q 'successfully listens on' "$T/azurite-$name.log"; then
    echo "not ok - azurite did not start"; sed 's/^/#   /' "$T/azurite-$name.log" | tail -20; exit 1
  fi
  AZ_PORT=$(_listen_port "$T/azurite-$name.log" 'listens on http:\/\/127\.0\.0\.1:')
  AZ_ENDPOINT="http://127.0.0.1:$AZ_PORT/$AZ_ACCOUNT"
  AZ_KEYFILE="$T/$name.key"
}

start_s3rver() {
  local name=${1:-s3} port=${2:-0}
  shift $(( $# < 2 ? $# : 2 )) # the rest: more s3front options
  mkdir -p "$T/$name.data"
  printf 'S3RVER S3RVER\n' >"$T/$name.cred"; chmod 600 "$T/$name.cred"
  NODE_OPTIONS=--openssl-legacy-provider node "$NODE_DIR/s3front.js" --directory "$T/$name.data" \
    --credentials "$T/$name.cred" --address 127.0.0.1 --port "$port" "$@" >"$T/s3rver-$name.log" 2>&1 &
  S3_PID=$!
  _pids+=("$S3_PID")
  if ! wait_for 60 grep -q 's3front listening on' "$T/s3rver-$name.log"; then
    echo "not ok - s3rver did not start"; sed 's/^/#   /' "$T/s3rver-$name.log" | tail -20; exit 1
  fi
  S3_PORT=$(_listen_port "$T/s3rver-$name.log" 'listening on 127\.0\.0\.1:')
  S3_ENDPOINT="http://127.0.0.1:$S3_PORT"
  S3_CREDFILE="$T/$name.cred"
}

start_azfront() {
  local name=${1:-azf}
  shift
  node "$NODE_DIR/azfront.js" --upstream "127.0.0.1:$AZ_PORT" --address 127.0.0.1 --port 0 "$@" \
    >"$T/azfront-$name.log" 2>&1 &
  _pids+=("$!")
  if ! wait_for 30 grep -q 'azfront listening on' "$T/azfront-$name.log"; then
    echo "not ok - azfront did not start"; sed 's/^/#   /' "$T/azfront-$name.log" | tail -20; exit 1
  fi
  AZF_PORT=$(_listen_port "$T/azfront-$name.log" 'listening on 127\.0\.0\.1:')
  AZF_ENDPOINT="http://127.0.0.1:$AZF_PORT/$AZ_ACCOUNT"
}

stop_pid() { kill -9 "$1" 2>/dev/null; wait "$1" 2>/dev/null; true; }

objstore_env() {
  export DVSNAP_AZURE_ENDPOINT=${AZ_ENDPOINT:-} DVSNAP_AZURE_KEY_FILE=${AZ_KEYFILE:-}
  export DVSNAP_S3_ENDPOINT=${S3_ENDPOINT:-} DVSNAP_S3_REGION=us-east-1 DVSNAP_S3_CREDENTIALS_FILE=${S3_CREDFILE:-}
}
