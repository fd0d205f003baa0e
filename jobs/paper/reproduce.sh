#!/usr/bin/env bash
# The paper reproduced: does the set-up of jobs/quickstart.sh, then runs jobs/paper/paper.py
# (stability portraits, depth study of Examples 1 and 2, learning-rate sweep, robustness to input
# noise). Writes results/paper/{paper.h5,summary.md,*.png} and the runs behind them; a few minutes
# on 2 cores with the defaults.
# usage: jobs/paper/reproduce.sh [--full] [--jobs N] [--only stability,depth,lr,robustness] [--out DIR]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../setup.sh"
"$THETANET_PYTHON" "$THETANET_ROOT/jobs/paper/paper.py" --thetanet "$THETANET_BUILD/thetanet" "$@"
