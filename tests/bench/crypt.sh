#!/usr/bin/env bash
# crypt benchmarks (issue 16): what encryption costs, encrypted against unencrypted against restic
# (which always encrypts), in one run. Prints "BENCH name value unit [note]" lines.
#  1. reads of a 1M-record table (repo_fill, --record-bytes 300, ~330 MB rendered), the same table
#     in an encrypted and an unencrypted repository: `dvsnap cat` (hyperfine, the two alternated);
#     a cold read through a fresh mount (empty cache, page cache dropped), best of ROUNDS (3) with
#     the two kinds alternated; a warm read (passthrough); restic mount's cold and warm read of the
#     same JSON. The encrypted repository's key objects use a cheap scrypt (log2n 10) so that the
#     figures are the reads'; the default cost of opening (scrypt 2^17) is measured on its own.
#  2. storage of POINTS (30) captures of contoso-prod (dvsim --records RECORDS, 1% churn between):
#     an encrypted and an unencrypted repository capture the same points; restic backs up each
#     point's tables as JSON files. Sizes as MiB and as ratios to the unencrypted repository; the
#     time of the first (full) capture of each and of all POINTS captures.
# Knobs: BENCH_CAT_RECORDS (1000000), BENCH_RECORDS (100000), BENCH_POINTS (30), BENCH_ROUNDS
# (3), BENCH_PARTS ("read storage").
. "$(dirname "$0")/../lib.sh"
CAT_RECORDS=${BENCH_CAT_RECORDS:-1000000}
RECORDS=${BENCH_RECORDS:-100000}
POINTS=${BENCH_POINTS:-30}
ROUNDS=${BENCH_ROUNDS:-3}
ENV=contoso-prod
PARTS=" ${BENCH_PARTS:-read storage} "
part() { [[ $PARTS == *" $1 "* ]]; }
bench() { echo "BENCH $*"; }
secs() { date +%s.%N; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "nan" }'; }
drop() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; }
printf 'bench-password\n' >"$T/pw"; chmod 600 "$T/pw"

part read && {
# ---- 1. reads ----
for kind in plain enc; do
  extra=(); [ $kind = enc ] && extra=(--password-file "$T/pw")
  DVSNAP_TEST_KDF_LOG2N=10 "$BUILD/tests/repo_fill" --repo "$T/$kind" --envs 1 --points 1 \
    --tables 1 --records "$CAT_RECORDS" --record-bytes 300 --no-sync --quiet "${extra[@]}" ||
    { echo "repo_fill failed"; exit 1; }
  { echo "repository = $T/$kind"; echo "cache_dir = $T/cache-$kind"; echo "cache_size = 4G"
    [ $kind = plain ] || echo "password_file = $T/pw"; } >"$T/$kind.config"
  chmod 600 "$T/$kind.config"
done
P=$("$DVSNAP" --config "$T/plain.config" points env-01 | awk 'NR==2 {print $1}')
PE=$("$DVSNAP" --config "$T/enc.config" points env-01 | awk 'NR==2 {print $1}')
"$DVSNAP" --config "$T/plain.config" cat env-01 "$P" table01 >"$T/local.json"
size=$(stat -c %s "$T/local.json")
same=same; cmp -s "$T/local.json" <("$DVSNAP" --config "$T/enc.config" cat env-01 "$PE" table01) || same=DIFFERENT
stored_plain=$(du -sb "$T/plain/objects" | cut -f1); stored_enc=$(du -sb "$T/enc/objects" | cut -f1)
bench crypt_table_bytes "$size" bytes "$CAT_RECORDS records; the two repositories give the $same bytes"
bench crypt_table_stored_ratio "$(ratio "$stored_enc" "$stored_plain")" x "encrypted objects $stored_enc / unencrypted $stored_plain bytes"
hyperfine -N -w 1 -r 10 --export-json "$T/hf.json" \
  "$DVSNAP --config $T/plain.config cat env-01 $P table01" \
  "$DVSNAP --config $T/enc.config cat env-01 $PE table01" >/dev/null 2>&1
cat_plain=$(jq '.results[0].median' "$T/hf.json"); cat_enc=$(jq '.results[1].median' "$T/hf.json")
bench crypt_cat_plain "$(awk -v s="$size" -v t="$cat_plain" 'BEGIN { printf "%.0f", s / t / 1e6 }')" MB/s "dvsnap cat, unencrypted (median of 10: $cat_plain s)"
bench crypt_cat_enc "$(awk -v s="$size" -v t="$cat_enc" 'BEGIN { printf "%.0f", s / t / 1e6 }')" MB/s "dvsnap cat, encrypted (median of 10: $cat_enc s)"
bench crypt_cat_ratio "$(ratio "$cat_enc" "$cat_plain")" x "encrypted time / unencrypted time (goal <= 1.10)"
# the cost of opening with the default key cost, on its own
printf 'bench-password-2\n' >"$T/pw-default"; chmod 600 "$T/pw-default"
sed "s|^password_file .*|password_file = $T/pw-default|" "$T/enc.config" >"$T/encd.config"; chmod 600 "$T/encd.config"
env -u DVSNAP_TEST_KDF_LOG2N DVSNAP_PASSWORD_FILE="$T/pw" "$DVSNAP" --config "$T/encd.config" key add \
  --new-password-file "$T/pw-default" >/dev/null
hyperfine -N -w 1 -r 5 --export-json "$T/hf2.json" "$DVSNAP --config $T/encd.config points env-01" \
  "$DVSNAP --config $T/plain.config points env-01" >/dev/null 2>&1
open_d=$(jq '.results[0].median' "$T/hf2.json"); open_p=$(jq '.results[1].median' "$T/hf2.json")
bench crypt_open_default_kdf "$(awk -v a="$open_d" -v b="$open_p" 'BEGIN { printf "%.3f", a - b }')" s "scrypt N=2^17 r=8 p=1 (128 MiB) per command (once per mount); the second key tried after a cheap one"

M="$T/mnt"; mkdir -p "$M"
mount_kind() { # KIND [OPTIONS]
  local kind=$1; shift
  "$DVSNAP" --config "$T/$kind.config" mount --foreground "$M" "$@" >"$T/mount.log" 2>&1 &
  DPID=$!; _pids+=("$DPID"); _mounts+=("$M")
  wait_for 30 mountpoint -q "$M" || { cat "$T/mount.log"; exit 1; }
}
umount_kind() { fusermount3 -u "$M"; wait "$DPID" 2>/dev/null; }
declare -A cold warm
for kind in plain enc; do cold[$kind]=""; warm[$kind]=""; done
for _ in $(seq "$ROUNDS"); do
  for kind in plain enc; do
    rm -rf "$T/cache-$kind"; mount_kind $kind
    tbl=$(ls -d "$M"/env-01/20*/tables/table01.json | head -1)
    ls -l "$tbl" >/dev/null; drop
    s=$(secs); cat "$tbl" >/dev/null; e=$(secs)
    d=$(awk -v s="$s" -v e="$e" 'BEGIN { printf "%.4f", e - s }')
    [ -z "${cold[$kind]}" ] || awk -v a="$d" -v b="${cold[$kind]}" 'BEGIN { exit !(a < b) }' && cold[$kind]=$d
    cat "$tbl" >/dev/null; sleep 1; cat "$tbl" >/dev/null   # the plain copy for passthrough
    s=$(secs); cat "$tbl" >/dev/null; e=$(secs)
    d=$(awk -v s="$s" -v e="$e" 'BEGIN { printf "%.4f", e - s }')
    [ -z "${warm[$kind]}" ] || awk -v a="$d" -v b="${warm[$kind]}" 'BEGIN { exit !(a < b) }' && warm[$kind]=$d
    umount_kind
  done
done
bench crypt_mount_cold_plain "${cold[plain]}" s "fresh mount, empty cache, page cache dropped, best of $ROUNDS"
bench crypt_mount_cold_enc "${cold[enc]}" s "the same, encrypted"
bench crypt_mount_cold_ratio "$(ratio "${cold[enc]}" "${cold[plain]}")" x "encrypted / unencrypted (goal <= 1.10)"
bench crypt_mount_warm_plain "${warm[plain]}" s "read again (passthrough), best of $ROUNDS"
bench crypt_mount_warm_enc "${warm[enc]}" s "the same, encrypted (the cache holds decoded frames either way)"
bench crypt_mount_warm_ratio "$(ratio "${warm[enc]}" "${warm[plain]}")" x "encrypted / unencrypted"
if command -v restic >/dev/null; then
  export RESTIC_PASSWORD=bench RESTIC_REPOSITORY="$T/restic-read"
  restic init -q >/dev/null 2>&1 && (cd "$T" && restic backup -q local.json >/dev/null 2>&1)
  RM="$T/rmnt"; mkdir -p "$RM"
  restic mount --no-cache "$RM" >/dev/null 2>&1 & _pids+=("$!"); _mounts+=("$RM")
  for _ in $(seq 200); do [ -e "$RM/snapshots/latest" ] && break; sleep 0.1; done
  RF=$(find "$RM/snapshots/latest/" -name local.json | head -1)
  if [ -n "$RF" ]; then
    best=""; wbest=""
    for _ in $(seq "$ROUNDS"); do
      drop; s=$(secs); cat "$RF" >/dev/null; e=$(secs)
      d=$(awk -v s="$s" -v e="$e" 'BEGIN { printf "%.4f", e - s }')
      [ -z "$best" ] || awk -v a="$d" -v b="$best" 'BEGIN { exit !(a < b) }' && best=$d
      s=$(secs); cat "$RF" >/dev/null; e=$(secs)
      d=$(awk -v s="$s" -v e="$e" 'BEGIN { printf "%.4f", e - s }')
      [ -z "$wbest" ] || awk -v a="$d" -v b="$wbest" 'BEGIN { exit !(a < b) }' && wbest=$d
    done
    bench crypt_restic_mount_cold "$best" s "restic mount --no-cache, page cache dropped"
    bench crypt_restic_mount_warm "$wbest" s "restic mount, read again"
    bench crypt_restic_cold_vs_dvsnap_enc_cold "$(ratio "$best" "${cold[enc]}")" x "restic / dvsnap encrypted"
  fi
  fusermount3 -u "$RM" 2>/dev/null
  unset RESTIC_REPOSITORY
fi
rm -rf "$T/plain" "$T/enc" "$T/restic-read" "$T"/cache-*
}

part storage && {
# ---- 2. storage of POINTS points: encrypted, unencrypted, restic ----
start_dvsim --seed demo --records "$RECORDS"
write_config
dvsnap init >/dev/null
sed -e '/^password_file/d' -e "s|^repository .*|repository = $T/plainrepo|" \
  -e "s|^cache_dir .*|cache_dir = $T/plaincache|" "$T/config" >"$T/config.plain"
chmod 600 "$T/config.plain"
plainsnap() { "$DVSNAP" --config "$T/config.plain" "$@"; }
plainsnap init --insecure-no-encryption >/dev/null
export RESTIC_PASSWORD=bench RESTIC_CACHE_DIR="$T/restic-cache"
have_restic=0; command -v restic >/dev/null && restic init -q -r "$T/restic" >/dev/null && have_restic=1
export_point() { # the tables' JSON of the latest point, one directory, same path every time
  rm -rf "$T/export"; mkdir -p "$T/export/$ENV"
  for t in $(plainsnap points "$ENV" latest | jq -r '.tables[].name'); do
    plainsnap cat "$ENV" latest "$t" >"$T/export/$ENV/$t.json"
  done
}
enc_ms=0 plain_ms=0
for i in $(seq "$POINTS"); do
  [ "$i" = 1 ] || sim_churn "$ENV" 0.01 "$i" >/dev/null
  s=$(secs); dvsnap capture --env "$ENV" >/dev/null 2>&1 || { echo "capture failed"; exit 1; }; e=$(secs)
  enc_ms=$(awk -v a="$enc_ms" -v s="$s" -v e="$e" 'BEGIN { printf "%.0f", a + 1000 * (e - s) }')
  s=$(secs); plainsnap capture --env "$ENV" >/dev/null 2>&1 || { echo "capture failed"; exit 1; }; e=$(secs)
  plain_ms=$(awk -v a="$plain_ms" -v s="$s" -v e="$e" 'BEGIN { printf "%.0f", a + 1000 * (e - s) }')
  [ "$i" = 1 ] && first_enc_ms=$enc_ms first_plain_ms=$plain_ms   # the first pass reads everything
  if [ "$have_restic" = 1 ]; then export_point; (cd "$T" && restic -q -r "$T/restic" backup export >/dev/null); fi
done
same=same
for t in $(plainsnap points "$ENV" latest | jq -r '.tables[].name'); do
  cmp -s <(dvsnap cat "$ENV" latest "$t") <(plainsnap cat "$ENV" latest "$t") || same=DIFFERENT
done
for d in repo plainrepo; do sqlite3 "$T/$d/catalog.db" 'PRAGMA wal_checkpoint(TRUNCATE);' >/dev/null 2>&1; done
enc=$(du -sb "$T/repo" | cut -f1); plain=$(du -sb "$T/plainrepo" | cut -f1)
enc_obj=$(du -sb "$T/repo/objects" | cut -f1); plain_obj=$(du -sb "$T/plainrepo/objects" | cut -f1)
restic_sz=$(du -sb "$T/restic" 2>/dev/null | cut -f1)
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
bench crypt_storage_plain "$(mib "$plain")" MiB "$POINTS points at 1% churn, catalog included (tables $same in both)"
bench crypt_storage_enc "$(mib "$enc")" MiB "the same points, encrypted"
bench crypt_storage_enc_ratio "$(ratio "$enc" "$plain")" x "encrypted / unencrypted (objects alone: $(ratio "$enc_obj" "$plain_obj")x)"
[ "$have_restic" = 1 ] && bench crypt_storage_restic "$(mib "$restic_sz")" MiB "restic, the same points' tables as JSON files" &&
  bench crypt_storage_restic_vs_enc "$(ratio "$restic_sz" "$enc")" x "restic / dvsnap encrypted"
s_of() { awk -v ms="$1" 'BEGIN { printf "%.1f", ms / 1000 }'; }
bench crypt_first_capture_plain "$(s_of "$first_plain_ms")" s "the first (full) capture of $ENV (dvsim --records $RECORDS), unencrypted"
bench crypt_first_capture_enc "$(s_of "$first_enc_ms")" s "the same, encrypted (the two alternated)"
bench crypt_capture_enc_ratio "$(ratio "$enc_ms" "$plain_ms")" x "time of the $POINTS captures, encrypted / unencrypted ($enc_ms / $plain_ms ms)"
}
