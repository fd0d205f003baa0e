#!/usr/bin/env bash
# Checkpoint cost and sharded loading: for the width-128, 32-layer model on 1, 2 and 4 ranks,
# the write time and size of a checkpoint and the read time of a restart, as a fraction of a
# training epoch (target: a checkpoint every epoch costs under 5% of the run); and the
# data-parallel speed-up of 2 ranks over 1 with -data_layout sharded against replicated.
# usage: jobs/bench/checkpoint.sh [N]   (N: samples of the synthetic set, default 16384)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../setup.sh"
N=${1:-16384}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$THETANET_PYTHON" "$THETANET_ROOT/jobs/bench/make_dataset.py" "$work/synth.h5" "$N" 32 8
model=(-train "$work/synth.h5" -width 128 -layers 32 -batch 256 -theta 0 -T 1)
field() { awk -v k="$1" '/^summary /{for(i=2;i<NF;i+=2) if($i==k) print $(i+1)}'; }

printf "%-6s %12s %12s %12s %12s %14s\n" ranks epoch_s write_s size_MB read_s "write/epoch"
for ranks in 1 2 4; do
  out=$(mpiexec --oversubscribe -n $ranks "$THETANET_BUILD/thetanet" train "${model[@]}" -epochs 3 \
        -checkpoint "$work/c$ranks.h5" -checkpoint_every 1)
  epoch_s=$(echo "$out" | field epoch_s)
  # the mean of the checkpoints after epochs 2 and 3 (the first one also pays for opening files)
  read -r write_s size <<<"$(echo "$out" | awk '/^checkpoint epoch [23] /{gsub(/[(,]/," "); for(i=1;i<=NF;i++){if($i=="MB") mb=$(i-1); if($i=="s)") {s+=$(i-1); n++}}} END{printf "%.4f %.2f\n", s/n, mb}')"
  read_s=$(mpiexec --oversubscribe -n $ranks "$THETANET_BUILD/thetanet" train "${model[@]}" -epochs 3 -restart "$work/c$ranks.h5" |
           awk '/restarting from/{for(i=1;i<=NF;i++) if($i=="in") print $(i+1)}')
  printf "%-6s %12s %12s %12s %12s %14s\n" $ranks "$epoch_s" "$write_s" "$size" "$read_s" \
    "$("$THETANET_PYTHON" -c "print(f'{$write_s / $epoch_s * 100:.2f}%')")"
done

echo
for layout in replicated sharded; do
  s1=$("$THETANET_BUILD/thetanet" train "${model[@]}" -epochs 3 -data_layout $layout | field samples_per_s)
  s2=$(mpiexec --oversubscribe -n 2 "$THETANET_BUILD/thetanet" train "${model[@]}" -epochs 3 -data_layout $layout | field samples_per_s)
  echo "$layout: 1 rank $s1 samples/s, 2 ranks $s2 samples/s, speed-up $("$THETANET_PYTHON" -c "print(f'{$s2 / $s1:.2f}x')")"
done
