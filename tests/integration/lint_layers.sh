#!/usr/bin/env bash
# lint_layers: tests/lint.sh enforces the layer rule. A copy of the tree passes as it is; each
# injected include that breaks a layer (a lower layer including an upper one, a sibling layer, the
# repository layer's own order, another folder's _int.h, curl or fuse outside their one home) fails
# it with a message that names the file and the rule. So does a file (code, the README, a document,
# .clang-format) that sends its reader to a design document outside the repository.
. "$(dirname "$0")/../lib.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)
copy="$T/tree"
mkdir -p "$copy"
(cd "$root" && git ls-files -z | xargs -0 cp --parents -t "$copy") # every file lint reads
# an untracked file in the checkout would not be in the copy; the copy is what is linted
check "the tree as committed passes the lint" bash "$copy/tests/lint.sh" "$copy"

# inject LINE at the first include of FILE in a fresh copy; expect lint to fail naming PATTERN
inject() {
  local desc=$1 file=$2 line=$3 pattern=$4
  rm -rf "$copy.bad" && cp -a "$copy" "$copy.bad"
  sed -i "0,/^#include/s|^#include|$line\n#include|" "$copy.bad/$file"
  if bash "$copy.bad/tests/lint.sh" "$copy.bad" >"$T/lint.out" 2>&1; then
    not_ok "$desc (lint passed)"
  elif grep -q -- "$pattern" "$T/lint.out"; then
    ok "$desc"
  else
    not_ok "$desc (wrong message)"; sed 's/^/#   /' "$T/lint.out" | head -5
  fi
}
inject "base including the repository layer is refused" backend/base/util.c \
  '#include "backend/repo/repo.h"' 'util.c includes backend/repo/repo.h: backend/base may include only'
inject "repo including an engine is refused" backend/repo/manifest.c \
  '#include "backend/engine/capture.h"' 'layer rule'
inject "objstore including dataverse (a sibling) is refused" backend/objstore/objstore.c \
  '#include "backend/dataverse/dataverse.h"' 'backend/objstore may include only'
inject "cache including fs is refused" cache/cache.h '#include "fs/fs.h"' 'cache may include only'
inject "catalog including repo.h (the old cycle) is refused" backend/repo/catalog.h \
  '#include "backend/repo/repo.h"' 'only repo.s own files'
inject "point.h including segment.h is refused" backend/repo/point.h \
  '#include "backend/repo/segment.h"' 'point.h is the bottom'
inject "another folder's internal header is refused" fs/fs.h \
  '#include "backend/engine/restore_int.h"' 'an internal header is for its own folder'
inject "curl outside the transport is refused" backend/net/auth.c '#include <curl/curl.h>' 'only backend/net/http.c'
inject "fuse outside fs/ is refused" cache/cache.h '#include <fuse3/fuse_lowlevel.h>' 'only fs/ may'
# a pointer to a document outside the repository, in prose and in a comment (the name is split
# so that this script does not point there itself: tests/lint.sh checks it too)
for f in README.md .clang-format backend/base/util.c; do
  rm -rf "$copy.bad" && cp -a "$copy" "$copy.bad"
  printf '%s\n' "# see ..$(echo /shared)/DESIGN$(echo .md) for why" >>"$copy.bad/$f"
  if bash "$copy.bad/tests/lint.sh" "$copy.bad" >"$T/lint.out" 2>&1; then
    not_ok "a pointer outside the repository in $f is refused (lint passed)"
  else
    check "a pointer outside the repository in $f is refused, naming it" \
      grep -q "lint: $f points at a document outside the repository" "$T/lint.out"
  fi
done
exit $_failed
