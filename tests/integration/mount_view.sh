#!/usr/bin/env bash
# mount_view: the FUSE layer (fs/ + cache/) with real tools, over the in-memory fake source
# (tests/tools/fakemount): sizes, repeatable bytes, jq and key order, tar, rsync, cp, find, du,
# mmap, parallel readers, hidden control files, EROFS, at/, latest moving, EIO for one broken
# table within the bound, rmdir rules, another user's EACCES, stable inodes, kill -9 -> ENOTCONN.
. "$(dirname "$0")/../lib.sh"
FAKE="$BUILD/tests/fakemount"
M="$T/mnt"

start_fake() {
  mkdir -p "$M" "$T/cache"
  "$FAKE" --cache "$T/cache" --wait-ms 3000 --allow-other "$@" "$M" >>"$T/fake.log" 2>&1 &
  FAKE_PID=$!
  _pids+=("$FAKE_PID")
  _mounts+=("$M")
  wait_for 20 mountpoint -q "$M" || { echo "not ok - fakemount did not come up"; cat "$T/fake.log"; exit 1; }
}
start_fake --points 5 --records 3000

check_eq "subtype is fuse.dvsnap" "fuse.dvsnap" "$(findmnt -n -o FSTYPE "$M")"
check_eq "root lists environments (sanitised) and README" \
  "$(printf '%s\n' README.txt alpha beta 'odd∕name')" "$(ls "$M")"
P="$M/alpha/latest"
check_eq "latest points at the newest point" "2025-11-21T130000Z" "$(readlink "$M/alpha/latest")"
check_eq "a point lists its parts and no control file" \
  "$(printf '%s\n' . .. audit.json backup.json changes files schema tables)" "$(ls -a "$P/")"
check_eq "an environment lists no control file" "" "$(ls -a "$M/alpha" | grep -E '^\.(backup|restore)$')"

# every file under the points: stat size == bytes read; reading twice gives the same SHA-256
# (environment.json is live status, not point data: its capture_lag_s changes every second)
bad=0; n=0
while IFS= read -r -d '' f; do
  n=$((n + 1))
  s=$(stat -c %s "$f"); b=$(timeout 20 cat "$f" | wc -c)
  [ "$s" = "$b" ] || { echo "# size $f: stat $s read $b"; bad=1; }
  h1=$(timeout 20 sha256sum <"$f"); h2=$(timeout 20 sha256sum <"$f")
  [ "$h1" = "$h2" ] || { echo "# sha differs: $f"; bad=1; }
done < <(find "$M/alpha/" -type f ! -path "$M/alpha/environment.json" -print0)
check "stat size equals bytes read, twice the same SHA-256 ($n files)" test "$bad" = 0 -a "$n" -gt 20

# tables parse with jq and are sorted by primary key
check "tables parse with jq and are sorted by key" bash -c '
  for f in "$1"/tables/*.json; do
    jq -e "[.[].id] as \$k | \$k == (\$k | sort)" "$f" >/dev/null || { echo "bad: $f"; exit 1; }
  done' _ "$P"
check_eq "record count of account at latest" "3004" "$(jq length "$P/tables/account.json")"

# tar, rsync, cp, find, du
check "tar cf of a point completes without warnings" bash -c \
  'cd "$1" && timeout 60 tar cf "$2/p.tar" . 2>"$2/tar.err" && ! test -s "$2/tar.err"' _ "$P/" "$T"
mkdir -p "$T/untar"
check "tar xf reproduces the point" bash -c \
  'cd "$2/untar" && tar xf "$2/p.tar" && diff -r "$1" "$2/untar"' _ "$P/" "$T"
check "rsync -a then diff -r is clean" bash -c \
  'timeout 60 rsync -a "$1" "$2/rs/" && diff -r "$1" "$2/rs"' _ "$P/" "$T"
check "cp -r of tables works" bash -c 'timeout 60 cp -r "$1/tables" "$2/cp" && diff -r "$1/tables" "$2/cp"' _ "$P" "$T"
check "find over an environment reports no loops" bash -c \
  'out=$(timeout 60 find "$1" 2>&1 >/dev/null); rc=$?; [ -z "$out" ] && [ $rc = 0 ]' _ "$M/alpha"
check "du is non-zero" bash -c '[ "$(du -s "$1" | cut -f1)" -gt 0 ]' _ "$P/tables"
check "nlink of a point directory is 6" test "$(stat -c %h "$P/")" = 6
check "mmap read equals a plain read" python3 -c '
import mmap, sys
f = sys.argv[1]
with open(f, "rb") as fh:
    plain = fh.read()
with open(f, "rb") as fh:
    m = mmap.mmap(fh.fileno(), 0, prot=mmap.PROT_READ)
    mm = bytes(m[:]); m.close()
sys.exit(0 if plain == mm and len(plain) > 0 else 1)' "$M/alpha/2025-11-21T100000Z/tables/contact.json"

# 16 parallel readers of different files, each compared with a copy read alone first
pts=$(ls "$M/alpha" | grep '^20' | head -5)
files=()
for p in $pts; do for t in account contact; do files+=("$M/alpha/$p/tables/$t.json"); done; done
files+=("$M/alpha/$(echo "$pts" | head -1)/audit.json" "$M/beta/$(ls "$M/beta" | grep '^20')/tables/account.json")
for p in $(echo "$pts" | head -4); do files+=("$M/alpha/$p/changes/account.json"); done
rm -rf "$T/cache"/files/* 2>/dev/null
check_eq "16 parallel readers get correct bytes" "16" "$(
  for i in "${!files[@]}"; do ( timeout 60 sha256sum <"${files[$i]}" >"$T/par.$i" ) & done; wait
  ok=0; for i in "${!files[@]}"; do [ "$(sha256sum <"${files[$i]}")" = "$(cat "$T/par.$i")" ] && ok=$((ok+1)); done; echo $ok)"

# read-only
check_fails "writing a table file fails" sh -c "echo x > '$P/tables/account.json'"
check_eq "writing a table file gives EROFS" "Read-only file system" \
  "$(sh -c "echo x > '$P/tables/account.json'" 2>&1 | sed 's/.*: //')"
check_eq "mkdir gives EROFS" "Read-only file system" "$(mkdir "$P/x" 2>&1 | sed 's/.*: //')"
check_eq "rm gives EROFS" "Read-only file system" "$(rm -f "$P/backup.json" 2>&1 | sed 's/.*: //')"

# at/
check_eq "at/ between points resolves to the earlier" "../2025-11-21T100000Z" "$(readlink "$M/alpha/at/2025-11-21T10:59:59Z")"
check_eq "at/ on a point resolves to it" "../2025-11-21T110000Z" "$(readlink "$M/alpha/at/2025-11-21T11:00:00Z")"
check_eq "at/ with an offset" "../2025-11-21T110000Z" "$(readlink "$M/alpha/at/2025-11-21T12:30:00+01:00")"
check_fails "at/ before the first point does not exist" test -e "$M/alpha/at/2025-11-21T08:59:59Z"
check_eq "at/ lists nothing" "" "$(ls "$M/alpha/at")"
check "at/<time>/tables is the point's tables" diff "$M/alpha/at/2025-11-21T10:30:00Z/tables/account.json" "$M/alpha/2025-11-21T100000Z/tables/account.json"
check_eq "labels/ points at the manual backup" "../2025-11-21T100000Z" "$(readlink "$M/alpha/labels/pre-upgrade")"

# latest moves when a point lands while mounted
touch "$M.addpoint"
check "latest moves to a new point without a remount" wait_for 10 bash -c \
  '[ "$(readlink "$1")" = 2025-11-21T140000Z ]' _ "$M/alpha/latest"
# (the lookup that moved latest saw the new point first; the refresher then drops the listing
# the kernel cached: within its period)
check "the new point is listed" wait_for 3 bash -c 'ls "$1" | grep -q 2025-11-21T140000Z' _ "$M/alpha"

# EIO for the broken table only, within the bound
B="$M/beta/$(ls "$M/beta" | grep '^20')"
start=$(date +%s)
check_fails "reading a broken table fails" bash -c 'timeout 30 cat "$1" >/dev/null' _ "$B/tables/broken.json"
check_eq "the failure is EIO" "Input/output error" "$(timeout 30 cat "$B/tables/broken.json" 2>&1 >/dev/null | sed 's/.*: //')"
check "the EIO comes within the bound (10 s)" test $(( $(date +%s) - start )) -le 10
check "the other table of that point reads" bash -c 'jq length "$1" >/dev/null' _ "$B/tables/account.json"

# names
check "names with '/' and Unicode are sanitised" test -f "$P/files/annotation/r1/ünï∕cödé.bin"
check_eq "files/ bytes are the blob's" "hello world" "$(cat "$P/files/annotation/r1/my file.txt")"
# r2 has two files named "a" and one named "a~2": three distinct names, each with its own bytes
check_eq "a record directory's clashing names are made unique" "$(printf '%s\n' a a~2 a~2~2)" "$(ls "$P/files/annotation/r2")"
check_eq "... each with its own bytes" 3 "$(for f in "$P/files/annotation/r2/"*; do cksum <"$f"; done | sort -u | wc -l)"
check_eq "... and its own inode number" 3 "$(stat -c %i "$P/files/annotation/r2/"* | sort -u | wc -l)"

# another user: EACCES on rmdir (checked by the daemon), reads allowed
if id 1001 >/dev/null 2>&1 || true; then
  check_eq "uid 1001 can read" "3003" "$(setpriv --reuid 1001 --regid 1001 --clear-groups jq length "$M/alpha/2025-11-21T120000Z/tables/account.json" 2>&1)"
  check_eq "uid 1001 gets EACCES on rmdir" "Permission denied" \
    "$(setpriv --reuid 1001 --regid 1001 --clear-groups rmdir "$M/alpha/2025-11-21T100000Z" 2>&1 | sed 's/.*: //')"
fi
check_eq "rmdir of a system point gives EPERM" "Operation not permitted" \
  "$(rmdir "$M/alpha/2025-11-21T090000Z" 2>&1 | sed 's/.*: //')"
check "rmdir of a manual point deletes it" rmdir "$M/alpha/2025-11-21T100000Z"
check_fails "the deleted point is gone" test -e "$M/alpha/2025-11-21T100000Z"

# stable inodes across a remount
P4="$M/alpha/2025-11-21T130000Z"
ino1=$(stat -c %i "$P4/tables/account.json" "$M/alpha" "$P4/files/annotation/r1")
kill -INT "$FAKE_PID"
check "SIGINT unmounts cleanly" wait_for 10 bash -c '! mountpoint -q "$1"' _ "$M"
wait "$FAKE_PID"; rc=$?
check_eq "the daemon exits 0 after SIGINT" 0 "$rc"
start_fake --points 6 --records 3000
check_eq "inode numbers are stable across mounts" "$ino1" "$(stat -c %i "$P4/tables/account.json" "$M/alpha" "$P4/files/annotation/r1")"
check_eq "warm cache serves the same bytes" "$(sha256sum <"$T/cp/account.json")" "$(sha256sum <"$M/alpha/2025-11-21T130000Z/tables/account.json")"

# unmounting while a fill is running: the daemon stops the fill and exits 0 (it crashed before)
kill -TERM "$FAKE_PID"; wait "$FAKE_PID"
start_fake --points 6 --records 3000 --big-records 3000000
head -c 1000 "$M/alpha/latest/tables/big.json" >/dev/null
kill -TERM "$FAKE_PID"; wait "$FAKE_PID"; rc=$?
check_eq "unmounting during a fill exits 0" 0 "$rc"
start_fake --points 6 --records 3000

# kill -9 leaves ENOTCONN, not an empty directory
kill -9 "$FAKE_PID"; wait "$FAKE_PID" 2>/dev/null
# (for up to 1 s the kernel may still answer from its caches: a listing, never an empty one)
check "right after kill -9 the mountpoint is never an empty directory" \
  bash -c 'out=$(ls "$1" 2>&1); [ -n "$out" ]' _ "$M"
sleep 1.2
check_eq "after kill -9 the mountpoint gives ENOTCONN" "Transport endpoint is not connected" \
  "$(ls "$M" 2>&1 | sed 's/.*: //')"
fusermount3 -uz "$M"
check "fusermount3 -uz recovers the mountpoint" bash -c '! mountpoint -q "$1" && ls "$1"' _ "$M"
finish
