#!/usr/bin/env bash
# rel_secrets (reliability goal #16, secret exposure): a secret file that others can read, or a
# configuration that others can change, is refused (the configuration holds no secret: 0644 is
# fine); with 0600 files, the client secret and every issued token (dvsim tokens look
# like dvs1.<hex>.<exp>.<mac>) appear nowhere: not in /proc/PID/cmdline or environ of dvsnap and
# its children (sampled all through a capture), not in the -vv log, the catalog, the cache or the
# repository objects. dvsnap is not dumpable: run as uid 1001 its /proc entries belong to root
# (a dumpable control process's belong to 1001), and SIGSEGV leaves no core file where a dumpable
# control process does leave one. Quick: one capture of a 300-record tenant (~15 s).
. "$(dirname "$0")/../lib.sh"
start_dvsim --seed demo --records 300
write_config
dvsnap init >/dev/null
SECRET=$(tr -d '\n' <"$T/secret")
TOKEN_RE='dvs1\.[0-9a-f]*\.[0-9]+\.[0-9a-f]{32}'

# ---- loose permissions are refused ----
chmod 664 "$T/config"
check_fails "a configuration others can change is refused" dvsnap points contoso-prod
cp "$T/check.out" "$T/refusal1"
check "the refusal says why" grep -qiE "refus|chmod|permission|mode" "$T/refusal1"
chmod 644 "$T/config"
check "a configuration others can only read is accepted (it holds no secret)" dvsnap points contoso-prod
chmod 600 "$T/config"
chmod 640 "$T/secret"
check_fails "a secret readable by the group is refused" dvsnap capture --env contoso-dev
cp "$T/check.out" "$T/refusal2"
check "the refusal names the secret file" grep -q "$T/secret" "$T/refusal2"
chmod 600 "$T/secret"
ln -s "$T/secret" "$T/secret-link"
cp "$T/config" "$T/config.link"; sed -i "s|^client_secret_file .*|client_secret_file = $T/secret-link|" "$T/config.link"
check_fails "a secret file that is a symlink is refused" \
  "$DVSNAP" --config "$T/config.link" capture --env contoso-dev

# ---- a capture at -vv, its /proc sampled all along ----
mkdir -p "$T/proc"
"$DVSNAP" --config "$T/config" -v -v capture >"$T/capture.log" 2>&1 &
cap=$!
samples=0
while kill -0 "$cap" 2>/dev/null; do
  for p in $cap $(cat /proc/$cap/task/*/children 2>/dev/null); do
    cat /proc/$p/cmdline >>"$T/proc/cmdline" 2>/dev/null && samples=$((samples + 1))
    cat /proc/$p/environ >>"$T/proc/environ" 2>/dev/null
  done
  sleep 0.05
done
wait "$cap"; rc=$?
check_eq "the -vv capture succeeded" 0 "$rc"
check "its /proc was sampled while it ran ($samples samples)" test "$samples" -gt 3
check "the -vv log is not empty ($(wc -l <"$T/capture.log") lines)" test -s "$T/capture.log"

# tokens really were issued and used (fingerprints from the simulator's request log)
fps=$(curl -sf "$DVSIM_URL/_sim/requests" | jq -r '[.requests[].token | select(. != null and . != "")] | unique | length')
check "the capture used bearer tokens ($fps distinct)" test "${fps:-0}" -ge 1
# a token of the same shape, fetched with curl, is found by the same pattern (the search works)
token >"$T/proc/control-token"
check "the token pattern finds a real token (control)" grep -qaE "$TOKEN_RE" "$T/proc/control-token"
rm -f "$T/proc/control-token"

# ---- nothing anywhere ----
where=("$T/proc" "$T/capture.log" "$T/repo" "$T/cache")
hits_secret=$(grep -rlaF -- "$SECRET" "${where[@]}" 2>/dev/null)
hits_password=$(grep -rlaF -- "$(tr -d '\n' <"$T/password")" "${where[@]}" 2>/dev/null)
hits_token=$(grep -rlaE -- "$TOKEN_RE" "${where[@]}" 2>/dev/null)
hits_auth=$(grep -rlai -- "authorization: bearer\|client_secret=" "${where[@]}" 2>/dev/null)
check_eq "the secret is in no cmdline, environ, log, catalog, cache or object" "" "$hits_secret"
check_eq "the repository password is in no cmdline, environ, log, catalog, cache or object" "" \
  "$hits_password"
check_eq "no token is in any cmdline, environ, log, catalog, cache or object" "" "$hits_token"
check_eq "no Authorization header or client_secret form field is logged" "" "$hits_auth"
check "the repository and catalog were searched ($(find "$T/repo" -type f | wc -l) files)" \
  test "$(find "$T/repo" -type f | wc -l)" -gt 3

# ---- not dumpable ----
# as uid 1001: a process that is not dumpable has the files under /proc/PID owned by root
U=$T/u1001; mkdir -p "$U"
cp "$T/secret" "$U/secret"; cp "$T/password" "$U/password"
sed -e "s|^client_secret_file .*|client_secret_file = $U/secret|" -e "s|^repository .*|repository = $U/repo|" \
  -e "s|^cache_dir .*|cache_dir = $U/cache|" -e "s|^password_file .*|password_file = $U/password|" \
  "$T/config" >"$U/config"
chown -R 1001:1001 "$U"; chmod 700 "$U"; chmod 600 "$U/config" "$U/secret" "$U/password"
as1001() { setpriv --reuid=1001 --regid=1001 --clear-groups env HOME="$U" "$@"; }
as1001 "$DVSNAP" --config "$U/config" init >/dev/null 2>&1
(cd "$U" && ulimit -c unlimited && exec setpriv --reuid=1001 --regid=1001 --clear-groups \
  env HOME="$U" "$DVSNAP" --config "$U/config" capture --env contoso-dev --every 1h) >"$U/run.log" 2>&1 &
d=$!; _pids+=("$d")
(cd "$U" && ulimit -c unlimited && exec setpriv --reuid=1001 --regid=1001 --clear-groups sleep 60) &
ctl=$!; _pids+=("$ctl")
check "the uid-1001 capture loop finished its first pass" wait_for 60 grep -q "contoso-dev: point" "$U/run.log"
check_eq "control: a dumpable uid-1001 process's /proc/PID/environ belongs to 1001" 1001 \
  "$(stat -c %u /proc/$ctl/environ)"
check_eq "dvsnap's /proc/PID/environ belongs to root (not dumpable)" 0 "$(stat -c %u /proc/$d/environ)"
check_fails "uid 1001 cannot read dvsnap's environ" as1001 cat /proc/$d/environ
# SIGSEGV: no core from dvsnap; the control leaves one (core_pattern permitting)
pattern=$(cat /proc/sys/kernel/core_pattern)
kill -SEGV "$ctl"; wait "$ctl" 2>/dev/null
kill -SEGV "$d"; wait "$d" 2>/dev/null
if [ "${pattern:0:1}" = "|" ]; then
  note "core_pattern is a pipe ($pattern): core-file checks skipped"
else
  ls "$U" >"$T/u1001.ls"
  if grep -q '^core' "$T/u1001.ls"; then
    cores=$(find "$U" -maxdepth 1 -name 'core*' -newer "$U/config" | wc -l)
    check_eq "SIGSEGV: exactly one core (the control's), none from dvsnap" 1 "$cores"
    for c in "$U"/core*; do
      check "the core is the control's" bash -c "file '$c' 2>/dev/null | grep -q sleep || strings '$c' | grep -q sleep"
    done
  else
    note "no core from the control either (core dumps disabled here): only the /proc check counts"
  fi
fi
finish
