#!/usr/bin/env bash
# rel_readers (reliability goal #11, many parallel readers). Four environments are captured from
# dvsim; the golden SHA-256 of every table file is the simulator's dump taken right after the
# capture (independent of the mount). Through a real `dvsnap mount`, 64 readers read every table
# file in random order while `ls -lR` and `stat` storms run, for READERS_SECONDS (5 s quick,
# DVSNAP_LONG=1: 300 s). Every read must match its golden hash; the daemon's RSS and open file
# descriptors after the storm stay within a fixed margin of their values after a warm-up pass.
. "$(dirname "$0")/../lib.sh"
secs=${READERS_SECONDS:-5}
[ -n "${DVSNAP_LONG:-}" ] && secs=${READERS_SECONDS:-300}
start_dvsim --seed demo --records 1500
write_config "environments = contoso-prod contoso-dev contoso-default fabrikam-prod"
dvsnap init >/dev/null
check "capture" dvsnap capture
M=$T/mnt
: >"$T/golden"
for env in contoso-prod contoso-dev contoso-default fabrikam-prod; do
  p=$(dvsnap points "$env" latest | jq -r .point)
  for t in $(dvsnap points "$env" latest | jq -r '.tables[].name'); do
    h=$(sim_dump "$env" "$t" | sha256sum | cut -d' ' -f1)
    echo "$h $env/$p/tables/$t.json" >>"$T/golden"
  done
done
nfiles=$(wc -l <"$T/golden")
check "golden hashes for $nfiles table files" test "$nfiles" -ge 30
mount_dvsnap "$M"
d=$MOUNT_PID
# warm-up: every file once, checked
bad=0
while read -r h f; do
  [ "$(sha256sum <"$M/$f" | cut -d' ' -f1)" = "$h" ] || { bad=$((bad + 1)); echo "# warm-up mismatch: $f"; }
done <"$T/golden"
check_eq "warm-up: every file matches its golden hash" 0 "$bad"
rss0=$(awk '/^VmRSS/ {print $2}' /proc/$d/status); fd0=$(ls /proc/$d/fd | wc -l)

reader() { # N: read random files until the deadline; count bytes; log mismatches
  local end=$1 n=0 bytes=0 h f got
  mapfile -t lines < <(shuf --random-source=<(yes "$2") "$T/golden")
  while [ "$(date +%s)" -lt "$end" ]; do
    for line in "${lines[@]}"; do
      h=${line%% *}; f=${line#* }
      got=$(sha256sum <"$M/$f" | cut -d' ' -f1)
      [ "$got" = "$h" ] || echo "$f" >>"$T/mismatch"
      bytes=$((bytes + $(stat -c %s "$M/$f"))); n=$((n + 1))
      [ "$(date +%s)" -lt "$end" ] || break
    done
  done
  echo "$n $bytes" >>"$T/reads"
}
storm() { local end=$1; while [ "$(date +%s)" -lt "$end" ]; do ls -lR "$M" >/dev/null 2>>"$T/storm.err" || echo x >>"$T/storm.fail"; find "$M" -type f -exec stat -c %s {} + >/dev/null 2>>"$T/storm.err" || echo x >>"$T/storm.fail"; done; }
: >"$T/mismatch"; : >"$T/reads"
end=$(( $(date +%s) + secs ))
t0=$(date +%s%N)
pids=()
for i in $(seq 1 64); do reader "$end" "$i" & pids+=($!); done
for i in 1 2 3 4; do storm "$end" & pids+=($!); done
wait "${pids[@]}"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
reads=$(awk '{s+=$1} END {print s+0}' "$T/reads"); bytes=$(awk '{s+=$2} END {printf "%.0f", s}' "$T/reads")
check_eq "64 readers finished" 64 "$(wc -l <"$T/reads")"
check_eq "every one of $reads reads ($bytes bytes in ${ms} ms) matched its golden hash" 0 "$(wc -l <"$T/mismatch")"
check_eq "ls -lR and stat storms never failed" 0 "$(cat "$T/storm.fail" 2>/dev/null | wc -l)"
rss1=$(awk '/^VmRSS/ {print $2}' /proc/$d/status); fd1=$(ls /proc/$d/fd | wc -l)
note "daemon RSS ${rss0} -> ${rss1} kB, fds ${fd0} -> ${fd1}"
check "RSS stays bounded (${rss0} -> ${rss1} kB; limit +64 MiB)" test "$rss1" -le $((rss0 + 65536))
check "open fds stay bounded (${fd0} -> ${fd1}; limit +16)" test "$fd1" -le $((fd0 + 16))
check "the daemon is still serving" test -r "$M/$(head -n1 "$T/golden" | cut -d' ' -f2)"
finish
