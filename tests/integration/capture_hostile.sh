#!/usr/bin/env bash
# Hostile table names from the server are stored safely (issue 3). dvsim --hostile-tables also
# serves systemuser's records under tables named "../../etc/passwd", "ctl\x01name\x1f\ttab\nline",
# a 300-byte name, "..", the case twins "HostileTwin"/"hostiletwin", and a table whose entity set
# is "../../_sim/reset". Two captures (churn between), then:
#   - the points keep every name exactly (manifest and catalog), each table equals systemuser's;
#   - the hostile entity set never reaches a URL: the table is listed as not captured, with why;
#   - no file or directory anywhere is named after a table (the repository is objects by hash);
#   - the mount shows sanitised names: unique, no control characters, not "." or "..", at most
#     255 bytes, the same names at both points, each file the table's exact bytes;
#   - no raw control character reaches the log; `check --read-data` is clean;
#   - `check --rebuild-catalog` gives back the same chunks of capture state, byte for byte, and
#     captures go on.
. "$(dirname "$0")/../lib.sh"
start_dvsim --seed demo --records 50 --hostile-tables
write_config
dvsnap init >/dev/null

HOSTILE=("../../etc/passwd" $'ctl\x01name\x1f\ttab\nline' "$(printf 'hostile-long-name-50-bytes-%.0sxxxxxxxxxxxxxxxxxxxxxxx' 1 2 3 4 5 6)" ".." "HostileTwin" "hostiletwin")
check_eq "the long name is 300 bytes" 300 "${#HOSTILE[2]}"

# the table with the hostile entity set is not captured: the point is made, and says so (exit 5)
"$DVSNAP" --config "$T/config" capture --env contoso-prod >"$T/cap1.out" 2>"$T/cap1.err"
check_eq "first capture exits 5 (a point without one table)" 5 "$?"
P1=$(dvsnap points contoso-prod latest | jq -r .point)
sim_churn contoso-prod 0.2 5 >/dev/null
"$DVSNAP" --config "$T/config" capture --env contoso-prod >"$T/cap2.out" 2>"$T/cap2.err"
check_eq "second capture exits 5" 5 "$?"
P2=$(dvsnap points contoso-prod latest | jq -r .point)
check "two points" test "$P1" != "$P2"

# names kept exactly in the manifest, tables equal systemuser's at each point
for p in "$P1" "$P2"; do
  dvsnap points contoso-prod "$p" | jq -r '.tables[].name | @json' >"$T/names-$p"
  bad=""
  for n in "${HOSTILE[@]}"; do
    grep -qxF "$(jq -rn --arg n "$n" '$n | @json')" "$T/names-$p" || bad="$bad $(printf %q "$n")"
    dvsnap cat contoso-prod "$p" "$n" >"$T/h.json" 2>/dev/null || bad="$bad cat:$(printf %q "$n")"
    dvsnap cat contoso-prod "$p" systemuser | cmp -s - "$T/h.json" || bad="$bad differs:$(printf %q "$n")"
  done
  check_eq "point $p keeps every hostile name exactly and each reads back as its records" "" "$bad"
done
check "the table with a hostile entity set is not captured, and the point says why" \
  jq -e '[.not_captured[] | select(.what == "table hostile_badset" and (.reason | test("not a plain name")))] | length == 1' \
  <(dvsnap points contoso-prod "$P2")
check_eq "no request ever went to the hostile entity set's path" 0 \
  "$(curl -sf "$DVSIM_URL/_sim/requests" | jq '[.requests[] | select(.path | test("_sim/reset|hostile_badset|/\\.\\./"))] | length')"

# the catalog holds the names as data: one state table per captured table, all distinct
cat_names=$(sqlite3 "$(catalog_db)" "SELECT count(DISTINCT st.tid), count(DISTINCT tbl) FROM state_tables st JOIN state_chunks sc ON sc.tid = st.tid WHERE env = 'contoso-prod'")
n_tables=$(dvsnap points contoso-prod "$P2" | jq '.tables | length')
check "the point has its tables (the sample tenant's and the hostile ones)" test "$n_tables" -ge 20
check_eq "the catalog keeps the capture state of all $n_tables tables under distinct names" \
  "$n_tables|$n_tables" "$cat_names"
check_eq "the catalog keeps the control-character name byte for byte" 1 \
  "$(sqlite3 "$(catalog_db)" "SELECT count(*) FROM state_tables WHERE hex(tbl) = '$(printf %s "${HOSTILE[1]}" | od -An -tx1 | tr -d ' \n' | tr a-f A-F)'")"

# nothing on disk is named after a table
check_eq "no path under the test directory is named after a hostile table" "" \
  "$(cd "$T" && find . -path ./mnt -prune -o \( -name passwd -o -name '*ostile*' -o -name '*ctl*' -o -name 'etc' \) -print)"
check "the repository lists objects" test -n "$(repo_list | head -1)"
check_eq "the repository holds only known kinds of paths" "" \
  "$(repo_list | grep -vE '^(config|catalog\.db(-wal|-shm)?|envs/[a-z0-9-]+\.json|points/[a-z0-9-]+/[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{6}Z\.json|objects/[0-9a-f]{2}/[0-9a-f]{64}|keys/[0-9a-f]{32}|tmp/.*|locks/[a-z0-9-]+\.(lock|lease\.[0-9]+))$')"

# the mount: sanitised, unique, stable names; bytes exact
M="$T/mnt"
mount_dvsnap "$M"
for p in "$P1" "$P2"; do
  ls -A "$M/contoso-prod/$p/tables" >"$T/ls-$p"
done
n_tables=$(dvsnap points contoso-prod "$P2" | jq '.tables | length')
check_eq "the mount lists one file per table ($n_tables)" "$n_tables" "$(wc -l <"$T/ls-$P2")"
check_eq "mount names are unique" "$n_tables" "$(sort -u "$T/ls-$P2" | wc -l)"
check "mount names have no control characters" bash -c '! LC_ALL=C grep -q "[[:cntrl:]]" "$1"' _ "$T/ls-$P2"
check "mount names are not . or .., and at most 255 bytes" \
  awk '$0 == "." || $0 == ".." || length($0) > 255 { bad = 1 } END { exit bad }' "$T/ls-$P2"
check "both case twins are there" bash -c 'grep -qx "HostileTwin.json" "$1" && grep -qx "hostiletwin.json" "$1"' _ "$T/ls-$P2"
check "the slash is not a path separator in the mount" bash -c 'grep -q "passwd" "$1" && ! test -e "$2/etc"' _ "$T/ls-$P2" "$M/contoso-prod/$P2/tables"
check "the names are the same at both points" cmp "$T/ls-$P1" "$T/ls-$P2"
bad=0
while IFS= read -r f; do
  cmp -s "$M/contoso-prod/$P2/tables/$f" "$M/contoso-prod/$P2/tables/systemuser.json" || [[ $f != *ostile* && $f != *passwd* && $f != *ctl* ]] || { echo "# differs: $f"; bad=1; }
done <"$T/ls-$P2"
check "every hostile table reads through the mount as its records" test "$bad" = 0

# logs: hostile names are escaped before they reach a log
check "no raw control character in the capture's output or log" bash -c \
  '! LC_ALL=C grep -q "[$(printf "\\001-\\010\\013-\\037")]" "$1" "$2" "$3" "$4"' _ "$T/cap1.out" "$T/cap1.err" "$T/cap2.out" "$T/cap2.err"
check "the repository checks clean" dvsnap check --read-data

# the catalog is a cache: rebuilt from the repository, its packed capture state is byte for byte
# the state the captures kept (hostile names included), and the next capture goes on from it
state_sql="SELECT st.tbl, hex(sc.lo), sc.n, hex(sc.data) FROM state_tables st JOIN state_chunks sc ON sc.tid = st.tid ORDER BY 1, 2"
sqlite3 "$(catalog_db)" "$state_sql" >"$T/state-before"
check "check --rebuild-catalog" dvsnap check --rebuild-catalog
sqlite3 "$(catalog_db)" "$state_sql" >"$T/state-after"
check "the rebuilt capture state is identical to the captured one ($(sqlite3 "$(catalog_db)" "SELECT count(*) FROM state_chunks") chunks)" \
  cmp "$T/state-before" "$T/state-after"
sim_churn contoso-prod 0.2 6 >/dev/null
dvsnap capture --env contoso-prod >"$T/cap3.out" 2>&1
check_eq "a capture after the rebuild (exit 5: still without the hostile entity set)" 5 "$?"
check "it reads the tables as the simulator has them" bash -c \
  'for t in account contact systemuser; do cmp -s <("$1" --config "$2" cat contoso-prod latest $t) <(curl -sf "$3/_sim/dump?env=contoso-prod&table=$t") || exit 1; done' \
  _ "$DVSNAP" "$T/config" "$DVSIM_URL"
check_eq "and keeps the hostile tables' records" 25 \
  "$(dvsnap points contoso-prod latest | jq '.tables[] | select(.name == "../../etc/passwd") | .records')"
finish
