#!/usr/bin/env bash
# Installs what is missing, builds into build/ and runs the whole test suite with CTest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../jobs/setup.sh"
cd "$THETANET_BUILD"
ctest --output-on-failure --timeout 600 "$@"
