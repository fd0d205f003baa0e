#!/usr/bin/env bash
# Fashion-MNIST end to end: installs the data package when missing and converts it once
# (jobs/data/fashion_mnist.sh), trains jobs/examples/fashion_mnist.opts on RANKS (default 2)
# ranks with the last 5,000 training images as validation set, and evaluates the best epoch's
# model on the 10,000 test images. Results: results/fashion_mnist.h5 and
# results/fashion_mnist_test.h5. Extra arguments go to train (e.g. -epochs 5).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../data/fashion_mnist.sh"
ranks=${RANKS:-2}
mkdir -p "$THETANET_ROOT/results"
out=$THETANET_ROOT/results/fashion_mnist.h5
start=$(date +%s)
mpiexec --oversubscribe -n "$ranks" "$THETANET_BUILD/thetanet" train \
  -options_file "$THETANET_ROOT/jobs/examples/fashion_mnist.opts" \
  -train "$FASHION_MNIST/train.h5" -val "$FASHION_MNIST/val.h5" -output "$out" "$@"
mpiexec --oversubscribe -n "$ranks" "$THETANET_BUILD/thetanet" evaluate -model "$out" \
  -data "$FASHION_MNIST/test.h5" -scale_uint8 -output "$THETANET_ROOT/results/fashion_mnist_test.h5"
echo "fashion_mnist: done in $(($(date +%s) - start)) s on $ranks ranks"
