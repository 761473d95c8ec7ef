#!/usr/bin/env bash
# Driver-level tests of the object-storage drivers (issue 6) against real servers on loopback:
# Azurite (Azure Blob, Shared Key checked by the server) and s3rver (S3) behind s3front (Signature
# V4 and If-None-Match checked as AWS S3 does: wrong secret / key id / region refused, a losing
# conditional create refused by the server). For each: put/get,
# ranges, stat, list with more than one page, delete, put_if_absent, a large object (block /
# multipart upload), invalid names, credentials kept out of logs, a killed server failing in
# bounded time and working again after a restart. Time bound: ~60 s.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../node/servers.sh"

if ! objstore_servers_available; then
  not_ok "object-storage test servers (npm ci in tests/node) are not available"
  finish
fi
start_azurite az
start_s3rver s3
objstore_env
export DVSNAP_OBJSTORE_LIST_PAGE=7 # several pages with a few dozen objects
O=$OBJTOOL

head -c 20000000 /dev/urandom >"$T/big"     # above the 8 MiB block size: 3 blocks/parts
printf 'hello, object store\n' >"$T/small"

run_driver_tests() {
  local kind=$1 L=$2
  note "$kind: $L"
  check "$kind: put" sh -c "$O $L put a/b.txt <'$T/small'"
  check_eq "$kind: get returns the bytes" "$(cat "$T/small")" "$($O "$L" get a/b.txt)"
  check_eq "$kind: stat gives the size" "20" "$($O "$L" stat a/b.txt)"
  check_eq "$kind: range in the middle" "llo, o" "$($O "$L" get a/b.txt 2 6)"
  check_eq "$kind: range to the end" "store" "$($O "$L" get a/b.txt 14 | tr -d '\n')"
  check "$kind: reading to the end from the very end succeeds" "$O" "$L" get a/b.txt 20
  check_eq "$kind: ... with nothing" "" "$($O "$L" get a/b.txt 20)"
  $O "$L" get a/b.txt 100 5 >/dev/null 2>&1; rc=$?
  check_eq "$kind: a read past the end is EIO (as the directory store)" 5 "$rc"
  $O "$L" get a/b.txt 14 1000 >/dev/null 2>&1; rc=$?
  check_eq "$kind: a bounded read that comes back short is EIO" 5 "$rc"
  $O "$L" get a/b.txt 21 >/dev/null 2>&1; rc=$?
  check_eq "$kind: reading to the end from past the end is EIO" 5 "$rc"
  check_eq "$kind: a zero-length read of an existing object" "" "$($O "$L" get a/b.txt 3 0)"
  $O "$L" get nope/x >/dev/null 2>"$T/err"; rc=$?
  check_eq "$kind: get of a missing object is ENOENT" 2 "$rc"
  $O "$L" get nope/x 0 0 >/dev/null 2>&1; rc=$?
  check_eq "$kind: zero-length get of a missing object is ENOENT" 2 "$rc"
  $O "$L" stat nope/x >/dev/null 2>&1; rc=$?
  check_eq "$kind: stat of a missing object is ENOENT" 2 "$rc"
  echo x | $O "$L" put-if-absent a/b.txt 2>/dev/null; rc=$?
  check_eq "$kind: put_if_absent on an existing object is EEXIST" 17 "$rc"
  check_eq "$kind: ... and left it unchanged" "$(cat "$T/small")" "$($O "$L" get a/b.txt)"
  check "$kind: put_if_absent of a new object" sh -c "echo lease | $O $L put-if-absent locks/l1"
  check_eq "$kind: ... which holds the data" "lease" "$($O "$L" get locks/l1)"
  check "$kind: overwrite with put" sh -c "echo two | $O $L put locks/l1"
  check_eq "$kind: ... replaces the data" "two" "$($O "$L" get locks/l1)"
  check "$kind: put an empty object" sh -c "$O $L put empty </dev/null"
  check_eq "$kind: the empty object has size 0" "0" "$($O "$L" stat empty)"
  check_eq "$kind: reading it gives nothing" "" "$($O "$L" get empty)"
  check "$kind: fill 40 objects" "$O" "$L" fill many/o 40
  check_eq "$kind: list with 7 per page sees all 40" 40 "$($O "$L" list many/ | wc -l)"
  check_eq "$kind: list gives names without the location prefix, with sizes" "12 many/o000039" "$($O "$L" list many/ | tail -n1)"
  check_eq "$kind: list by prefix" "20 a/b.txt"$'\n'"4 locks/l1" "$($O "$L" list a/; $O "$L" list locks/)"
  check "$kind: delete" "$O" "$L" del many/o000000
  check_eq "$kind: deleted object is gone from the list" 39 "$($O "$L" list many/ | wc -l)"
  $O "$L" del many/o000000 2>/dev/null; rc=$?
  check_eq "$kind: delete of a missing object is ENOENT" 2 "$rc"
  $O "$L" get ../escape 2>/dev/null; rc=$?
  check_eq "$kind: a name with .. is refused (EINVAL)" 22 "$rc"
  local t0=$(date +%s%N)
  check "$kind: put_file of 20 MB (blocks/parts)" "$O" "$L" put-file seg/big "$T/big"
  local ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  note "$kind: 20 MB upload in $ms ms"
  check "$kind: put of 20 MB from memory" sh -c "$O $L put seg/big2 <'$T/big'"
  check "$kind: the large object reads back identical" sh -c "$O $L get seg/big | cmp - '$T/big'"
  check "$kind: the in-memory upload reads back identical" sh -c "$O $L get seg/big2 | cmp - '$T/big'"
  check "$kind: a range across a block boundary" bash -c "$O $L get seg/big 8388000 1000 | cmp - <(tail -c +8388001 '$T/big' | head -c 1000)"
  check_eq "$kind: stat of the large object" 20000000 "$($O "$L" stat seg/big)"
  # Another prefix of the same container/bucket does not see these objects.
  check_eq "$kind: another prefix is a separate namespace" "" "$($O "${L}-other" list '')"
  # Credentials never reach the log, even at debug level.
  OBJTOOL_DEBUG=1 $O "$L" get a/b.txt >/dev/null 2>"$T/debug.log"
  check "$kind: debug log shows requests" grep -q " GET " "$T/debug.log"
  check_fails "$kind: debug log holds no secret" grep -qF -e "$AZ_KEY" -e "S3RVER:S3RVER" -e "SharedKey" -e "Signature=" "$T/debug.log"
}

run_driver_tests azure "azure://$AZ_ACCOUNT/dvsnap-test/repo"
run_driver_tests s3 "s3://dvsnap-test/repo"

# Azure: the server checks the Shared Key signature, so a wrong key must be refused.
printf '%s\n' "$(printf 'wrong-key-%.0s' 1 2 3 4 | base64 -w0)" >"$T/bad.key"; chmod 600 "$T/bad.key"
DVSNAP_AZURE_KEY_FILE="$T/bad.key" $O "azure://$AZ_ACCOUNT/dvsnap-test/repo" get a/b.txt >/dev/null 2>"$T/err"; rc=$?
check_eq "azure: a wrong account key is refused (EIO)" 5 "$rc"
check "azure: ... with the server's reason" grep -q "403" "$T/err"

# Azure with an account SAS token instead of the key (signed here with openssl, as the portal would).
keyhex=$(printf '%s' "$AZ_KEY" | base64 -d | od -An -tx1 -v | tr -d ' \n')
sts=$(printf 'devstoreaccount1\nrwdlac\nb\nsco\n\n2030-01-01T00:00:00Z\n\nhttps,http\n2019-02-02\n')
sig=$(printf '%s\n' "$sts" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$keyhex" -binary | base64 -w0 | jq -Rr @uri)
printf '?sv=2019-02-02&ss=b&srt=sco&sp=rwdlac&se=2030-01-01T00:00:00Z&spr=https,http&sig=%s\n' "$sig" >"$T/sas"; chmod 600 "$T/sas"
check "azure SAS: put" sh -c "echo via-sas | DVSNAP_AZURE_KEY_FILE=$T/sas $O azure://$AZ_ACCOUNT/dvsnap-sas/p put x"
check_eq "azure SAS: get" "via-sas" "$(DVSNAP_AZURE_KEY_FILE=$T/sas $O "azure://$AZ_ACCOUNT/dvsnap-sas/p" get x)"
check_eq "azure SAS: list" "8 x" "$(DVSNAP_AZURE_KEY_FILE=$T/sas $O "azure://$AZ_ACCOUNT/dvsnap-sas/p" list '')"
sed 's/sig=./sig=0/' "$T/sas" >"$T/sas.bad"; chmod 600 "$T/sas.bad"
DVSNAP_AZURE_KEY_FILE="$T/sas.bad" $O "azure://$AZ_ACCOUNT/dvsnap-sas/p" get x >/dev/null 2>&1; rc=$?
check_eq "azure SAS: a bad signature is refused (EIO)" 5 "$rc"
OBJTOOL_DEBUG=1 DVSNAP_AZURE_KEY_FILE=$T/sas $O "azure://$AZ_ACCOUNT/dvsnap-sas/p" get x >/dev/null 2>"$T/debug.log"
check_fails "azure SAS: the signature never reaches the log" grep -qF "$sig" "$T/debug.log"

# Credential files must be private (mode 0600), as every secret of dvsnap.
chmod 644 "$AZ_KEYFILE"
$O "azure://$AZ_ACCOUNT/dvsnap-test/repo" get a/b.txt >/dev/null 2>"$T/err"; rc=$?
check "azure: a key file readable by others is refused (rc=$rc)" test "$rc" -ne 0
chmod 600 "$AZ_KEYFILE"
chmod 644 "$S3_CREDFILE"
$O "s3://dvsnap-test/repo" get a/b.txt >/dev/null 2>"$T/err"; rc=$?
check "s3: a credentials file readable by others is refused (rc=$rc)" test "$rc" -ne 0
chmod 600 "$S3_CREDFILE"
check_eq "s3: credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY" "$(cat "$T/small")" \
  "$(env -u DVSNAP_S3_CREDENTIALS_FILE AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER $O s3://dvsnap-test/repo get a/b.txt)"
env -u DVSNAP_S3_CREDENTIALS_FILE -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY $O s3://dvsnap-test/repo get a/b.txt >/dev/null 2>"$T/err"; rc=$?
check_eq "s3: no credentials at all is EINVAL" 22 "$rc"
check "s3: ... with a message naming the settings" grep -q "s3_credentials_file" "$T/err"

# put_if_absent is atomic on the server: of 8 racing writers exactly one wins.
race8() { # KIND LOCATION
  local i
  for i in 1 2 3 4 5 6 7 8; do
    ( echo "writer $i" | $O "$2" put-if-absent race/lock 2>/dev/null; echo $? >"$T/race-$1.$i" ) &
  done
  wait_for 30 sh -c "ls $T/race-$1.* | wc -l | grep -qx 8"; sleep 0.2
  check_eq "$1: 8 racing put_if_absent, exactly one wins" "1" "$(cat "$T"/race-"$1".* | grep -cx 0)"
  check_eq "$1: ... the others get EEXIST" "7" "$(cat "$T"/race-"$1".* | grep -cx 17)"
}
race8 azure "azure://$AZ_ACCOUNT/dvsnap-test/repo"

# S3: the server (s3rver behind tests/node/s3front.js) checks Signature V4 as AWS does, so a wrong
# secret, a wrong access key id and a wrong region are refused with the service's reason.
S3L="s3://dvsnap-test/repo"
printf 'S3RVER not-the-secret\n' >"$T/bad.cred"; chmod 600 "$T/bad.cred"
DVSNAP_S3_CREDENTIALS_FILE="$T/bad.cred" $O "$S3L" get a/b.txt >/dev/null 2>"$T/err"; rc=$?
check_eq "s3: a wrong secret is refused (EIO)" 5 "$rc"
check "s3: ... with a clear message (HTTP 403 SignatureDoesNotMatch)" grep -q "HTTP 403 SignatureDoesNotMatch" "$T/err"
check "s3: ... that points at the credentials" grep -q "s3_credentials_file" "$T/err"
check_fails "s3: ... and does not show the secret" grep -q "not-the-secret" "$T/err"
printf 'NOBODY S3RVER\n' >"$T/bad.cred"
DVSNAP_S3_CREDENTIALS_FILE="$T/bad.cred" $O "$S3L" list '' >/dev/null 2>"$T/err"; rc=$?
check "s3: an unknown access key id is refused (rc=$rc, $(head -c 80 "$T/err"))" grep -q "HTTP 403 InvalidAccessKeyId" "$T/err"
DVSNAP_S3_REGION=eu-west-1 $O "$S3L" get a/b.txt >/dev/null 2>"$T/err"; rc=$?
check "s3: a request signed for another region is refused (rc=$rc)" grep -q "HTTP 400 AuthorizationHeaderMalformed" "$T/err"
check "s3: the server counted those refusals" grep -q "refused 403 SignatureDoesNotMatch" "$T/s3rver-s3.log"
check_fails "s3: no request of dvsnap's own was refused for its signature" \
  sh -c "grep 'refused' '$T/s3rver-s3.log' | grep -v -e '/a/b.txt' -e 'GET /dvsnap-test/\$'"
# The server honours If-None-Match: * (412 when the key exists) even when the client's own HEAD
# said the key was free: a second server holds conditional PUTs 1.5 s, so two racing creators both
# pass their HEAD, both PUT, and exactly one is refused by the server.
S3_MAIN=("$S3_PORT" "$S3_PID" "$S3_ENDPOINT" "$S3_CREDFILE")
start_s3rver s3race 0 --conditional-delay-ms 1500
for i in 1 2; do
  ( echo "creator $i" | DVSNAP_S3_ENDPOINT=$S3_ENDPOINT $O "$S3L" put-if-absent locks/race.lease.0000000001 2>"$T/s3race.err.$i"
    echo $? >"$T/s3race.$i" ) &
done
wait_for 30 sh -c "ls $T/s3race.[12] 2>/dev/null | wc -l | grep -qx 2"
check_eq "s3: of 2 creators racing past their HEAD, exactly one wins" "0 17" "$(cat "$T"/s3race.[12] | sort -n | tr '\n' ' ' | sed 's/ $//')"
check_eq "s3: ... the server refused the other with 412" 1 "$(grep -c 'refused 412 PreconditionFailed PUT' "$T/s3rver-s3race.log")"
check "s3: ... which dvsnap reports as 'exists'" grep -qh "put if absent .*HTTP 412" "$T"/s3race.err.[12]
stop_pid "$S3_PID"
S3_PORT=${S3_MAIN[0]} S3_PID=${S3_MAIN[1]} S3_ENDPOINT=${S3_MAIN[2]} S3_CREDFILE=${S3_MAIN[3]}
objstore_env

race8 s3 "$S3L"

# A dead store fails in bounded time, and works again once it is back (same port).
L="azure://$AZ_ACCOUNT/dvsnap-test/repo"
kill -TERM "$AZ_PID"; wait "$AZ_PID" 2>/dev/null # Azurite saves its metadata on a clean stop
t0=$(date +%s)
$O "$L" get a/b.txt >/dev/null 2>"$T/err"; rc=$?
el=$(( $(date +%s) - t0 ))
check "azure: store down -> get fails (rc=$rc: $(head -c 120 "$T/err"))" test "$rc" -ne 0
check "azure: ... within 30 s (took ${el}s)" test "$el" -le 30
"$NODE_DIR/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$AZ_PORT" \
  --location "$T/az.data" --disableTelemetry >"$T/azurite-az2.log" 2>&1 &
AZ_PID=$!; _pids+=("$AZ_PID")
wait_for 60 grep -q 'successfully listens on' "$T/azurite-az2.log"
check_eq "azure: after a restart the data is there again" "$(cat "$T/small")" "$($O "$L" get a/b.txt)"

stop_pid "$S3_PID"
t0=$(date +%s)
$O "s3://dvsnap-test/repo" get a/b.txt >/dev/null 2>"$T/err"; rc=$?
el=$(( $(date +%s) - t0 ))
check "s3: store down -> get fails (rc=$rc)" test "$rc" -ne 0
check "s3: ... within 30 s (took ${el}s)" test "$el" -le 30
finish
