#!/usr/bin/env bash
# capture_faults (issue 3): a 429 storm gives the same points as a calm run and no request before
# Retry-After; an expired change-tracking token falls back to a full read recorded in the point;
# a flipped byte in a segment is named by `check --read-data` (and only that table fails to read);
# attachments and file-column bytes are stored as blobs equal to the service's bytes, and hostile
# file names are kept as data, never as repository paths; a file above the size dvsnap keeps is
# listed in not_captured and fetched again once allowed.
# objstore-suite: skip (reads manifests and flips bytes in the repository directory)
. "$(dirname "$0")/../lib.sh"
CHK="python3 $(dirname "$0")/capture_check.py"
start_dvsim --seed demo
write_config
dvsnap init >/dev/null
faults() { curl -sf -X POST "$DVSIM_URL/_sim/faults" -d "$1" >/dev/null; }
seq_now() { curl -sf "$DVSIM_URL/_sim/requests" | jq '[.requests[].seq] | max // 0'; }
# same_as_sim ENV: every table of ENV's latest point equals the simulator now
same_as_sim() {
  local env=$1 t bad=""
  for t in $(dvsnap points "$env" latest | jq -r '.tables[].name'); do
    dvsnap cat "$env" latest "$t" >"$T/cat.json" || bad="$bad $t(exit)"
    sim_dump "$env" "$t" | cmp -s - "$T/cat.json" || bad="$bad $t"
  done
  [ -z "$bad" ] || { echo "differ:$bad"; return 1; }
}

# ---- 429 storm: 3 requests per second per token, one request in flight at a time
faults '{"max_requests":"3/1"}'
before=$(seq_now)
check "capture under a 429 storm (one request at a time)" \
  timeout 120 "$DVSNAP" --config "$T/config" capture --env contoso-prod --concurrency 1
curl -sf "$DVSIM_URL/_sim/requests?since=$before" >"$T/storm.json"
n429=$(jq '[.requests[] | select(.status == 429)] | length' "$T/storm.json")
check "the storm throttled the capture ($n429 answers 429)" test "$n429" -ge 3
check "no request came back before its Retry-After" $CHK throttle "$T/storm.json"
faults '{"max_requests":"6000/300"}'
check "contoso-prod after the storm equals the simulator" same_as_sim contoso-prod

# the same with parallel table reads
sim_churn contoso-prod 0.02 21 >/dev/null
faults '{"max_requests":"8/1"}'
check "capture under a 429 storm (4 tables in parallel)" \
  timeout 120 "$DVSNAP" --config "$T/config" capture --env contoso-prod --concurrency 4
faults '{"max_requests":"6000/300"}'
check "the result is the same as without the storm" same_as_sim contoso-prod

# ---- expired change-tracking token: full read, recorded, same data and changes
for t in account contact; do sim_dump contoso-prod $t >"$T/before-$t.json"; done
faults '{"delta_token_lifetime_s":0}'
sim_churn contoso-prod 0.02 22 >/dev/null
check "capture with expired delta tokens" dvsnap capture --env contoso-prod
faults '{"delta_token_lifetime_s":604800}'
dvsnap points contoso-prod latest >"$T/expired.json"
reasons=$(jq -r '.tables[] | select(.name == "account" or .name == "contact") | .full_read_reason' "$T/expired.json")
check "the point records the full read and why" grep -q "expired" <<<"$reasons"
check_eq "both tracked tables say so" 2 "$(grep -c expired <<<"$reasons")"
check "after the full read the point equals the simulator" same_as_sim contoso-prod
for t in account contact; do
  dvsnap changes contoso-prod latest $t >"$T/ch-$t.json"
  sim_dump contoso-prod $t >"$T/after-$t.json"
done
check "changes after the full read equal the churn" $CHK changes "$T/before-account.json" "$T/after-account.json" \
  "$T/ch-account.json" "$T/before-contact.json" "$T/after-contact.json" "$T/ch-contact.json"
sim_churn contoso-prod 0.01 23 >/dev/null
check "the next capture" dvsnap capture --env contoso-prod
check_eq "is incremental again" "0" \
  "$(dvsnap points contoso-prod latest | jq '[.tables[] | select(.full_read_reason and (.name == "account" or .name == "contact"))] | length')"
check "and equals the simulator" same_as_sim contoso-prod

# ---- attachments and file columns: blobs equal to the service's bytes; names stay data
P=$(dvsnap points contoso-prod latest | jq -r .point)
M="$T/manifest-$P.json"
manifest contoso-prod "$P" >"$M"
check "the point lists files" test "$(jq '.files | length' "$M")" -gt 10
note_ok=0; note_bad=0
while read -r id blob; do
  want=$(sim_dump contoso-prod annotation | jq -r --arg id "$id" '.[] | select(.annotationid == $id) | .documentbody' | base64 -d | sha256sum | cut -c1-64)
  if [ "$want" = "$(repo_blob "$blob" | sha256sum | cut -c1-64)" ]; then note_ok=$((note_ok + 1)); else note_bad=$((note_bad + 1)); fi
done < <(jq -r '.files[] | select(.table == "annotation") | "\(.record_id) \(.blob)"' "$M" | head -5)
check_eq "note attachments are the decoded documentbody bytes (5 checked)" "5/0" "$note_ok/$note_bad"
tok=$(token contoso-prod)
read -r fid fcol fblob < <(jq -r '.files[] | select(.table != "annotation") | "\(.record_id) \(.column) \(.blob)"' "$M" | head -1)
check "a file column was captured" test -n "${fid:-}"
set=$(jq -r --arg t "$(jq -r '.files[] | select(.table != "annotation") | .table' "$M" | head -1)" '.tables[] | select(.name == $t) | .entity_set' "$M")
got=$(curl -sf -H "Authorization: Bearer $tok" "$DVSIM_URL/org/contoso-prod/api/data/v9.2/$set($fid)/$fcol/\$value?size=full" | sha256sum | cut -c1-64)
check_eq "file-column bytes equal the service's" "$got" "$(repo_blob "$fblob" | sha256sum | cut -c1-64)"
check "a file name with a '/' is kept as the service gave it" jq -e '[.files[].file_name | select(contains("/"))] | length > 0' "$M"
check "a non-ASCII file name is kept" jq -e '[.files[].file_name | select(test("[^\\u0000-\\u007f]"))] | length > 0' "$M"
check_eq "the repository holds only its own names (no path from remote data)" "" \
  "$(cd "$T/repo" && find . -mindepth 1 | grep -vE '^\./(config|catalog\.db(-wal|-shm)?|locks(/.*)?|keys(/[0-9a-f]{32})?|objects(/[0-9a-f]{2}(/[0-9a-f]{64})?)?|points(/[a-z0-9-]+(/[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{6}Z\.json)?)?|envs(/[a-z0-9-]+\.json)?|tmp(/.*)?)$')"

# ---- a flipped byte in a segment is named by check --read-data
seg=$(jq -r '.tables[] | select(.name == "account") | .segments[0]' "$M")
obj="$T/repo/objects/${seg:0:2}/$seg"
size=$(stat -c %s "$obj")
cp "$obj" "$T/seg.orig"
off=$((size / 2))
orig=$(od -An -tu1 -j "$off" -N1 "$obj" | tr -d ' ')
printf "$(printf '\\%03o' $(( (orig + 1) % 256 )))" | dd of="$obj" bs=1 seek="$off" conv=notrunc status=none
check "existence check still passes" dvsnap check
dvsnap check --read-data >"$T/damage.out" 2>&1; rc=$?
check_eq "check --read-data exits 4 (damaged)" 4 "$rc"
check "it names the point and the table" grep -q "contoso-prod/.*: account" "$T/damage.out"
check_fails "it does not blame contact" grep -q "contoso-prod/.*: contact" "$T/damage.out"
dvsnap cat contoso-prod latest account >/dev/null 2>"$T/cat.err"; rc=$?
check_eq "cat of the damaged table fails (exit 4)" 4 "$rc"
dvsnap cat contoso-prod latest contact | cmp -s - <(sim_dump contoso-prod contact)
check_eq "contact still reads back exactly" 0 "$?"
cp "$T/seg.orig" "$obj"
check "repaired, the repository checks clean" dvsnap check --read-data

# ---- a file dvsnap does not keep (above DVSNAP_MAX_FILE_BYTES here, 2 GiB by default) is listed in
# not_captured with its record and column and the point is made anyway; the next capture fetches
# it again once the limit allows, though its record did not change. Downloads go through an
# unlinked temporary file in TMPDIR (not memory), which is left empty.
api="$DVSIM_URL/org/contoso-prod/api/data/v9.2"
big=$(curl -sf -H "Authorization: Bearer $tok" "$api/new_projects?\$top=1&\$select=new_projectid" | jq -r '.value[0].new_projectid')
head -c 12000000 /dev/urandom >"$T/big.bin"
st=$(curl -s -o /dev/null -w '%{http_code}' -X PATCH -H "Authorization: Bearer $tok" \
  -H 'Content-Type: application/octet-stream' -H 'x-ms-file-name: big.bin' \
  --data-binary "@$T/big.bin" "$api/new_projects($big)/new_document")
check_eq "a 12 MB file is uploaded to a record" 204 "$st"
mkdir -p "$T/tmpfiles"
latest_manifest() { manifest contoso-prod latest >"$T/manifest-latest.json"; echo "$T/manifest-latest.json"; }
check "capture under a 5 MB file limit" env TMPDIR="$T/tmpfiles" DVSNAP_MAX_FILE_BYTES=5000000 \
  "$DVSNAP" --config "$T/config" capture --env contoso-prod
M=$(latest_manifest)
too_large() { # the latest point's not_captured entries for the big file
  dvsnap points contoso-prod latest | jq --arg id "$big" \
    '[.not_captured[] | select(.record_id == $id and .column == "new_document" and (.reason | test("larger than 5000000 bytes")))] | length'
}
check_eq "not_captured names the file, its record and column, and why" 1 "$(too_large)"
check_eq "the point has no file for it" 0 \
  "$(jq --arg id "$big" '[.files[] | select(.record_id == $id and .column == "new_document")] | length' "$M")"
check "the other files are kept" test "$(jq '.files | length' "$M")" -gt 10
check_eq "the temporary directory is left empty" "" "$(ls -A "$T/tmpfiles")"
before=$(seq_now)
check "capture again under the same limit" env TMPDIR="$T/tmpfiles" DVSNAP_MAX_FILE_BYTES=5000000 \
  "$DVSNAP" --config "$T/config" capture --env contoso-prod
check_eq "the file too large is not downloaded again while the limit stays" 0 \
  "$(curl -sf "$DVSIM_URL/_sim/requests?since=$before" | jq --arg id "$big" '[.requests[] | select(.path | contains($id) and contains("new_document"))] | length')"
check_eq "and is still listed in not_captured" 1 "$(too_large)"
check "capture without the limit" env TMPDIR="$T/tmpfiles" "$DVSNAP" --config "$T/config" capture --env contoso-prod
M=$(latest_manifest)
check_eq "the file is fetched again (its record did not change) and its bytes are the service's" \
  "$(sha256sum <"$T/big.bin" | cut -c1-64)" \
  "$(repo_blob "$(jq -r --arg id "$big" '.files[] | select(.record_id == $id and .column == "new_document") | .blob' "$M")" | sha256sum | cut -c1-64)"
check_eq "and is no longer in not_captured" 0 "$(too_large)"
check_eq "the temporary directory is still empty" "" "$(ls -A "$T/tmpfiles")"
finish
