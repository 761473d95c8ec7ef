#!/usr/bin/env bash
# mount_dvsim: `dvsnap mount` over a real repository captured from dvsim (issue 4): tables equal
# the simulator's dump byte for byte, files/ hold the simulator's attachment bytes, the control
# files (.backup with its EPERM reason, .restore validation, .operations/), another user's EACCES
# with no request reaching the simulator, latest moving when a capture lands while mounted, rmdir
# rules, a corrupted segment giving EIO for that table only within the bound, and kill -9 leaving
# ENOTCONN that `dvsnap mount` then recovers.
. "$(dirname "$0")/../lib.sh"
start_dvsim --seed demo
write_config
dvsnap init >/dev/null
seq_now() { curl -sf "$DVSIM_URL/_sim/requests" | jq '[.requests[].seq] | max // 0'; }

dvsnap capture >/dev/null 2>&1
sim_churn contoso-prod 0.02 3 >/dev/null
check "second capture" dvsnap capture --env contoso-prod
M="$T/mnt"
mount_dvsnap "$M" --allow-other
E="$M/contoso-prod"
LATEST=$(readlink "$E/latest")
check "latest is a point name" bash -c '[[ $1 =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{6}Z$ ]]' _ "$LATEST"
check_eq "contoso-prod has two points" 2 "$(ls "$E" | grep -c '^20')"
check "environment.json says production with 28 days" \
  jq -e '.type == "production" and .retention_days == 28 and .points == 2' "$E/environment.json"

# every table equals the simulator's dump (no churn since the last capture)
bad=0; n=0
for f in "$E/latest/tables/"*.json; do
  t=$(basename "$f" .json); n=$((n + 1))
  sim_dump contoso-prod "$t" >"$T/dump.json" || { echo "# no dump for $t"; bad=1; continue; }
  cmp -s "$T/dump.json" "$f" || { echo "# $t differs from the dump"; bad=1; }
  [ "$(stat -c %s "$f")" = "$(wc -c <"$f")" ] || { echo "# $t: size"; bad=1; }
done
check "every table at latest equals dvsim's dump, stat size exact ($n tables)" test "$bad" = 0 -a "$n" -ge 5

# every file of the point: stat size == bytes read, twice the same hash
bad=0; n=0
while IFS= read -r -d '' f; do
  n=$((n + 1))
  [ "$(stat -c %s "$f")" = "$(timeout 20 cat "$f" | wc -c)" ] || { echo "# size: $f"; bad=1; }
  [ "$(sha256sum <"$f")" = "$(sha256sum <"$f")" ] || { echo "# hash: $f"; bad=1; }
done < <(find "$E/latest/" -type f -print0)
check "stat size equals bytes read for every file of a point ($n files)" test "$bad" = 0 -a "$n" -gt 10
check "tar of a point completes without warnings" bash -c \
  'cd "$1" && tar cf "$2/p.tar" . 2>"$2/tar.err" && ! test -s "$2/tar.err"' _ "$E/latest/" "$T"
check "rsync -a of a point then diff -r is clean" bash -c 'rsync -a "$1" "$2/rs/" && diff -r "$1" "$2/rs"' _ "$E/latest/" "$T"

# attachments: the simulator's bytes, names with spaces, Unicode and '/' sanitised
sim_dump contoso-prod annotation >"$T/ann.json"
check "files/ hold the simulator's attachment bytes (SHA-256)" python3 - "$T/ann.json" "$E/latest/files/annotation" <<'PY'
import base64, hashlib, json, os, sys
recs = json.load(open(sys.argv[1])); root = sys.argv[2]; n = 0; names = set()
for r in recs:
    body = r.get("documentbody")
    if not body: continue
    name = r["filename"].replace("/", "\u2215")
    p = os.path.join(root, r["annotationid"], name)
    want = hashlib.sha256(base64.b64decode(body)).hexdigest()
    got = hashlib.sha256(open(p, "rb").read()).hexdigest()
    if want != got: print("differs:", p); sys.exit(1)
    n += 1; names.add(name)
need = {"Zoë's notes.txt", "contract v1\u2215v2.pdf", "会议记录.docx", "photo (1).png"}
missing = need - names
if n < 5 or missing: print("files:", n, "missing names:", missing); sys.exit(1)
PY

# control files are reachable, never listed
check_eq "ls -a of an environment shows no control file" "" "$(ls -a "$E" | grep -E '^\.(backup|restore)$')"
check_eq "ls -a of a point shows no control file" "" "$(ls -a "$E/latest/" | grep -E '^\.(backup|restore)$')"
check "reading .backup before any request says how to use it" grep -q "no backup" "$E/.backup"

# another user: EACCES, and nothing reaches the simulator
before=$(seq_now)
out=$(setpriv --reuid 1001 --regid 1001 --clear-groups sh -c "echo sneaky > '$E/.backup'" 2>&1)
check_eq "uid 1001 gets EACCES writing .backup" "Permission denied" "$(echo "$out" | sed 's/.*: //')"
out=$(setpriv --reuid 1001 --regid 1001 --clear-groups rmdir "$E/$LATEST" 2>&1)
check_eq "uid 1001 gets EACCES on rmdir" "Permission denied" "$(echo "$out" | sed 's/.*: //')"
check_eq "the simulator saw no request from uid 1001's attempts" "$before" "$(seq_now)"

# manual backup through the mount (the kernel caches listings: the ones that change are dropped)
ls "$M/.operations" "$E" "$E/labels" >/dev/null
ops_before=$(ls "$M/.operations" | wc -l)
check "echo LABEL > .backup is accepted" sh -c "echo pre-upgrade > '$E/.backup'"
check ".operations/ lists the new backup at once" test "$(ls "$M/.operations" | wc -l)" -gt "$ops_before"
check "labels/pre-upgrade appears when the backup is done" wait_for 60 test -L "$E/labels/pre-upgrade"
check "ls of labels/ lists it" wait_for 5 bash -c 'ls "$1/labels" | grep -qx pre-upgrade' _ "$E"
check "ls of the environment lists the manual backup's point" wait_for 5 bash -c \
  'ls "$1" | grep -qx "$(readlink "$1/labels/pre-upgrade" | sed "s,^../,,")"' _ "$E"
check "cat .backup shows the finished backup" wait_for 10 jq -e '.state == "done" and .label == "pre-upgrade"' "$E/.backup"
check "latest moved to the manual backup" wait_for 10 bash -c '[ "$(readlink "$1/latest")" = "$(readlink "$1/labels/pre-upgrade" | sed "s,^../,,")" ]' _ "$E"
check ".operations/ has the backup's document" bash -c 'cat "$1"/.operations/*backup*.json | jq -e "select(.state == \"done\")"' _ "$M"
check_fails "a manual backup of the default environment is refused" sh -c "echo x > '$M/contoso-default/.backup'"
check_eq "... with EPERM" "Operation not permitted" "$(bash -c "echo x > '$M/contoso-default/.backup'" 2>&1 | sed 's/.*: //')"
check "... and the reason is readable from .backup" jq -e '.state == "refused" and (.error | test("default"; "i"))' "$M/contoso-default/.backup"

# restore control file: synchronous validation
check_eq "a malformed .restore line gives EINVAL" "Invalid argument" \
  "$(bash -c "echo 'nonsense here' > '$E/latest/.restore'" 2>&1 | sed 's/.*: //')"
check_eq "restoring into a production environment gives EPERM" "Operation not permitted" \
  "$(bash -c "echo 'target=fabrikam-prod confirm=fabrikam-prod' > '$E/latest/.restore'" 2>&1 | sed 's/.*: //')"
check "the refusal is readable from .restore" jq -e '.state == "refused"' "$E/latest/.restore"
check "a dry-run restore into a sandbox is accepted" sh -c "echo 'target=contoso-dev confirm=contoso-dev dry-run' > '$E/latest/.restore'"
check "the dry run finishes and .restore shows it" wait_for 60 jq -e '.state == "done"' "$E/latest/.restore"

# a capture landing while mounted moves latest (another process)
prev=$(readlink "$E/latest")
sim_churn contoso-prod 0.01 4 >/dev/null
dvsnap capture --env contoso-prod >/dev/null 2>&1
check "latest moves when a point lands while mounted" wait_for 10 bash -c '[ "$(readlink "$1")" != "$2" ]' _ "$E/latest" "$prev"
check "ls of the environment lists the new point" wait_for 5 bash -c 'ls "$1" | grep -qx "$(readlink "$1/latest")"' _ "$E"

# rmdir: manual deletes, system gives EPERM
MANUAL=$(readlink "$E/labels/pre-upgrade" | sed 's,^../,,')
FIRST=$(ls "$E" | grep '^20' | head -1)
check_eq "rmdir of a system point gives EPERM" "Operation not permitted" "$(rmdir "$E/$FIRST" 2>&1 | sed 's/.*: //')"
check "rmdir of a manual point deletes it" rmdir "$E/$MANUAL"
check_fails "the manual point is gone" test -e "$E/$MANUAL"
check_fails "and so is its label" test -e "$E/labels/pre-upgrade"
check_fails "ls of the environment no longer lists it" bash -c 'ls "$1" | grep -qx "$2"' _ "$E" "$MANUAL"
check "ls of labels/ no longer lists the label" wait_for 5 bash -c '! ls "$1/labels" | grep -qx pre-upgrade' _ "$E"

# a corrupted segment: EIO for that table only, within the bound, other tables read
seg=$(manifest contoso-prod "$FIRST" | jq -r '.tables[] | select(.name == "contact") | .segments[0]')
obj="objects/${seg:0:2}/$seg"
repo_get "$obj" >"$T/seg"
check "found the contact base segment" test -s "$T/seg"
python3 -c 'import sys; p=sys.argv[1]; b=bytearray(open(p,"rb").read()); n=len(b)
for i in range(n//3, n//3+64): b[i] ^= 0x5a
open(p,"wb").write(bytes(b))' "$T/seg"
repo_put "$obj" <"$T/seg"
start=$(date +%s)
err=$(timeout 60 cat "$E/$FIRST/tables/contact.json" 2>&1 >/dev/null | sed 's/.*: //')
check_eq "a corrupted segment gives EIO for that table" "Input/output error" "$err"
check "within the bound (30 s)" test $(( $(date +%s) - start )) -le 30
check "other tables of that point still read" jq -e 'length > 0' "$E/$FIRST/tables/account.json"

# kill -9: ENOTCONN, then dvsnap mount recovers
kill -9 "$MOUNT_PID"; wait "$MOUNT_PID" 2>/dev/null
# (for up to 1 s the kernel may still answer from its caches: a listing, never an empty one)
check "right after kill -9 the mountpoint is never an empty directory" \
  bash -c 'out=$(ls "$1" 2>&1); [ -n "$out" ]' _ "$M"
sleep 1.2
check_eq "after kill -9 the mountpoint gives ENOTCONN (not an empty directory)" \
  "Transport endpoint is not connected" "$(ls "$M" 2>&1 | sed 's/.*: //')"
mount_dvsnap "$M"   # (a stale mount still counts as a mountpoint: wait for the view itself)
check "dvsnap mount recovers the mountpoint and serves the view again" wait_for 20 test -L "$E/latest"
check "dvsnap mount said it found a stale mount" wait_for 10 grep -q "stale mount" "$T/mount.log"
kill -TERM "$MOUNT_PID"
check "SIGTERM unmounts cleanly" wait_for 10 bash -c '! mountpoint -q "$1"' _ "$M"
wait "$MOUNT_PID" 2>/dev/null

# --capture-every: the mount process is the whole appliance
prev=$(dvsnap points contoso-prod latest | jq -r .point)
sim_churn contoso-prod 0.01 5 >/dev/null
mount_dvsnap "$M" --capture-every 2s
check "--capture-every takes points inside the mount process" wait_for 30 bash -c \
  '[ "$(readlink "$1")" != "$2" ]' _ "$E/latest" "$prev"
check "environment.json shows the capture interval" wait_for 5 jq -e '.capture_every_s == 2 and .next_capture != null' "$E/environment.json"
# each pass is an operation in .operations/, like a manual backup
new=$(readlink "$E/latest")
check "a finished capture pass is in .operations/ with its new point" wait_for 20 bash -c \
  'cat "$1"/.operations/*capture*.json 2>/dev/null | jq -se --arg p "$2" "map(select(.kind == \"capture\" and .state == \"done\" and (.progress.environments | map(select(.env == \"contoso-prod\" and .point == \$p)) | length == 1))) | length >= 1"' _ "$M" "$new"
check "... listing the trial environment as skipped, with the reason" bash -c \
  'cat "$1"/.operations/*capture*.json | jq -se "map(.progress.environments[]? | select(.env == \"contoso-trial\" and .state == \"skipped\" and (.error | length > 0))) | length >= 1"' _ "$M"
check "... with started_at and finished_at" bash -c \
  'cat "$1"/.operations/*capture*.json | jq -se "map(select(.state == \"done\" and .started_at != null and .finished_at != null)) | length >= 1"' _ "$M"
cat "$T/mount.log" | head -5 | sed "s,^,# log: ,"
finish
