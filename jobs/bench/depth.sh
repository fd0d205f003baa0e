#!/usr/bin/env bash
# Depth parallelism against the alternatives on the same cores, judged by the network itself:
# the spirals at 256 layers, width 32, theta 0.5, global batch 64, 100 epochs (the network of
# jobs/examples/mgrit_deep.opts), trained
#   serial1  layer-serial on 1 rank,
#   data2    pure data parallelism on 2 ranks (the same global batch),
#   seq2     layer-serial across 2 depth ranks (a pipeline: model parallelism, no speed-up),
#   mgrit2   MGRIT across 2 depth ranks with its default settings (-depth_solver mgrit),
# in one run, with seeds 1..S. Every epoch's validation accuracy is the exact one (the layer-serial
# forward propagation, what `thetanet evaluate` computes from the saved model). Prints per run the
# epoch time, the time to the first epoch at the target validation accuracy, and the final
# accuracy; then the ratios of data2, seq2 and mgrit2 to serial1 and of mgrit2 to data2.
# usage: jobs/bench/depth.sh [--target 0.99] [--seeds 3] [extra thetanet options]
set -euo pipefail
target=0.99 seeds=3
while (($#)); do
  case $1 in
    --target) target=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    *) break ;;
  esac
done
source "$(dirname "${BASH_SOURCE[0]}")/../setup.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

net=(-problem spirals -width 32 -layers 256 -T 4 -theta 0.5 -batch 64 -epochs 100)
run() { # RANKS NAME SEED [options]
  mpiexec --oversubscribe --bind-to none -n "$1" "$THETANET_BUILD/thetanet" train "${net[@]}" -seed "$3" \
    -output "$work/$2_s$3.h5" "${@:4}" > "$work/$2_s$3.log"
}
for s in $(seq 1 "$seeds"); do
  run 1 serial1 "$s" "$@"
  run 2 data2 "$s" "$@"
  run 2 seq2 "$s" -depth_ranks 2 "$@"
  run 2 mgrit2 "$s" -depth_ranks 2 -depth_solver mgrit "$@"
done
"$THETANET_PYTHON" - "$work" "$target" "$seeds" <<'PY'
import sys
import h5py
import numpy as np
work, target, seeds = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
rows = {}
print(f"{'run':8s} {'seed':>4s} {'epoch_s':>8s} {'to_target_s':>12s} {'epoch':>6s} {'final_acc':>9s} {'mgrit_its':>9s}")
for name in ("serial1", "data2", "seq2", "mgrit2"):
    for s in range(1, seeds + 1):
        with h5py.File(f"{work}/{name}_s{s}.h5", "r") as f:
            h = {k: f["history"][k][()] for k in f["history"]}
        acc, wall = h["val_accuracy"], h["wall_time"]
        hit = np.nonzero(acc >= target)[0]
        epoch_s = wall[-1] / len(wall)
        t = wall[hit[0]] if len(hit) else np.inf
        rows.setdefault(name, []).append((epoch_s, t, acc[-1]))
        print(f"{name:8s} {s:4d} {epoch_s:8.3f} {t:12.1f} {hit[0] + 1 if len(hit) else '-':>6} {acc[-1]:9.4f} "
              f"{h['mgrit_its'].mean():9.2f}")
def reached(v):
    t = [r[1] for r in v if np.isfinite(r[1])]
    return (np.mean(t) if t else np.inf), len(t)
mean = {k: (np.mean([r[0] for r in v]), *reached(v), np.mean([r[2] for r in v])) for k, v in rows.items()}
print(f"\nmeans over {seeds} seeds (target validation accuracy {target}; the time to target is the mean over the "
      "runs that reach it):")
for k, (e, t, n, a) in mean.items():
    print(f"{k:8s} epoch {e:.3f} s, to target {t:.1f} s ({n}/{seeds} reach it), final accuracy {a:.4f}")
for k in ("data2", "seq2", "mgrit2"):
    print(f"speed-up of {k} over serial1: per epoch {mean['serial1'][0] / mean[k][0]:.2f}x, "
          f"to target {mean['serial1'][1] / mean[k][1]:.2f}x")
print(f"mgrit2 against data2 (same 2 ranks): per epoch {mean['data2'][0] / mean['mgrit2'][0]:.2f}x, "
      f"to target {mean['data2'][1] / mean['mgrit2'][1]:.2f}x")
PY
"$THETANET_BUILD/thetanet" info -system | grep -E "cpu|blas "
