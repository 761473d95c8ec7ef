#!/usr/bin/env bash
# retention_policy (issue 17): the owner's retention rules over the platform's. contoso-dev (a
# sandbox: the platform keeps 7 days) is captured on a simulated year and a half with the test
# clock (DVSNAP_NOW): monthly points from 2025-03, weekly ones in April and May 2026, two a day in
# June 2026, and a manual backup labelled keep-forever in 2025. With keep_daily 4, keep_weekly 3,
# keep_monthly 6, keep_yearly 2 (keep_monthly 8 for contoso-dev by a retention.<env> override),
# `prune --dry-run --now 2026-06-15T12:00Z` keeps exactly the set an independent reference
# (restic's rules, in Python below) computes, every point the platform's 7 days keep, and the
# manual backup; it names for each point the rule that keeps it or why it goes. Prune then
# removes exactly the others; what is kept reads back as before and checks clean. Holds: a held
# point survives prune and a change of the rules to keep nothing; released, it goes.
. "$(dirname "$0")/../lib.sh"
start_dvsim --seed demo
write_config "keep_daily = 4" "keep_weekly = 3" "keep_monthly = 6" "keep_yearly = 2" \
  "retention.contoso-dev.keep_monthly = 8"
dvsnap init >/dev/null
ENV=contoso-dev
NOW=2026-06-15T12:00:00Z

# the schedule: "T kind" lines, oldest first
python3 - >"$T/schedule" <<'PY'
from datetime import datetime, timedelta
pts = []
for m in range(14):                                   # 2025-03-10 .. 2026-04-10, monthly
    y, mo = 2025 + (2 + m) // 12, (2 + m) % 12 + 1
    pts.append((datetime(y, mo, 10, 8), "system"))
pts.append((datetime(2025, 9, 1, 12), "manual"))      # keep-forever
d = datetime(2026, 4, 13, 9)
while d < datetime(2026, 6, 1):                       # weekly
    pts.append((d, "system")); d += timedelta(days=7)
d = datetime(2026, 6, 5, 6)
while d < datetime(2026, 6, 15, 12):                  # twice a day
    pts.append((d, "system")); d += timedelta(hours=12)
for t, k in sorted(pts):
    print(t.strftime("%Y-%m-%dT%H:%M:%SZ"), k)
PY
n=0; bad=0
while read -r when kind; do
  n=$((n + 1))
  sim_churn "$ENV" 0.01 "$n" >/dev/null
  if [ "$kind" = manual ]; then
    DVSNAP_NOW="$when" "$DVSNAP" --config "$T/config" backup "$ENV" --label keep-forever >/dev/null 2>&1 || bad=$((bad + 1))
  else
    DVSNAP_NOW="$when" "$DVSNAP" --config "$T/config" capture --env "$ENV" >/dev/null 2>&1 || bad=$((bad + 1))
  fi
done <"$T/schedule"
check_eq "$n points taken on the simulated clock" "0 $n" "$bad $(dvsnap points $ENV | awk 'NR>1' | wc -l)"
check_eq "the manual backup records no expiry (keep_manual all)" "-" \
  "$(dvsnap points $ENV | awk '$2=="manual" {print $4}')"

# the reference: restic's rules (newest point of each of the last N periods that have points,
# UTC days, ISO weeks, months, years), the platform's 7 days, manual backups kept.
# ref DAILY WEEKLY MONTHLY YEARLY: the names it keeps, sorted
dvsnap points $ENV | awk 'NR>1 {print $1, $2}' >"$T/points"
ref() {
  python3 - "$T/points" "$NOW" "$@" <<'PY'
import sys
from datetime import datetime, timedelta
now = datetime.strptime(sys.argv[2], "%Y-%m-%dT%H:%M:%SZ")
counts = [int(x) for x in sys.argv[3:7]]
pts = [l.split() for l in open(sys.argv[1])]
t = lambda n: datetime.strptime(n, "%Y-%m-%dT%H%M%SZ")
keep = {n for n, k in pts if k == "manual" or t(n) + timedelta(days=7) > now}
sysp = sorted((n for n, k in pts if k == "system"), key=t, reverse=True)
periods = [lambda d: d.date(), lambda d: d.isocalendar()[:2], lambda d: (d.year, d.month),
           lambda d: d.year]
for count, period in zip(counts, periods):
    last = None
    for n in sysp:
        if count and period(t(n)) != last:
            keep.add(n); last = period(t(n)); count -= 1
for n in sorted(keep): print(n)
PY
}
kept_by_dry_run() { sed -n "s|^keep $ENV/\([^:]*\): .*|\1|p" | sort; }
ref 4 3 8 2 >"$T/expected"
dvsnap prune --dry-run --now "$NOW" >"$T/dry.out" 2>&1; rc=$?
check_eq "prune --dry-run succeeds" 0 "$rc"
check_eq "it keeps exactly the reference's set ($(wc -l <"$T/expected") of $n points)" \
  "$(cat "$T/expected")" "$(kept_by_dry_run <"$T/dry.out")"
check_eq "and names every point once" "$n" "$(grep -c "^\(keep\|would remove\) $ENV/" "$T/dry.out")"
check "the newest point is kept by the platform's 7 days and every rule's period" \
  grep -qx "keep $ENV/2026-06-15T060000Z: platform retention until 2026-06-22T06:00:00Z, keep_daily 2026-06-15, keep_weekly 2026-W25, keep_monthly 2026-06, keep_yearly 2026" "$T/dry.out"
check "a point the platform alone keeps says so" \
  grep -qx "keep $ENV/2026-06-14T060000Z: platform retention until 2026-06-21T06:00:00Z" "$T/dry.out"
check "keep_monthly 8 (the override) keeps 2025-11" \
  grep -qx "keep $ENV/2025-11-10T080000Z: keep_monthly 2025-11" "$T/dry.out"
check "the manual backup is kept until forgotten" \
  grep -qx "keep $ENV/2025-09-01T120000Z: keep_manual all (manual backups stay until forgotten)" "$T/dry.out"
check "an old point goes, with the reason" \
  grep -qx "would remove $ENV/2025-03-10T080000Z: platform retention ended 2025-03-17T08:00:00Z and no retention rule keeps it" "$T/dry.out"
DVSNAP_KEEP_DAILY=0 DVSNAP_KEEP_WEEKLY=0 DVSNAP_KEEP_YEARLY=0 dvsnap prune --dry-run --now "$NOW" >"$T/dry0.out" 2>&1
check_eq "rules turned off (DVSNAP_KEEP_*=0) but the override: the reference again" \
  "$(ref 0 0 8 0)" "$(kept_by_dry_run <"$T/dry0.out")"

# a hold on a point the rules let go
victim=2025-06-10T080000Z
check "hold a point the rules let go" dvsnap hold $ENV $victim --reason "legal hold 42"
check_eq "points shows it held" "forever" "$(dvsnap points $ENV | awk -v p=$victim '$1==p {print $5}')"
check_eq "backup.json shows the hold" "legal hold 42 false" \
  "$(dvsnap points $ENV $victim | jq -r '"\(.hold.reason) \(.hold.automatic)"')"
check "the dry run keeps it, held" grep -q "^keep $ENV/$victim: held: legal hold 42" \
  <(dvsnap prune --dry-run --now "$NOW")
check "hold the manual backup" dvsnap hold $ENV keep-forever --for 30d
check_fails "a held manual backup cannot be forgotten" dvsnap forget $ENV keep-forever
check "released, it could be" dvsnap release $ENV keep-forever

# what every kept point reads back as before the prune
digest() { for p in $(cat "$1"); do echo "$p $(dvsnap cat $ENV "$p" account | sha256sum | cut -c1-16)"; done; }
(cat "$T/expected"; echo $victim) | sort >"$T/keep"
digest "$T/keep" >"$T/before"
dvsnap prune --now "$NOW" >"$T/prune.out" 2>&1; rc=$?
check_eq "prune succeeds" 0 "$rc"
check_eq "prune removed exactly the others" "$(comm -23 <(sort "$T/points" | awk '{print $1}') "$T/keep")" \
  "$(sed -n "s|^removed $ENV/\([^:]*\): .*|\1|p" "$T/prune.out" | sort)"
check_eq "what is left is the kept set and the held point" "$(cat "$T/keep")" \
  "$(dvsnap points $ENV | awk 'NR>1 {print $1}' | sort)"
check_eq "the kept points read back unchanged" "$(cat "$T/before")" "$(digest "$T/keep")"
check "the repository checks clean" dvsnap check --read-data

# change the rules to keep nothing but the platform's: the held point still stays
cat >>"$T/config" <<CFG
keep_daily = 0
keep_weekly = 0
keep_monthly = 0
keep_yearly = 0
retention.contoso-dev.keep_monthly = 0
keep_manual = platform
CFG
dvsnap prune --now "$NOW" >"$T/prune2.out" 2>&1
check_eq "with no rules the held point survives prune" "$victim" \
  "$(dvsnap points $ENV | awk -v p=$victim '$1==p {print $1}')"
check "its hold survives too" test "$(dvsnap points $ENV $victim | jq -r .hold.reason)" = "legal hold 42"
check_eq "the manual backup went (keep_manual platform)" "" "$(dvsnap points $ENV | awk '$2=="manual"')"
check "release it" dvsnap release $ENV $victim
check_fails "release again fails: not held" dvsnap release $ENV $victim
dvsnap prune --now "$NOW" >"$T/prune3.out" 2>&1
check "released, it goes at the next prune" grep -q "^removed $ENV/$victim: " "$T/prune3.out"
check_eq "only the platform's 7 days are left" \
  "$(awk '{print $1}' "$T/points" | python3 -c "
import sys
from datetime import datetime, timedelta
now=datetime(2026,6,15,12)
for l in sys.stdin:
    if datetime.strptime(l.strip(),'%Y-%m-%dT%H%M%SZ')+timedelta(days=7)>now: print(l.strip())" | sort)" \
  "$(dvsnap points $ENV | awk 'NR>1 {print $1}' | sort)"
check "the repository checks clean at the end" dvsnap check --read-data

# the mount shows holds: environment.json lists them, backup.json shows a point's, and a hold
# placed or released while mounted shows within the refresher's period (the kernel's cache of
# backup.json is dropped)
mount_dvsnap "$T/mnt"
P=$(dvsnap points $ENV | awk 'NR==2 {print $1}')
check_eq "backup.json through the mount: not held" "null" "$(jq -c .hold "$T/mnt/$ENV/$P/backup.json")"
check_eq "environment.json: no holds" "[]" "$(jq -c .holds "$T/mnt/$ENV/environment.json")"
check "hold it while mounted" dvsnap hold $ENV "$P" --reason "mount test"
check "backup.json shows the hold within 5 s" wait_for 5 \
  bash -c "jq -e '.hold.reason == \"mount test\"' '$T/mnt/$ENV/$P/backup.json'"
check_eq "environment.json lists it" "$P mount test" \
  "$(jq -r '.holds[] | "\(.point) \(.reason)"' "$T/mnt/$ENV/environment.json")"
check_eq "the mount and dvsnap points show the same backup.json" \
  "$(dvsnap points $ENV "$P" | sha256sum)" "$(sha256sum <"$T/mnt/$ENV/$P/backup.json")"
check "a manual backup" env DVSNAP_NOW=2026-06-15T11:00:00Z "$DVSNAP" --config "$T/config" backup $ENV --label held-manual
M=$(dvsnap points $ENV | awk '$2=="manual" {print $1}')
check "hold it" dvsnap hold $ENV held-manual
check "the mount sees it" wait_for 5 test -d "$T/mnt/$ENV/$M"
check_fails "rmdir of the held manual backup is refused" rmdir "$T/mnt/$ENV/$M"
check "released, rmdir removes it" bash -c "'$DVSNAP' --config '$T/config' release $ENV held-manual && rmdir '$T/mnt/$ENV/$M'"
check "release it" dvsnap release $ENV "$P"
check "backup.json shows no hold within 5 s" wait_for 5 \
  bash -c "jq -e '.hold == null' '$T/mnt/$ENV/$P/backup.json'"
check_eq "environment.json: no holds again" "[]" "$(jq -c .holds "$T/mnt/$ENV/environment.json")"
finish
