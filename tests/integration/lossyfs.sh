#!/usr/bin/env bash
# lossyfs (issue 7, scenario 2): the power-loss filesystem of tests/tools/lossyfs.c does what
# rel_powerloss relies on. A file written but not fsynced is lost; fsynced data is kept; a file
# fsync does not make its directory entry durable; a rename, create, mkdir or unlink without a
# fsync of the directory is lost, with one it is kept; an entry that is durable while its data is
# not comes back empty; after the cut every request fails with EIO; SQLite in WAL mode with
# synchronous=FULL keeps exactly its committed transactions.
. "$(dirname "$0")/../lib.sh"
LOSSYFS="$BUILD/tests/lossyfs"
B=$T/backing M=$T/mnt

# lossy_mount: mount $B at $M; sets LPID
lossy_mount() {
  mkdir -p "$B" "$M"
  rm -f "$T/ready" "$T/cut"
  "$LOSSYFS" "$B" "$M" --ready-file "$T/ready" --cut-file "$T/cut" 2>"$T/lossyfs.log" &
  LPID=$!
  _pids+=("$LPID"); _mounts+=("$M")
  wait_for 10 test -s "$T/ready" || { echo "not ok - lossyfs did not start"; cat "$T/lossyfs.log"; exit 1; }
}
# power_cut: SIGUSR1, wait for the cut, then unmount and wait until BACKING is written
power_cut() {
  kill -USR1 "$LPID"
  wait_for 10 test -e "$T/cut" || echo "# the cut was not acknowledged"
}
lossy_umount() {
  fusermount3 -u "$M" || fusermount3 -uz "$M"
  wait "$LPID"
}
# fs OPS...: file operations through Python (os.fsync of files and directories)
fs() {
  python3 - "$M" "$@" <<'PY'
import os, sys
m = sys.argv[1]
def p(x): return os.path.join(m, x)
def write(name, data, sync):
    fd = os.open(p(name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, data.encode())
    if sync == "sync":
        os.fsync(fd)
    os.close(fd)
def dsync(name):
    fd = os.open(p(name), os.O_RDONLY | os.O_DIRECTORY)
    os.fsync(fd)
    os.close(fd)
args = sys.argv[2:]
while args:
    op = args.pop(0)
    if op == "write":   write(args.pop(0), args.pop(0), args.pop(0))
    elif op == "dsync": dsync(args.pop(0))
    elif op == "rename": os.rename(p(args.pop(0)), p(args.pop(0)))
    elif op == "mkdir": os.mkdir(p(args.pop(0)))
    elif op == "unlink": os.unlink(p(args.pop(0)))
    else: sys.exit("unknown op " + op)
PY
}
content() { if [ -e "$B/$1" ]; then cat "$B/$1"; else echo "(absent)"; fi; }

# durable starting state, loaded from BACKING
mkdir -p "$B/sub"
echo -n old >"$B/keep"; echo -n old >"$B/victim"; echo -n doomed >"$B/sub/doomed"
lossy_mount
check "BACKING is presented" test "$(cat "$M/keep")" = old
fs write keep overwritten nosync \
   write synced data sync write synced2 data2 nosync dsync . \
   write onlyfile data sync \
   write new.tmp newdata sync rename new.tmp victim \
   write r.tmp rdata sync rename r.tmp renamed write other x sync dsync sub \
   unlink sub/doomed \
   mkdir d write d/x dx sync dsync d
check_eq "the live view sees every change" "overwritten newdata" "$(cat "$M/keep") $(cat "$M/victim")"
power_cut
check_fails "after the cut a read fails" cat "$M/keep"
check "after the cut the failure is EIO" sh -c "ls '$M' 2>&1 | grep -q 'Input/output error'"
check_fails "after the cut a write fails" sh -c "echo x >'$M/late'"
lossy_umount
check_eq "an unsynced overwrite is lost" old "$(content keep)"
check_eq "a file fsynced and its directory fsynced is kept" data "$(content synced)"
check_eq "a durable entry whose data was never fsynced comes back empty" "" "$(content synced2)"
check_eq "a file fsync alone does not make its entry durable" "(absent)" "$(content onlyfile)"
check_eq "a rename without a directory fsync is lost" "old (absent)" "$(content victim) $(content new.tmp)"
check_eq "a fsync of another directory does not keep it" "(absent) (absent)" "$(content renamed) $(content r.tmp)"
check_eq "an unlink without a directory fsync is lost" doomed "$(content sub/doomed)"
check_eq "a directory whose parent was not fsynced is lost with its files" "(absent)" "$(content d/x)"
check "nothing leaks from the cut" test ! -e "$B/late"

# the same, done right: every change followed by the fsyncs it needs
lossy_mount
fs write new.tmp newdata sync rename new.tmp victim dsync . \
   unlink sub/doomed dsync sub \
   mkdir d write d/x dx sync dsync d dsync . \
   write keep overwritten nosync
lossy_umount  # an unmount without a cut is a cut too
check_eq "a rename followed by a directory fsync is kept" "newdata (absent)" "$(content victim) $(content new.tmp)"
check_eq "an unlink followed by a directory fsync is kept" "(absent)" "$(content sub/doomed)"
check_eq "a new directory is kept once it and its parent are fsynced" dx "$(content d/x)"
check_eq "an unmount without a cut drops unsynced data too" old "$(content keep)"

# SQLite (the dvsnap catalog lives in the repository directory): WAL, synchronous=FULL
lossy_mount
python3 - "$M/cat.db" >"$T/sqlite.out" 2>&1 <<'PY' &
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA journal_mode=WAL"); db.execute("PRAGMA synchronous=FULL")
db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
for i in range(50):
    db.execute("BEGIN"); db.execute("INSERT INTO t VALUES (?, ?)", (i, "v%d" % i)); db.execute("COMMIT")
db.execute("BEGIN"); db.execute("INSERT INTO t VALUES (1000, 'uncommitted')")
print("ok", flush=True)  # the open transaction is never committed: the power goes first
time.sleep(30)
PY
SQPID=$!
check "SQLite runs on lossyfs" wait_for 10 grep -q ok "$T/sqlite.out"
power_cut
kill -9 "$SQPID" 2>/dev/null; wait "$SQPID" 2>/dev/null
lossy_umount
check_eq "SQLite: integrity_check after the cut" ok "$(sqlite3 "$B/cat.db" 'PRAGMA integrity_check')"
check_eq "SQLite: every committed row, none of the open transaction" "50|49|0" \
  "$(sqlite3 "$B/cat.db" 'SELECT count(*), max(k), count(*) FILTER (WHERE k = 1000) FROM t')"
finish
