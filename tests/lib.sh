# Shared shell helpers for integration tests (sourced, not run). Each test script:
#   . "$(dirname "$0")/../lib.sh"
#   start_dvsim --seed demo          # real dvsim on 127.0.0.1, port chosen by the kernel
#   write_config                     # $T/config pointing dvsnap at that dvsim, secret mode 0600
#   check "what must hold" some command ...    # prints "ok - ..." or "not ok - ..."
# Everything started here (processes, mounts) is stopped on exit; $T is removed.
set -u
BUILD=${BUILD:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/build}
BUILD=$(cd "$BUILD" && pwd)
DVSNAP="$BUILD/dvsnap"
DVSIM="$BUILD/dvsim"
T=$(mktemp -d /tmp/dvsnap-test.XXXXXX)
chmod 755 "$T"
# dvsnap's state files (status, metrics) go under $T, not the caller's ~/.local/state
export XDG_STATE_HOME="$T/state"
_pids=()
_mounts=()
_failed=0

cleanup() {
  local m p
  for m in "${_mounts[@]}"; do
    fusermount3 -u "$m" 2>/dev/null || fusermount3 -uz "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
  done
  for p in "${_pids[@]}"; do kill "$p" 2>/dev/null; done
  sleep 0.2
  for p in "${_pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  [ -n "${KEEP_TMP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT

ok()     { echo "ok - $*"; }
not_ok() { echo "not ok - $*"; _failed=1; }
note()   { echo "# $*"; }

# check DESC CMD...: run CMD; ok when it exits 0.
check() {
  local desc=$1; shift
  if "$@" >"$T/check.out" 2>&1; then ok "$desc"; else not_ok "$desc"; sed 's/^/#   /' "$T/check.out" | head -20; fi
}
# check_fails DESC CMD...: ok when CMD exits non-zero.
check_fails() {
  local desc=$1; shift
  if "$@" >"$T/check.out" 2>&1; then not_ok "$desc (succeeded)"; sed 's/^/#   /' "$T/check.out" | head -10; else ok "$desc"; fi
}
# check_eq DESC EXPECTED ACTUAL
check_eq() {
  if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1"; echo "#   expected: $(printf %s "$2" | head -c 400)"; echo "#   actual:   $(printf %s "$3" | head -c 400)"; fi
}

# wait_for SECONDS CMD...: poll CMD every 0.1 s until it succeeds; non-zero on time-out.
wait_for() {
  local limit=$1; shift
  local end=$(( $(date +%s%N) / 1000000 + limit * 1000 ))
  until "$@" >/dev/null 2>&1; do
    [ $(( $(date +%s%N) / 1000000 )) -lt $end ] || return 1
    sleep 0.1
  done
}

# start_dvsim [ARGS...]: start dvsim with a fresh database; sets DVSIM_PORT, DVSIM_URL, DVSIM_PID.
# The client id is "dvsnap-test"; the secret is in $T/secret (mode 0600).
start_dvsim() {
  printf 'test-secret-%s\n' "$RANDOM$RANDOM" >"$T/secret"; chmod 600 "$T/secret"
  rm -f "$T/dvsim.ready"
  "$DVSIM" --listen 127.0.0.1:0 --ready-file "$T/dvsim.ready" --db "$T/dvsim.db" \
    --client-id dvsnap-test --client-secret-file "$T/secret" "$@" >"$T/dvsim.log" 2>&1 &
  DVSIM_PID=$!
  _pids+=("$DVSIM_PID")
  if ! wait_for "${DVSIM_START_TIMEOUT:-120}" test -s "$T/dvsim.ready"; then
    echo "not ok - dvsim did not start"; sed 's/^/#   /' "$T/dvsim.log" | tail -20; exit 1
  fi
  DVSIM_PORT=$(head -n1 "$T/dvsim.ready")
  DVSIM_URL="http://127.0.0.1:$DVSIM_PORT"
}

# token [ENV]: a bearer token from dvsim for the test client (for curl-level tests): for the admin
# API, or for ENV's Web API when given.
token() {
  curl -sf -X POST "$DVSIM_URL/contoso/oauth2/v2.0/token" \
    --data-urlencode "client_id=dvsnap-test" --data-urlencode "client_secret@$T/secret" \
    --data-urlencode "grant_type=client_credentials" \
    --data-urlencode "scope=$DVSIM_URL${1:+/org/$1}/.default" | jq -r .access_token
}

# write_config [EXTRA LINES]: $T/config for dvsnap against the running dvsim. The repository is
# encrypted (issue 16) with the password in $T/password (mode 0600); DVSNAP_TEST_KDF_LOG2N keeps
# its scrypt cheap, since every dvsnap command derives the key again.
export DVSNAP_TEST_KDF_LOG2N=${DVSNAP_TEST_KDF_LOG2N:-10}
write_config() {
  mkdir -p "$T/repo" "$T/cache"
  [ -s "$T/password" ] || { printf 'test-password-%s\n' "$RANDOM$RANDOM" >"$T/password"; chmod 600 "$T/password"; }
  cat >"$T/config" <<CFG
admin_url          = $DVSIM_URL
token_url          = $DVSIM_URL/contoso/oauth2/v2.0/token
client_id          = dvsnap-test
client_secret_file = $T/secret
repository         = $T/repo
cache_dir          = $T/cache
cache_size         = 2G
environments       = *
password_file      = $T/password
CFG
  [ $# -eq 0 ] || printf '%s\n' "$@" >>"$T/config"
  [ -z "${DVSNAP_TEST_REPO:-}" ] || _remote_repo "$DVSNAP_TEST_REPO"
  chmod 600 "$T/config"
}

# Called at the end of a script that ran on a directory repository: run the whole script again with
# its repository on Azurite and on s3rver (DVSNAP_TEST_REPO), folding their ok/not ok lines into
# this run's. A no-op inside those runs.
also_on_object_stores() {
  [ -z "${DVSNAP_TEST_REPO:-}" ] || return 0
  . "$(dirname "${BASH_SOURCE[0]}")/node/servers.sh"
  if ! objstore_servers_available; then
    not_ok "the object-storage test servers are not available"
    return
  fi
  local kind
  for kind in azure s3; do
    DVSNAP_TEST_REPO=$kind BUILD="$BUILD" bash "$0" >"$T/$kind.log" 2>&1
    grep -E '^(ok|not ok) ' "$T/$kind.log"
    grep -q '^not ok' "$T/$kind.log" && _failed=1
    grep -qE '^(ok|not ok) ' "$T/$kind.log" || not_ok "[$kind] ran: $(tail -3 "$T/$kind.log")"
  done
}

# DVSNAP_TEST_REPO=azure|s3: write_config puts the repository in Azurite or s3rver (started on
# first use, stopped on exit) instead of $T/repo, so a suite runs against object storage (issue 6;
# tests/integration/objstore_suites.sh).
_remote_repo() {
  if [ -z "${NODE_DIR:-}" ]; then
    . "$(dirname "${BASH_SOURCE[0]}")/node/servers.sh"
    objstore_servers_available || { echo "not ok - object-storage test servers are not available"; exit 1; }
  fi
  case $1 in
    azure)
      [ -n "${AZ_PORT:-}" ] || start_azurite az
      sed -i "s|^repository .*|repository         = azure://$AZ_ACCOUNT/dvsnap-test/repo|" "$T/config"
      printf '%s\n' "azure_endpoint = $AZ_ENDPOINT" "azure_key_file = $AZ_KEYFILE" >>"$T/config" ;;
    s3)
      [ -n "${S3_PORT:-}" ] || start_s3rver s3
      sed -i "s|^repository .*|repository         = s3://dvsnap-test/repo|" "$T/config"
      printf '%s\n' "s3_endpoint = $S3_ENDPOINT" "s3_region = us-east-1" "s3_credentials_file = $S3_CREDFILE" >>"$T/config" ;;
    *) echo "not ok - DVSNAP_TEST_REPO must be azure or s3"; exit 1 ;;
  esac
}

dvsnap() { "$DVSNAP" --config "$T/config" "$@"; }

# repo_get NAME: one object of the test repository (a directory, or Azurite/s3rver under
# DVSNAP_TEST_REPO) to stdout as stored, e.g. repo_get objects/ab/ab12...
# repo_put NAME: replace one object of it with stdin (fault tests that damage an object)
_repo_loc() { sed -n 's/^repository *= *//p' "$T/config"; }
_repo_objtool() {
  DVSNAP_AZURE_ENDPOINT=${AZ_ENDPOINT:-} DVSNAP_AZURE_KEY_FILE=${AZ_KEYFILE:-} \
  DVSNAP_S3_ENDPOINT=${S3_ENDPOINT:-} DVSNAP_S3_CREDENTIALS_FILE=${S3_CREDFILE:-} \
  DVSNAP_S3_REGION=us-east-1 "$BUILD/tests/objtool" "$(_repo_loc)" "$@"
}
repo_get() {
  case $(_repo_loc) in
    azure://* | s3://*) _repo_objtool get "$1" ;;
    *) cat "$(_repo_loc)/$1" ;;
  esac
}
# repo_manifest NAME: a manifest (or environment document) of the test repository, opened (the
# repository is encrypted: the stored object is sealed), e.g. repo_manifest points/E/P.json
repo_manifest() { DVSNAP_PASSWORD_FILE="$T/password" DVSNAP_CACHE_DIR="$T/cache" _repo_objtool open "$1"; }
# repo_blob ID: a blob's bytes, opened and checked (its name is keyed: only its bytes can be compared)
repo_blob() { DVSNAP_PASSWORD_FILE="$T/password" DVSNAP_CACHE_DIR="$T/cache" _repo_objtool blob "$1"; }
repo_put() {
  case $(_repo_loc) in
    azure://* | s3://*) _repo_objtool put "$1" ;;
    *) chmod u+w "$(_repo_loc)/$1" 2>/dev/null; cat >"$(_repo_loc)/$1" ;;
  esac
}

# repo_list: every object name of the test repository, one per line, sorted (the directory's
# files as paths relative to it, or the store's keys).
repo_list() {
  case $(_repo_loc) in
    azure://* | s3://*) _repo_objtool list | awk '{print $2}' ;;
    *) (cd "$(_repo_loc)" && find . -mindepth 1 -type f | sed 's|^\./||' | sort) ;;
  esac
}
# manifest ENV POINT|latest: the point's whole manifest as one JSON document (format 1 shape:
# tables and files inline, whatever the stored format: tests/tools/pointdump).
manifest() { "$BUILD/tests/pointdump" "$T/config" "$1" "$2"; }
# catalog_db: the path of the test repository's SQLite catalog (in a directory repository, else
# in the cache directory, named after the repository; backend/repo/repo.c catalog_path_for).
catalog_db() {
  case $(_repo_loc) in
    azure://* | s3://*) echo "$T/cache/catalog-$(printf %s "$(_repo_loc)" | sha256sum | cut -c1-16).db" ;;
    *) echo "$(_repo_loc)/catalog.db" ;;
  esac
}

# sim_dump ENV TABLE: the table as dvsim holds it now, in the table-file format.
sim_dump() { curl -sf "$DVSIM_URL/_sim/dump?env=$1&table=$2"; }
sim_churn() { curl -sf -X POST "$DVSIM_URL/_sim/churn" -d "{\"env\":\"$1\",\"fraction\":$2,\"seed\":${3:-1}}"; }
# matches_sim ENV: every table named in $TABLES of ENV's latest point equals dvsim's table now.
matches_sim() {
  local env=$1 t
  for t in $TABLES; do
    dvsnap cat "$env" latest "$t" | cmp -s - <(sim_dump "$env" "$t") || { echo "$env $t differs"; return 1; }
  done
}

# mount_dvsnap MOUNTPOINT [ARGS...]: dvsnap mount in the foreground process, waits until mounted.
mount_dvsnap() {
  local mp=$1; shift
  mkdir -p "$mp"
  "$DVSNAP" --config "$T/config" mount --foreground "$mp" "$@" >"$T/mount.log" 2>&1 &
  MOUNT_PID=$!
  _pids+=("$MOUNT_PID")
  _mounts+=("$mp")
  if ! wait_for 30 mountpoint -q "$mp"; then
    echo "not ok - mount did not come up"; sed 's/^/#   /' "$T/mount.log" | tail -20; exit 1
  fi
}

finish() { exit $_failed; }
