#!/usr/bin/env bash
# How well SimGrid's replay of a run's traces predicts the run, and what tracing costs, on this
# machine: jobs/scaling/simulate at 1 and 2 ranks (a node of --cores-per-node 2, the replay host
# speed = the traces' flops per CPU second, so a perfect replay reproduces the measured epoch) for
# pure data parallelism, layer-serial depth (the pipeline) and MGRIT depth (default settings);
# prints each traced epoch's measured and replayed time and the error (target: within 15%). Then
# the same 1- and 2-rank training with and without -trace (every epoch traced) three times,
# alternating, and the overhead of tracing from the medians (target: under 5%).
# usage: jobs/bench/replay.sh [extra thetanet train options]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../setup.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
net=(-problem peaks -width 64 -layers 16 -T 2 -theta 0.5 -batch 256)
sim() { # NAME AXIS [train options]
  "$THETANET_PYTHON" "$THETANET_ROOT/jobs/scaling/simulate" --ranks 1,2 --axis "$2" --cores-per-node 2 --epochs 3 \
    --out "$work/$1.h5" --runs "$work/$1.runs" -- "${net[@]}" "${@:3}" > "$work/$1.log"
}
sim data data "$@"
sim sequential depth "$@"
sim mgrit depth -depth_solver mgrit "$@"
for r in 1 2; do
  for k in 1 2 3; do
    for mode in plain traced; do
      extra=()
      [ "$mode" = traced ] && extra=(-trace "$work/t_${r}_$k")
      mpiexec --oversubscribe --bind-to none -n $r "$THETANET_BUILD/thetanet" train "${net[@]}" -epochs 4 \
        -output "$work/${mode}_${r}_$k.h5" "${extra[@]}" "$@" > "$work/${mode}_${r}_$k.log"
    done
  done
done
"$THETANET_PYTHON" - "$work" <<'PY'
import sys
import h5py
import numpy as np
work = sys.argv[1]
print(f"{'run':12s} {'P':>2s} {'measured_s':>10s} {'replayed_s':>10s} {'error':>7s}")
worst = 0
for name in ("data", "sequential", "mgrit"):
    with h5py.File(f"{work}/{name}.h5", "r") as f:
        r = f["runs"]
        for P, m, p, e in zip(r["ranks"][()], r["measured_epoch_s"][()], r["predicted_epoch_s"][()],
                              r["replay_error"][()]):
            worst = max(worst, abs(e))
            print(f"{name:12s} {P:2d} {m:10.4f} {p:10.4f} {e:+7.1%}")
print(f"largest replay error {worst:.1%} (target: within 15%)")
def wall(name):
    with h5py.File(f"{work}/{name}.h5", "r") as f:
        return float(f["history"]["wall_time"][-1])
for r in (1, 2):
    plain = np.median([wall(f"plain_{r}_{k}") for k in (1, 2, 3)])
    traced = np.median([wall(f"traced_{r}_{k}") for k in (1, 2, 3)])
    print(f"{r} rank(s): training {plain:.3f} s plain, {traced:.3f} s traced (every epoch): "
          f"tracing costs {traced / plain - 1:+.1%} (target: under 5%)")
PY
