#!/usr/bin/env bash
# pkg_man: the man pages (docs/man/*.scd, built into $BUILD/man by scdoc) cannot drift from the
# programs. Each page renders without a warning (man --warnings, groff -ww). dvsnap(1) has an
# entry for every command `dvsnap help` lists, and each entry names every option of that
# command's `dvsnap help CMD`; it names the global options and every exit code of cli.h.
# dvsnap.conf(5) has an entry for every key of the key table in backend/base/config.c, and so
# does contrib/config.example (which must also load once every key is uncommented). dvsim(1)
# names every option of `dvsim --help`. README's Commands block lists the same commands.
# Pages are read as a person sees them: rendered, 200 columns wide, without hyphenation.
. "$(dirname "$0")/../lib.sh"
SRC=$(cd "$(dirname "$0")/../.." && pwd)
MAN="$BUILD/man"

# options_of: the options (-x, --word) named in stdin, one per line, sorted
options_of() { grep -oE -- '(^|[^a-zA-Z0-9_-])--?[a-z][a-z-]*' | sed -E 's/^[^-]+//' | sort -u; }
render() { MANROFFOPT='-rHY=0' MANWIDTH=200 LC_ALL=C.UTF-8 man -l "$1" 2>/dev/null; }
# entries PAGE SECTION: the entries of SECTION, one line each: "TERM<TAB>the text under it"
entries() {
  render "$1" | awk -v sec="$2" '
    /^[A-Z]/ { insec = ($0 == sec); next }
    !insec { next }
    # a term too long for one line wraps onto more lines at the same indent, before its body
    /^       [^ ]/ && term != "" && body == "" { term = term " " substr($0, 8); next }
    /^       [^ ]/ { if (term != "") print term "\t" body; term = substr($0, 8); body = ""; next }
    { body = body " " $0 }
    END { if (term != "") print term "\t" body }'
}

for p in dvsnap.1 dvsnap.conf.5 dvsim.1; do
  check "$p was built" test -s "$MAN/$p"
  check_eq "$p: man --warnings renders it silently" "" \
    "$(MANWIDTH=80 LC_ALL=C.UTF-8 man --warnings -l "$MAN/$p" 2>&1 >/dev/null)"
  check_eq "$p: groff -ww -z renders it silently" "" "$(groff -ww -z -man "$MAN/$p" 2>&1)"
done

commands=$("$DVSNAP" help | sed -n 's/^  \([a-z][a-z-]*\) .*/\1/p')
check "dvsnap help lists commands" test "$(wc -w <<<"$commands")" -ge 10
entries "$MAN/dvsnap.1" COMMANDS >"$T/commands.txt"
missing_cmd="" missing_opt=""
for c in $commands; do
  entry=$(awk -F'\t' -v c="$c" '{ split($1, w, " ") } w[1] == c' "$T/commands.txt")
  if [ -z "$entry" ]; then missing_cmd="$missing_cmd $c"; continue; fi
  # `dvsnap help help` is the general usage: its options are the global ones, checked below
  [ "$c" = help ] && continue
  for o in $("$DVSNAP" help "$c" | options_of); do
    grep -qE -- "(^|[^a-z-])$o([^a-z-]|$)" <<<"$entry" || missing_opt="$missing_opt $c:$o"
  done
done
check_eq "dvsnap(1) has an entry for every command of dvsnap help" "" "$missing_cmd"
check_eq "each entry names every option of dvsnap help CMD" "" "$missing_opt"

page=$(render "$MAN/dvsnap.1")
missing=""
for o in $("$DVSNAP" help | sed -n 's/^usage: //p' | options_of); do
  grep -qE -- "(^|[^a-z-])$o([^a-z-]|$)" <<<"$page" || missing="$missing $o"
done
check_eq "dvsnap(1) names the global options of dvsnap help" "" "$missing"

codes=$(grep -oE 'EXIT_[A-Z]+ = [0-9]+' "$SRC/tools/dvsnap/cli.h" | awk '{print $3}')
check "cli.h names exit codes" test "$(wc -w <<<"$codes")" -ge 5
entries "$MAN/dvsnap.1" "EXIT STATUS" | cut -f1 >"$T/codes.txt"
missing=""
for c in $codes; do grep -qx "$c" "$T/codes.txt" || missing="$missing $c"; done
check_eq "dvsnap(1) EXIT STATUS has every exit code of cli.h" "" "$missing"

# the key table: {"name", K_KIND, ...} lines of keys[] in config.c
keys=$(sed -n '/^static const struct key_def keys\[\]/,/^};/p' "$SRC/backend/base/config.c" |
  sed -n 's/^ *{"\([a-z0-9_]*\)", K_.*/\1/p')
check "config.c's key table has keys" test "$(wc -w <<<"$keys")" -ge 15
entries "$MAN/dvsnap.conf.5" KEYS | cut -f1 | awk '{print $1}' >"$T/keys.txt"
missing=""
for k in $keys; do grep -qx "$k" "$T/keys.txt" || missing="$missing $k"; done
check_eq "dvsnap.conf(5) KEYS has every key of config.c" "" "$missing"
extra=""
for k in $(cat "$T/keys.txt"); do grep -qx "$k" <<<"$keys" || extra="$extra $k"; done
check_eq "dvsnap.conf(5) KEYS has no key config.c does not know" "" "$extra"
missing=""
for k in $keys; do grep -qE "^#?$k +=" "$SRC/contrib/config.example" || missing="$missing $k"; done
check_eq "contrib/config.example shows every key" "" "$missing"
# every key uncommented, with loopback URLs and files of ours: the file loads (the failure that
# follows is the missing repository, not the configuration)
printf 's\n' >"$T/key" && chmod 600 "$T/key"
sed -E -e 's/^#([a-z0-9_]+ +=)/\1/' -e "s|= https://[^ ]*|= http://127.0.0.1:9|" \
  -e "s|= /etc/[^ ]*|= $T/key|" -e "s|= /var/lib/dvsnap/repo|= $T/none/repo|" \
  -e "s|= /var/cache/dvsnap|= $T/cache|" "$SRC/contrib/config.example" >"$T/example.conf"
chmod 600 "$T/example.conf"
"$DVSNAP" --config "$T/example.conf" complete envs >"$T/example.out" 2>&1
check "config.example with every key uncommented loads (then: no repository)" \
  bash -c '! grep -q "configuration:" "$0" && grep -q "repository" "$0"' "$T/example.out"

dvsim_page=$(render "$MAN/dvsim.1")
missing=""
for o in $("$DVSIM" --help 2>&1 | options_of); do
  grep -qE -- "(^|[^a-z-])$o([^a-z-]|$)" <<<"$dvsim_page" || missing="$missing $o"
done
check_eq "dvsim(1) names every option of dvsim --help" "" "$missing"

readme=$(awk '/^## Commands/ { sec = 1; next } sec && /^```/ { fence++; next } sec && fence == 1' \
  "$SRC/README.md" | sed -n 's/^dvsnap \([a-z][a-z-]*\).*/\1/p' | sort -u | tr '\n' ' ')
check_eq "README's Commands block lists the commands of dvsnap help" \
  "$(sort -u <<<"$commands" | tr '\n' ' ')" "$readme"
finish
