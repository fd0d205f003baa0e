#!/usr/bin/env bash
# Robustness to input noise on Fashion-MNIST: installs and converts the data when missing
# (jobs/data/fashion_mnist.sh), trains theta = 0, 0.5, 1 networks (3 seeds each, same depth and
# width) and tabulates and plots their test accuracy under Gaussian input noise of standard
# deviation 0, 0.1, 0.2, 0.4, 0.6, 1.0 (jobs/paper/robustness.py; its options pass through).
# Writes results/robustness/{robustness.h5,robustness.md,robustness.png}.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../data/fashion_mnist.sh"
"$THETANET_PYTHON" "$THETANET_ROOT/jobs/paper/robustness.py" --data "$FASHION_MNIST" \
  --thetanet "$THETANET_BUILD/thetanet" "$@"
