#!/usr/bin/env bash
# How well SimGrid's replay of a run's traces predicts the run, and what tracing costs, on this
# machine: jobs/scaling/simulate at 1 and 2 ranks (a node of --cores-per-node 2, the replay host
# speed = the traces' flops per CPU second, so a perfect replay reproduces the measured epoch) for
# pure data parallelism (also with its allreduces written as point-to-point recursive doubling,
# THETANET_TRACE_P2P=1, the form used for collectives on sub-communicators), layer-serial depth
# (the pipeline) and MGRIT depth (default settings);
# prints each traced epoch's measured and replayed time and the error (target: within 15%). Then
# the same 1- and 2-rank training with and without -trace (every epoch traced) five times,
# alternating, and the overhead of tracing from the fastest runs and from the medians (target:
# under 5%; the machine is shared, and the fastest run is the least disturbed), and the tracer's
# own time as each traced run timed it (its code between the MPI calls; free of the machine's
# noise, as it does not compare two runs; thread CPU time, against the rank's CPU time while it
# records).
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
THETANET_TRACE_P2P=1 sim data_p2p data "$@"
sim sequential depth "$@"
sim mgrit depth -depth_solver mgrit "$@"
for r in 1 2; do
  for k in 1 2 3 4 5; do
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
for name in ("data", "data_p2p", "sequential", "mgrit"):
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
    plain = [wall(f"plain_{r}_{k}") for k in range(1, 6)]
    traced = [wall(f"traced_{r}_{k}") for k in range(1, 6)]
    own = []
    for k in range(1, 6):
        for line in open(f"{work}/traced_{r}_{k}.log"):
            if line.startswith("trace: "):
                own.append(float(line.split("tracer_share ")[1].split()[0]))
    print(f"{r} rank(s): training {min(plain):.3f} s plain, {min(traced):.3f} s traced (every epoch), fastest of 5: "
          f"tracing costs {min(traced) / min(plain) - 1:+.1%} (target: under 5%); medians {np.median(plain):.3f} s, "
          f"{np.median(traced):.3f} s: {np.median(traced) / np.median(plain) - 1:+.1%}")
    print(f"{r} rank(s): the tracer's own CPU time (timed in the run, largest rank): {np.median(own):.2%} of a rank's "
          f"CPU time while recording (median of 5), at most {max(own):.2%} (target: under 5%)")
PY
