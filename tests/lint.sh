#!/usr/bin/env bash
# House rules that a compiler does not check: banned functions, a design note at the top of every
# C file, a note that says why in any source file above 1,000 lines, the include boundaries, and
# no file pointing at documents outside the repository (its readers have only the repository:
# what they need is in docs/, in our words).
#
# The layer rule (docs/architecture.md): a folder may include its own headers and those of the
# layers listed for it, never an upper one.
#   backend/base       util log json keymap record config      -> nothing of ours
#   backend/net        http (the only libcurl user), auth      -> base
#   backend/dataverse  admin API, Web API, $batch clients      -> base net
#   backend/objstore   store interface, dir/Azure/S3, leases   -> base net
#   backend/repo       point, segment, manifest, catalog, repo -> base objstore
#   backend/engine     capture, restore, ops, policy           -> every backend layer
#   cache              the local cache                         -> base
#   fs                 the FUSE view (the only libfuse user)   -> backend, cache
#   tools, tests       programs and tests                      -> anything
# Inside backend/repo, point.h is the bottom (base only) and repo.h / repo_int.h the top: no other
# file of the layer includes them. A NAME_int.h is included only from its own folder (and tests).
#
# Usage: tests/lint.sh [ROOT]   (ROOT defaults to this checkout; a tree that is not a git checkout is
# read with find). Prints each violation; exits non-zero on any.
set -u
root=${1:-"$(dirname "$0")/.."}
cd "$root" || exit 2
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  files=$(git ls-files '*.c' '*.h' 2>/dev/null; git ls-files --others --exclude-standard '*.c' '*.h' 2>/dev/null)
else
  files=$(find . -path ./build -prune -o -path './build-*' -prune -o -path ./tests/node/node_modules -prune \
          -o \( -name '*.c' -o -name '*.h' \) -type f -print | sed 's#^\./##')
fi

# the folders each source folder may include from (its own folder always)
allowed_for() {
  case "$1" in
    backend/base)      echo "" ;;
    backend/net)       echo "backend/base" ;;
    backend/dataverse) echo "backend/base backend/net" ;;
    backend/objstore)  echo "backend/base backend/net" ;;
    backend/repo)      echo "backend/base backend/objstore" ;;
    backend/engine)    echo "backend/base backend/net backend/dataverse backend/objstore backend/repo" ;;
    cache)             echo "backend/base" ;;
    fs)                echo "backend/base backend/net backend/dataverse backend/objstore backend/repo backend/engine cache" ;;
    *)                 echo "*" ;;
  esac
}

bad=0
for f in $files; do
  [ -f "$f" ] || continue
  if grep -nE '\b(sprintf|strcpy|strcat|strtok|atoi|gets)[[:space:]]*\(' "$f" | grep -v 'lint-ok' ; then
    echo "lint: $f uses a banned function (sprintf strcpy strcat strtok atoi gets)"; bad=1; fi
  case "$f" in
    fs/*|tests/*) ;;
    *) if grep -n '#include <fuse' "$f"; then echo "lint: $f includes fuse.h (only fs/ may)"; bad=1; fi ;;
  esac
  case "$f" in
    backend/net/http.c|tests/*) ;;
    *) if grep -n '#include <curl/' "$f"; then echo "lint: $f includes curl.h (only backend/net/http.c may)"; bad=1; fi ;;
  esac
  head -c 2 "$f" | grep -q '/\*' || { echo "lint: $f does not open with a /* design note */"; bad=1; }
  # a long file says why it is long, in its opening note ("Size: ...")
  if [ "$(wc -l <"$f")" -gt 1000 ] && ! sed -n '1,/\*\//p' "$f" | grep -q 'Size:'; then
    echo "lint: $f has more than 1,000 lines and its design note does not say why (Size: ...)"; bad=1; fi

  dir=$(dirname "$f")
  allowed=$(allowed_for "$dir")
  for inc in $(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f"); do
    idir=$(dirname "$inc")
    case "$inc" in
      */*) ;;
      *) continue ;;   # a header next to the file
    esac
    if [ "$idir" != "$dir" ] && [ "$allowed" != "*" ]; then
      case " $allowed " in
        *" $idir "*) ;;
        *) echo "lint: $f includes $inc: $dir may include only $dir${allowed:+ and $allowed} (layer rule)"; bad=1 ;;
      esac
    fi
    case "$inc" in
      *_int.h) if [ "$idir" != "$dir" ]; then case "$f" in tests/*) ;; *)
        echo "lint: $f includes $inc: an internal header is for its own folder"; bad=1 ;; esac; fi ;;
    esac
    if [ "$dir" = backend/repo ]; then
      base=$(basename "$f")
      case "$base:$inc" in
        point.h:backend/repo/*) echo "lint: $f includes $inc: point.h is the bottom of the repository layer"; bad=1 ;;
        repo.[ch]:*|repo_*:*) ;;
        *:backend/repo/repo.h|*:backend/repo/repo_int.h)
          echo "lint: $f includes $inc: only repo's own files sit above the rest of the layer"; bad=1 ;;
      esac
    fi
  done
done

# Documents the project's founders kept outside the repository: no tracked file may send a reader
# there (the names are split so this script does not match itself).
outside="DESIGN[.]md|STYLE[.]md|[.][.]/shared|shared/reference"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  all=$(git ls-files; git ls-files --others --exclude-standard)
else
  all=$(find . -path ./build -prune -o -path './build-*' -prune -o -path ./tests/node/node_modules -prune \
        -o -path ./.git -prune -o -type f -print | sed 's#^\./##')
fi
for f in $all; do
  [ -f "$f" ] && [ "$f" != tests/lint.sh ] || continue
  if grep -InE "$outside" "$f" 2>/dev/null; then
    echo "lint: $f points at a document outside the repository (write what is needed in docs/)"; bad=1
  fi
done
exit $bad
