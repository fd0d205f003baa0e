#!/usr/bin/env bash
# The layers only look down: a file of solvers/ or io/ may include, of src/'s headers, only the
# public thetanet.h. Fails naming every include that breaks the rule.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
status=0
for f in "$root"/solvers/*.[ch] "$root"/io/*.[ch]; do
  while IFS= read -r header; do
    [ "$header" = thetanet.h ] && continue
    if [ -e "$root/src/$header" ]; then
      echo "layering: ${f#$root/} includes src/$header (only src/thetanet.h may be included from below)"
      status=1
    fi
  done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f")
done
[ $status -eq 0 ] && echo "layering: solvers/ and io/ include nothing from src/ but thetanet.h"
exit $status
