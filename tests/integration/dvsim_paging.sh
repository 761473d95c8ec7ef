#!/usr/bin/env bash
# dvsim at size: a 100,000-record table (contacts with --records 50000) paged at 5000 returns every
# record exactly once, in key order, with the bytes of /_sim/dump, and the same bytes twice; the
# same seed gives the same tenant byte for byte. DVSNAP_LONG=1 pages 1,000,000 accounts too.
. "$(dirname "$0")/../lib.sh"
PAGE="$(cd "$(dirname "$0")" && pwd)/dvsim_page.py"
t0=$(date +%s)
start_dvsim --seed 42 --records 50000
note "seeded in $(( $(date +%s) - t0 )) s: $(grep -o 'seeded.*' "$T/dvsim.log")"
API="$DVSIM_URL/org/contoso-prod/api/data/v9.2"
TOK=$(token contoso-prod)
t0=$(date +%s%N)
out=$(python3 "$PAGE" --token "$TOK" --timeout 240 --out "$T/p1" "$API/contacts")
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
note "paged 100000 contacts in $ms ms (client included)"
check_eq "100000 contacts in 20 pages of 5000" "20 100000" "$(jq -r '"\(.pages) \(.records)"' <<<"$out")"
cut -c1-52 "$T/p1" >"$T/keys"
check_eq "every record exactly once" 100000 "$(sort -u "$T/keys" | wc -l)"
check "pages come in key order" sh -c "LC_ALL=C sort -c '$T/keys'"
sim_dump contoso-prod contact >"$T/dump"
check "paged bytes = /_sim/dump bytes" cmp <({ printf '[\n'; sed '$!s/$/,/' "$T/p1"; printf ']\n'; }) "$T/dump"
python3 "$PAGE" --token "$TOK" --timeout 240 --out "$T/p2" "$API/contacts" >/dev/null
check "the same bytes the second time" cmp "$T/p1" "$T/p2"
# same seed, same tenant: a second dvsim on a fresh database
first_url=$DVSIM_URL
mv "$T/dvsim.db" "$T/first.db"; rm -f "$T/dvsim.db-wal" "$T/dvsim.db-shm"
start_dvsim --seed 42 --records 50000
for tb in account contact annotation new_project audit systemuser team email activityparty; do
  check "seed 42 gives the same $tb table" cmp <(curl -sf "$first_url/_sim/dump?env=contoso-prod&table=$tb") <(sim_dump contoso-prod $tb)
done
check "another environment is the same too" cmp <(curl -sf "$first_url/_sim/dump?env=fabrikam-prod&table=account") <(sim_dump fabrikam-prod account)
if [ -n "${DVSNAP_LONG:-}" ]; then
  DVSIM_START_TIMEOUT=3600 start_dvsim --seed 7 --records 1000000  # seeding 3M+ records takes minutes
  note "$(grep -o 'seeded.*' "$T/dvsim.log")"
  TOK=$(token contoso-prod)
  out=$(python3 "$PAGE" --token "$TOK" --timeout 1200 --out "$T/big" "$DVSIM_URL/org/contoso-prod/api/data/v9.2/accounts")
  check_eq "1,000,000 accounts paged" 1000000 "$(jq .records <<<"$out")"
  check_eq "each exactly once" 1000000 "$(cut -c1-52 "$T/big" | sort -u | wc -l)"
fi
finish
