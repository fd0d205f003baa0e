#!/usr/bin/env bash
# Which forward block solver is fastest at which width: seconds per training epoch of the
# spirals problem (theta 0.5, defaults otherwise) for each -block_method, on one rank.
# -block_method auto follows this table (solvers/blocksolver.c, TN_ASSEMBLED_MAX_WIDTH).
# usage: jobs/bench/block_methods.sh [widths...]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../setup.sh"
widths=("$@")
((${#widths[@]})) || widths=(2 4 8 12 16 32 64 128)
methods=(newton newton_assembled anderson picard auto)
printf "%-6s" width; printf " %17s" "${methods[@]}"; echo "   (epoch_s, lower is faster)"
for w in "${widths[@]}"; do
  printf "%-6s" "$w"
  for m in "${methods[@]}"; do
    s=$("$THETANET_BUILD/thetanet" train -problem spirals -width "$w" -epochs 6 -block_method "$m" 2>/dev/null |
        awk '/^summary /{for(i=2;i<NF;i+=2) if($i=="epoch_s") print $(i+1)}') || true
    printf " %17s" "${s:-failed}"
  done
  echo
done
