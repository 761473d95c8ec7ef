#!/usr/bin/env bash
# make demo: the whole product on one machine, no tenant needed. Starts dvsim (the demo tenant) on
# loopback, writes a configuration, a 0600 secret and a 0600 repository password under ./demo/
# (the repository is encrypted, as every new one is), builds a timeline of restore
# points (six captures with churn between them, one labelled manual backup), mounts the backups
# at ./mnt (or $MNT), prints a short tour, and stays until Ctrl-C; then unmounts and stops dvsim.
# Rerunnable: a previous run's dvsim, mount (even a stale one) and data are cleaned up first.
# usage: tools/demo.sh [BUILD_DIR]      (DEMO_NO_WAIT=1: build, mount, tour, then clean up)
set -eu
BUILD=$(cd "${1:-build}" && pwd)
cd "$(dirname "$0")/.."
D="$PWD/demo"
MNT=${MNT:-$PWD/mnt}
DVSNAP="$BUILD/dvsnap"
mkdir -p "$D" "$MNT"
chmod 700 "$D"
say() { printf '\033[1m%s\033[0m\n' "$*"; }

# ---- clean up an earlier run ----
if [ -f "$D/dvsim.pid" ]; then kill "$(cat "$D/dvsim.pid")" 2>/dev/null || true; rm -f "$D/dvsim.pid"; fi
if [ -f "$D/mount.pid" ]; then kill "$(cat "$D/mount.pid")" 2>/dev/null || true; rm -f "$D/mount.pid"; fi
if mountpoint -q "$MNT" 2>/dev/null || ! ls "$MNT" >/dev/null 2>&1; then
  fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
fi
rm -rf "$D/repo" "$D/cache" "$D/dvsim.db" "$D/dvsim.port" "$D"/*.log

MOUNT_PID= DVSIM_PID=
stop() {
  trap - INT TERM EXIT
  echo
  say "stopping: unmounting $MNT and stopping dvsim"
  if [ -n "$MOUNT_PID" ]; then
    fusermount3 -u "$MNT" 2>/dev/null || { sleep 1; fusermount3 -uz "$MNT" 2>/dev/null; } || true
    for _ in $(seq 50); do kill -0 "$MOUNT_PID" 2>/dev/null || break; sleep 0.1; done
    kill "$MOUNT_PID" 2>/dev/null || true
  fi
  [ -z "$DVSIM_PID" ] || kill "$DVSIM_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -f "$D/dvsim.pid" "$D/mount.pid"
  say "done (the repository stays in $D/repo; rerun with: make demo)"
}
trap stop INT TERM EXIT

# ---- the simulator ----
head -c 32 /dev/urandom | base64 | tr -d '\n=' >"$D/secret"
chmod 600 "$D/secret"
head -c 24 /dev/urandom | base64 | tr -d '\n=' >"$D/password"
chmod 600 "$D/password"
say "starting dvsim (the demo tenant contoso) on 127.0.0.1"
"$BUILD/dvsim" --listen 127.0.0.1:0 --ready-file "$D/dvsim.port" --db "$D/dvsim.db" \
  --client-id dvsnap-demo --client-secret-file "$D/secret" --seed demo >"$D/dvsim.log" 2>&1 &
DVSIM_PID=$!
echo "$DVSIM_PID" >"$D/dvsim.pid"
for _ in $(seq 300); do [ -s "$D/dvsim.port" ] && break; kill -0 "$DVSIM_PID" 2>/dev/null || break; sleep 0.1; done
[ -s "$D/dvsim.port" ] || { echo "dvsim did not start:"; tail "$D/dvsim.log"; exit 1; }
PORT=$(head -n1 "$D/dvsim.port")
URL="http://127.0.0.1:$PORT"

cat >"$D/config" <<CFG
# written by make demo: dvsnap against the local simulator
admin_url          = $URL
token_url          = $URL/contoso/oauth2/v2.0/token
client_id          = dvsnap-demo
client_secret_file = $D/secret
repository         = $D/repo
cache_dir          = $D/cache
cache_size         = 2G
capture_every      = 15m
environments       = *
password_file      = $D/password
CFG
chmod 600 "$D/config"
export DVSNAP_CONFIG="$D/config"
churn() { curl -sf -X POST "$URL/_sim/churn" -d "{\"env\":\"$1\",\"fraction\":$2,\"seed\":$3}" >/dev/null; }

# ---- the timeline ----
say "building a timeline: 6 captures with churn between them, one labelled manual backup"
"$DVSNAP" init >/dev/null
for i in 1 2 3 4 5 6; do
  "$DVSNAP" capture >"$D/capture.$i.log" 2>&1 || { echo "capture $i failed:"; tail "$D/capture.$i.log"; exit 1; }
  printf '  capture %d done\n' "$i"
  if [ "$i" = 3 ]; then
    "$DVSNAP" backup contoso-prod --label pre-upgrade >"$D/backup.log" 2>&1 \
      || { echo "manual backup failed:"; tail "$D/backup.log"; exit 1; }
    echo "  manual backup 'pre-upgrade' of contoso-prod done"
  fi
  churn contoso-prod 0.02 "$i"; churn contoso-dev 0.05 "$i"; churn fabrikam-prod 0.01 "$i"
  sleep 1 # distinct point names (one-second resolution)
done

# ---- the mount ----
"$DVSNAP" mount --foreground "$MNT" >"$D/mount.log" 2>&1 &
MOUNT_PID=$!
echo "$MOUNT_PID" >"$D/mount.pid"
for _ in $(seq 100); do [ -L "$MNT/contoso-prod/latest" ] && break; sleep 0.1; done
[ -L "$MNT/contoso-prod/latest" ] || { echo "mount failed:"; tail "$D/mount.log"; exit 1; }

E="$MNT/contoso-prod"
[ -L "$E/labels/pre-upgrade" ] && [ -s "$E/latest/tables/account.json" ] \
  || { echo "the mount does not show the timeline:"; tail "$D/mount.log"; exit 1; }
FIRST=$(ls "$E" | grep '^20' | head -1)
LATEST=$(readlink "$E/latest")
AT=$(date -u -d "@$(( $(date -u -d "$(echo "$FIRST" | sed -E 's/(....-..-..)T(..)(..)(..)Z/\1 \2:\3:\4/')" +%s) + 1 ))" +%Y-%m-%dT%H:%M:%SZ)
case "$MNT" in "$PWD"/*) R=${MNT#"$PWD"/} ;; *) R=$MNT ;; esac
say "mounted at $MNT. A short tour (try these in another terminal):"
cat <<TOUR

  ls $R                                   # environments
  ls $R/contoso-prod                      # restore points, latest, labels/, at/, environment.json
  jq '.[] | select(.name | test("Fabrikam"))' $R/contoso-prod/latest/tables/account.json | head
  diff $R/contoso-prod/$FIRST/tables/account.json \\
       $R/contoso-prod/latest/tables/account.json | head
  cat $R/contoso-prod/latest/changes/account.json | head       # what changed since the point before
  cp -r $R/contoso-prod/labels/pre-upgrade/tables ./export/
  ls "$R/contoso-prod/latest/files/annotation/" | head         # attachments as real files
  ls $R/contoso-prod/at/$AT/tables                # the point in force at any moment
  echo my-label > $R/contoso-prod/.backup                      # manual backup with a label
  cat $R/contoso-prod/.backup                                  # its progress and outcome
  echo 'target=contoso-dev confirm=contoso-dev dry-run' > $R/contoso-prod/latest/.restore
  cat $R/contoso-prod/latest/.restore                          # what a restore would write
  ls $R/.operations/                                            # every backup and restore
  echo x > $R/contoso-default/.backup   # refused (EPERM): cat $R/contoso-default/.backup says why

  points of contoso-prod: $(ls "$E" | grep -c '^20') (first $FIRST, latest $LATEST)
  configuration: $D/config (DVSNAP_CONFIG=$D/config dvsnap points contoso-prod)

TOUR
if [ -n "${DEMO_NO_WAIT:-}" ]; then exit 0; fi
say "Ctrl-C to unmount and stop."
wait "$MOUNT_PID" || true
MOUNT_PID=
