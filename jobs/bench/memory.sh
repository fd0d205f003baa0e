#!/usr/bin/env bash
# Memory modes: peak resident memory (peak_rss_mb of the summary line, from getrusage) and seconds
# per training epoch (epoch_s) of -memory store, reversible and checkpoint (default stride, about
# sqrt(L)), width 64, batch 1024, L = 16 64 256 1024, theta 0.5, one rank, default solvers, on a
# synthetic 2048 x 32 set with 8 classes (two steps per epoch, 3 epochs, the first not timed).
# Every case runs REPEATS times (default 2), interleaved, and the fastest epoch_s counts: on a
# shared machine the noise only ever adds time. Prints one row per depth, then the ratios the
# targets name.
# usage: [REPEATS=r] jobs/bench/memory.sh [extra thetanet options]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../setup.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$THETANET_PYTHON" "$THETANET_ROOT/jobs/bench/make_dataset.py" "$work/synth.h5" 2048 32 8

n=64 B=1024 d=32 m=8
field() { awk -v k="$1" '/^summary /{for(i=2;i<NF;i+=2) if($i==k) print $(i+1)}'; }
recon() { awk '/^epoch /{r="-"; for(i=2;i<NF;i++) if($i=="recon") r=$(i+1)} END{print r}'; }
for rep in $(seq "${REPEATS:-2}"); do
  for L in 16 64 256 1024; do
    for mode in store reversible checkpoint; do
      # with stderr, shown if the run fails
      out=$("$THETANET_BUILD/thetanet" train -train "$work/synth.h5" -width $n -layers $L -batch $B -epochs 3 -memory $mode "$@" 2>&1) ||
        { echo "$out"; exit 1; }
      row="$L $mode $(echo "$out" | field peak_rss_mb) $(echo "$out" | field epoch_s) $(echo "$out" | recon)"
      echo "$row" >>"$work/rows"
      echo "run $rep: L $row" >&2
    done
  done
done
"$THETANET_PYTHON" - "$work/rows" $n $B $d $m <<'PY'
import sys
n, B, d, m = map(int, sys.argv[2:])
r = {}
for line in open(sys.argv[1]):
    L, mode, rss, t, recon = line.split()
    old = r.get((int(L), mode), (0.0, float("inf"), recon))
    r[int(L), mode] = (max(old[0], float(rss)), min(old[1], float(t)), recon)
Ls = sorted({L for L, _ in r})
MB = 2.0 ** 20
modes = ("store", "reversible", "checkpoint")
print(f"{'':>5} | {'peak_rss_mb':^32} | {'epoch_s':^32} | {'time / store':^21} |")
print(f"{'L':>5} | " + " ".join(f"{k:>10}" for k in modes) + " | " + " ".join(f"{k:>10}" for k in modes) + " | " +
      " ".join(f"{k:>10}" for k in modes[1:]) + " | recon")
for L in Ls:
    s, v, c = (r[L, k] for k in modes)
    print(f"{L:>5} | {s[0]:>10.1f} {v[0]:>10.1f} {c[0]:>10.1f} | {s[1]:>10.3f} {v[1]:>10.3f} {c[1]:>10.3f} | "
          f"{v[1] / s[1]:>10.2f} {c[1] / s[1]:>10.2f} | {v[2]}")
lo, hi = Ls[0], Ls[-1]
# what no memory mode removes: parameters, gradient and Adam's two moments, 4 doubles per parameter
params = lambda L: 4 * 8 * (d * n + n + L * (n * n + n) + m * n + m) / MB
rv = lambda L: r[L, "reversible"][0]
print(f"reversible peak, L {hi} / L {lo}: {rv(hi) / rv(lo):.2f}x   (target <= 1.2)")
print(f"  of which parameters, gradient and Adam moments: {params(lo):.1f} MB at L {lo}, {params(hi):.1f} MB at L {hi}; "
      f"without them {(rv(hi) - params(hi)) / (rv(lo) - params(lo)):.2f}x")
grow = [(r[L, "store"][0] - r[lo, "store"][0]) / (L - lo) for L in Ls[1:]]
print(f"store growth per block from L {lo}: " + ", ".join(f"{g:.2f}" for g in grow) +
      f" MB (linear: constant; states, F_j(y_j), F_j(y_(j+1)) of the batch: {3 * B * n * 8 / MB:.2f} MB,"
      f" parameters and optimiser: {params(1) - params(0):.2f} MB)")
print("reversible / store time: " + ", ".join(f"{r[L, 'reversible'][1] / r[L, 'store'][1]:.2f}" for L in Ls) + "   (target <= 1.6)")
print("checkpoint / store time: " + ", ".join(f"{r[L, 'checkpoint'][1] / r[L, 'store'][1]:.2f}" for L in Ls))
PY
