#!/usr/bin/env bash
# rel_hygiene (reliability goal #25, catalog settings and file hygiene). `strace -f -k -e
# trace=openat` follows a capture and a mount serving reads: every open of a catalog or cache
# index file (*.db, *-wal, *-shm, *-journal) has libsqlite3 in its stack, i.e. only SQLite opens
# them (no other code may: close() would drop SQLite's POSIX locks). The catalog is in WAL mode on
# disk; the per-connection settings (synchronous=FULL, foreign_keys) are checked at runtime by
# test_rel_repo (catalog_settings).
. "$(dirname "$0")/../lib.sh"
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" # LeakSanitizer cannot run under ptrace
strace -k -e trace=openat true 2>&1 | grep -q '^ >' || { note "strace -k (stack traces) unavailable"; ok "skipped: no strace -k"; finish; }
start_dvsim --seed demo --records 200
write_config "environments = contoso-dev contoso-prod"
dvsnap init >/dev/null
check "capture under strace" strace -f -k -e trace=openat -o "$T/capture.strace" "$DVSNAP" --config "$T/config" capture
M=$T/mnt; mkdir -p "$M"
strace -f -k -e trace=openat -o "$T/mount.strace" "$DVSNAP" --config "$T/config" mount --foreground "$M" >"$T/mount.log" 2>&1 &
_pids+=($!); _mounts+=("$M")
check "mount under strace comes up" wait_for 30 mountpoint -q "$M"
check "reading through the mount" bash -c "cat '$M'/contoso-dev/latest/tables/*.json | wc -c | grep -qv '^0$'"
fusermount3 -u "$M"; wait_for 20 bash -c "! mountpoint -q '$M'"
sleep 0.5
cat >"$T/scan.py" <<'PY'
import re, sys
bad, good = [], 0
for path in sys.argv[1:]:
    lines = open(path, errors="replace").read().split("\n")
    i = 0
    while i < len(lines):
        m = re.search(r'openat\([^"]*"([^"]+)"', lines[i])
        i += 1
        stack = []
        while i < len(lines) and lines[i].startswith(" > "):
            stack.append(lines[i]); i += 1
        if not m or not re.search(r'\.db(-wal|-shm|-journal)?$', m.group(1)):
            continue
        if any("libsqlite3" in s for s in stack):
            good += 1
        else:
            bad.append(m.group(1) + " <- " + (stack[1] if len(stack) > 1 else stack[0] if stack else "?"))
print(good)
for b in bad:
    print("BAD " + b)
PY
# control: the scan flags an open of the catalog by other code (cat)
strace -f -k -e trace=openat -o "$T/control.strace" cat "$T/repo/catalog.db" >/dev/null
check "control: the scan flags a catalog open by code other than SQLite" \
  grep -q '^BAD' <(python3 "$T/scan.py" "$T/control.strace")
python3 "$T/scan.py" "$T/capture.strace" "$T/mount.strace" >"$T/scan.out"
n=$(head -n1 "$T/scan.out")
check "SQLite opened catalog/index files ($n opens seen)" test "$n" -ge 2
check_eq "no code but SQLite opened a .db, -wal, -shm or -journal file" "" "$(grep '^BAD' "$T/scan.out" | head -5)"
check_eq "the catalog is in WAL mode" wal "$(sqlite3 "$T/repo/catalog.db" 'PRAGMA journal_mode' 2>/dev/null)"
finish
