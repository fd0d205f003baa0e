#!/usr/bin/env bash
# Builds the given test programs with THETANET_SANITIZE=ON (AddressSanitizer and
# UndefinedBehaviorSanitizer) in BUILD and runs each on 1 and 2 ranks; any report fails the test.
#   sanitize_test.sh SOURCE BUILD "MPIEXEC ..." TEST...
set -euo pipefail
src=$1 build=$2 mpiexec=$3
shift 3
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Debug -DTHETANET_SANITIZE=ON -DTHETANET_NATIVE=OFF >/dev/null
cmake --build "$build" -j "$(nproc)" --target "$@" >"$build/build.log" 2>&1 || { tail -40 "$build/build.log"; exit 1; }
# Open MPI's own allocations outlive MPI_Finalize: leaks are not what this test is for.
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export OPENBLAS_NUM_THREADS=1
for t in "$@"; do
  "$build/tests/$t"
  # shellcheck disable=SC2086
  $mpiexec -n 2 "$build/tests/$t"
  echo "sanitize_test: $t clean on 1 and 2 ranks"
done
