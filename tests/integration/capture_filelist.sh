#!/usr/bin/env bash
# capture_filelist: a point's file list in chunks (issue 15; manifest format 3, backend/repo/
# filelist.h), end to end against dvsim --shape real with about 5,000 notes with attachments:
#   - a capture writes format 3: the list is in several chunks named by an index;
#   - a point where one note's attachment changed adds far fewer bytes to the repository than the
#     whole list (its chunk, a new index, the note's blob and delta, the manifest), names the
#     other chunks of its parent, and lists and reads every file equal to dvsim's (through the
#     mount: files/ of the point);
#   - an idle pass adds its manifest only, and carries its parent's chunks by id without reading
#     them;
#   - the mount reads a point's tables and backup.json without its file list: with the list's
#     chunks moved away, they read, and only files/ fails;
#   - a format-2 point (the whole list in one files document, as captures before format 3 wrote
#     it: pointdump --store-format-2) still reads, mounted and loaded, and a capture goes on from
#     it and writes format 3 again;
#   - a pass where notes changed and were deleted across the list names its parent's other
#     chunks and lists and reads every file equal to dvsim's; the repository checks clean.
# objstore-suite: skip (it measures the directory repository's object files; what it tests, the
# list's chunks, does not depend on the store)
. "$(dirname "$0")/../lib.sh"
ENV=contoso-prod
start_dvsim --seed demo --shape real --records 200 --notes 8500 --attachment-max-bytes 2048
write_config
dvsnap init >/dev/null
point() { dvsnap points "$ENV" latest | jq -r .point; }
# objects NAME: every object of the repository with its stored size ("size path"), sorted by path
objects() { (cd "$T/repo" && find . -type f -not -path './tmp/*' -not -path './locks/*' \
  -not -name 'catalog.db*' -printf '%s %P\n' | sort -k2) >"$T/$1"; }
# added A B: bytes of the objects in B and not in A
added() { join -1 2 -2 2 -v 2 "$T/$1" "$T/$2" | awk '{s += $2} END {print s + 0}'; }
# chunk_bytes POINT: the stored bytes of the point's file list chunks
chunk_bytes() {
  manifest "$ENV" "$1" | jq -r '.files_chunks[]' | while read -r id; do
    stat -c %s "$T/repo/objects/${id:0:2}/$id"; done | awk '{s += $1} END {print s + 0}'
}
# same_files DIR: every attachment dvsim holds now is DIR/<note id>/<file name> with its bytes,
# and DIR holds nothing else
same_files() {
  sim_dump "$ENV" annotation >"$T/ann.json"
  python3 - "$T/ann.json" "$1" <<'PY'
import base64, hashlib, json, os, sys
recs = json.load(open(sys.argv[1])); root = sys.argv[2]; want = {}
for r in recs:
    if r.get("documentbody"):
        want[os.path.join(r["annotationid"], r["filename"].replace("/", "\u2215"))] = \
            hashlib.sha256(base64.b64decode(r["documentbody"])).hexdigest()
got = set()
for d in os.listdir(root):
    for f in os.listdir(os.path.join(root, d)):
        got.add(os.path.join(d, f))
if got != set(want):
    print("# listed %d files, dvsim has %d" % (len(got), len(want))); sys.exit(1)
for p, h in want.items():
    if hashlib.sha256(open(os.path.join(root, p), "rb").read()).hexdigest() != h:
        print("# differs:", p); sys.exit(1)
print("# %d files equal dvsim's" % len(want))
PY
}

check "first capture" dvsnap capture --env "$ENV"
P1=$(point)
check_eq "it is a format-3 manifest" 3 "$(repo_manifest "points/$ENV/$P1.json" | jq .format)"
manifest "$ENV" "$P1" >"$T/m1.json"
files=$(jq '.files | length' "$T/m1.json")
chunks=$(jq '.files_chunks | length' "$T/m1.json")
check "its $files files are in $chunks chunks" test "$files" -ge 4000 -a "$chunks" -ge 4
whole=$(chunk_bytes "$P1")
note "the whole list: $whole bytes stored"

# ---- one note's attachment changes
objects o1
TOK=$(token "$ENV")
API="$DVSIM_URL/org/$ENV/api/data/v9.2"
note_id=$(jq -r '[.files[] | select(.table == "annotation")][length / 2 | floor].record_id' "$T/m1.json")
# change_note TEXT: the note's attachment becomes TEXT (a PATCH to dvsim); prints the status
change_note() {
  local body; body=$(printf '%s' "$1" | base64 -w0)
  curl -s -o /dev/null -w '%{http_code}' -X PATCH -H "Authorization: Bearer $TOK" \
    -H 'Content-Type: application/json' -H 'If-Match: *' \
    -d "{\"documentbody\":\"$body\"}" "$API/annotations($note_id)"
}
check_eq "one note's attachment is changed in dvsim" 204 "$(change_note "a changed attachment $RANDOM")"
check "a pass" dvsnap capture --env "$ENV"
P2=$(point)
objects o2
new=$(added o1 o2)
manifest "$ENV" "$P2" >"$T/m2.json"
# the file list's part: the new chunks and index; the rest: the tables document (every table's
# chain, rewritten when any table changes: about 280 KB for the 700 tables), the note's blob and
# delta segment, the manifest
stored() { awk -v id="$1" '$2 ~ id "$" {print $1}' "$T/o2"; }
tables=$(stored "$(jq -r .tables_object "$T/m2.json")")
list=$(jq -r '.files_object, .files_chunks[]' "$T/m2.json" | sort -u | while read -r id; do
  grep -q "$id\$" "$T/o1" || stored "$id"; done | awk '{s += $1} END {print s + 0}')
note "one changed note added $new bytes: file list $list (chunks and index), tables document $tables"
check "its file list adds far fewer bytes than the whole list ($list < $whole / 8)" \
  test "$list" -lt $((whole / 8))
check "and the point adds, besides its tables document, less than a quarter of it" \
  test $((new - tables)) -lt $((whole / 4))
kept=$(jq -n --slurpfile a "$T/m1.json" --slurpfile b "$T/m2.json" \
  '[$b[0].files_chunks[] | select(. as $c | $a[0].files_chunks | index($c))] | length')
n2=$(jq '.files_chunks | length' "$T/m2.json")
check "it names all but one or two of its parent's chunks ($kept of $n2 kept)" test "$kept" -ge $((n2 - 2)) -a "$kept" -ge 1
check_eq "it lists as many files" "$files" "$(jq '.files | length' "$T/m2.json")"
check_eq "the note's file changed" 1 "$(jq -n --slurpfile a "$T/m1.json" --slurpfile b "$T/m2.json" --arg id "$note_id" \
  '[$a[0].files[], $b[0].files[] | select(.record_id == $id) | .blob] | unique | length - 1')"

# ---- an idle pass: its manifest only
check "an idle pass" sh -c '"$0" --config "$1" -vv capture --env "$2" 2>"$3"' "$DVSNAP" \
  "$T/config" "$ENV" "$T/idle.log"
objects o3
check_eq "it adds its manifest only" 1 "$(join -1 2 -2 2 -v 2 "$T/o2" "$T/o3" | wc -l)"
carried=$(sed -n 's/.*file list of [0-9]* files in \([0-9]*\) chunks, \([0-9]*\) of them carried.*/\1 \2/p' \
  "$T/idle.log")
note "idle pass: chunks, carried by id unread: $carried"
check "it names its parent's chunks by id without reading them (all but the last two at most)" \
  test -n "$carried" -a "${carried#* }" -ge $(( ${carried% *} - 2 ))

# ---- the mount lists and reads every file
M="$T/mnt"
mount_dvsnap "$M"
check "the point lists and reads every file equal to dvsim's" same_files "$M/$ENV/$P2/files/annotation"
fusermount3 -u "$M" 2>/dev/null || fusermount -u "$M"

# ---- the mount opens a table without reading the file list
dvsnap cat "$ENV" "$P2" account >"$T/account.json"
manifest "$ENV" "$P2" | jq -r '.files_chunks[]' >"$T/chunks"
mkdir -p "$T/away"
while read -r id; do mv "$T/repo/objects/${id:0:2}/$id" "$T/away/"; done <"$T/chunks"
mount_dvsnap "$M"
check "with its file list's $(wc -l <"$T/chunks") chunks gone, a table of the point reads" \
  cmp -s "$T/account.json" "$M/$ENV/$P2/tables/account.json"
check_eq "... its backup.json counts its files from the list's index" "$files" \
  "$(jq .files "$M/$ENV/$P2/backup.json")"
check_fails "... and only its files/ fails" ls "$M/$ENV/$P2/files/annotation"
fusermount3 -u "$M" 2>/dev/null || fusermount -u "$M"
while read -r id; do mv "$T/away/$id" "$T/repo/objects/${id:0:2}/$id"; done <"$T/chunks"

# ---- a format-2 point (one files document) still reads, and captures go on from it
P3=$(point)
check "the latest point stored again in format 2" "$BUILD/tests/pointdump" "$T/config" "$ENV" "$P3" \
  --store-format-2
check_eq "its manifest is format 2" 2 "$(repo_manifest "points/$ENV/$P3.json" | jq .format)"
manifest "$ENV" "$P2" | jq -c .files >"$T/f2.json"
check "it loads with the same files" cmp -s "$T/f2.json" <(manifest "$ENV" "$P3" | jq -c .files)
mount_dvsnap "$M"
check "mounted, it lists and reads every file equal to dvsim's" same_files "$M/$ENV/$P3/files/annotation"
fusermount3 -u "$M" 2>/dev/null || fusermount -u "$M"
check_eq "the note's attachment changes again" 204 "$(change_note "changed again $RANDOM")"
check "a pass from the format-2 point" dvsnap capture --env "$ENV"
P4=$(point)
check_eq "it writes format 3" 3 "$(repo_manifest "points/$ENV/$P4.json" | jq .format)"
check_eq "with every file" "$files" "$(manifest "$ENV" "$P4" | jq '.files | length')"
mount_dvsnap "$M"
check "and it reads every file equal to dvsim's" same_files "$M/$ENV/$P4/files/annotation"
fusermount3 -u "$M" 2>/dev/null || fusermount -u "$M"
# ---- notes changed and deleted across the list: the chunks around them are written again, the
# others carried by id (not read), and every file is right
manifest "$ENV" "$P4" >"$T/m4.json"
jq -r '[.files[] | select(.table == "annotation") | .record_id] | unique | . as $v
  | [range(0; length; (length / 12 | floor))] | map($v[.]) | .[:12][]' "$T/m4.json" >"$T/spread"
n=0; codes=""
while read -r id; do
  n=$((n + 1))
  if [ "$n" -le 9 ]; then codes="$codes $(note_id=$id change_note "spread $n $RANDOM")"
  else codes="$codes $(curl -s -o /dev/null -w '%{http_code}' -X DELETE \
    -H "Authorization: Bearer $TOK" "$API/annotations($id)")"; fi
done <"$T/spread"
check_eq "9 notes' attachments changed and 3 notes deleted across the list" \
  " 204 204 204 204 204 204 204 204 204 204 204 204" "$codes"
check "a pass" dvsnap capture --env "$ENV"
P5=$(point)
manifest "$ENV" "$P5" >"$T/m5.json"
check_eq "it lists 3 files fewer" $((files - 3)) "$(jq '.files | length' "$T/m5.json")"
kept=$(jq -n --slurpfile a "$T/m4.json" --slurpfile b "$T/m5.json" \
  '[$b[0].files_chunks[] | select(. as $c | $a[0].files_chunks | index($c))] | length')
n5=$(jq '.files_chunks | length' "$T/m5.json")
check "it names its parent's other chunks ($kept of $n5 kept)" test "$kept" -ge $((n5 - 24)) -a "$kept" -ge 1
mount_dvsnap "$M"
check "it reads every file equal to dvsim's" same_files "$M/$ENV/$P5/files/annotation"
fusermount3 -u "$M" 2>/dev/null || fusermount -u "$M"
check "the repository checks clean" dvsnap check --read-data
finish
