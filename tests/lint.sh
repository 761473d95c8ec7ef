#!/usr/bin/env bash
# House rules that a compiler does not check (STYLE.md): banned functions, include boundaries,
# and a design note at the top of every C file. Prints each violation; exits non-zero on any.
set -u
cd "$(dirname "$0")/.."
bad=0
files=$(git ls-files '*.c' '*.h' 2>/dev/null; git ls-files --others --exclude-standard '*.c' '*.h' 2>/dev/null)
for f in $files; do
  [ -f "$f" ] || continue
  if grep -nE '\b(sprintf|strcpy|strcat|strtok|atoi|gets)[[:space:]]*\(' "$f" | grep -v 'lint-ok' ; then
    echo "lint: $f uses a banned function (sprintf strcpy strcat strtok atoi gets)"; bad=1; fi
  case "$f" in
    backend/*|cache/*) if grep -n '#include <fuse' "$f"; then echo "lint: $f includes fuse.h (only fs/ may)"; bad=1; fi ;;
  esac
  case "$f" in
    backend/http*.c|backend/objstore_*.c|tests/*) ;;
    *) if grep -n '#include <curl/' "$f"; then echo "lint: $f includes curl.h (only the HTTP transport may)"; bad=1; fi ;;
  esac
  head -c 2 "$f" | grep -q '/\*' || { echo "lint: $f does not open with a /* design note */"; bad=1; }
done
exit $bad
