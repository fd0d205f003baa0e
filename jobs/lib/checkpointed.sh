# Restartable training runs, shared by jobs/mpirun/*.sh and jobs/slurm/*.sbatch (sourced).
# A run is named after its configuration; its results, checkpoint and log share that name, so
# running (or resubmitting) the same command again continues from the last checkpoint.

# tn_help_value OPTION: the value of OPTION in the `thetanet train -help` text on stdin:
# '-width <now 16 : formerly 16>', '-theta <0.5 : 0.5>', '-T <2. : 2.>' (printed as 2).
tn_help_value() {
  awk -v o="$1" '$1 == o { s = $0; sub(/^[^<]*</, "", s); sub(/ :.*/, "", s); sub(/^now /, "", s)
                           sub(/\.$/, "", s); print s; exit }'
}

# tn_run_name THETANET RANKS DEPTH_RANKS [train options...]: e.g. spirals_w16_L8_th0.5_T2_2x4
# (data set, width, layers, theta, T, depth x data ranks), from the values in force (options
# files and defaults included) that `thetanet train OPTIONS -help` reports.
tn_run_name() {
  local bin=$1 ranks=$2 depth=$3
  shift 3
  local help data grid="${depth}x$((ranks / depth))"
  help=$("$bin" train "$@" -help 2>/dev/null) || true
  if ! grep -q -- "-width <" <<<"$help"; then # the binary could not run here (e.g. no singleton MPI start)
    echo "thetanet_$grid"
    return
  fi
  data=$(tn_help_value -train <<<"$help")
  [ -n "$data" ] || data=$(tn_help_value -problem <<<"$help")
  printf '%s_w%s_L%s_th%s_T%s_%s\n' "$(basename "$data" .h5)" "$(tn_help_value -width <<<"$help")" \
    "$(tn_help_value -layers <<<"$help")" "$(tn_help_value -theta <<<"$help")" "$(tn_help_value -T <<<"$help")" "$grid"
}

# tn_checkpointed_run PREFIX COMMAND...: runs COMMAND (a launcher, the binary, `train` and its
# options) with `-output PREFIX.h5 -checkpoint PREFIX.ckpt.h5 -checkpoint_every $EVERY` (default
# 10 epochs; a -checkpoint_every in COMMAND wins), adding `-restart PREFIX.ckpt.h5` when that
# checkpoint exists; output is appended
# to PREFIX.log too. USR1, TERM and INT received by this shell are forwarded to the launcher as
# USR1, which mpiexec and srun pass on to every rank: thetanet writes a checkpoint and stops.
# A PREFIX.h5 that exists already means the run is complete: nothing is run.
# Sets TN_STATUS (COMMAND's exit status) and TN_STOPPED (1 when stopped by a signal).
tn_checkpointed_run() {
  local prefix=$1
  shift
  local results="$prefix.h5" ckpt="$prefix.ckpt.h5" restart=() every=(-checkpoint_every "${EVERY:-10}") arg
  for arg in "$@"; do [ "$arg" != -checkpoint_every ] || every=(); done
  TN_STATUS=0 TN_STOPPED=0
  if [ -f "$results" ]; then
    echo "thetanet job: $results exists, the run is complete (remove it to train again)"
    return 0
  fi
  if [ -f "$ckpt" ]; then
    restart=(-restart "$ckpt")
    echo "thetanet job: restarting from $ckpt"
  fi
  # The launcher runs in a session of its own (setsid), and tee ignores INT and TERM: a Ctrl-C
  # on the terminal reaches this shell only, which turns it into the USR1 that asks for a
  # checkpoint (mpiexec would kill the job on INT or TERM).
  local session=()
  command -v setsid >/dev/null && session=(setsid)
  trap 'TN_STOPPED=1; echo "thetanet job: signal received, asking thetanet for a checkpoint"; kill -USR1 "$TN_PID" 2>/dev/null || true' USR1 TERM INT
  "${session[@]}" "$@" -output "$results" -checkpoint "$ckpt" "${every[@]}" "${restart[@]}" \
    > >(trap '' INT TERM; exec tee -a "$prefix.log") 2>&1 &
  TN_PID=$!
  # A trapped signal interrupts `wait` (status > 128) while the run goes on writing its
  # checkpoint: wait again until the launcher itself has exited.
  while :; do
    wait "$TN_PID" && TN_STATUS=0 || TN_STATUS=$?
    kill -0 "$TN_PID" 2>/dev/null || break
  done
  trap - USR1 TERM INT
  if [ -f "$results" ]; then
    echo "thetanet job: results in $results, log in $prefix.log"
  elif [ -f "$ckpt" ]; then
    echo "thetanet job: stopped (exit status $TN_STATUS); checkpoint $ckpt: run the same command again to continue"
  fi
}
