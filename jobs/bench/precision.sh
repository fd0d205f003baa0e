#!/usr/bin/env bash
# Mixed precision judged by the models it trains: Fashion-MNIST (installed and converted when
# missing, jobs/data/fashion_mnist.sh), 784 inputs scaled to [0, 1], width 128, 8 layers, batch
# 128, 3 epochs, seed 1..S, on 2 ranks:
#   t0          theta 0,
#   mixed       theta 0.5, -block_precision mixed (the default),
#   double      theta 0.5, -block_precision double,
#   double_tight theta 0.5, -block_precision double with -block_atol halved (5e-7): how far the
#               tolerance itself moves a model, the yardstick for mixed against double.
# Every model is scored by `thetanet evaluate` on the 10,000 test images. Prints per run the
# samples/s, iterations and test loss and accuracy; then mixed / double samples/s, theta 0.5 /
# theta 0 cost, and the accuracy differences mixed - double and double_tight - double.
# usage: jobs/bench/precision.sh [--seeds 2] [extra thetanet options]
set -euo pipefail
seeds=2
if [[ ${1:-} == --seeds ]]; then seeds=$2; shift 2; fi
source "$(dirname "${BASH_SOURCE[0]}")/../setup.sh"
FASHION_MNIST=${FASHION_MNIST:-$THETANET_ROOT/data/fashion_mnist}
[[ -f $FASHION_MNIST/train.h5 && -f $FASHION_MNIST/test.h5 ]] || bash "$THETANET_ROOT/jobs/data/fashion_mnist.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

net=(-train "$FASHION_MNIST/train.h5" -scale_uint8 -width 128 -layers 8 -batch 128 -epochs 3)
run() { # NAME SEED [options]
  mpiexec --oversubscribe -n 2 "$THETANET_BUILD/thetanet" train "${net[@]}" -seed "$2" -output "$work/$1_s$2.h5" \
    "${@:3}" > "$work/$1_s$2.log"
  "$THETANET_BUILD/thetanet" evaluate -model "$work/$1_s$2.h5" -data "$FASHION_MNIST/test.h5" -scale_uint8 |
    grep '^evaluate' > "$work/$1_s$2.eval"
}
for s in $(seq 1 "$seeds"); do
  run t0 "$s" -theta 0 "$@"
  run mixed "$s" -theta 0.5 "$@"
  run double "$s" -theta 0.5 -block_precision double "$@"
  run double_tight "$s" -theta 0.5 -block_precision double -block_atol 5e-7 "$@"
done
"$THETANET_PYTHON" - "$work" "$seeds" <<'PY'
import sys
work, seeds = sys.argv[1], int(sys.argv[2])
def pairs(words):
    return dict(zip(words[::2], words[1::2]))
def summary(name):
    for line in open(f"{work}/{name}.log"):
        if line.startswith("summary "):
            return pairs(line.split()[1:])
def score(name):
    w = open(f"{work}/{name}.eval").read().split()
    return pairs(w[2:])  # after "evaluate PATH:"
runs = ("t0", "mixed", "double", "double_tight")
print(f"{'run':<18} {'samples/s':>10} {'newton':>7} {'krylov':>7} {'test loss':>10} {'accuracy':>9}")
r = {}
for s in range(1, seeds + 1):
    for k in runs:
        name = f"{k}_s{s}"
        m, e = summary(name), score(name)
        r[name] = (float(m["samples_per_s"]), float(e["accuracy"]))
        print(f"{name:<18} {float(m['samples_per_s']):>10.0f} {float(m['newton_its']):>7.2f} "
              f"{float(m['krylov_its']):>7.2f} {float(e['loss']):>10.4f} {float(e['accuracy']):>9.4f}")
for s in range(1, seeds + 1):
    g = lambda k: r[f"{k}_s{s}"]
    print(f"seed {s}: mixed / double {g('mixed')[0] / g('double')[0]:.2f}x the samples/s; "
          f"theta 0.5 / theta 0 cost {g('t0')[0] / g('mixed')[0]:.2f}x (double: {g('t0')[0] / g('double')[0]:.2f}x); "
          f"test accuracy mixed - double {g('mixed')[1] - g('double')[1]:+.4f}, "
          f"double_tight - double {g('double_tight')[1] - g('double')[1]:+.4f}")
PY
