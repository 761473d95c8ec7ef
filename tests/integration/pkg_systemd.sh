#!/usr/bin/env bash
# pkg_systemd: the systemd units (contrib/systemd/) and dvsnap under them, without a running
# systemd. `make install PREFIX=$T/inst` (so ExecStart= names a program that exists), then:
# - `systemd-analyze verify` passes for each unit and an instance of the template (with MANPATH
#   on the installed pages, so Documentation= must resolve), and fails for a broken copy;
#   `systemd-analyze security --offline` stays within a bound for each service;
# - the mount unit's ExecStartPre and ExecStart, read from the installed file (its Environment=
#   lines, %f of an instance, and $DVSNAP_MOUNT_OPTIONS expanded; DVSNAP_CONFIG pointed at the
#   test's configuration as a drop-in would), run under setpriv with the unit's
#   CapabilityBoundingSet= and NoNewPrivileges=, with NOTIFY_SOCKET on a datagram socket a python
#   listener reads. At READY=1 the listener itself checks that the mountpoint is mounted and
#   lists the environments; STATUS= names the newest point; SIGTERM gives STOPPING=1, exit 0 and
#   nothing left mounted. Once more, unmounted from outside: STOPPING=1 and exit 0.
# - the capture unit's ExecStart, under its (empty) CapabilityBoundingSet=, takes a point;
# - with stderr on the stream $JOURNAL_STREAM names, log lines carry <N> syslog priorities.
# Not covered: the namespace and seccomp settings (ProtectSystem, SystemCallFilter...), which
# only a running systemd applies.
. "$(dirname "$0")/../lib.sh"
SRC=$(cd "$(dirname "$0")/../.." && pwd)
INST="$T/inst"
UNITS="$INST/lib/systemd/system"
check "make install PREFIX=$INST" make -s -C "$SRC" install BUILD="$BUILD" PREFIX="$INST"
export MANPATH="$INST/share/man"

# verify DIR UNIT: systemd-analyze verify exits 0 and says nothing (it only warns, exit 0, about
# a value it cannot parse)
verify() { local out; out=$(cd "$1" && systemd-analyze verify "./$2" 2>&1) && [ -z "$out" ] || {
  printf '%s\n' "$out"; return 1; }; }
for u in dvsnap-capture.service dvsnap-capture.timer dvsnap-mount@.service dvsnap-mount@srv-dv.service; do
  check "systemd-analyze verify $u: no complaint" verify "$UNITS" "$u"
done
mkdir -p "$T/broken"
sed 's/^Type=notify/Type=notify-broken/' "$UNITS/dvsnap-mount@.service" >"$T/broken/dvsnap-mount@.service"
check_fails "systemd-analyze verify complains about a broken copy" verify "$T/broken" dvsnap-mount@.service
sed 's|^ExecStart=[^ ]*|ExecStart=/nonexistent/dvsnap|' "$UNITS/dvsnap-capture.service" >"$T/broken/dvsnap-capture.service"
check_fails "and about a copy whose program does not exist" verify "$T/broken" dvsnap-capture.service
exposure() { systemd-analyze security --offline=yes "$1" 2>/dev/null |
  sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p'; }
cap_exp=$(cd "$UNITS" && exposure ./dvsnap-capture.service)
mnt_exp=$(cd "$UNITS" && exposure ./dvsnap-mount@srv-dv.service)
note "systemd-analyze security exposure: capture $cap_exp, mount $mnt_exp (10 = none, 0 = best)"
check "the capture service is sandboxed (exposure <= 3.0)" awk -v e="$cap_exp" 'BEGIN { exit !(e != "" && e <= 3.0) }'
check "the mount service keeps what FUSE allows (exposure <= 6.0)" awk -v e="$mnt_exp" 'BEGIN { exit !(e != "" && e <= 6.0) }'

start_dvsim --seed demo
write_config
dvsnap init >/dev/null
check "a first capture" dvsnap capture --env contoso-prod

# unit_value FILE KEY: the values of KEY= lines, one per line
unit_value() { sed -n "s/^$2=//p" "$1"; }
# unit_setpriv FILE: the setpriv arguments for the unit's CapabilityBoundingSet= and NoNewPrivileges=
unit_setpriv() {
  local caps c set="-all"
  caps=$(unit_value "$1" CapabilityBoundingSet)
  for c in $caps; do c=${c#CAP_}; set="$set,+${c,,}"; done
  printf '%s\n' --bounding-set "$set"
  [ "$(unit_value "$1" NoNewPrivileges)" = yes ] && printf '%s\n' --no-new-privs
}
# unit_env FILE: the Environment= assignments (quotes removed), one per line
unit_env() { unit_value "$1" Environment | sed 's/^"\(.*\)"$/\1/'; }
# expand_exec LINE: a command line with %f, $VAR and ${VAR} replaced, one word per line
expand_exec() {
  local w
  for w in $1; do
    w=${w//%f/$UNIT_F}
    case $w in
      \$*) w=${w#\$}; w=${w#\{}; w=${w%\}}; printf '%s\n' ${!w} ;;  # split, as systemd does
      *) printf '%s\n' "$w" ;;
    esac
  done
}

MOUNT_UNIT="$UNITS/dvsnap-mount@.service"
MP="$T/srv/dv"
INSTANCE=$(systemd-escape --path "$MP")
UNIT_F=/$(systemd-escape --unescape "$INSTANCE")
check_eq "%f of the instance is the mountpoint" "$MP" "$UNIT_F"
while IFS= read -r kv; do export "${kv%%=*}=${kv#*=}"; done < <(unit_env "$MOUNT_UNIT")
check_eq "the unit reads /etc/dvsnap/config" /etc/dvsnap/config "$DVSNAP_CONFIG"
export DVSNAP_CONFIG="$T/config"   # as `systemctl edit` would
mapfile -t pre < <(expand_exec "$(unit_value "$MOUNT_UNIT" ExecStartPre)")
mapfile -t cmd < <(expand_exec "$(unit_value "$MOUNT_UNIT" ExecStart)")
mapfile -t priv < <(unit_setpriv "$MOUNT_UNIT")
note "ExecStart: ${cmd[*]}"
note "setpriv ${priv[*]}"
check "ExecStart runs the installed dvsnap in the foreground at %f" \
  test "${cmd[0]}" = "$INST/bin/dvsnap" -a "${cmd[1]}" = mount -a "${cmd[2]}" = --foreground \
  -a "${cmd[-1]}" = "$MP"
check "ExecStartPre creates the mountpoint" "${pre[@]}"

cat >"$T/listen.py" <<'PY'
import os, socket, sys, time
path, log, mp = sys.argv[1:4]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
with open(log, "a", buffering=1) as f:
    f.write("LISTENING\n")
    while True:
        fields = s.recv(65536).decode().split("\n")
        f.write("MSG " + " | ".join(fields) + "\n")
        if "READY=1" in fields:
            mounted = any(l.split()[4] == mp for l in open("/proc/self/mountinfo"))
            t0 = time.monotonic()
            try:
                names, listed = sorted(os.listdir(mp)), 1
            except OSError as e:
                names, listed = [str(e)], 0
            f.write("AT-READY mounted=%d listed=%d seconds=%.2f names=%s\n"
                    % (mounted, listed, time.monotonic() - t0, ",".join(names)))
PY
# run_mount NAME: start the unit's command under setpriv with NOTIFY_SOCKET; sets UNIT_PID
run_mount() {
  rm -f "$T/notify.sock"; : >"$T/notify-$1.log"
  python3 "$T/listen.py" "$T/notify.sock" "$T/notify-$1.log" "$MP" &
  _pids+=($!)
  wait_for 10 grep -q LISTENING "$T/notify-$1.log"
  NOTIFY_SOCKET="$T/notify.sock" setpriv "${priv[@]}" "${cmd[@]}" >"$T/unit-$1.log" 2>&1 &
  UNIT_PID=$!
  _pids+=("$UNIT_PID")
  _mounts+=("$MP")
}

run_mount sigterm
check "READY=1 arrives" wait_for 30 grep -q 'READY=1' "$T/notify-sigterm.log"
check "at READY=1 the mountpoint is mounted and ls lists the environments" \
  grep -qE '^AT-READY mounted=1 listed=1 seconds=[0-9.]+ names=.*contoso-prod' "$T/notify-sigterm.log"
check "STATUS= names the newest point" \
  grep -qE 'STATUS=serving .*newest point contoso-prod/20' "$T/notify-sigterm.log"
check_eq "nothing says STOPPING before the stop" 0 "$(grep -c 'STOPPING=1' "$T/notify-sigterm.log")"
check "the capture loop of DVSNAP_MOUNT_OPTIONS runs in the mount" \
  wait_for 30 bash -c 'grep -q "\"capture_every_s\": 900" "$0"/contoso-prod/environment.json' "$MP"
kill -TERM "$UNIT_PID"
check "SIGTERM: STOPPING=1 arrives" wait_for 30 grep -q 'STOPPING=1' "$T/notify-sigterm.log"
wait_for 60 bash -c '! kill -0 "$0" 2>/dev/null' "$UNIT_PID"
wait "$UNIT_PID"; rc=$?
check_eq "SIGTERM: dvsnap exits 0" 0 "$rc"
check_fails "SIGTERM: the mountpoint is unmounted" mountpoint -q "$MP"
check "STOPPING=1 came after READY=1" \
  bash -c 'awk "/READY=1/ {r = NR} /STOPPING=1/ {s = NR} END {exit !(r && s > r)}" "$0"' "$T/notify-sigterm.log"
sed 's/^/#   mount: /' "$T/unit-sigterm.log" | head -5

run_mount umount
check "again: READY=1 arrives" wait_for 30 grep -q 'READY=1' "$T/notify-umount.log"
check "an unmount from outside (dvsnap umount)" "$DVSNAP" umount "$MP"
check "then STOPPING=1 arrives" wait_for 30 grep -q 'STOPPING=1' "$T/notify-umount.log"
wait_for 60 bash -c '! kill -0 "$0" 2>/dev/null' "$UNIT_PID"
wait "$UNIT_PID"; rc=$?
check_eq "and dvsnap exits 0" 0 "$rc"

CAPTURE_UNIT="$UNITS/dvsnap-capture.service"
mapfile -t cmd < <(expand_exec "$(unit_value "$CAPTURE_UNIT" ExecStart)")
mapfile -t priv < <(unit_setpriv "$CAPTURE_UNIT")
note "capture ExecStart: ${cmd[*]}; setpriv ${priv[*]}"
before=$(dvsnap points contoso-dev 2>/dev/null | grep -c '^20')
check "the capture unit's ExecStart takes a point, without capabilities" \
  env DVSNAP_CONFIG="$T/config" setpriv "${priv[@]}" "${cmd[@]}"
check "contoso-dev has one more point" test "$(dvsnap points contoso-dev | grep -c '^20')" -gt "$before"

: >"$T/journal.log"
JS=$(stat -c '%d:%i' "$T/journal.log")
JOURNAL_STREAM=$JS "$DVSNAP" --config "$T/config" -v -v capture --env contoso-prod 2>>"$T/journal.log" >/dev/null
check "stderr on \$JOURNAL_STREAM: debug lines as <7>debug:" grep -q '^<7>debug: auth: ' "$T/journal.log"
check_eq "and no line without a priority" "" "$(grep -v '^<[0-7]>' "$T/journal.log" | head -3)"
"$DVSNAP" --config "$T/config" -v -v capture --env contoso-prod 2>"$T/plain.log" >/dev/null
check "elsewhere: timestamped lines" grep -qE '^20[0-9-]+T[0-9:]+Z dvsnap debug: auth: ' "$T/plain.log"
JOURNAL_STREAM=1:1 "$DVSNAP" --config "$T/config" -v -v capture --env contoso-prod 2>"$T/other.log" >/dev/null
check "a JOURNAL_STREAM that is not stderr changes nothing" grep -qE '^20[0-9-]+T[0-9:]+Z dvsnap debug: ' "$T/other.log"
finish
