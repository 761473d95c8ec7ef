#!/usr/bin/env bash
# pkg_fstab: dvsnap mounted by mount(8) for type fuse.dvsnap, against a repository captured from
# dvsim, the three ways a machine does it:
#   1. the installed helper: mount finds /sbin/mount.fuse.dvsnap (a symlink to dvsnap);
#   2. without it: mount runs mount.fuse3, which runs `dvsnap SOURCE MOUNTPOINT -o OPTIONS`
#      through /bin/sh with the shell's default PATH (mount drops the caller's), so dvsnap must
#      be in /usr/local/bin or /usr/bin;
#   3. an fstab line (`mount --fstab FILE MOUNTPOINT`).
# The host's /usr/sbin and /usr/local/bin are not touched: each case runs in a private mount
# namespace (unshare -m) where a directory holding the symlink is bind-mounted over one of them,
# so the mount, `ls` and `umount` happen in there. Also: dvsnap's options (allow_other,
# capture_every=) reach the mount, a bad option or `ro` fails the mount and mounts nothing, and
# the daemon is gone once unmounted.
. "$(dirname "$0")/../lib.sh"
start_dvsim --seed demo
write_config
dvsnap init >/dev/null
dvsnap capture --env contoso-prod >/dev/null 2>&1

# in_namespace DIR_OVER WHAT: run the script on stdin in a private mount namespace where
# $T/bin-over (holding NAME -> dvsnap) covers DIR_OVER. The script prints ok/not ok lines.
in_namespace() {
  local over=$1
  unshare -m --propagation private bash -s "$over" "$T" "$DVSNAP" <<'INNER'
over=$1 T=$2 DVSNAP=$3
mount --bind "$T/bin-over" "$over" || { echo "not ok - bind mount over $over"; exit 1; }
ok() { echo "ok - $*"; }
nok() { echo "not ok - $*"; }
# stop whatever this case left mounted (the daemon exits with its mount)
trap 'for m in "$T"/mnt-*; do mountpoint -q "$m" && umount -l "$m"; done' EXIT
. "$T/case.sh"
INNER
}

# the case's checks, run inside the namespace (mount and the daemon live there)
cat >"$T/case-mount.sh" <<'CASE'
MP=$T/mnt-$CASE
mkdir -p "$MP"
if eval "$MOUNT_CMD" >"$T/mount-$CASE.out" 2>&1; then ok "$CASE: mount returned 0"
else nok "$CASE: mount failed"; sed 's/^/#   /' "$T/mount-$CASE.out"; exit 0; fi
[ "$(findmnt -n -o FSTYPE "$MP")" = fuse.dvsnap ] && ok "$CASE: mounted as fuse.dvsnap" ||
  nok "$CASE: not a fuse.dvsnap mount: $(findmnt -n "$MP")"
ls "$MP" | grep -qx contoso-prod && ok "$CASE: ls shows contoso-prod" || nok "$CASE: ls: $(ls "$MP" 2>&1)"
# another process opening the catalog while the daemon uses it (a daemon that had opened it
# before forking died here of SIGBUS, its -shm mapping reset under it)
bad=0
for k in 1 2 3 4 5; do
  cmp -s "$MP/contoso-prod/latest/tables/account.json" <(
    "$DVSNAP" --config "$T/config" cat contoso-prod latest account) || { bad=$k; break; }
done
[ $bad = 0 ] && ok "$CASE: a table reads as dvsnap cat shows it, 5 times" ||
  nok "$CASE: account.json differs (read $bad)"
findmnt -n -o OPTIONS "$MP" | grep -q allow_other && ok "$CASE: allow_other reached the mount" ||
  nok "$CASE: allow_other missing: $(findmnt -n -o OPTIONS "$MP")"
grep -q '"capture_every_s": 300' "$MP/contoso-prod/environment.json" &&
  ok "$CASE: capture_every=5m runs the capture loop every 300 s" ||
  nok "$CASE: capture_every: $(grep capture_every "$MP/contoso-prod/environment.json")"
pids=$(pgrep -f -- "$MP")
[ -n "$pids" ] && ok "$CASE: the daemon runs in the background" || nok "$CASE: no daemon"
umount "$MP" && ok "$CASE: umount works" || nok "$CASE: umount failed"
for i in $(seq 50); do [ -z "$(pgrep -f -- "$MP")" ] && break; sleep 0.1; done
[ -z "$(pgrep -f -- "$MP")" ] && ok "$CASE: the daemon exited after umount" || {
  nok "$CASE: the daemon is still running"; kill $pids; }
CASE

OPTS=allow_other,_netdev,capture_every=5m
rm -rf "$T/bin-over"; mkdir -p "$T/bin-over"
ln -s "$DVSNAP" "$T/bin-over/mount.fuse.dvsnap"
{ echo "CASE=helper"; echo "MOUNT_CMD='mount -t fuse.dvsnap -o $OPTS \"dvsnap#\$T/config\" \"\$MP\"'"
  cat "$T/case-mount.sh"; } >"$T/case.sh"
in_namespace /usr/sbin

rm -rf "$T/bin-over"; mkdir -p "$T/bin-over"
ln -s "$DVSNAP" "$T/bin-over/dvsnap"
check "no mount.fuse.dvsnap on this machine: mount.fuse3 is used next" \
  test ! -e /sbin/mount.fuse.dvsnap -a -e /sbin/mount.fuse
{ echo "CASE=mountfuse"; echo "MOUNT_CMD='mount -t fuse.dvsnap -o $OPTS \"dvsnap#\$T/config\" \"\$MP\"'"
  cat "$T/case-mount.sh"; } >"$T/case.sh"
in_namespace /usr/local/bin

printf '%s\n' "dvsnap#$T/config $T/mnt-fstab fuse.dvsnap defaults,$OPTS 0 0" \
  "$T/config $T/mnt-plain fuse.dvsnap $OPTS 0 0" >"$T/fstab"
{ echo "CASE=fstab"; echo "MOUNT_CMD='mount --fstab \"\$T/fstab\" \"\$MP\"'"
  cat "$T/case-mount.sh"; } >"$T/case.sh"
in_namespace /usr/local/bin
{ echo "CASE=plain"; echo "MOUNT_CMD='mount --fstab \"\$T/fstab\" \"\$MP\"'"
  cat "$T/case-mount.sh"; } >"$T/case.sh"
in_namespace /usr/local/bin

# refused options: the mount fails with the reason, and nothing is mounted
cat >"$T/case.sh" <<'CASE'
mkdir -p "$T/mnt-bad"
for o in bogus_option ro; do
  if mount -t fuse.dvsnap -o "$o" "dvsnap#$T/config" "$T/mnt-bad" >"$T/bad.out" 2>&1; then
    nok "-o $o mounted"
  else
    grep -q "'$o'" "$T/bad.out" && ok "-o $o is refused, naming it" ||
      nok "-o $o: $(cat "$T/bad.out")"
  fi
  mountpoint -q "$T/mnt-bad" && nok "-o $o left a mount" || ok "-o $o left nothing mounted"
done
# the cache is in use by a first mount: the second one's daemon fails after the fork
mkdir -p "$T/mnt-first" "$T/mnt-second"
mount -t fuse.dvsnap "dvsnap#$T/config" "$T/mnt-first" || nok "the first mount failed"
"$DVSNAP" --config "$T/config" mount "$T/mnt-second" >"$T/second.out" 2>&1
rc=$?
[ $rc = 11 ] && grep -q "in use by another dvsnap process" "$T/second.out" &&
  ok "a background mount failing in its daemon: exit 11 and the reason, from the caller" ||
  nok "second mount: rc $rc, $(cat "$T/second.out")"
mount -t fuse.dvsnap "dvsnap#$T/config" "$T/mnt-second" >"$T/second.out" 2>&1 &&
  nok "mount(8) of a second mount on the same cache succeeded" ||
  { grep -q "in use by another dvsnap process" "$T/second.out" &&
    ok "mount(8) fails the same way, with the daemon's reason" || nok "mount(8): $(cat "$T/second.out")"; }
mountpoint -q "$T/mnt-second" && nok "the failed mount left a mount" || ok "the failed mounts left nothing mounted"
umount "$T/mnt-first"
CASE
in_namespace /usr/local/bin

# the helper's argv parsing, called directly as mount(8) would call it
ln -sf "$DVSNAP" "$T/mount.fuse.dvsnap"
mkdir -p "$T/mnt-direct"
check "mount -f (fake): the helper validates, exits 0 and mounts nothing" \
  bash -c '"$0" "dvsnap#$1/config" "$1/mnt-direct" -o rw,allow_other -f && ! mountpoint -q "$1/mnt-direct"' \
  "$T/mount.fuse.dvsnap" "$T"
"$DVSNAP" "dvsnap#$T/no-such-config" /mnt -o rw,dev,suid >"$T/direct.out" 2>&1; rc=$?
check_eq "mount.fuse3's form names the configuration it was given (exit 1)" "1 yes" \
  "$rc $(grep -q "$T/no-such-config" "$T/direct.out" && echo yes)"
"$T/mount.fuse.dvsnap" "dvsnap#$T/config" >"$T/direct.out" 2>&1; rc=$?
check_eq "the helper without a mountpoint: usage, exit 2" "2 yes" "$rc $(grep -q usage "$T/direct.out" && echo yes)"
check "an ordinary command line is left alone" bash -c '"$0" --config "$1" points contoso-prod | grep -q "^20"' \
  "$DVSNAP" "$T/config"
finish
