#!/usr/bin/env bash
# Installs what is missing, builds into build/ and trains the default job: the embedded
# two-spirals problem on 2 ranks. Results go to results/quickstart.h5.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
mkdir -p "$THETANET_ROOT/results"
out="$THETANET_ROOT/results/quickstart.h5"
mpiexec --oversubscribe -n 2 "$THETANET_BUILD/thetanet" train -output "$out" "$@"
cat <<MSG

Results: $out
  $THETANET_BUILD/thetanet info -model $out
  $THETANET_PYTHON -c "import h5py; f = h5py.File('$out'); print(f['history/val_accuracy'][-1])"
MSG
