#!/usr/bin/env bash
# mount_bound: the daemon's memory does not grow with what the kernel knows (issue 15). Everything
# under a point has an encoded inode number and no node in the daemon: `ls -lR` of a tree several
# times the bound leaves a handful of nodes (statfs's f_files), every entry has its own inode number,
# a file's number is the same when looked up again, and a second listing equals the first. The
# nodes the daemon does keep (the root, environments, labels, at/ links) stay within --max-nodes:
# looking up more at/ links than the bound leaves the count within it once the kernel forgot what
# it was asked to drop. Throughout, a file kept open reads on and the control files answer.
. "$(dirname "$0")/../lib.sh"
BOUND=1000
start_dvsim --seed demo
write_config
dvsnap init >/dev/null
check "first capture" dvsnap capture --env contoso-prod
check "24 more points" dvsnap capture --env contoso-prod --passes 24
M="$T/mnt"
mount_dvsnap "$M" --max-nodes "$BOUND"
E="$M/contoso-prod"
nodes() { stat -f -c %c "$M"; }
# a function, so that wait_for reads the count again at each try
nodes_within_bound() { test "$(nodes)" -le $((BOUND + 10)); }
FIRST=$(ls "$E" | grep '^20' | head -1)
TBL="$E/$FIRST/tables/account.json"
ino0=$(stat -c %i "$TBL")
sum0=$(cksum <"$TBL")
exec 3<"$TBL"   # kept open across the drops

ls -lR --time-style=full-iso "$E" >"$T/ls1" 2>"$T/ls1.err"
check "the first listing has no errors" test ! -s "$T/ls1.err"
entries=$(grep -c '^[-dl]' "$T/ls1")
check "the tree ($entries entries) is at least 4 times the bound" test "$entries" -ge $((4 * BOUND))
check "the daemon keeps no node for what is under a point (nodes: $(nodes))" test "$(nodes)" -le 20
dups=$(find "$E" -printf '%i\n' | sort | uniq -d | wc -l)
check_eq "every entry has its own inode number" 0 "$dups"
ls -lR --time-style=full-iso "$E" >"$T/ls2" 2>"$T/ls2.err"
# environment.json's time is the time of reading
same() { cmp -s <(grep -v environment.json "$1") <(grep -v environment.json "$2"); }
check "a second listing has no errors" test ! -s "$T/ls2.err"
check "... and equals the first (but environment.json's time)" same "$T/ls1" "$T/ls2"
check_eq "a file is looked up again with its inode number" "$ino0" "$(stat -c %i "$TBL")"
check_eq "... and its bytes" "$sum0" "$(cksum <"$TBL")"
check_eq "the file kept open reads on" "$sum0" "$(cksum <&3)"
exec 3<&-
# at/ links are nodes: look up more of them than the bound (a second apart, after the last point)
t0=$(date -u +%s)
for k in $(seq 1 $((BOUND + 500))); do
  stat "$E/at/$(date -u -d "@$((t0 + k))" +%Y-%m-%dT%H:%M:%SZ)" >/dev/null 2>&1 || { note "at/ lookup $k failed"; break; }
done
note "nodes after $((BOUND + 500)) at/ lookups: $(nodes)"
check "the daemon's nodes come back within the bound ($BOUND)" wait_for 10 nodes_within_bound
check "an at/ link still resolves" test -f "$E/at/$(date -u -d "@$((t0 + 7))" +%Y-%m-%dT%H:%M:%SZ)/backup.json"
# every table of the last point against `dvsnap cat`
LAST=$(ls "$E" | grep '^20' | tail -1)
bad=0
for f in "$E/$LAST/tables/"*.json; do
  t=$(basename "$f" .json)
  dvsnap cat contoso-prod "$LAST" "$t" | cmp -s - "$f" || { note "$t differs"; bad=1; }
done
check "every table of the last point equals dvsnap cat" test "$bad" = 0
check "reading .backup still answers" grep -q "no backup" "$E/.backup"
check ".restore of a point still answers" test -n "$(cat "$E/$FIRST/.restore")"
check "a whole read of the tree's files (find | cksum) succeeds" \
  bash -c "find '$E/$LAST' '$E/$FIRST' -type f -exec cat {} + | cksum >/dev/null"
hwm=$(awk '/VmHWM/ {print int($2 / 1024)}' "/proc/$MOUNT_PID/status")
note "daemon peak RSS $hwm MB, $(nodes) nodes"
check "the daemon's peak RSS is under 80 MB" test "$hwm" -lt 80
finish
