#!/usr/bin/env bash
# pkg_completion: the shell completions (contrib/completion/) against a repository captured from
# dvsim. bash: sourced, `complete -p dvsnap` names _dvsnap, and _dvsnap called as readline would
# completes commands, options, environments, points, labels and tables (a --config on the line
# is passed on to `dvsnap complete`). fish: `complete -C` runs the real completion. zsh: `zsh -n`,
# then _dvsnap run with $words and $CURRENT set and compadd replaced by a function that prints
# what it is given (zsh filters by prefix itself, so every candidate is printed), and once in a
# real interactive zsh on a pseudo-terminal (zpty). Every command `dvsnap help` lists is offered
# by each shell; every option each command's --help prints is offered by bash for that command,
# and every option the help shows with a value is in bash's list of valued options (whose value is
# not a positional argument), which zsh and fish hold the same: the lists cannot drift from the
# program.
. "$(dirname "$0")/../lib.sh"
SRC=$(cd "$(dirname "$0")/../.." && pwd)
C="$SRC/contrib/completion"
start_dvsim --seed demo
write_config
dvsnap init >/dev/null
dvsnap capture --env contoso-prod --env contoso-dev >/dev/null 2>&1
dvsnap backup contoso-prod --label pre-upgrade >/dev/null 2>&1
POINT=$(dvsnap points contoso-prod | awk 'NR == 2 {print $1}')
note "first point of contoso-prod: $POINT"

check "dvsnap complete envs lists the captured environments" \
  bash -c '[ "$("$0" --config "$1" complete envs | tr "\n" " ")" = "contoso-dev contoso-prod " ]' \
  "$DVSNAP" "$T/config"
check "dvsnap complete points lists latest, names and labels" \
  bash -c 'out=$("$0" --config "$1" complete points contoso-prod); grep -qx latest <<<"$out" &&
    grep -qx "$2" <<<"$out" && grep -qx pre-upgrade <<<"$out"' "$DVSNAP" "$T/config" "$POINT"
check "dvsnap complete tables takes a label as the point" \
  bash -c '"$0" --config "$1" complete tables contoso-prod pre-upgrade | grep -qx account' \
  "$DVSNAP" "$T/config"
check_fails "dvsnap complete with a wrong form is a usage error" dvsnap complete points
HELP=$("$DVSNAP" help)
COMMANDS=$(sed -n 's/^  \([a-z][a-z-]*\) .*/\1/p' <<<"$HELP")
GLOBAL_OPTIONS=$(sed -n '/^options:/,/^$/p' <<<"$HELP")
check "dvsnap help lists commands" test "$(wc -w <<<"$COMMANDS")" -ge 10
# the options a command's help shows with a value ("--reason TEXT", "-t|--target ENV2"): in the
# usage lines (the first and those indented more than the description), and the global ones
help_valued() {
  { "$DVSNAP" "$1" --help | awk 'NR == 1 || (/^   / && !d) {print; next} {d = 1}'
    printf '%s\n' "$GLOBAL_OPTIONS"; } |
    grep -oE -- '(-[a-zA-Z]\|)?--[a-z][a-z-]* [^][| -]' | sed 's/ .$//' | tr '|' '\n'
}
check "the help shows valued options (--reason, --map, --new-password-file)" \
  bash -c 'grep -qx -- --reason <<<"$1" && grep -qx -- --map <<<"$2" &&
    grep -qx -- --new-password-file <<<"$3"' _ "$(help_valued hold)" "$(help_valued restore)" \
  "$(help_valued key)"

check "bash -n" bash -n "$C/dvsnap.bash"
check "complete -p dvsnap names _dvsnap after sourcing" \
  bash -c '. "$0"; complete -p dvsnap | grep -q -- "-F _dvsnap dvsnap"' "$C/dvsnap.bash"

# comp WORD...: what bash offers for the last WORD (the one being completed), one per line
comp() {
  bash -c '. "$0"; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
    _dvsnap; printf "%s\n" "${COMPREPLY[@]}"' "$C/dvsnap.bash" "$@"
}
D=("$DVSNAP" --config "$T/config")
check_eq "bash: commands after the global options" "capture cat changes check complete" \
  "$(comp "${D[@]}" c | sort | tr '\n' ' ' | sed 's/ $//')"
missing=""
all=$(comp "${D[@]}" "")
for c in $COMMANDS; do
  grep -qx "$c" <<<"$all" || missing="$missing $c"
done
check_eq "bash: every command of dvsnap help is offered" "" "$missing"
missing=""
unvalued=""
VALUED=$(bash -c '. "$0"; printf "%s\n" $_dvsnap_valued' "$C/dvsnap.bash" | sort -u)
for c in $COMMANDS; do
  offered=$(comp "${D[@]}" "$c" --)
  for o in $("$DVSNAP" "$c" --help | grep -oE -- '--[a-z][a-z-]*' | sort -u); do
    grep -qx -- "$o" <<<"$offered" || missing="$missing $c:$o"
  done
  for o in $(help_valued "$c"); do
    grep -qx -- "$o" <<<"$VALUED" || unvalued="$unvalued $c:$o"
  done
done
check_eq "bash: every option of each command's --help is offered for that command" "" "$missing"
check_eq "bash: every option the help shows with a value is a valued option" "" "$unvalued"
# the list as zsh and fish hold it
zsh_valued=$(sed -n '/^  valued=(/,/)/p' "$C/_dvsnap" | tr -s ' ()' '\n' | grep -E '^-' | sort -u)
fish_valued=$(sed -n '/set -l valued/,/[^\\]$/p' "$C/dvsnap.fish" | sed 's/.*set -l valued//' |
  tr -s ' \\' '\n' | grep -E '^-' | sort -u)
check_eq "zsh: the same valued options as bash" "$VALUED" "$zsh_valued"
check_eq "fish: the same valued options as bash" "$VALUED" "$fish_valued"
check "bash: a value of --fallback-owner is not a positional argument" \
  bash -c 'grep -qx pre-upgrade' < <(comp "${D[@]}" restore --fallback-owner team:1 contoso-prod "")
check "bash: points of hold after --reason TEXT" \
  bash -c 'grep -qx pre-upgrade' < <(comp "${D[@]}" hold --reason audit contoso-prod "")
check "bash: files after --map" bash -c 'grep -qx "$0"' "$T/config" < <(comp "${D[@]}" restore --map "$T/conf")
check_eq "bash: environments for points" "contoso-dev contoso-prod" \
  "$(comp "${D[@]}" points "" | tr '\n' ' ' | sed 's/ $//')"
check "bash: points of contoso-prod, with latest and the label" \
  bash -c 'out=$(cat); grep -qx latest <<<"$out" && grep -qx "$0" <<<"$out" &&
    grep -qx pre-upgrade <<<"$out"' "$POINT" < <(comp "${D[@]}" cat contoso-prod "")
check_eq "bash: points by prefix" "pre-upgrade" "$(comp "${D[@]}" restore contoso-prod pre)"
check "bash: tables of a point" bash -c 'grep -qx account' < <(comp "${D[@]}" cat contoso-prod latest "")
check_eq "bash: tables by prefix" "account" "$(comp "${D[@]}" changes contoso-prod latest acc)"
check_eq "bash: options of restore by prefix" "--tables --target" \
  "$(comp "${D[@]}" restore contoso-prod latest --ta | tr '\n' ' ' | sed 's/ $//')"
check_eq "bash: environments after --target" "contoso-dev" \
  "$(comp "${D[@]}" restore contoso-prod latest --target contoso-d)"
check_eq "bash: the last table of a --tables list" "account,contact" \
  "$(comp "${D[@]}" restore contoso-prod latest --tables account,conta)"
check "bash: an option's value is not a positional argument" \
  bash -c 'grep -qx pre-upgrade' < <(comp "${D[@]}" restore --target contoso-dev contoso-prod "")
check_eq "bash: env list" "list" "$(comp "${D[@]}" env "")"
mkdir -p "$T/mnt-a" "$T/mnt-b"
check_eq "bash: directories for mount" "$T/mnt-a $T/mnt-b" \
  "$(comp "${D[@]}" mount "$T/mnt-" | sort | tr '\n' ' ' | sed 's/ $//')"
check_eq "bash: global options" "--config" "$(comp "$DVSNAP" --con)"
check_eq "bash: without --config, the configuration of DVSNAP_CONFIG" "contoso-dev contoso-prod" \
  "$(DVSNAP_CONFIG=$T/config comp "$DVSNAP" points "" | tr '\n' ' ' | sed 's/ $//')"

if command -v fish >/dev/null; then
  check "fish -n" fish -n "$C/dvsnap.fish"
  # fcomp LINE: what fish offers at the end of LINE (dvsnap found on PATH)
  fcomp() {
    PATH="$BUILD:$PATH" fish -c 'source $argv[1]; complete -C $argv[2]' "$C/dvsnap.fish" "$1" |
      cut -f1
  }
  check_eq "fish: commands by prefix" "capture cat changes check complete" \
    "$(fcomp "dvsnap c" | sort | tr '\n' ' ' | sed 's/ $//')"
  check_eq "fish: environments" "contoso-dev contoso-prod" \
    "$(fcomp "dvsnap --config $T/config points " | sort | tr '\n' ' ' | sed 's/ $//')"
  check "fish: points with latest and the label" \
    bash -c 'out=$(cat); grep -qx latest <<<"$out" && grep -qx pre-upgrade <<<"$out"' \
    < <(fcomp "dvsnap --config $T/config cat contoso-prod ")
  check_eq "fish: tables by prefix" "account" \
    "$(fcomp "dvsnap --config $T/config cat contoso-prod latest acc")"
  check "fish: a value of --where is not a positional argument" \
    bash -c 'grep -qx contoso-prod' < <(fcomp "dvsnap --config $T/config erase --where a=b ")
  check_eq "fish: options of restore by prefix" "--tables --target" \
    "$(fcomp "dvsnap --config $T/config restore contoso-prod latest --ta" | sort | tr '\n' ' ' | sed 's/ $//')"
  missing=""
  all=$(fcomp "dvsnap ")
  for c in $COMMANDS; do
    grep -qx "$c" <<<"$all" || missing="$missing $c"
  done
  check_eq "fish: every command of dvsnap help is offered" "" "$missing"
else
  note "fish is not installed: fish completion not checked (make deps installs it)"
fi
if command -v zsh >/dev/null; then
  check "zsh -n" zsh -n "$C/_dvsnap"
  # zcomp WORD...: what _dvsnap hands compadd for the last WORD, one per line
  zcomp() {
    zsh -f -c 'compadd() {
        while [[ $1 == -* && $1 != -- ]]; do [[ $1 == -[SPJ] ]] && shift; shift; done
        [[ $1 == -- ]] && shift; print -rl -- "$@"; }
      compset() { return 1; }
      _files() { print -r -- "(files)"; }
      _directories() { print -r -- "(directories)"; }
      words=("${@:2}"); CURRENT=$#words; source "$1"' _ "$C/_dvsnap" "$@"
  }
  all=$(zcomp "${D[@]}" "")
  missing=""
  for c in $COMMANDS; do
    grep -qx "$c" <<<"$all" || missing="$missing $c"
  done
  check_eq "zsh: every command of dvsnap help is offered" "" "$missing"
  check_eq "zsh: environments" "contoso-dev contoso-prod" \
    "$(zcomp "${D[@]}" points "" | tr '\n' ' ' | sed 's/ $//')"
  check "zsh: points with latest and the label" \
    bash -c 'out=$(cat); grep -qx latest <<<"$out" && grep -qx pre-upgrade <<<"$out"' \
    < <(zcomp "${D[@]}" cat contoso-prod "")
  check "zsh: a value of --for is not a positional argument" bash -c 'grep -qx pre-upgrade' \
    < <(zcomp "${D[@]}" hold contoso-prod --for 90d "")
  check "zsh: tables of a label" bash -c 'grep -qx account' \
    < <(zcomp "${D[@]}" cat contoso-prod pre-upgrade "")
  check "zsh: options of restore" bash -c 'out=$(cat); grep -qx -- --target <<<"$out" &&
    grep -qx -- --dry-run <<<"$out"' < <(zcomp "${D[@]}" restore contoso-prod latest --)
  check_eq "zsh: environments after --target" "contoso-dev contoso-prod" \
    "$(zcomp "${D[@]}" restore contoso-prod latest --target "" | tr '\n' ' ' | sed 's/ $//')"
  check_eq "zsh: directories for mount" "(directories)" "$(zcomp "${D[@]}" mount "")"
  # and once in a real interactive zsh on a pseudo-terminal: type, press Tab twice, read the list
  cat >"$T/zpty.zsh" <<'ZSH'
zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z "PS1='%% '; fpath=($1 \$fpath); path=($2 \$path); autoload -Uz compinit; compinit -u -D"
zpty -n -w z "dvsnap --config $3 points "$'\t\t'
all="" start=$SECONDS
while (( SECONDS - start < 15 )); do
  zpty -r -t z out && all+=$out || sleep 0.1
  [[ $all == *contoso-dev*contoso-prod* ]] && break
done
zpty -d z
print -r -- "$all" | sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g' | tr '\r' '\n' | grep -E '^contoso-'
ZSH
  check_eq "zsh: a real interactive completion (zpty, Tab) lists the environments" \
    "contoso-dev contoso-prod" "$(zsh -f "$T/zpty.zsh" "$C" "$BUILD" "$T/config" | head -1 | tr -s " " | sed 's/ *$//')"
else
  note "zsh is not installed: zsh completion not checked (make deps installs it)"
fi
finish
