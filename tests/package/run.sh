#!/usr/bin/env bash
# tests/package/run.sh BUILD_DIR: the Debian package, end to end, in a clean Debian root.
#   1. dpkg-buildpackage -us -uc -b in a copy of the tree (the files git knows, uncommitted
#      changes included): dvsnap_*.deb and dvsim_*.deb;
#   2. debootstrap --variant=minbase of this machine's release into a temporary root, from the
#      mirror apt is configured with here (read from /etc/apt/sources.list*);
#   3. apt-get install ./dvsnap_*.deb inside it, pulling its dependencies from that mirror;
#   4. inside: dvsnap --version, then init, a capture against dvsim (the host's build, on
#      loopback) and `dvsnap cat` equal to the simulator's table; the installed completion
#      loads; an /etc/fstab line of type fuse.dvsnap mounts through the installed
#      /sbin/mount.fuse.dvsnap (`mount /srv/dv`), ls works, umount works;
#   5. apt-get purge removes it.
# Prints ok / not ok lines, the time of each step, and "N passed, N failed"; exits non-zero on
# any failure. Needs root, the network to the Debian mirror, and /dev/fuse. Installs debhelper
# and debootstrap when missing. PKG_TEST_KEEP=1 keeps the root (its path is printed).
# Safety: the root gets /proc and a bind of /dev; both are unmounted, and nothing is mounted
# below the root any more, before it is removed (with --one-file-system).
set -u
BUILD=$(cd "${1:-build}" && pwd)
export BUILD
SRC=$(cd "$(dirname "$0")/../.." && pwd)
. "$SRC/tests/lib.sh"
passed=0 failed=0
ok() { echo "ok - $*"; passed=$((passed + 1)); }
not_ok() { echo "not ok - $*"; failed=$((failed + 1)); _failed=1; }
step_start=$(date +%s) all_start=$step_start
step() { local now; now=$(date +%s); note "step took $((now - step_start)) s; next: $*"; step_start=$now; }
end_run() { step "end"; note "total $(( $(date +%s) - all_start )) s"; echo "$passed passed, $failed failed"; finish; }

ROOT=$(mktemp -d /var/tmp/dvsnap-pkgroot.XXXXXX)
# mounts_below DIR: mountpoints at or below DIR, deepest first
mounts_below() { awk -v r="$1" 'index($5, r) == 1 { print $5 }' /proc/self/mountinfo | sort -r; }
pkg_cleanup() {
  local m p
  for p in /proc/[0-9]*; do   # processes of ours still running in the root (the fstab daemon)
    [ "$(readlink "$p/root" 2>/dev/null)" = "$ROOT" ] && kill "${p#/proc/}" 2>/dev/null
  done
  for m in $(mounts_below "$ROOT"); do umount "$m" 2>/dev/null || umount -l "$m"; done
  if [ -n "$(mounts_below "$ROOT")" ]; then
    echo "# still mounted below $ROOT: left in place"
  elif [ -z "${PKG_TEST_KEEP:-}" ]; then
    rm -rf --one-file-system "$ROOT"
  else
    echo "# kept $ROOT"
  fi
  cleanup
}
trap pkg_cleanup EXIT
in_root() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  HOME=/root LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"; }

# ---- 1. build the packages
missing=""
for p in build-essential debhelper debootstrap dpkg-dev fakeroot; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  note "installing:$missing"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
check "debhelper and debootstrap are installed" bash -c 'command -v dh && command -v debootstrap'
mkdir -p "$T/src/dvsnap"
(cd "$SRC" && git ls-files -co --exclude-standard | grep -vE '^build(-[^/]*)?/' |
  while IFS= read -r f; do [ -e "$f" ] && printf '%s\n' "$f"; done | tar -cf - -T -) |
  tar -xf - -C "$T/src/dvsnap"
step "dpkg-buildpackage"
if (cd "$T/src/dvsnap" && unset BUILD && DEB_BUILD_OPTIONS="parallel=$(nproc) nocheck" \
    dpkg-buildpackage -us -uc -b >"$T/build.log" 2>&1); then
  ok "dpkg-buildpackage -us -uc -b"
else
  not_ok "dpkg-buildpackage -us -uc -b"; tail -30 "$T/build.log" | sed 's/^/#   /'
fi
DEB=$(ls "$T"/src/dvsnap_*_*.deb 2>/dev/null | head -1)
check "it made dvsnap and dvsim packages" test -n "$DEB" -a -n "$(ls "$T"/src/dvsim_*_*.deb 2>/dev/null)"
VERSION=$(cd "$T/src/dvsnap" && dpkg-parsechangelog -S Version)
check "dvsnap's package holds the program, the helper, the units and the man pages" bash -c '
  c=$(dpkg-deb -c "$0"); for f in ./usr/bin/dvsnap ./usr/sbin/mount.fuse.dvsnap \
    ./lib/systemd/system/dvsnap-mount@.service ./usr/share/man/man1/dvsnap.1.gz \
    ./usr/share/man/man5/dvsnap.conf.5.gz ./usr/share/doc/dvsnap/copyright; do
    grep -qF " $f" <<<"$c" || { echo "missing $f"; exit 1; }; done' "$DEB"
[ -n "$DEB" ] || end_run

# ---- 2. a clean root
codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
mirror=""
for f in /etc/apt/sources.list.d/*.sources; do   # deb822: the first URI of a stanza for $codename
  [ -f "$f" ] || continue
  mirror=$(awk -v c="$codename" '
    /^$/ { if (deb && suite && uri) { print uri; exit } deb = suite = 0; uri = "" }
    /^Types:/ { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
    /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == c) suite = 1 }
    /^URIs:/ { uri = $2 }
    END { if (deb && suite && uri) print uri }' "$f" | head -1)
  [ -n "$mirror" ] && break
done
if [ -z "$mirror" ]; then   # one-line format
  mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
    awk -v c="$codename" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) while ($i !~ /\]$/) i++; if ($2 ~ /^\[/) i++;
      if ($(i + 1) == c) { print $i; exit } }')
fi
check "apt's mirror for $codename: ${mirror:-none}" test -n "$mirror"
step "debootstrap --variant=minbase $codename"
if debootstrap --variant=minbase "$codename" "$ROOT" "$mirror" >"$T/debootstrap.log" 2>&1; then
  ok "debootstrap --variant=minbase $codename"
else
  not_ok "debootstrap"; tail -20 "$T/debootstrap.log" | sed 's/^/#   /'; end_run
fi
mount -t proc proc "$ROOT/proc"
mount --bind /dev "$ROOT/dev"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"; chmod 755 "$ROOT/usr/sbin/policy-rc.d"
check "the new root has no dvsnap" bash -c '! chroot "$0" sh -c "command -v dvsnap"' "$ROOT"

# ---- 3. install the package with its dependencies
step "apt-get install ./$(basename "$DEB")"
cp "$DEB" "$ROOT/tmp/"
if in_root apt-get update -qq >"$T/apt.log" 2>&1 &&
   in_root apt-get install -y -qq --no-install-recommends "/tmp/$(basename "$DEB")" >>"$T/apt.log" 2>&1; then
  ok "apt-get install ./$(basename "$DEB") inside the root"
else
  not_ok "apt-get install"; tail -20 "$T/apt.log" | sed 's/^/#   /'; end_run
fi
check_eq "dpkg says dvsnap $VERSION is installed" "install ok installed $VERSION" \
  "$(in_root dpkg-query -W -f '${Status} ${Version}' dvsnap)"
check "fuse3 came with it" in_root dpkg -s fuse3

# ---- 4. use it
step "dvsnap inside the root"
check_eq "dvsnap --version names the package's version" "dvsnap ${VERSION%%-*}" \
  "$(in_root dvsnap --version 2>&1)"
check "dvsnap help runs" bash -c 'chroot "$0" dvsnap help | grep -q "^  capture "' "$ROOT"
check "the bash completion loads" \
  in_root bash -c '. /usr/share/bash-completion/completions/dvsnap && complete -p dvsnap'

start_dvsim --seed demo
install -m 0600 "$T/secret" "$ROOT/etc/dvsnap/secret"
printf 'package-test-password\n' >"$T/password"
install -m 0600 "$T/password" "$ROOT/etc/dvsnap/password"
cat >"$ROOT/etc/dvsnap/config" <<CFG
admin_url          = $DVSIM_URL
token_url          = $DVSIM_URL/contoso/oauth2/v2.0/token
client_id          = dvsnap-test
client_secret_file = /etc/dvsnap/secret
password_file      = /etc/dvsnap/password
repository         = /var/lib/dvsnap/repo
cache_dir          = /var/cache/dvsnap
CFG
chmod 600 "$ROOT/etc/dvsnap/config"
mkdir -p "$ROOT/var/lib/dvsnap"
check "dvsnap init" in_root dvsnap --config /etc/dvsnap/config init
check "dvsnap capture against dvsim on loopback" in_root dvsnap --config /etc/dvsnap/config capture --env contoso-prod
check "dvsnap points lists the new point" \
  bash -c 'chroot "$0" dvsnap --config /etc/dvsnap/config points contoso-prod | grep -q "^20"' "$ROOT"
check "dvsnap cat equals the simulator's table" \
  cmp <(in_root dvsnap --config /etc/dvsnap/config cat contoso-prod latest account) <(sim_dump contoso-prod account)

echo "dvsnap#/etc/dvsnap/config /srv/dv fuse.dvsnap defaults,_netdev 0 0" >>"$ROOT/etc/fstab"
mkdir -p "$ROOT/srv/dv"
if in_root mount /srv/dv >"$T/mount.log" 2>&1; then ok "mount /srv/dv from /etc/fstab"
else not_ok "mount /srv/dv from /etc/fstab"; sed 's/^/#   /' "$T/mount.log"; fi
check_eq "it is a fuse.dvsnap mount" fuse.dvsnap "$(findmnt -n -o FSTYPE "$ROOT/srv/dv")"
check "ls /srv/dv shows the environment" bash -c 'chroot "$0" ls /srv/dv | grep -qx contoso-prod' "$ROOT"
check "a table reads back" \
  cmp <(in_root cat /srv/dv/contoso-prod/latest/tables/account.json) <(sim_dump contoso-prod account)
check "umount /srv/dv" in_root umount /srv/dv
check_fails "nothing is mounted at /srv/dv any more" mountpoint -q "$ROOT/srv/dv"

# ---- 5. remove it
step "apt-get purge"
check "apt-get purge dvsnap" in_root apt-get purge -y -qq dvsnap
check "dvsnap and its helper are gone" \
  bash -c '! chroot "$0" sh -c "command -v dvsnap" && [ ! -e "$0/usr/sbin/mount.fuse.dvsnap" ]' "$ROOT"
end_run
