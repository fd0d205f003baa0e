#!/usr/bin/env bash
# Train on a workstation with mpiexec, restartably: checkpoints every EVERY epochs, Ctrl-C (or
# kill -TERM) makes thetanet write a checkpoint and stop, and the same command again continues.
#
# usage: [NP=2] [DEPTH=1] [EVERY=10] [NAME=...] jobs/mpirun/train.sh [thetanet train options]
#   NP ranks as a grid DEPTH x NP/DEPTH (-depth_ranks DEPTH). Writes results/NAME.h5 (results),
#   results/NAME.ckpt.h5 (checkpoint) and results/NAME.log; NAME encodes the configuration,
#   e.g. spirals_w16_L8_th0.5_T2_1x2. Example:
#   NP=4 jobs/mpirun/train.sh -options_file jobs/examples/peaks.opts
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../setup.sh"
source "$THETANET_ROOT/jobs/lib/checkpointed.sh"
NP=${NP:-2}
DEPTH=${DEPTH:-1}
tn=$THETANET_BUILD/thetanet
name=${NAME:-$(tn_run_name "$tn" "$NP" "$DEPTH" "$@")}
mkdir -p "$THETANET_ROOT/results"
tn_checkpointed_run "$THETANET_ROOT/results/$name" mpiexec --oversubscribe -n "$NP" "$tn" train -depth_ranks "$DEPTH" "$@"
if [ -f "$THETANET_ROOT/results/$name.h5" ]; then
  echo "plot: $THETANET_PYTHON $THETANET_ROOT/jobs/analysis/plot_history.py $THETANET_ROOT/results/$name.h5 -o $THETANET_ROOT/results/$name.png"
fi
exit "$TN_STATUS"
