#!/usr/bin/env bash
# Ransomware protection (issue 16 item 6): an append-only repository with object lock, on the S3
# test server (s3rver behind tests/node/s3front.js with a second, delete-capable key pair, object
# lock and a clock the test moves), then on a directory. Asserted: a capture and a backup send no
# DELETE and overwrite nothing (the front logs every one); what a point names is locked until its
# expires_at and an object a later point shares gets its retention extended; a delete with the
# capture credentials is refused, and so is one with the prune credentials before the retention
# ends; prune without the prune credentials is refused, with them it keeps a locked point whole
# and says so, and once the retention has ended (the server's clock moved) it removes it and
# tidies what writers left (old lease generations, environment document versions). Time bound:
# ~90 s. The same on Azure (Azurite behind tests/node/azfront.js, which enforces immutability
# policies; the capture credential an account SAS without the delete permission).
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../node/servers.sh"

if ! objstore_servers_available; then
  not_ok "object-storage test servers (npm ci in tests/node) are not available"
  finish
fi
export DVSNAP_LEASE_TTL=3 # renewals (every second) happen during the captures
printf 'PRUNEKEY PRUNESECRET\n' >"$T/prune.cred"; chmod 600 "$T/prune.cred"
: >"$T/clock"
start_s3rver s3 0 --prune-credentials "$T/prune.cred" --clock-file "$T/clock" --audit 1
LOG="$T/s3rver-s3.log"
start_dvsim --seed demo
write_config "keep_manual = 2m"
REPO="s3://dvsnap-lock/repo"
sed -e "s|^repository .*|repository = $REPO|" "$T/config" >"$T/capture.config"
printf '%s\n' "s3_endpoint = $S3_ENDPOINT" "s3_region = us-east-1" "s3_credentials_file = $S3_CREDFILE" \
  "append_only = true" "object_lock = compliance" >>"$T/capture.config"
cp "$T/capture.config" "$T/admin.config"
printf '%s\n' "s3_prune_credentials_file = $T/prune.cred" >>"$T/admin.config"
chmod 600 "$T/capture.config" "$T/admin.config"
cap() { "$DVSNAP" --config "$T/capture.config" "$@"; }
adm() { "$DVSNAP" --config "$T/admin.config" "$@"; }
# objtool with the capture or the prune key pair
ot_cap() { ( objstore_env; "$OBJTOOL" "$@" ); }
ot_prune() { ( objstore_env; export DVSNAP_S3_CREDENTIALS_FILE="$T/prune.cred"; "$OBJTOOL" "$@" ); }
since() { tail -n +"$(( $1 + 1 ))" "$LOG"; }

check "init (capture credentials)" cap init
mark=$(wc -l <"$LOG")
check "a backup (manual point, kept 2 minutes)" cap backup contoso-dev --label before-upgrade
check "a capture right after (system point, shares the backup's objects)" cap capture --env contoso-dev
check_eq "neither deleted nor overwrote anything" "" "$(since "$mark" | grep 'audit \(DELETE\|OVERWRITE\)')"
manual=$(cap points contoso-dev | awk '$2 == "manual" {print $1}' | head -n1)
system=$(cap points contoso-dev | awk 'NR > 1 && $2 != "manual" {print $1}' | tail -n1)
check "both points are there ($manual, $system)" test -n "$manual" -a -n "$system"
check "the leases were renewed and released by new generations (several kept)" \
  test "$(ot_cap "$REPO" list locks/ | grep -c 'contoso-dev.lease')" -ge 3
ot_cap "$REPO" list envs/ >"$T/envs.lst"
check "the environment document is a version" grep -q ' envs/contoso-dev/' "$T/envs.lst"
check_fails "not envs/contoso-dev.json (rewritten by each capture)" grep -q ' envs/contoso-dev.json' "$T/envs.lst"

# retention: what the backup named was locked ~2 minutes ahead, then extended by the system point
since "$mark" | sed -n 's/^s3front: retain \(\/[^ ]*\) [A-Z]* \(.*\)$/\1 \2/p' >"$T/retains"
obj=$(awk '$1 ~ /\/objects\// {n[$1]++} END {for (o in n) if (n[o] > 1) print o}' "$T/retains" | head -n1)
check "an object the backup named was locked again for the later point" test -n "$obj"
first=$(awk -v o="$obj" '$1 == o {print $2; exit}' "$T/retains")
last=$(awk -v o="$obj" '$1 == o {d = $2} END {print d}' "$T/retains")
check "its retention was extended ($first -> $last)" test "$(date -d "$last" +%s)" -gt "$(( $(date -d "$first" +%s) + 3600 ))"
check "the first lock ends about when the backup expires (2 minutes)" \
  test "$(date -d "$first" +%s)" -le "$(( $(date +%s) + 130 ))"
check "the manifests are locked too" grep -q "^/dvsnap-lock/repo/points/contoso-dev/$manual.json " "$T/retains"
name=${obj#/dvsnap-lock/repo/}

# deletes
check_fails "a delete with the capture credentials is refused" ot_cap "$REPO" del "$name"
check "the server refused it (403 AccessDenied)" grep -q "refused 403 AccessDenied DELETE $obj" "$LOG"
check_fails "a delete with the prune credentials before the retention ends is refused" ot_prune "$REPO" del "$name"
check "the object is still there" ot_cap "$REPO" stat "$name"
cap prune >"$T/prune0.out" 2>&1; rc=$?
check "prune with the capture credentials only is refused (exit $rc)" test "$rc" -ne 0
check "and says which key to set" grep -q "s3_prune_credentials_file" "$T/prune0.out"
adm forget contoso-dev "$manual" >"$T/forget.out" 2>&1; rc=$?
check "forget before the retention ends is refused (exit $rc)" test "$rc" -ne 0
check "and says the point is locked" grep -q "locked by the store" "$T/forget.out"

# prune: at +3 minutes the backup is past keep_manual, but the store still holds it
LATER=$(date -u -d '+3 minutes' +%Y-%m-%dT%H:%M:%SZ)
env DVSNAP_NOW="$LATER" "$DVSNAP" --config "$T/admin.config" prune >"$T/prune1.out" 2>&1; rc=$?
check_eq "prune with the prune credentials completes" 0 "$rc"
check "it says the backup stays, locked" grep -q "keep contoso-dev/$manual: locked by the store" "$T/prune1.out"
check_eq "both points are still there" 2 "$(cap points contoso-dev | awk 'NR > 1' | wc -l)"
check "check --read-data is clean" cap check --read-data

# the server's clock moves past the backup's retention: prune removes it
echo 240 >"$T/clock"
env DVSNAP_NOW="$LATER" "$DVSNAP" --config "$T/admin.config" prune >"$T/prune2.out" 2>&1; rc=$?
check_eq "prune after the retention ended completes" 0 "$rc"
check "it removed the backup" grep -q "removed contoso-dev/$manual" "$T/prune2.out"
check_eq "the system point remains" "$system" "$(cap points contoso-dev | awk 'NR > 1 {print $1}')"
check "and checks clean" cap check --read-data
check_fails "the object the later point shares is still locked (extended retention)" ot_prune "$REPO" del "$name"
check_eq "prune left two generations per lease (the newest and the one before)" \
  "$(( 2 * $(ot_cap "$REPO" list locks/ | awk '{print $2}' | sed 's/\.[0-9]*$//' | sort -u | wc -l) ))" "$(ot_cap "$REPO" list locks/ | wc -l)"
check_eq "and one environment document version" 1 "$(ot_cap "$REPO" list envs/contoso-dev/ | wc -l)"
mark=$(wc -l <"$LOG")
sim_churn contoso-dev 0.2 3 >/dev/null
check "a capture after the prune" cap capture --env contoso-dev
check_eq "still no delete nor overwrite" "" "$(since "$mark" | grep 'audit \(DELETE\|OVERWRITE\)')"

# Azure: Azurite behind azfront (immutability policies); capture with an account SAS without the
# delete permission, prune with the account key
echo 0 >"$T/azclock"
start_azurite az
start_azfront azf --clock-file "$T/azclock" --audit 1
AZLOG="$T/azfront-azf.log"
keyhex=$(printf '%s' "$AZ_KEY" | base64 -d | od -An -tx1 -v | tr -d ' \n')
sts=$(printf 'devstoreaccount1\nracwl\nb\nsco\n\n2030-01-01T00:00:00Z\n\nhttps,http\n2019-02-02\n')
sig=$(printf '%s\n' "$sts" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$keyhex" -binary | base64 -w0 | jq -Rr @uri)
printf '?sv=2019-02-02&ss=b&srt=sco&sp=racwl&se=2030-01-01T00:00:00Z&spr=https,http&sig=%s\n' "$sig" >"$T/capture.sas"
chmod 600 "$T/capture.sas"
AZREPO="azure://$AZ_ACCOUNT/dvsnap-lock/repo"
sed -e "s|^repository .*|repository = $AZREPO|" "$T/config" >"$T/azcap.config"
printf '%s\n' "azure_endpoint = $AZF_ENDPOINT" "azure_key_file = $T/capture.sas" "append_only = true" \
  "object_lock = compliance" >>"$T/azcap.config"
cp "$T/azcap.config" "$T/azadm.config"
printf '%s\n' "azure_prune_key_file = $AZ_KEYFILE" >>"$T/azadm.config"
chmod 600 "$T/azcap.config" "$T/azadm.config"
azcap() { "$DVSNAP" --config "$T/azcap.config" "$@"; }
azadm() { "$DVSNAP" --config "$T/azadm.config" "$@"; }
azot() { DVSNAP_AZURE_ENDPOINT=$AZF_ENDPOINT DVSNAP_AZURE_KEY_FILE=$1 "$OBJTOOL" "$AZREPO" "${@:2}"; }
check "azure: init (capture SAS)" azcap init
check "azure: a backup" azcap backup contoso-dev --label before-upgrade
check "azure: a capture right after" azcap capture --env contoso-dev
check_eq "azure: neither deleted nor overwrote anything" "" "$(grep 'audit \(DELETE\|OVERWRITE\)' "$AZLOG")"
azmanual=$(azcap points contoso-dev | awk '$2 == "manual" {print $1}' | head -n1)
sed -n 's/^azfront: retain \(\/[^ ]*\) [A-Za-z]* \(.*\)$/\1 \2/p' "$AZLOG" >"$T/azretains"
azobj=$(awk '$1 ~ /\/objects\// {n[$1]++} END {for (o in n) if (n[o] > 1) print o}' "$T/azretains" | head -n1)
check "azure: an object the backup named got its policy extended by the later point" test -n "$azobj"
check "azure: the manifests are locked" grep -q "/dvsnap-lock/repo/points/contoso-dev/$azmanual.json " "$T/azretains"
azname=${azobj#/devstoreaccount1/dvsnap-lock/repo/}
check_fails "azure: a delete with the capture SAS is refused" azot "$T/capture.sas" del "$azname"
check "azure: ... for want of the delete permission" grep -q "refused 403 AuthorizationPermissionMismatch DELETE" "$AZLOG"
check_fails "azure: a delete with the key before the policy ends is refused" azot "$AZ_KEYFILE" del "$azname"
check "azure: ... as immutable" grep -q "refused 409 BlobImmutableDueToPolicy DELETE" "$AZLOG"
azcap prune >"$T/azprune0.out" 2>&1; rc=$?
check "azure: prune without azure_prune_key_file is refused (exit $rc)" sh -c "[ $rc -ne 0 ] && grep -q azure_prune_key_file '$T/azprune0.out'"
env DVSNAP_NOW="$LATER" "$DVSNAP" --config "$T/azadm.config" prune >"$T/azprune1.out" 2>&1; rc=$?
check_eq "azure: prune with the key completes" 0 "$rc"
check "azure: it keeps the backup, locked" grep -q "keep contoso-dev/$azmanual: locked by the store" "$T/azprune1.out"
check "azure: check --read-data is clean" azcap check --read-data
echo 240 >"$T/azclock"
env DVSNAP_NOW="$LATER" "$DVSNAP" --config "$T/azadm.config" prune >"$T/azprune2.out" 2>&1; rc=$?
check_eq "azure: prune after the policy ended completes" 0 "$rc"
check "azure: it removed the backup" grep -q "removed contoso-dev/$azmanual" "$T/azprune2.out"
check_eq "azure: one point remains" 1 "$(azcap points contoso-dev | awk 'NR > 1' | wc -l)"
check "azure: and checks clean" azcap check --read-data

# a directory repository: append_only without a lock (the directory cannot lock its files)
sed -e "s|^repository .*|repository = $T/dirrepo|" "$T/config" >"$T/dir.config"
printf '%s\n' "append_only = true" >>"$T/dir.config"
chmod 600 "$T/dir.config"
dirdv() { "$DVSNAP" --config "$T/dir.config" "$@"; }
check "init a directory repository" dirdv init
check "capture (append-only directory)" dirdv capture --env contoso-dev
files() { (cd "$T/dirrepo" && find config keys objects points envs holds -type f -printf '%i %p\n' 2>/dev/null | sort); }
files >"$T/files1"
sim_churn contoso-dev 0.2 4 >/dev/null
check "capture again" dirdv capture --env contoso-dev
files >"$T/files2"
check_eq "every file of the first capture is still there, never replaced (same inode)" "" \
  "$(comm -23 "$T/files1" "$T/files2")"
check "the environment document is kept as versions" test "$(find "$T/dirrepo/envs/contoso-dev" -type f | wc -l)" -ge 1
printf '%s\n' "object_lock = compliance" >>"$T/dir.config"
dirdv points contoso-dev >"$T/dirlock.out" 2>&1; rc=$?
check "object_lock on a directory is refused (exit $rc)" sh -c "[ $rc -ne 0 ] && grep -q 'object_lock needs an S3 or Azure' '$T/dirlock.out'"
finish
