#!/usr/bin/env bash
# erase_person (issue 17): the right to erasure inside the backups. A person is a contact with a
# unique e-mail address, name and job titles, and a sole-trader account whose note carries an
# attachment; six points hold versions of them (created, updated, in a manual backup, deleted at
# the source). `dvsnap erase contoso-prod --where emailaddress1=... --table account --id A`:
#   - the dry run names what goes (the contact, the account, the note, their audit records) and
#     changes nothing; a held point refuses the erasure until --override-hold; a --now that does
#     not parse is a usage error (exit 2) that changes nothing;
#   - afterwards no object of the repository and no file of the cache (raw, and every zstd frame
#     decoded) holds any of their values, ids or attachment bytes, nor does any file of a fresh
#     mount; every other record of every point (table files and changes files) is byte for byte
#     what it was; check --read-data is clean; the erasure log has one entry without the values
#     or the ids; a capture after it equals the simulator.
# It runs on an unencrypted repository, where the raw bytes of the objects can be searched (and a
# control shows that they hold the person before); erase_person_crypt runs it again on an
# encrypted one (ERASE_CRYPT=1), where the control is that the raw objects never give the person
# away while `dvsnap cat` shows them, and everything else is checked the same way.
. "$(dirname "$0")/../lib.sh"
start_dvsim --seed demo
write_config
if [ "${ERASE_CRYPT:-0}" = 1 ]; then
  dvsnap init >/dev/null
else
  sed -i '/^password_file/d' "$T/config"
  dvsnap init --insecure-no-encryption >/dev/null
fi
ENV=contoso-prod
C=11111111-2222-3333-4444-555555555555   # the contact
A=11111111-2222-3333-4444-777777777777   # the account
N=11111111-2222-3333-4444-666666666666   # its note
EMAIL=zyxqo.erasetest@example.org
SECRET=ZYXQO-SECRET-ATTACHMENT-BYTES
B64=$(printf '%s-%0300d' "$SECRET" 0 | base64 -w0)
VALUES=("$EMAIL" Zyxqo Erasetestperson "Unique Jobtitle Qwv" "Second Jobtitle Qwv" "+1 555 0199 7341" \
        "$SECRET" "${B64:0:60}" "$C" "$A" "$N")
tok=$(token $ENV)
API=$DVSIM_URL/org/$ENV/api/data/v9.2
# the test's own writes bypass dvsim's simulated plug-in, so the person has only the records made here
api() { curl -sf -o /dev/null -X "$1" -H "Authorization: Bearer $tok" -H 'Content-Type: application/json' \
  -H 'MSCRM.BypassBusinessLogicExecution: CustomSync,CustomAsync' ${3:+-d "$3"} "$API/$2"; }
cap() { dvsnap capture --env $ENV >/dev/null; }

check "point 1: before the person" cap
api PATCH "contacts($C)" "{\"firstname\":\"Zyxqo\",\"lastname\":\"Erasetestperson\",\"emailaddress1\":\"$EMAIL\",\"jobtitle\":\"Unique Jobtitle Qwv\"}"
api PATCH "accounts($A)" '{"name":"Zyxqo Sole Trader","telephone1":"+1 555 0199 7341"}'
api PATCH "annotations($N)" "{\"subject\":\"Zyxqo passport scan\",\"filename\":\"zyxqo.txt\",\"mimetype\":\"text/plain\",\"documentbody\":\"$B64\",\"objectid_account@odata.bind\":\"/accounts($A)\"}"
check "point 2: the person is created" cap
sim_churn $ENV 0.02 1 >/dev/null
api PATCH "contacts($C)" '{"jobtitle":"Second Jobtitle Qwv"}'
check "point 3: updated" cap
sim_churn $ENV 0.02 2 >/dev/null
check "point 4: a manual backup" dvsnap backup $ENV --label before-erasure
api PATCH "annotations($N)" '{"subject":"Zyxqo passport scan (2)"}'
check "point 5: the note updated" cap
api DELETE "contacts($C)"; api DELETE "annotations($N)"; api DELETE "accounts($A)"
sim_churn $ENV 0.02 3 >/dev/null
check "point 6: deleted at the source" cap
PTS=$(dvsnap points $ENV | awk 'NR>1 {print $1}')
check_eq "six points" 6 "$(echo "$PTS" | wc -l)"

# what every point shows, without the person: table files and changes files, line by line
# (a line's trailing comma depends on whether it is the last)
view() { # view POINT TABLE changes|tables
  if [ "$3" = changes ]; then dvsnap changes $ENV "$1" "$2"; else dvsnap cat $ENV "$1" "$2"; fi \
    | grep -a -v -e "$C" -e "$A" -e "$N" | sed 's/,$//'
}
snapshot() {
  local p t k
  for p in $PTS; do
    for t in $(dvsnap points $ENV "$p" | jq -r '.tables[].name'); do
      for k in tables changes; do echo "$p $t $k $(view "$p" "$t" $k | sha256sum | cut -c1-16)"; done
    done
  done
}
snapshot >"$T/before"
holds_person() { # holds_person FILE...: the first of VALUES that the files' bytes give away
  local v
  "$BUILD/tests/unzst" "$@" >"$T/bytes" # decoded once, searched for each value
  for v in "${VALUES[@]}"; do
    if grep -a -q -F -- "$v" "$T/bytes"; then echo "$v"; return 0; fi
  done
  return 1
}
repo_files() { # every object of the repository as a local file (a copy, for object stores)
  case $(_repo_loc) in
    azure://* | s3://*)
      rm -rf "$T/objects.copy"; mkdir -p "$T/objects.copy"
      repo_list | while read -r o; do repo_get "$o" >"$T/objects.copy/${o//\//_}"; done
      find "$T/objects.copy" -type f ;;
    *) find "$(_repo_loc)" -type f ;;
  esac
}
if [ "${ERASE_CRYPT:-0}" = 1 ]; then
  check_eq "encrypted: no raw object gives the person away, even before" "" "$(holds_person $(repo_files))"
  check "encrypted: dvsnap cat shows the person before" \
    bash -c "'$DVSNAP' --config '$T/config' cat $ENV $(echo "$PTS" | sed -n 3p) contact | grep -q -F '$EMAIL'"
else
  check "the repository holds the person before (the test can see it)" holds_person $(repo_files)
fi
mount_dvsnap "$T/mnt"
cat "$T"/mnt/$ENV/*/tables/*.json "$T"/mnt/$ENV/*/changes/*.json >/dev/null
cat "$T"/mnt/$ENV/*/files/annotation/$N/* >/dev/null 2>&1
check "the cache holds the person before" holds_person $(find "$T/cache" -type f)
dvsnap erase $ENV --where "emailaddress1=$EMAIL" --yes >"$T/busy.out" 2>&1
check_eq "erase refuses while the mount holds the cache (exit 11)" 11 "$?"
check "...saying to unmount it first" grep -q "unmount the dvsnap mount that uses it first" "$T/busy.out"
fusermount3 -u "$T/mnt"; sleep 0.5

repo_list >"$T/objects.before"
dvsnap erase $ENV --where "emailaddress1=$EMAIL" --yes --override-hold --now yesterday >"$T/now.out" 2>&1
check_eq "erase with a --now that does not parse is a usage error (exit 2)" 2 "$?"
check "...saying what --now takes" grep -q "dvsnap erase: --now (or DVSNAP_NOW) must be an RFC 3339 time" "$T/now.out"
check_eq "...and changes nothing" "" "$(repo_list | diff "$T/objects.before" - | grep -v catalog.db)"
dvsnap erase $ENV --where "emailaddress1=$EMAIL" --table account --id $A >"$T/dry.out" 2>&1; rc=$?
check_eq "dry run: exit 0" 0 "$rc"
check "dry run: the contact, the account, the note and their audit records" \
  grep -qx "$ENV: 11 records would be erased: account 1 annotation 1 audit 8 contact 1" "$T/dry.out"
check "dry run: from five points" grep -q "^$ENV: 5 points, " "$T/dry.out"
check_eq "dry run: no object changed" "" "$(repo_list | diff "$T/objects.before" - | grep -v catalog.db)"
check_eq "dry run: no log" "" "$(dvsnap erase $ENV --log)"
check "the dry run prints no value it searched for" bash -c "! grep -q -F '$EMAIL' '$T/dry.out'"

P3=$(echo "$PTS" | sed -n 3p)
check "hold point 3" dvsnap hold $ENV "$P3" --reason "litigation"
dvsnap erase $ENV --where "emailaddress1=$EMAIL" --table account --id $A --yes >"$T/held.out" 2>&1; rc=$?
check_eq "a held point refuses the erasure (exit 3)" 3 "$rc"
check "and says which" grep -q "$P3 (litigation)" "$T/held.out"

start=$(date +%s%N)
dvsnap erase $ENV --where "emailaddress1=$EMAIL" --table account --id $A --yes --override-hold >"$T/erase.out" 2>&1; rc=$?
note "erase: $(( ($(date +%s%N) - start) / 1000000 )) ms; $(grep 'objects written' "$T/erase.out")"
check_eq "erase --override-hold: exit 0" 0 "$rc"
sed 's/^/#   /' "$T/erase.out"
check "it says what it erased" grep -qx "$ENV: 11 records erased: account 1 annotation 1 audit 8 contact 1" "$T/erase.out"
check "the repository checks clean" dvsnap check --read-data
check_eq "every other record of every point is byte for byte what it was" "" \
  "$(snapshot | diff "$T/before" - | tee "$T/snap.diff" | head -5)"
check_eq "no point shows the person" "" \
  "$(for p in $PTS; do for t in contact account annotation audit; do dvsnap cat $ENV "$p" $t; dvsnap changes $ENV "$p" $t; done; done | grep -a -o -e "$C" -e "$A" -e "$N" -e Zyxqo | sort -u)"
check_eq "no object of the repository holds any of their values (raw or decoded)" "" \
  "$(holds_person $(repo_files))"
check_eq "nor does any file of the cache" "" "$(holds_person $(find "$T/cache" -type f))"
check_eq "the hold stays" "litigation" "$(dvsnap points $ENV "$P3" | jq -r .hold.reason)"
dvsnap erase $ENV --log >"$T/log.json"
check_eq "the erasure log has one entry" 1 "$(jq -s length "$T/log.json")"
check_eq "it says what, how many, by whom, and the held point overridden" \
  "emailaddress1 = (a value, not kept); 1 record id; with the notes, audits and activities regarding them 11 5 $P3" \
  "$(jq -r '"\(.criterion) \([.records[]] | add) \(.points_rewritten) \(.held_points_overridden[0])"' "$T/log.json")"
check_eq "without the values or the ids" "" "$(holds_person "$T/log.json")"

mount_dvsnap "$T/mnt"
check_eq "a fresh mount shows nothing of them" "" \
  "$(find "$T/mnt/$ENV" -type f -print0 | xargs -0 cat 2>/dev/null | grep -a -o -F -e "$EMAIL" -e Zyxqo -e "$SECRET" -e "$C" -e "$A" -e "$N" | sort -u)"
check_eq "and no files/ directory of the note" "" "$(ls "$T"/mnt/$ENV/*/files/annotation 2>/dev/null | grep -F "$N")"
fusermount3 -u "$T/mnt"; sleep 0.5

sim_churn $ENV 0.02 4 >/dev/null
check "a capture after the erasure" cap
TABLES="account contact annotation"
check "equals the simulator" matches_sim $ENV
dvsnap erase $ENV --where "emailaddress1=$EMAIL" >"$T/again.out" 2>&1
check_eq "erase again finds nothing (exit 1)" 1 "$?"
finish
