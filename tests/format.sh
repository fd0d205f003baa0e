#!/usr/bin/env bash
# The C sources follow the one .clang-format at the root: clang-format changes nothing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
format=${CLANG_FORMAT:-clang-format}
cd "$root"
files=(src/*.[ch] solvers/*.[ch] io/*.[ch] tests/*.[ch] jobs/bench/*.c)
"$format" --dry-run -Werror "${files[@]}"
echo "format: ${#files[@]} files follow .clang-format ($("$format" --version))"
