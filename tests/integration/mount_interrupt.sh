#!/usr/bin/env bash
# mount_interrupt: a reader waiting on a stalled source is not held until the source answers or
# the bound runs out: a fatal signal ends it at once, and a handled one gets EINTR (the daemon
# withdraws the waiting read); the fill goes on and the bytes are right afterwards. The source
# (fakemount --slow-ms) gives its first byte only after 10 s and the bound is 60 s, so every timing
# below fails if the signal is not honoured.
. "$(dirname "$0")/../lib.sh"
FAKE="$BUILD/tests/fakemount"
M="$T/mnt"
mkdir -p "$M" "$T/cache"
"$FAKE" --cache "$T/cache" --wait-ms 60000 --slow-ms 10000 "$M" >>"$T/fake.log" 2>&1 &
FAKE_PID=$!
_pids+=("$FAKE_PID")
_mounts+=("$M")
wait_for 20 mountpoint -q "$M" || { echo "not ok - fakemount did not come up"; cat "$T/fake.log"; exit 1; }
P=$(ls "$M/beta" | grep '^20' | head -1)
S="$M/beta/$P/tables/slow.json"
size=$(stat -c %s "$S")
check "the stalled table has a size before any read" test "$size" -gt 0

# a fatal signal (SIGINT from timeout after 1 s): cat exits at once, not when the source answers
start=$(date +%s%N)
timeout -s INT 1 cat "$S" >/dev/null 2>&1; rc=$?
ms=$(( ($(date +%s%N) - start) / 1000000 ))
check_eq "cat of the stalled table ends by the signal" 124 "$rc"
check "cat exited within 5 s (it took ${ms} ms)" test "$ms" -lt 5000

# a handled signal (SIGALRM after 1 s, the handler raises) on a read the reader waits for itself
# (O_DIRECT; a page-cache read waits for its page killably, and only a fatal signal ends that
# wait): the daemon withdraws the waiting read and read() returns EINTR
start=$(date +%s%N)
out=$(timeout 30 python3 - "$S" <<'PY'
import errno, os, signal, sys
class Alarm(Exception):
    pass
def on_alarm(sig, frame):
    raise Alarm()
signal.signal(signal.SIGALRM, on_alarm)
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECT)
signal.setitimer(signal.ITIMER_REAL, 1.0)
try:
    data = os.read(fd, 65536)
    print("read returned %d bytes" % len(data))
except Alarm:
    print("interrupted")
PY
)
ms=$(( ($(date +%s%N) - start) / 1000000 ))
check_eq "a read waiting on the stalled source is interrupted by a handled signal" interrupted "$out"
check "the interrupted read returned within 5 s of its start (it took ${ms} ms)" test "$ms" -lt 5000

# the daemon serves other files meanwhile, and the fill the readers left finishes with the bytes
check "other tables still read while the fill stalls" \
  jq -e 'length > 0' "$M/beta/$P/tables/account.json"
check "the stalled table reads in full once its source answers" \
  wait_for 20 bash -c '[ "$(wc -c <"$1")" = "$2" ]' _ "$S" "$size"
check "and parses as JSON" jq -e 'length > 0' "$S"
check "no read failed with EIO (the waits were withdrawn, not timed out)" \
  bash -c '! grep -q "read .*slow" "$1"' _ "$T/fake.log"
kill -TERM "$FAKE_PID"
check "SIGTERM unmounts cleanly" wait_for 15 bash -c '! mountpoint -q "$1"' _ "$M"
finish
