#!/usr/bin/env bash
# cli_options (issue 18): the command line and the configuration's conventions.
#   - --version prints "dvsnap X.Y.Z" (tools/dvsnap/version.h), before or after a command;
#   - `dvsnap help CMD` and `dvsnap CMD --help` print the same usage for every command `dvsnap help`
#     lists; an unknown option, a missing value or an unknown command exits 2 naming it;
#   - options anywhere: before the command, after it, after its arguments; --opt=value and
#     --opt value; short options and clusters; `--` ends the options;
#   - POINT in every form (name, latest, label, RFC 3339 time) gives the same point to points,
#     cat, changes, forget and restore (restore used to refuse a time);
#   - -q silences an action's report; exit 3 for a platform rule;
#   - configuration: a 0644 file is accepted, $XDG_CONFIG_HOME/dvsnap/config is found without
#     --config, /etc/dvsnap/config ($DVSNAP_SYSTEM_CONFIG here) when there is no user file, and
#     the default repository lies under $XDG_DATA_HOME.
. "$(dirname "$0")/../lib.sh"
start_dvsim --seed demo --records 60
write_config "environments = contoso-prod contoso-dev"
dvsnap init >/dev/null

# ---- version and help ----
want=$(sed -n 's/^#define DVSNAP_VERSION "\(.*\)"/\1/p' "$(dirname "$0")/../../tools/dvsnap/version.h")
check_eq "--version prints the version of version.h" "dvsnap $want" "$("$DVSNAP" --version)"
check_eq "--version after a command too" "dvsnap $want" "$("$DVSNAP" points --version)"
check "the version is X.Y.Z" grep -qE '^[0-9]+\.[0-9]+\.[0-9]+$' <<<"$want"
# every command dvsnap help lists (help itself aside: `dvsnap help help` is the general usage)
commands=$("$DVSNAP" help | sed -n 's/^  \([a-z][a-z-]*\) .*/\1/p' | grep -vx help)
check "dvsnap help lists commands" test "$(wc -w <<<"$commands")" -ge 10
bad_help=""
for c in $commands; do
  h1=$("$DVSNAP" help "$c") || bad_help="$bad_help $c:exit"
  h2=$("$DVSNAP" "$c" --help) || bad_help="$bad_help $c:--help-exit"
  [ "$h1" = "$h2" ] || bad_help="$bad_help $c:differs"
  grep -q "^usage: dvsnap $c" <<<"$h1" || bad_help="$bad_help $c:usage"
done
check_eq "help CMD and CMD --help agree for every command and start with its usage" "" "$bad_help"
check "dvsnap help lists the exit codes" bash -c "'$DVSNAP' help | grep -q '5 point committed without some tables' && '$DVSNAP' help | grep -q '7 stale'"
"$DVSNAP" capture --no-such-option >"$T/o.out" 2>&1
check_eq "an unknown option exits 2" 2 "$?"
check "...naming it" grep -q "unknown option --no-such-option" "$T/o.out"
"$DVSNAP" --config "$T/config" capture --every >"$T/o.out" 2>&1
check_eq "a missing value exits 2" 2 "$?"
check "...naming the option" grep -q "option --every needs a value" "$T/o.out"
"$DVSNAP" frobnicate >"$T/o.out" 2>&1
check_eq "an unknown command exits 2" 2 "$?"
"$DVSNAP" --config "$T/config" init --json >"$T/o.out" 2>&1
check_eq "--json on a command without a JSON document exits 2" 2 "$?"

# ---- options anywhere ----
check "options after the command's arguments (--config last)" \
  "$DVSNAP" capture --env contoso-dev --config "$T/config"
check "--opt=value forms (--config=, --env=)" "$DVSNAP" --config="$T/config" capture --env=contoso-prod
check "the command's option before the command" "$DVSNAP" --env contoso-dev --config "$T/config" capture
n=$("$DVSNAP" points contoso-dev --config "$T/config" --json | jq '.points | length')
check_eq "--json after the arguments (contoso-dev has 2 points)" 2 "$n"
check "-- ends the options" "$DVSNAP" --config "$T/config" cat -- contoso-dev latest account
check "a short option cluster (-nq to prune)" "$DVSNAP" --config "$T/config" prune -nq
check_eq "-q: a capture reports nothing on stdout" "" "$("$DVSNAP" -q --config "$T/config" capture --env contoso-dev)"

# ---- POINT in every form ----
check "a labelled manual backup" dvsnap backup contoso-prod --label=pre-upgrade
p_label=$(dvsnap points contoso-prod --json | jq -r '.points[] | select(.label == "pre-upgrade") | .point')
t_label=$(dvsnap points contoso-prod --json | jq -r '.points[] | select(.label == "pre-upgrade") | .taken_at')
p_first=$(dvsnap points contoso-prod --json | jq -r '.points[0].point')
t_first=$(dvsnap points contoso-prod --json | jq -r '.points[0].taken_at')
sim_churn contoso-prod 0.1 4 >/dev/null
sleep 1.1
check "a later point" dvsnap capture --env contoso-prod
p_latest=$(dvsnap points contoso-prod --json | jq -r '.points[-1].point')
t_latest=$(dvsnap points contoso-prod --json | jq -r '.points[-1].taken_at')
check "three distinct points: first, labelled, latest" test "$p_first" != "$p_label" -a "$p_label" != "$p_latest"
between=$(date -u -d "$t_label + 0 sec" +%Y-%m-%dT%H:%M:%SZ)
forms_ok=""
for form in "$p_label" pre-upgrade "$between"; do
  [ "$(dvsnap points contoso-prod "$form" | jq -r .point)" = "$p_label" ] || forms_ok="$forms_ok points:$form"
  dvsnap cat contoso-prod "$form" account | cmp -s - <(dvsnap cat contoso-prod "$p_label" account) || forms_ok="$forms_ok cat:$form"
  dvsnap changes contoso-prod "$form" account | cmp -s - <(dvsnap changes contoso-prod "$p_label" account) || forms_ok="$forms_ok changes:$form"
  r=$(dvsnap restore --json contoso-prod "$form" --target contoso-dev --tables account --dry-run 2>/dev/null | jq -r .point)
  [ "$r" = "$p_label" ] || forms_ok="$forms_ok restore:$form($r)"
done
check_eq "name, label and RFC 3339 time name the same point for points, cat, changes and restore" "" "$forms_ok"
check_eq "latest is the newest point" "$p_latest" "$(dvsnap points contoso-prod latest | jq -r .point)"
check_eq "a time before the label gives the point before it" "$p_first" \
  "$(dvsnap points contoso-prod "$t_first" | jq -r .point)"
# The latest point's own time, not the clock: two captures in one second get names a second
# apart, so a point's time can be ahead of the wall clock that took it.
check_eq "restore accepts an RFC 3339 time (latest's)" "$p_latest" \
  "$(dvsnap restore --json contoso-prod "$(date -u -d "$t_latest" +%Y-%m-%dT%H:%M:%SZ)" -t contoso-dev -T account -n 2>/dev/null | jq -r .point)"
dvsnap points contoso-prod 1999-01-01T00:00:00Z >"$T/o.out" 2>&1
check_eq "a time before every point names none (exit 1)" 1 "$?"
dvsnap restore contoso-prod 1999-01-01T00:00:00Z --target contoso-dev --dry-run >"$T/o.out" 2>&1
check_eq "restore of a point that does not exist exits 2" 2 "$?"
check "...saying so" grep -q "has no restore point" "$T/o.out"
dvsnap forget contoso-prod "$p_first" >"$T/o.out" 2>&1
check_eq "forget of a system point exits 3 (platform rule)" 3 "$?"
check "forget by label" dvsnap forget contoso-prod pre-upgrade
check_fails "the label is gone" dvsnap points contoso-prod pre-upgrade

# ---- configuration conventions ----
chmod 644 "$T/config"
check "a 0644 configuration is accepted (it holds no secret)" dvsnap points contoso-dev
chmod 600 "$T/config"
mkdir -p "$T/xdg/dvsnap" "$T/empty"
cp "$T/config" "$T/xdg/dvsnap/config"
check "\$XDG_CONFIG_HOME/dvsnap/config is found without --config" \
  env -u DVSNAP_CONFIG XDG_CONFIG_HOME="$T/xdg" DVSNAP_SYSTEM_CONFIG="$T/none" "$DVSNAP" points contoso-dev
cp "$T/config" "$T/system.conf"; chmod 644 "$T/system.conf"
check "the system-wide file when there is no user file" \
  env -u DVSNAP_CONFIG XDG_CONFIG_HOME="$T/empty" DVSNAP_SYSTEM_CONFIG="$T/system.conf" "$DVSNAP" points contoso-dev
printf 'cache_dir = %s/c2\npassword_file = %s/password\n' "$T" "$T" >"$T/bare.conf"; chmod 644 "$T/bare.conf"
env -u DVSNAP_CONFIG XDG_CONFIG_HOME="$T/empty" XDG_DATA_HOME="$T/data" DVSNAP_SYSTEM_CONFIG="$T/bare.conf" \
  "$DVSNAP" init >"$T/o.out" 2>&1
check "the default repository is under \$XDG_DATA_HOME" test -f "$T/data/dvsnap/repo/config"
finish
