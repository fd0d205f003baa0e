#!/usr/bin/env bash
# Installs what is missing, builds into build/ and trains the default job: the embedded
# two-spirals problem on 2 ranks. Results go to results/quickstart.h5; it prints how to plot them.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
mkdir -p "$THETANET_ROOT/results"
out="$THETANET_ROOT/results/quickstart.h5"
mpiexec --oversubscribe -n 2 "$THETANET_BUILD/thetanet" train -output "$out" "$@"
a=$THETANET_ROOT/jobs/analysis
r=$THETANET_ROOT/results/quickstart
cat <<MSG

Results: $out (HDF5: /model, /history, /timing, /config; README.md, "Files")
  the model:             $THETANET_BUILD/thetanet info -model $out
  training curves:       $THETANET_PYTHON $a/plot_history.py $out -o ${r}_history.png
  decision regions:      $THETANET_PYTHON $a/plot_decision.py $out -o ${r}_decision.png
  in Python:             $THETANET_PYTHON -c "import h5py; f = h5py.File('$out'); print(f['history/val_accuracy'][-1])"
Other jobs: jobs/examples/*.opts (e.g. jobs/quickstart.sh -options_file jobs/examples/peaks.opts),
jobs/mpirun/, jobs/slurm/, jobs/scaling/study, jobs/paper/reproduce.sh (README.md, "Jobs").
MSG
