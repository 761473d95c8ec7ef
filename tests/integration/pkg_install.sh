#!/usr/bin/env bash
# pkg_install: `make install` and `make uninstall` into a DESTDIR, for the default PREFIX and for
# PREFIX=/usr with Debian's directories: exactly the expected files, with their modes; the mount
# helper is a relative symlink that resolves to dvsnap inside the tree; the units name the
# installed program; the installed programs run; `man -l`, `bash -n`, `zsh -n` and `fish -n`
# accept the installed files; uninstall leaves no file behind.
. "$(dirname "$0")/../lib.sh"
SRC=$(cd "$(dirname "$0")/../.." && pwd)

# files DIR: every file and symlink under DIR as "MODE TYPE PATH", sorted
files() { (cd "$1" && find . \( -type f -o -type l \) -printf '%m %y %P\n' | sort -k3); }

D="$T/dest-local"
check "make install DESTDIR=... (PREFIX=/usr/local)" make -s -C "$SRC" install BUILD="$BUILD" DESTDIR="$D"
check_eq "the files of a /usr/local install" "$(cat <<'EOF'
755 f usr/local/bin/dvsim
755 f usr/local/bin/dvsnap
644 f usr/local/lib/systemd/system/dvsnap-capture.service
644 f usr/local/lib/systemd/system/dvsnap-capture.timer
644 f usr/local/lib/systemd/system/dvsnap-mount@.service
777 l usr/local/sbin/mount.fuse.dvsnap
644 f usr/local/share/bash-completion/completions/dvsnap
644 f usr/local/share/doc/dvsnap/config.example
644 f usr/local/share/fish/vendor_completions.d/dvsnap.fish
644 f usr/local/share/man/man1/dvsim.1
644 f usr/local/share/man/man1/dvsnap.1
644 f usr/local/share/man/man5/dvsnap.conf.5
644 f usr/local/share/zsh/site-functions/_dvsnap
EOF
)" "$(files "$D")"
check_eq "the mount helper is a relative symlink" ../bin/dvsnap "$(readlink "$D/usr/local/sbin/mount.fuse.dvsnap")"
check "it resolves to the installed dvsnap" test "$D/usr/local/sbin/mount.fuse.dvsnap" -ef "$D/usr/local/bin/dvsnap"
check "the units name /usr/local/bin/dvsnap" \
  grep -q '^ExecStart=/usr/local/bin/dvsnap mount --foreground' "$D/usr/local/lib/systemd/system/dvsnap-mount@.service"
check_eq "no @VARIABLE@ is left in the units" "" "$(grep -l '@[A-Z]*@' "$D"/usr/local/lib/systemd/system/* 2>/dev/null)"
check "the installed dvsnap runs" bash -c '"$0" help | grep -q "^  mount "' "$D/usr/local/bin/dvsnap"
check "the installed dvsim runs" bash -c '"$0" --help 2>&1 | grep -q -- --listen' "$D/usr/local/bin/dvsim"
check "the installed dvsnap(1) renders" \
  bash -c 'MANWIDTH=80 man -l "$0" | grep -q "^COMMANDS"' "$D/usr/local/share/man/man1/dvsnap.1"
check "man finds dvsnap.conf(5) under MANPATH" \
  bash -c 'MANPATH="$0" man -w 5 dvsnap.conf | grep -q man5/dvsnap.conf.5' "$D/usr/local/share/man"
check "bash -n on the installed completion" bash -n "$D/usr/local/share/bash-completion/completions/dvsnap"
command -v zsh >/dev/null && check "zsh -n on the installed completion" zsh -n "$D/usr/local/share/zsh/site-functions/_dvsnap"
command -v fish >/dev/null && check "fish -n on the installed completion" fish -n "$D/usr/local/share/fish/vendor_completions.d/dvsnap.fish"
check "make uninstall DESTDIR=..." make -s -C "$SRC" uninstall BUILD="$BUILD" DESTDIR="$D"
check_eq "uninstall leaves no file" "" "$(files "$D")"

D="$T/dest-usr"
DEBIAN_DIRS=(PREFIX=/usr SYSTEMDUNITDIR=/lib/systemd/system ZSHCOMPDIR=/usr/share/zsh/vendor-completions)
check "make install PREFIX=/usr with Debian's unit and zsh directories" \
  make -s -C "$SRC" install BUILD="$BUILD" DESTDIR="$D" "${DEBIAN_DIRS[@]}"
check_eq "the files of a /usr install" "$(cat <<'EOF'
644 f lib/systemd/system/dvsnap-capture.service
644 f lib/systemd/system/dvsnap-capture.timer
644 f lib/systemd/system/dvsnap-mount@.service
755 f usr/bin/dvsim
755 f usr/bin/dvsnap
777 l usr/sbin/mount.fuse.dvsnap
644 f usr/share/bash-completion/completions/dvsnap
644 f usr/share/doc/dvsnap/config.example
644 f usr/share/fish/vendor_completions.d/dvsnap.fish
644 f usr/share/man/man1/dvsim.1
644 f usr/share/man/man1/dvsnap.1
644 f usr/share/man/man5/dvsnap.conf.5
644 f usr/share/zsh/vendor-completions/_dvsnap
EOF
)" "$(files "$D")"
check "the units name /usr/bin/dvsnap" grep -q '^ExecStart=/usr/bin/dvsnap capture$' "$D/lib/systemd/system/dvsnap-capture.service"
check "make uninstall with the same variables" make -s -C "$SRC" uninstall BUILD="$BUILD" DESTDIR="$D" "${DEBIAN_DIRS[@]}"
check_eq "uninstall leaves no file" "" "$(files "$D")"
finish
