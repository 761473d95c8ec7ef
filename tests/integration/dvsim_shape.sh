#!/usr/bin/env bash
# dvsim --shape real (issue 15): about 700 definitions shaped like a Dynamics 365 Sales org
# (system, activity, intersect, solution and custom tables with realistic attribute counts, one
# virtual and one elastic table), most tables empty; one note per two accounts with attachments
# of 1 KB to several MB; contact images; the virtual table's reads fail as a failing data provider
# answers; the elastic table's rows carry partitionid, are keyed by id and partitionid (seeded
# twins; a second row for an id in another partition) and a request names the row's partition.
# The small shape (the default) keeps its eighteen tables.
. "$(dirname "$0")/../lib.sh"
start=$(date +%s)
start_dvsim --seed demo --shape real --records 400 --elastic-rows 250
secs=$(($(date +%s) - start))
check "dvsim --shape real --records 400 starts in seconds ($secs s)" test "$secs" -le 20
API="$DVSIM_URL/org/contoso-prod/api/data/v9.2"
TOK=$(token contoso-prod)
get() { curl -s -o "$T/body" -w '%{http_code}' -H "Authorization: Bearer $TOK" "$@"; }

# ---- definitions ----
check_eq "EntityDefinitions answers" 200 "$(get "$API/EntityDefinitions?\$expand=Attributes")"
mv "$T/body" "$T/defs.json"
n=$(jq '.value | length' "$T/defs.json")
check "about 700 definitions ($n)" test "$n" -ge 650 -a "$n" -le 800
check_eq "logical names are unique" "$n" "$(jq '[.value[].LogicalName] | unique | length' "$T/defs.json")"
check_eq "entity sets are unique" "$n" "$(jq '[.value[].EntitySetName] | unique | length' "$T/defs.json")"
for t in account contact lead quote salesorder queue savedquery workflow annotation systemuser; do
  check "a real system table: $t" jq -e --arg t "$t" 'any(.value[]; .LogicalName == $t)' "$T/defs.json"
done
check_eq "one virtual table, with its data provider" "new_erporder true" \
  "$(jq -r '[.value[] | select(.TableType == "Virtual")] | "\(.[0].LogicalName) \(.[0].DataProviderId != null) \(length)"' "$T/defs.json" | cut -d' ' -f1,2)"
check_eq "one elastic table, with a partitionid attribute" "new_sensorreading true" \
  "$(jq -r '.value[] | select(.TableType == "Elastic") | "\(.LogicalName) \(any(.Attributes[]; .LogicalName == "partitionid"))"' "$T/defs.json")"
check_eq "standard tables have no data provider" 0 "$(jq '[.value[] | select(.TableType == "Standard" and .DataProviderId != null)] | length' "$T/defs.json")"
acts=$(jq '[.value[] | select(.TableType == "Activity")] | length' "$T/defs.json")
check "activity tables ($acts)" test "$acts" -ge 20
inter=$(jq '[.value[] | select(.IsIntersect)] | length' "$T/defs.json")
check "intersect tables ($inter)" test "$inter" -ge 20
for p in msdyn_ msdynmkt_ adx_ mspp_ new_ cr8a3_; do
  c=$(jq --arg p "$p" '[.value[] | select(.LogicalName | startswith($p))] | length' "$T/defs.json")
  check "tables with prefix $p ($c)" test "$c" -ge 10
done
check_eq "custom prefixes are custom tables" 0 \
  "$(jq '[.value[] | select((.LogicalName | test("^(new|cr8a3)_")) and (.IsCustomEntity | not))] | length' "$T/defs.json")"
read -r amin amax aavg <<<"$(jq -r '[.value[] | select(.IsIntersect | not) | .Attributes | length] | "\(min) \(max) \(add / length | floor)"' "$T/defs.json")"
check "attribute counts are realistic (min $amin, max $amax, mean $aavg)" test "$amin" -ge 4 -a "$amax" -ge 100 -a "$amax" -le 160 -a "$aavg" -ge 30

# ---- rows: most tables empty ----
empty=0; nonempty=0
for s in $(jq -r '.value[] | select(.TableType != "Virtual") | .LogicalName' "$T/defs.json"); do
  if [ "$(sim_dump contoso-prod "$s")" = $'[\n]' ]; then empty=$((empty + 1)); else nonempty=$((nonempty + 1)); fi
done
check "most tables are empty ($empty empty, $nonempty with rows)" test "$empty" -gt $((3 * nonempty))
check "some generated tables hold rows" test "$nonempty" -gt 30

# ---- notes: one per two accounts, attachments from 1 KB to MBs ----
check_eq "notes answer" 200 "$(get -H 'Prefer: odata.maxpagesize=5000' "$API/annotations?\$select=filesize,isdocument")"
check_eq "one note per two accounts" 200 "$(jq '.value | length' "$T/body")"
read -r docs small big <<<"$(jq -r '[.value[] | select(.isdocument) | .filesize] | "\(length) \(map(select(. < 16384)) | length) \(map(select(. > 1048576)) | length)"' "$T/body")"
check "most notes carry an attachment ($docs of 200), most of them small ($small under 16 KB)" \
  test "$docs" -ge 100 -a "$small" -ge $((docs / 2))
check "some attachments are megabytes ($big over 1 MB)" test "$big" -ge 1
maxsz=$(jq '[.value[].filesize] | max' "$T/body")
check "no attachment over 5 MB ($maxsz)" test "$maxsz" -le 5767168
check_eq "contacts with an image" 200 \
  "$(get -G --data-urlencode '$select=entityimageid' --data-urlencode '$filter=entityimageid ne null' "$API/contacts")"
check "contacts carry images" test "$(jq '.value | length' "$T/body")" -gt 10

# ---- the virtual table's reads fail as a failing provider answers ----
check_eq "a read of the virtual table answers 500" 500 "$(get "$API/new_erporders")"
check "the error names the data provider" jq -e '.error.message | test("data provider")' "$T/body"
check_eq "its count fails too" 500 "$(get "$API/new_erporders/\$count")"

# ---- the elastic table: rows carry partitionid; writes name the partition ----
check_eq "elastic rows" 200 "$(get -H 'Prefer: odata.maxpagesize=5000' "$API/new_sensorreadings")"
check_eq "--elastic-rows rows in contoso-prod" 250 "$(jq '.value | length' "$T/body")"
withp=$(jq '[.value[] | select(.partitionid != null)] | length' "$T/body")
check "most rows in a partition ($withp), some without" test "$withp" -gt 200 -a "$withp" -lt 250
row=$(jq -r '[.value[] | select(.partitionid != null)][0] | "\(.new_sensorreadingid) \(.partitionid)"' "$T/body")
id=${row% *}; part=${row#* }
w() { curl -s -o "$T/body" -w '%{http_code}' -H "Authorization: Bearer $TOK" -H 'Content-Type: application/json' "$@"; }
check_eq "an update without the row's partition finds no row" 404 \
  "$(w -X PATCH -H 'If-Match: *' -d '{"new_unit":"K"}' "$API/new_sensorreadings($id)")"
check_eq "an update in another partition finds no row" 404 \
  "$(w -X PATCH -H 'If-Match: *' -d '{"new_unit":"K"}' "$API/new_sensorreadings($id)?partitionId=elsewhere")"
check_eq "an update in the row's partition" 204 \
  "$(w -X PATCH -H 'If-Match: *' -d '{"new_unit":"K"}' "$API/new_sensorreadings($id)?partitionId=$part")"
check_eq "the update holds" K \
  "$(sim_dump contoso-prod new_sensorreading | jq -r --arg i "$id" '.[] | select(.new_sensorreadingid == $i) | .new_unit')"
nid=0e1a5c00-0000-4000-8000-0000000000e1
check_eq "a create takes ?partitionId= as its partitionid" 204 \
  "$(w -X PATCH -d '{"new_name":"made here","new_value":1.5}' "$API/new_sensorreadings($nid)?partitionId=device-new")"
check_eq "the new row is in that partition" device-new \
  "$(sim_dump contoso-prod new_sensorreading | jq -r --arg i "$nid" '.[] | select(.new_sensorreadingid == $i) | .partitionid')"
check_eq "a delete without the partition finds no row" 404 "$(w -X DELETE "$API/new_sensorreadings($nid)")"
check_eq "a delete in the partition" 204 "$(w -X DELETE "$API/new_sensorreadings($nid)?partitionId=device-new")"
# rows are keyed by id and partitionid: the same id in another partition is another row
check_eq "seeded twins: one row in fifty shares the id of the row before it" 5 \
  "$(sim_dump contoso-prod new_sensorreading | jq '[group_by(.new_sensorreadingid)[] | select(length == 2)] | length')"
check_eq "a create of the row's id in another partition (POST, partitionid in the body)" 204 \
  "$(w -X POST -d "{\"new_sensorreadingid\":\"$id\",\"partitionid\":\"device-other\",\"new_name\":\"twin\"}" "$API/new_sensorreadings")"
check_eq "the same again conflicts" 412 \
  "$(w -X POST -d "{\"new_sensorreadingid\":\"$id\",\"partitionid\":\"device-other\",\"new_name\":\"twin\"}" "$API/new_sensorreadings")"
check_eq "both rows are there, one per partition" "$part,device-other" \
  "$(sim_dump contoso-prod new_sensorreading | jq -r --arg i "$id" '[.[] | select(.new_sensorreadingid == $i) | .partitionid] | join(",")')"
check_eq "a GET names one by the alternate key" "200 twin" \
  "$(w "$API/new_sensorreadings(new_sensorreadingid=$id,partitionid='device-other')") $(jq -r .new_name "$T/body")"
check_eq "and the other by ?partitionId=" "200 K" \
  "$(w "$API/new_sensorreadings($id)?partitionId=$part") $(jq -r .new_unit "$T/body")"
check_eq "a GET naming no partition finds neither" 404 "$(w "$API/new_sensorreadings($id)")"
check_eq "an alternate key and ?partitionId= that differ are refused" 400 \
  "$(w "$API/new_sensorreadings(new_sensorreadingid=$id,partitionid='device-other')?partitionId=$part")"
check_eq "a partitionid holding ':' is refused" 400 \
  "$(w -X PATCH -d '{"new_name":"x"}' "$API/new_sensorreadings($nid)?partitionId=a:b")"
check_eq "the delete of one leaves the other" 204 \
  "$(w -X DELETE "$API/new_sensorreadings(new_sensorreadingid=$id,partitionid='device-other')")"
check_eq "the other is there" 200 "$(w "$API/new_sensorreadings($id)?partitionId=$part")"
tid=$(sim_dump contoso-prod new_sensorreading | jq -r '[group_by(.new_sensorreadingid)[] | select(length == 2)][0][0].new_sensorreadingid')
check_eq "a \$filter on a twin's id finds both its rows" 2 \
  "$(curl -s -H "Authorization: Bearer $TOK" "$API/new_sensorreadings?\$filter=new_sensorreadingid%20eq%20$tid" | jq '.value | length')"
# pages of 40 over the 250 rows: every (id, partition) once
url="$API/new_sensorreadings?\$select=new_sensorreadingid,partitionid"
: >"$T/paged"
for _ in $(seq 1 20); do
  [ -n "$url" ] || break
  curl -s -H "Authorization: Bearer $TOK" -H 'Prefer: odata.maxpagesize=40' "$url" >"$T/page"
  jq -c '.value[] | [.new_sensorreadingid, .partitionid]' "$T/page" >>"$T/paged"
  url=$(jq -r '."@odata.nextLink" // empty' "$T/page")
done
check_eq "paged by 40: 250 rows, each (id, partition) once" "250 250" "$(wc -l <"$T/paged") $(sort -u "$T/paged" | wc -l)"

check_eq "churn refuses a generated table (it changes the eighteen)" 400 "$(curl -s -o /dev/null -w '%{http_code}' \
  -X POST "$DVSIM_URL/_sim/churn" -d '{"env":"contoso-prod","fraction":0.1,"table":"new_sensorreading"}')"
check "churn of the eighteen still works" sim_churn contoso-prod 0.01 3

# ---- --notes and --attachment-max-bytes (benchmarks: many small attachments) ----
kill "$DVSIM_PID"; wait "$DVSIM_PID" 2>/dev/null
start_dvsim --seed demo --shape real --records 400 --elastic-rows 250 --notes 300 --attachment-max-bytes 2048
TOK=$(token contoso-prod)
API="$DVSIM_URL/org/contoso-prod/api/data/v9.2"
check_eq "notes answer (the database reseeded for --notes)" 200 \
  "$(get -H 'Prefer: odata.maxpagesize=5000' "$API/annotations?\$select=filesize,isdocument")"
check_eq "--notes notes" 300 "$(jq '.value | length' "$T/body")"
read -r docs lo hi <<<"$(jq -r '[.value[] | select(.isdocument) | .filesize] | "\(length) \(min) \(max)"' "$T/body")"
check "attachments of 1 KB up to --attachment-max-bytes ($docs of 300, $lo to $hi bytes)" \
  test "$docs" -ge 150 -a "$lo" -ge 1024 -a "$hi" -le 2048

# ---- the small shape is unchanged ----
kill "$DVSIM_PID"; wait "$DVSIM_PID" 2>/dev/null
start_dvsim --seed demo --records 100
TOK=$(token contoso-prod)
API="$DVSIM_URL/org/contoso-prod/api/data/v9.2"
check_eq "the small shape has its eighteen tables" 18 "$(get "$API/EntityDefinitions" >/dev/null; jq '.value | length' "$T/body")"
check_eq "and no virtual or elastic table" 0 "$(jq '[.value[] | select(.TableType == "Virtual" or .TableType == "Elastic")] | length' "$T/body")"
finish
