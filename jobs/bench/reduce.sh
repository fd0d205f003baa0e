#!/usr/bin/env bash
# The gradient sum by algorithm (-allreduce_algorithm doubling / halving; the same bits either
# way). First the sum alone (tn_reduce_rate: the epoch benchmark's 4.3 MB gradient in buckets of
# 512 KB and of 4 MB, doubling and halving alternating, 20 repetitions) on 2 and REDUCE_RANKS
# ranks (default 4; beyond the cores they share them); then epoch.sh's 2-rank theta-0 training
# (width 128, 32 layers, batch 256, 6 epochs) with each algorithm, alternating, REDUCE_REPS
# times (default 5): samples/s, and /timing's backward and allreduce seconds per epoch (rank
# mean); the models must be the same bits. Prints the ratios halving over doubling.
# usage: [REDUCE_RANKS=P] [REDUCE_REPS=N] jobs/bench/reduce.sh [extra thetanet options]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../setup.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for p in 2 "${REDUCE_RANKS:-4}"; do
  for kb in 512 4096; do
    mpiexec --oversubscribe -n "$p" "$THETANET_BUILD/tn_reduce_rate" -bucket_kb $kb | sed "s/^/bucket_kb $kb /"
  done
done
"$THETANET_PYTHON" "$THETANET_ROOT/jobs/bench/make_dataset.py" "$work/synth.h5" 16384 32 8
for k in $(seq "${REDUCE_REPS:-5}"); do
  for alg in doubling halving; do
    mpiexec --oversubscribe -n 2 "$THETANET_BUILD/thetanet" train -train "$work/synth.h5" -width 128 -layers 32 \
      -batch 256 -epochs 6 -theta 0 -T 1 -output "$work/$alg.$k.h5" -allreduce_algorithm $alg "$@" > "$work/$alg.$k.log"
  done
done
"$THETANET_PYTHON" - "$work" "${REDUCE_REPS:-5}" <<'PY'
import sys
import h5py
import numpy as np
work, reps = sys.argv[1], int(sys.argv[2])
def run(name):
    for line in open(f"{work}/{name}.log"):
        if line.startswith("summary "):
            w = line.split()[1:]
            sps = float(dict(zip(w[::2], w[1::2]))["samples_per_s"])
    with h5py.File(f"{work}/{name}.h5", "r") as f:
        t = {k: f["timing"][k][()].mean() / 6 for k in ("backward", "allreduce")}
        W = np.concatenate([f["model"][k][()].ravel() for k in ("opening/K", "blocks/W", "blocks/b", "closing/C")])
    return sps, t, W
ratios = []
for k in range(1, reps + 1):
    (sd, td, Wd), (sh, th, Wh) = run(f"doubling.{k}"), run(f"halving.{k}")
    assert np.array_equal(Wd, Wh), "the algorithms trained different models"
    ratios.append(sh / sd)
    print(f"epoch, 2 ranks, repeat {k}: doubling {sd:.0f} samples/s (backward {td['backward']:.3f} s, allreduce "
          f"{td['allreduce']:.3f} s per epoch), halving {sh:.0f} (backward {th['backward']:.3f}, allreduce "
          f"{th['allreduce']:.3f}): halving / doubling {sh / sd:.3f}x")
print(f"epoch, 2 ranks: halving / doubling samples/s, median of {reps}: {sorted(ratios)[reps // 2]:.3f}x; "
      "the models are the same bits")
PY
