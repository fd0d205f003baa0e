#!/usr/bin/env bash
# A scaling study on this workstation: jobs/scaling/study on 1, 2, 4, ... ranks (up to the cores),
# then its speed-up and efficiency plot.
#
# usage: [AXIS=data|depth|grid] [WEAK=1] [RANKS=1,2,4] jobs/mpirun/scaling.sh [thetanet train options]
#   default train options: -options_file jobs/examples/scaling.opts. Writes results/scaling_AXIS[_weak].h5,
#   its runs in results/scaling_AXIS[_weak].runs/ and results/scaling_AXIS[_weak].png.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../setup.sh"
AXIS=${AXIS:-data}
if [ -z "${RANKS:-}" ]; then
  RANKS=1
  for ((p = 2; p <= $(nproc); p *= 2)); do RANKS+=,$p; done
fi
opts=("$@")
((${#opts[@]})) || opts=(-options_file "$THETANET_ROOT/jobs/examples/scaling.opts")
weak=()
name=scaling_$AXIS
if [ "${WEAK:-0}" = 1 ]; then weak=(--weak); name+=_weak; fi
mkdir -p "$THETANET_ROOT/results"
out=$THETANET_ROOT/results/$name
"$THETANET_PYTHON" "$THETANET_ROOT/jobs/scaling/study" --ranks "$RANKS" --axis "$AXIS" "${weak[@]}" \
  --thetanet "$THETANET_BUILD/thetanet" --mpiexec "mpiexec --oversubscribe" --out "$out.h5" -- "${opts[@]}"
"$THETANET_PYTHON" "$THETANET_ROOT/jobs/analysis/plot_scaling.py" "$out.h5" -o "$out.png"
