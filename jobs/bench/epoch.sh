#!/usr/bin/env bash
# Training-epoch throughput: width 128, 32 layers, batch 256 on a 16384 x 32 synthetic 8-class
# set, theta 0 and 0.5 (default solvers and tolerances), on 1 and 2 ranks, against the DGEMM
# rate of the epoch's own GEMMs (tn_dgemm_rate replays a theta-0 step's GEMM calls: same shapes,
# leading dimensions, distinct per-block buffers and order) measured in the same run. Prints
# figures and the ratios the targets name: theta-0 GFLOP/s / epoch-GEMM GFLOP/s (below 1 by
# construction), theta 0.5 / theta 0 cost, 2-rank / 1-rank speed-up.
# usage: jobs/bench/epoch.sh [extra thetanet options]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../setup.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$THETANET_PYTHON" "$THETANET_ROOT/jobs/bench/make_dataset.py" "$work/synth.h5" 16384 32 8

n=128 L=32 B=256 d=32 m=8
field() { awk -v k="$1" '/^summary /{for(i=2;i<NF;i+=2) if($i==k) print $(i+1)}'; }
declare -A sps
for ranks in 1 2; do
  for theta in 0 0.5; do
    out=$(mpiexec --oversubscribe -n $ranks "$THETANET_BUILD/thetanet" train -train "$work/synth.h5" \
          -width $n -layers $L -batch $B -epochs 3 -theta $theta -T 1 "$@")
    sps[$ranks,$theta]=$(echo "$out" | field samples_per_s)
    echo "ranks $ranks theta $theta samples_per_s ${sps[$ranks,$theta]} newton $(echo "$out" | field newton_its) krylov $(echo "$out" | field krylov_its)"
  done
done
gemm=$("$THETANET_BUILD/tn_dgemm_rate" -n $n -B $B -L $L | awk '{print $NF}')
gemm2=$("$THETANET_BUILD/tn_dgemm_rate" -n $n -B $((B / 2)) -L $L | awk '{print $NF}')
# theta = 0: forward 2n^2 per block, backward 4n^2 (lambda and dA), plus the opening and closing layers
flops=$(( 6 * L * n * n + 4 * n * d + 6 * n * m ))
"$THETANET_PYTHON" - "${sps[1,0]}" "${sps[1,0.5]}" "${sps[2,0]}" "${sps[2,0.5]}" "$gemm" "$gemm2" "$flops" <<'PY'
import sys
s10, s15, s20, s25, gemm, gemm2, flops = map(float, sys.argv[1:])
g = s10 * flops * 1e-9
print(f"epoch GEMMs alone (n 128, B 256, 32 blocks): {gemm:.2f} GFLOP/s; (B 128, a rank's half): {gemm2:.2f} GFLOP/s")
print(f"theta 0, 1 rank: {g:.2f} GFLOP/s = {g / gemm:.2f} of the epoch's GEMMs alone  (target >= 0.70)")
print(f"theta 0.5 / theta 0 cost, 1 rank: {s10 / s15:.2f}x                   (target <= 3)")
print(f"theta 0.5 / theta 0 cost, 2 ranks: {s20 / s25:.2f}x                  (target <= 3)")
print(f"2 ranks / 1 rank, theta 0: {s20 / s10:.2f}x, theta 0.5: {s25 / s15:.2f}x  (target >= 1.85 at theta 0)")
PY
echo "BLAS resolved by thetanet: $(ldd "$THETANET_BUILD/thetanet" | awk '/libblas/{print $3}' | xargs readlink -f)"
"$THETANET_BUILD/thetanet" info -system | grep -E "cpu|blas "
