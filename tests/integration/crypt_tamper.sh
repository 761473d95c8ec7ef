#!/usr/bin/env bash
# crypt_tamper (issue 16, item 4): in an encrypted repository, every way to change what a restore
# would write is detected, on the directory store and then (unless DVSNAP_TEST_REPO is set) on
# Azurite and s3rver: a flipped byte in a segment, a truncated segment, two segments' names
# swapped, a flipped byte in an attachment's blob, and an older manifest replayed under a newer
# point's name. Each time `check --read-data` exits 4 naming the point and the table (or the
# manifest, or the file), `cat` of that table exits 4 while the others read, the mount gives EIO
# for that file only, and a restore of it fails without writing it. Then the object is put back
# and the repository checks clean.
. "$(dirname "$0")/../lib.sh"
store=${DVSNAP_TEST_REPO:-dir}
start_dvsim --seed demo
write_config
dvsnap init >/dev/null
check "[$store] first capture" dvsnap capture --env contoso-prod
sim_churn contoso-prod 0.05 5 >/dev/null
check "[$store] second capture" dvsnap capture --env contoso-prod
P1=$(dvsnap points contoso-prod | awk 'NR == 2 {print $1}')
P2=$(dvsnap points contoso-prod latest | jq -r .point)
manifest contoso-prod "$P2" >"$T/m2.json"   # the whole point (its shared tables document inline)
segs() { jq -r --arg t "$1" '.tables[] | select(.name == $t) | .segments[]' "$T/m2.json"; }
obj() { echo "objects/${1:0:2}/$1"; }
acc=($(segs account)) con=($(segs contact))
check_eq "[$store] account's chain at the second point has a base and a delta" 2 "${#acc[@]}"
for t in account contact; do dvsnap cat contoso-prod "$P2" "$t" >"$T/$t.json"; done
sim_dump contoso-dev account >"$T/dev-account.json"

# damaged WHAT TABLE: check exits 4 naming TABLE, cat of TABLE exits 4, the other table reads
damaged() {
  local what=$1 table=$2 other=contact rc
  [ "$table" != contact ] || other=account
  dvsnap check --read-data >"$T/verify.out" 2>&1; rc=$?
  check_eq "[$store] $what: check --read-data exits 4" 4 "$rc"
  check "[$store] $what: it names the point and $table" grep -q "contoso-prod/$P2: $table" "$T/verify.out"
  dvsnap cat contoso-prod "$P2" "$table" >/dev/null 2>&1; rc=$?
  check_eq "[$store] $what: cat of $table exits 4" 4 "$rc"
  check "[$store] $what: $other still reads exactly" cmp -s "$T/$other.json" \
    <(dvsnap cat contoso-prod "$P2" "$other")
}
# restore_refused WHAT: a restore of account into contoso-dev fails and writes no account record
restore_refused() {
  check_fails "[$store] $1: restore of account refuses" \
    dvsnap restore contoso-prod "$P2" --target contoso-dev --tables account --yes --wait
  check "[$store] $1: contoso-dev's accounts are as they were" cmp -s "$T/dev-account.json" \
    <(sim_dump contoso-dev account)
}
repaired() { check "[$store] $1 put back: the repository checks clean" dvsnap check --read-data; }

# ---- a flipped byte in a segment (and the mount: EIO for that table only) ----
repo_get "$(obj "${acc[1]}")" >"$T/delta"
size=$(wc -c <"$T/delta")
python3 -c 'import sys; d=bytearray(open(sys.argv[1],"rb").read()); d[len(d)//2]^=1; sys.stdout.buffer.write(d)' \
  "$T/delta" | repo_put "$(obj "${acc[1]}")"
damaged "a flipped byte" account
mount_dvsnap "$T/mnt"
cat "$T/mnt/contoso-prod/$P2/tables/account.json" >/dev/null 2>"$T/mnt.err"; rc=$?
check "[$store] a flipped byte: the mount gives EIO for account.json (exit $rc)" \
  grep -q "Input/output error" "$T/mnt.err"
check "[$store] a flipped byte: the mount reads contact.json exactly" \
  cmp -s "$T/contact.json" "$T/mnt/contoso-prod/$P2/tables/contact.json"
restore_refused "a flipped byte"
repo_put "$(obj "${acc[1]}")" <"$T/delta"
repaired "the segment"

# ---- a truncated segment ----
repo_get "$(obj "${con[0]}")" >"$T/cbase"
head -c $(( $(wc -c <"$T/cbase") - 1 )) "$T/cbase" | repo_put "$(obj "${con[0]}")"
damaged "a truncated segment" contact
repo_put "$(obj "${con[0]}")" <"$T/cbase"
repaired "the segment"

# ---- two segments' names swapped ----
repo_get "$(obj "${acc[0]}")" >"$T/abase"
repo_put "$(obj "${acc[0]}")" <"$T/delta"
repo_put "$(obj "${acc[1]}")" <"$T/abase"
damaged "two segments swapped" account
check "[$store] two segments swapped: the first point is named too" grep -q "contoso-prod/$P1: account" "$T/verify.out"
restore_refused "two segments swapped"
repo_put "$(obj "${acc[0]}")" <"$T/abase"
repo_put "$(obj "${acc[1]}")" <"$T/delta"
repaired "the segments"

# ---- a flipped byte in an attachment's blob ----
blob=$(jq -r '[.files[] | select(.table == "annotation")][0].blob' "$T/m2.json")
repo_get "$(obj "$blob")" >"$T/blob"
python3 -c 'import sys; d=bytearray(open(sys.argv[1],"rb").read()); d[-5]^=0x40; sys.stdout.buffer.write(d)' \
  "$T/blob" | repo_put "$(obj "$blob")"
dvsnap check --read-data >"$T/verify.out" 2>&1; rc=$?
check_eq "[$store] a damaged blob: check --read-data exits 4" 4 "$rc"
check "[$store] a damaged blob: it names the file" grep -q "contoso-prod/$P2: files/annotation/" "$T/verify.out"
repo_put "$(obj "$blob")" <"$T/blob"
repaired "the blob"

# ---- an older manifest replayed under the newer point's name ----
repo_get "points/contoso-prod/$P2.json" >"$T/m2.sealed"
repo_get "points/contoso-prod/$P1.json" | repo_put "points/contoso-prod/$P2.json"
dvsnap check >"$T/verify.out" 2>&1; rc=$?
check_eq "[$store] a replayed manifest: check exits 4" 4 "$rc"
check "[$store] a replayed manifest: it names the point's manifest" \
  grep -q "contoso-prod/$P2: manifest" "$T/verify.out"
dvsnap cat contoso-prod "$P2" account >/dev/null 2>&1; rc=$?
check_eq "[$store] a replayed manifest: cat of the point exits 4" 4 "$rc"
fusermount3 -u "$T/mnt"; wait "$MOUNT_PID" 2>/dev/null
mount_dvsnap "$T/mnt2"
cat "$T/mnt2/contoso-prod/$P2/tables/account.json" >/dev/null 2>"$T/mnt.err"; rc=$?
check "[$store] a replayed manifest: the mount serves nothing of it (exit $rc)" test "$rc" -ne 0
check "[$store] a replayed manifest: the mount still reads the first point" \
  cmp -s <(dvsnap cat contoso-prod "$P1" contact) "$T/mnt2/contoso-prod/$P1/tables/contact.json"
restore_refused "a replayed manifest"
repo_put "points/contoso-prod/$P2.json" <"$T/m2.sealed"
repaired "the manifest"

# ---- the same on Azurite and s3rver ----
also_on_object_stores
finish
