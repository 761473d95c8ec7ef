#!/usr/bin/env bash
# crypt_store (issue 16, items 1 and 2): encrypted points round trip, and the store learns nothing
# of what it holds, on the directory store and then (unless DVSNAP_TEST_REPO is set) on Azurite
# and s3rver. After two captures of every environment (churn between), every table of every
# latest point equals the simulator (cat and mount) and the notes' files equal their attachments'
# bytes; then every object of the store is fetched as stored and none holds (raw, or in a zstd
# frame decoded) a record's name, a contact's e-mail address, a table's field name, an
# attachment's bytes (raw or base64), or the SHA-256 of an attachment (hex or binary), and no
# object name is such a hash; nor do the catalog and the cache hold one. A control finds them in
# an unencrypted repository.
. "$(dirname "$0")/../lib.sh"
store=${DVSNAP_TEST_REPO:-dir}
start_dvsim --seed demo
write_config
dvsnap init >/dev/null
check "[$store] capture" dvsnap capture
sim_churn contoso-prod 0.02 7 >/dev/null
check "[$store] second capture" dvsnap capture
n=0 bad=0
for env in contoso-prod contoso-dev fabrikam-prod; do
  for t in $(dvsnap points "$env" latest | jq -r '.tables[].name'); do
    n=$((n + 1))
    dvsnap cat "$env" latest "$t" | cmp -s - <(sim_dump "$env" "$t") || { bad=$((bad + 1)); note "$env $t differs"; }
  done
done
check_eq "[$store] every table of every latest point equals the simulator ($n tables)" 0 "$bad"
mount_dvsnap "$T/mnt"
check "[$store] through the mount too" cmp -s <(sim_dump contoso-prod contact) \
  "$T/mnt/contoso-prod/latest/tables/contact.json"
# a note's attachment: its file in the mount is the decoded documentbody
sim_dump contoso-prod annotation | jq -c '.[] | select(.documentbody != null and (.documentbody | length) > 2000)' \
  | head -1 >"$T/note.json"
nid=$(jq -r .annotationid "$T/note.json")
jq -r .documentbody "$T/note.json" | base64 -d >"$T/att.bin"
f=$(ls "$T/mnt/contoso-prod/latest/files/annotation/$nid/" | head -1)
check "[$store] a note's file equals its attachment's bytes ($(wc -c <"$T/att.bin") bytes)" \
  cmp -s "$T/att.bin" "$T/mnt/contoso-prod/latest/files/annotation/$nid/$f"

# ---- what the store holds ----
mkdir -p "$T/objects"
repo_list >"$T/names"
while read -r name; do
  repo_get "$name" >"$T/objects/$(printf %s "$name" | tr / _)"
done <"$T/names"
check "[$store] every object was fetched ($(wc -l <"$T/names") objects)" \
  test "$(ls "$T/objects" | wc -l)" -eq "$(wc -l <"$T/names")"
name=$(sim_dump contoso-prod account | jq -r '[.[] | .name | select(length > 12)][0]')
email=$(sim_dump contoso-prod contact | jq -r '[.[] | .emailaddress1 | select(. != null)][0]')
att_hex=$(sha256sum <"$T/att.bin" | cut -c1-64)
att_b64=$(jq -r .documentbody "$T/note.json" | cut -c1001-1064)
head -c 1064 "$T/att.bin" | tail -c 64 >"$T/att.piece"
printf %s "$att_hex" | xxd -r -p >"$T/att.digest"
check "[$store] the known plaintexts are real (\"$name\", $email, $att_hex)" \
  test -n "$name" -a -n "$email" -a "$name" != null -a "$email" != null
# the objects' bytes and every zstd frame in them decoded (tests/tools/unzst): a segment is
# compressed, so a record's values are found only decoded, and only when not sealed
decode_objects() {
  local f
  rm -rf "$T/decoded"; mkdir -p "$T/decoded"
  for f in "$T"/objects/*; do "$BUILD/tests/unzst" "$f" >"$T/decoded/${f##*/}"; done
}
decode_objects
found() { grep -rlaF -- "$1" "$T/decoded" 2>/dev/null | sed "s|$T/decoded/||" | head -3; }
check_eq "[$store] no object holds an account's name" "" "$(found "$name")"
check_eq "[$store] no object holds a contact's e-mail address" "" "$(found "$email")"
check_eq "[$store] no object holds a field name of a record" "" "$(found '"emailaddress1"')"
check_eq "[$store] no object holds an attachment's base64" "" "$(found "$att_b64")"
# binary needles: which objects hold the bytes of a file (python: grep -F cannot take bytes)
holding() {
  python3 - "$T/objects" "$1" <<'PY'
import os, sys
d, needle = sys.argv[1], open(sys.argv[2], "rb").read()
print("\n".join(f for f in sorted(os.listdir(d)) if needle in open(os.path.join(d, f), "rb").read()))
PY
}
check_eq "[$store] no object holds an attachment's bytes" "" "$(holding "$T/att.piece")"
check_eq "[$store] no object holds the SHA-256 of an attachment (hex)" "" "$(found "$att_hex")"
check_eq "[$store] no object holds the SHA-256 of an attachment (binary)" "" "$(holding "$T/att.digest")"
check_eq "[$store] no object is named by it" "" "$(grep -F "$att_hex" "$T/names")"
hits=$(grep -rlaF -- "$att_hex" "$T/cache" "$(catalog_db)" 2>/dev/null)
check_eq "[$store] nor do the catalog and the cache hold it" "" "$hits"
check "[$store] the repository checks clean" dvsnap check --read-data
if [ "$store" = dir ]; then
  # control: the same searches find them in an unencrypted repository
  sed -e '/^password_file/d' -e "s|^repository .*|repository = $T/plain|" -e "s|^cache_dir .*|cache_dir = $T/plaincache|" \
    "$T/config" >"$T/config.plain"; chmod 600 "$T/config.plain"
  "$DVSNAP" --config "$T/config.plain" init --insecure-no-encryption >/dev/null
  "$DVSNAP" --config "$T/config.plain" capture --env contoso-prod >/dev/null 2>&1
  rm -rf "$T/objects"; mkdir -p "$T/objects"
  (cd "$T/plain" && find objects points -type f) | while read -r o; do cp "$T/plain/$o" "$T/objects/$(printf %s "$o" | tr / _)"; done
  decode_objects
  check "control: in an unencrypted repository the search finds an attachment's bytes" \
    test -n "$(holding "$T/att.piece")"
  check "control: and an object named by the attachment's SHA-256" test -f "$T/plain/objects/${att_hex:0:2}/$att_hex"
  check "control: and a field name" test -n "$(found '"emailaddress1"')"
  check "control: and an account's name and a contact's e-mail address" \
    test -n "$(found "$name")" -a -n "$(found "$email")"
fi

# ---- the same on Azurite and s3rver ----
also_on_object_stores
finish
