# bash completion for dvsnap (installed as share/bash-completion/completions/dvsnap).
# Commands and their options come from `dvsnap help` and `dvsnap help COMMAND`, so they follow
# the installed program; environments, points and tables come from `dvsnap complete`, which reads
# the repository of the configuration in use (a --config on the line counts) and asks the
# service nothing. Needs no bash-completion helpers.

# Options whose next word is their value (not a positional argument): every option that
# `dvsnap help` and `dvsnap help COMMAND` show with a value (tests/integration/pkg_completion.sh
# checks it against them; the same list is in _dvsnap and dvsnap.fish).
_dvsnap_valued='--config --now --env --every --concurrency --passes --label --capture-every
  --cache-size --metrics-listen --max-nodes --threads --target -t --tables -T --confirm -c --reason --for
  --table --id --where --map --fallback-owner --new-password-file'

# _dvsnap_add WORD...: each WORD that starts with $cur into COMPREPLY, quoted for the line.
_dvsnap_add() {
  local w
  for w in "$@"; do
    [[ $w == "$cur"* ]] && COMPREPLY+=("$(printf '%q' "$w")")
  done
}

# _dvsnap_lines CMD...: the output lines of CMD (errors dropped) into the array _dvsnap_out.
_dvsnap_lines() {
  mapfile -t _dvsnap_out < <("$@" 2>/dev/null)
}

# _dvsnap_commands: the commands `dvsnap help` lists (two spaces, the name, its summary).
_dvsnap_commands() {
  _dvsnap_lines "$prog" help
  _dvsnap_add $(printf '%s\n' "${_dvsnap_out[@]}" | sed -n 's/^  \([a-z][a-z-]*\) .*/\1/p')
}

# _dvsnap_options [COMMAND]: the global options (the "options:" part of `dvsnap help`), and
# with COMMAND the options its usage names; options may come anywhere on the line.
_dvsnap_options() {
  local -a opts
  _dvsnap_lines "$prog" help
  opts=($(printf '%s\n' "${_dvsnap_out[@]}" | sed -n '/^options:/,/^$/p' |
    grep -oE -- '--[a-z][a-z-]*'))
  if [[ -n ${1-} ]]; then
    _dvsnap_lines "$prog" help "$1"
    opts+=($(printf '%s\n' "${_dvsnap_out[@]}" | grep -oE -- '--[a-z][a-z-]*'))
  fi
  _dvsnap_add $(printf '%s\n' "${opts[@]}" | sort -u)
}

_dvsnap() {
  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
  local prog=${COMP_WORDS[0]} cmd= i=1 w
  local -a cfg=() args=() _dvsnap_out=()
  COMPREPLY=()
  # global options (and their values), then the command
  while (( i < COMP_CWORD )); do
    w=${COMP_WORDS[i]}
    if [[ $w == --config ]]; then cfg=(--config "${COMP_WORDS[i+1]}"); (( i += 2 )); continue; fi
    if [[ " $_dvsnap_valued " == *[[:space:]]"$w"[[:space:]]* ]]; then (( i += 2 )); continue; fi
    if [[ $w == -* ]]; then (( i++ )); continue; fi
    cmd=$w
    break
  done
  if [[ $prev == --config || $prev == --map || $prev == --new-password-file ]]; then
    mapfile -t COMPREPLY < <(compgen -f -- "$cur")
    return
  fi
  if [[ -z $cmd ]]; then
    # a global option's value (--now TIME): nothing to offer
    if [[ " $_dvsnap_valued " == *[[:space:]]"$prev"[[:space:]]* ]]; then return; fi
    if [[ $cur == -* ]]; then
      _dvsnap_options
    else
      _dvsnap_commands
    fi
    return
  fi
  # positional arguments of the command before the cursor
  for (( i = i + 1; i < COMP_CWORD; i++ )); do
    w=${COMP_WORDS[i]}
    if [[ " $_dvsnap_valued " == *[[:space:]]"$w"[[:space:]]* ]]; then (( i++ )); continue; fi
    [[ $w == -* ]] || args+=("$w")
  done
  local -a names=("$prog" "${cfg[@]}" complete)
  case $prev in
    --env | --target | -t | --confirm | -c)
      _dvsnap_lines "${names[@]}" envs; _dvsnap_add "${_dvsnap_out[@]}"; return ;;
    --tables | -T)
      # a comma-separated list: complete its last element
      if (( ${#args[@]} >= 2 )); then
        local head=${cur%"${cur##*,}"} last=${cur##*,}
        _dvsnap_lines "${names[@]}" tables "${args[0]}" "${args[1]}"
        cur=$last _dvsnap_add "${_dvsnap_out[@]}"
        COMPREPLY=("${COMPREPLY[@]/#/$head}")
        compopt -o nospace 2>/dev/null
      fi
      return ;;
  esac
  if [[ " $_dvsnap_valued " == *[[:space:]]"$prev"[[:space:]]* ]]; then return; fi
  if [[ $cur == -* ]]; then
    _dvsnap_options "$cmd"
    return
  fi
  local n=${#args[@]}
  case $cmd:$n in
    env:0) _dvsnap_add list ;;
    help:0) _dvsnap_commands ;;
    complete:0) _dvsnap_add envs points tables ;;
    complete:1) [[ ${args[0]} == envs ]] || { _dvsnap_lines "${names[@]}" envs; _dvsnap_add "${_dvsnap_out[@]}"; } ;;
    complete:2) [[ ${args[0]} == tables ]] && { _dvsnap_lines "${names[@]}" points "${args[1]}"; _dvsnap_add "${_dvsnap_out[@]}"; } ;;
    points:0 | cat:0 | changes:0 | backup:0 | forget:0 | hold:0 | release:0 | erase:0 | restore:0 | status:*)
      _dvsnap_lines "${names[@]}" envs; _dvsnap_add "${_dvsnap_out[@]}" ;;
    points:1 | cat:1 | changes:1 | forget:1 | hold:1 | release:1 | restore:1)
      _dvsnap_lines "${names[@]}" points "${args[0]}"; _dvsnap_add "${_dvsnap_out[@]}" ;;
    cat:2 | changes:2)
      _dvsnap_lines "${names[@]}" tables "${args[0]}" "${args[1]}"; _dvsnap_add "${_dvsnap_out[@]}" ;;
    mount:0 | umount:0)
      mapfile -t COMPREPLY < <(compgen -d -- "$cur") ;;
  esac
}
complete -F _dvsnap dvsnap
