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
cmp -s "$MP/contoso-prod/latest/tables/account.json" <(
  "$DVSNAP" --config "$T/config" cat contoso-prod latest account) &&
  ok "$CASE: a table reads as dvsnap cat shows it" || nok "$CASE: account.json differs"
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
CASE
in_namespace /usr/local/bin
finish
