#!/usr/bin/env bash
# mount_passthrough: a table read again is served by FUSE passthrough from the cache's plain copy
# (reads and mmap never reach the daemon), and never so while the same file is open through the
# FUSE page cache (the kernel would fail that open with EIO).
# How it tells: with the daemon stopped (SIGSTOP) and the file's FUSE page cache dropped, a read
# of a passthrough open still completes with the right bytes, while a read of a page-cache open
# waits for the daemon (the control, which must time out).
# Needs root (backing files need CAP_SYS_ADMIN) and a kernel with FUSE passthrough (6.9 and
# later, CONFIG_FUSE_PASSTHROUGH): both hold where CI runs; without them the test fails, it does
# not skip.
. "$(dirname "$0")/../lib.sh"
cat >"$T/config" <<CFG
repository = $T/repo
cache_dir  = $T/cache
CFG
chmod 600 "$T/config"
"$BUILD/tests/repo_fill" --repo "$T/repo" --envs 1 --points 2 --tables 3 --records 20000 \
  --record-bytes 70 --churn 0.01 --quiet || { echo "not ok - repo_fill failed"; exit 1; }
check "running as root" test "$(id -u)" = 0
check "the kernel has FUSE passthrough" grep -q ' fuse_passthrough_open$' /proc/kallsyms
M="$T/mnt"
mount_dvsnap "$M"
P=$(ls "$M/env-01" | grep '^20' | tail -1)
A="$M/env-01/$P/tables/table01.json" B="$M/env-01/$P/tables/table02.json"
C="$M/env-01/$P/tables/table03.json"
for t in 01 02 03; do dvsnap cat env-01 "$P" "table$t" >"$T/want$t.json"; done
check "the tables are bigger than the smallest size that gets a plain copy (1 MiB)" \
  test "$(stat -c %s "$A")" -gt 1048576

# sha256 of a file through an inherited descriptor: mapped first when asked (mmap needs an fstat,
# which goes to the daemon), its FUSE page cache dropped (posix_fadvise DONTNEED), then read with
# the daemon stopped when a daemon pid is given (continued at the end; if this is killed, the
# caller continues it)
cat >"$T/fdsum.py" <<'PY'
import hashlib, mmap, os, signal, sys
fd, how, pid = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
m = mmap.mmap(fd, 0, prot=mmap.PROT_READ) if how == "mmap" else None
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
if pid:
    os.kill(pid, signal.SIGSTOP)
try:
    h, off = hashlib.sha256(), 0
    if m is not None:
        h.update(m[:])
    else:
        while True:
            b = os.pread(fd, 1 << 20, off)
            if not b:
                break
            h.update(b)
            off += len(b)
    print(h.hexdigest())
finally:
    if pid:
        os.kill(pid, signal.SIGCONT)
PY
fdsum() { python3 "$T/fdsum.py" "$1" read 0; }
# stopped_sum FD read|mmap SECONDS: the same with the daemon stopped; a reader still running after
# SECONDS is killed (exit 137), then the daemon is continued. Nothing may close a page-cache open
# of the mount while the daemon is stopped: every close of it sends FLUSH and waits (a child that
# inherited the descriptor, such as sleep, would hang as it exits), so the wait loop uses only
# builtins (read -t on a FIFO nobody writes).
mkfifo "$T/never"
exec 9<>"$T/never"
stopped_sum() {
  python3 "$T/fdsum.py" "$1" "$2" "$MOUNT_PID" >"$T/sum.out" 2>/dev/null &
  local py=$! i
  for ((i = 0; i < $3 * 10; i++)); do
    kill -0 "$py" 2>/dev/null || break
    read -r -t 0.1 -u 9 _
  done
  kill -9 "$py" 2>/dev/null
  kill -CONT "$MOUNT_PID"
  wait "$py"
  local rc=$?
  cat "$T/sum.out"
  return $rc
}
want() { sha256sum <"$T/want$1.json" | cut -d' ' -f1; }
# plain copies the daemon holds: unlinked files in the cache's files directory
plain_copies() { ls -l "/proc/$MOUNT_PID/fd" 2>/dev/null | grep -c "$T/cache/files/#.*(deleted)"; }

# 1. the first read fills the cache (page cache mode); the next open asks for a plain copy
check_eq "first read of A has the right bytes" "$(want 01)" "$(sha256sum <"$A" | cut -d' ' -f1)"
check_eq "no plain copy after a first read" 0 "$(plain_copies)"
check_eq "second read of A has the right bytes" "$(want 01)" "$(sha256sum <"$A" | cut -d' ' -f1)"
check "the daemon builds one plain copy of A" wait_for 20 bash -c "[ \"\$(ls -l /proc/$MOUNT_PID/fd | grep -c '$T/cache/files/#.*(deleted)')\" = 1 ]"

# 2. B opened for the first time (page cache mode) and read once, kept open on fd 4; A opened
#    again on fd 3 (passthrough)
exec 4<"$B"
check_eq "B reads right through its page-cache open" "$(want 02)" "$(fdsum 4)"
exec 3<"$A"
sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null
a_sum=$(stopped_sum 3 read 20)
a_mmap=$(stopped_sum 3 mmap 20)
stopped_sum 4 read 3 >/dev/null; b_rc=$?
check_eq "with the daemon stopped, A reads right through passthrough" "$(want 01)" "$a_sum"
check_eq "with the daemon stopped, an mmap of A reads right" "$(want 01)" "$a_mmap"
check_eq "the control: B (page cache open) waits for the stopped daemon" 137 "$b_rc"
check_eq "B still reads right once the daemon runs again" "$(want 02)" "$(fdsum 4)"
exec 3<&- 4<&-

# 3. mixed opens of C: while C is open through the page cache, a new open must use the page
#    cache too, even once C's plain copy is ready; then passthrough again once it is closed
exec 5<"$C"
check_eq "C's first open reads right" "$(want 03)" "$(fdsum 5)"
check_eq "C opened again while fd 5 is open" "$(want 03)" "$(sha256sum <"$C" | cut -d' ' -f1)"
check "the daemon builds C's plain copy meanwhile" wait_for 20 bash -c "[ \"\$(ls -l /proc/$MOUNT_PID/fd | grep -c '$T/cache/files/#.*(deleted)')\" = 2 ]"
check_eq "an open of C with the copy ready and fd 5 open still reads right (no EIO)" \
  "$(want 03)" "$(sha256sum <"$C" | cut -d' ' -f1)"
check "jq parses C through that open" jq -e 'length > 0' "$C"
exec 5<&-
exec 6<"$C"
c_sum=$(stopped_sum 6 read 20)
check_eq "once fd 5 is closed, a new open of C is passthrough (reads with the daemon stopped)" \
  "$(want 03)" "$c_sum"
check_eq "a second open of C while fd 6 (passthrough) is open reads right" "$(want 03)" \
  "$(sha256sum <"$C" | cut -d' ' -f1)"
exec 6<&-
check "stat size equals the bytes read through passthrough" \
  test "$(stat -c %s "$A")" = "$(wc -c <"$A")"
check_eq "A and C have a plain copy, B none (opened once: a first read)" 2 "$(plain_copies)"
# the standard tools over the point's tables, read through passthrough
check_eq "16 parallel readers of A and C get correct bytes" 16 "$(
  for i in $(seq 16); do f=$A; [ $((i % 2)) = 0 ] && f=$C; ( sha256sum <"$f" | cut -d' ' -f1 >"$T/par.$i" ) & done; wait
  ok=0; for i in $(seq 16); do w=01; [ $((i % 2)) = 0 ] && w=03; [ "$(cat "$T/par.$i")" = "$(want $w)" ] && ok=$((ok + 1)); done; echo $ok)"
check "tar cf of the tables completes without warnings" \
  bash -c 'tar -C "$1" -cf "$2/t.tar" tables 2>"$2/tar.err" && [ ! -s "$2/tar.err" ]' _ "$M/env-01/$P" "$T"
mkdir -p "$T/untar"
check "tar xf reproduces them" bash -c 'tar -C "$1/untar" -xf "$1/t.tar" && diff -r "$1/untar/tables" "$2/tables"' _ "$T" "$M/env-01/$P"
check "rsync -a of them then diff -r is clean" \
  bash -c 'rsync -a "$1/tables/" "$2/rs/" && diff -r "$2/rs" "$1/tables"' _ "$M/env-01/$P" "$T"
check "cp -r of them matches dvsnap cat" bash -c 'cp -r "$1/tables" "$2/cp" &&
  cmp "$2/cp/table01.json" "$2/want01.json" && cmp "$2/cp/table02.json" "$2/want02.json" &&
  cmp "$2/cp/table03.json" "$2/want03.json"' _ "$M/env-01/$P" "$T"
check_eq "writing A, which has a plain copy, is still EROFS" "Read-only file system" \
  "$(bash -c "echo x >>'$A'" 2>&1 | sed 's/.*: //')"

# 4. --no-passthrough: no plain copies, the same bytes
fusermount3 -u "$M"
wait "$MOUNT_PID" 2>/dev/null
mount_dvsnap "$M" --no-passthrough
for i in 1 2 3; do cat "$A" >/dev/null; done
check_eq "--no-passthrough: A reads right" "$(want 01)" "$(sha256sum <"$A" | cut -d' ' -f1)"
sleep 1
check_eq "--no-passthrough: no plain copy" 0 "$(plain_copies)"
finish
