#!/usr/bin/env bash
# private files (issue 16, item 5): under the usual umask 022, everything dvsnap creates for a
# directory repository (objects, manifests, locks, temp files, the catalog and its WAL) and for the
# mount's cache (index, frames, operations) is readable by its owner only: no file or directory
# under either has a group or other permission bit.
. "$(dirname "$0")/../lib.sh"
umask 022
start_dvsim --seed demo
write_config
rm -rf "$T/repo" "$T/cache"   # let dvsnap create both, as a new user's first run would
check "init" dvsnap init
check "capture" dvsnap capture --env contoso-prod
check "a second capture" dvsnap capture --env contoso-prod
mount_dvsnap "$T/mnt"
check "a table reads through the mount (fills the cache)" \
  cmp -s <(cat "$T/mnt/contoso-prod/latest/tables/account.json") <(dvsnap cat contoso-prod latest account)
ls "$T/mnt/contoso-prod/latest/files/annotation" >/dev/null 2>&1
n=$(find "$T/repo" "$T/cache" -type f | wc -l)
check "the repository and the cache hold files ($n)" test "$n" -gt 20
open=$(find "$T/repo" "$T/cache" -perm /077 -printf '%m %p\n')
check_eq "no file or directory of the repository or the cache is open to group or others" "" "$open"
check_eq "the repository's root is 0700" 700 "$(stat -c %a "$T/repo")"
check_eq "the catalog is 0600" 600 "$(stat -c %a "$T/repo/catalog.db")"
finish
