/* Training: the options of `train`, the set-up of data, model, network and optimiser, and the
   epoch loop. Data-parallel steps take one seeded global permutation per epoch, split each global
   batch across the data ranks, and reduce in one MPI_Allreduce a buffer holding the whole
   gradient, the loss statistics and the failure and signal flags, so a rank whose block solve
   failed, or that caught a signal, never leaves the others waiting. */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include "trace.h"
#include "trainerimpl.h"
#include "errors.h"
#include "resources.h"
#include "events.h"
#include "rng.h"
#include "reducer.h"
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

PetscErrorCode TNTrainerCreate(MPI_Comm comm, TNTrainer *out)
{
  TNTrainer t;

  PetscFunctionBegin;
  PetscCall(PetscNew(&t));
  t->comm              = comm;
  t->cfg.n             = 16;
  t->cfg.L             = 8;
  t->cfg.theta         = 0.5;
  t->cfg.T             = 2.0;
  t->cfg.gamma         = 0.0;
  t->cfg.act           = TN_ACT_TANH;
  t->cfg.opening_act   = TN_ACT_NONE;
  t->cfg.antisymmetric = PETSC_FALSE;
  t->epochs            = 200;
  t->trace_speed       = 1e9;
  t->batch             = 64;
  t->seed              = 1;
  t->depth_ranks       = 1;
  t->problem           = TN_PROBLEM_SPIRALS;
  t->max_rejections    = 5;
  t->bucket_kb         = 512;
  t->watch             = (TNWatch){PETSC_MAX_REAL, 0, 0, 0};
  /* An MPI launcher hands every rank a pseudo-terminal whatever its own output is, so a
     terminal is only trusted outside one. */
  t->progress = (isatty(STDOUT_FILENO) && !getenv("OMPI_COMM_WORLD_SIZE") && !getenv("PMI_SIZE") &&
                 !getenv("PMIX_RANK") && !getenv("SLURM_PROCID"))
                    ? PETSC_TRUE
                    : PETSC_FALSE;
  TNDataFormatDefault(&t->format);
  PetscCall(TNOptimizerCreate(comm, &t->opt));
  *out = t;
  PetscFunctionReturn(0);
}

PetscErrorCode TNTrainerSetFromOptions(TNTrainer t)
{
  const char *const layouts[] = {"replicated", "sharded", "TNDataLayout", "TN_DATA_", NULL};
  PetscEnum layout            = (PetscEnum)t->sharded;
  PetscBool have_problem, have_trace_epochs;

  PetscFunctionBegin;
  TNErrorReadingOptions(PETSC_TRUE);
  PetscOptionsBegin(t->comm, NULL, "thetanet train: data and files", "thetanet");
  PetscCall(TNOptionsString("-train", "Training set (HDF5: /X [N,d], /Y)", "", t->train_path, t->train_path,
                            sizeof t->train_path, &t->have_train));
  PetscCall(TNOptionsString("-val", "Validation set (HDF5, same layout)", "", t->val_path, t->val_path,
                            sizeof t->val_path, &t->have_val));
  PetscCall(TNOptionsEnum(
      "-data_layout",
      "replicated: every rank holds the data sets; sharded: each data rank reads and shuffles only its block of rows "
      "(default: replicated, sharded when the replicas would take more than a quarter of a node's memory)",
      "", layouts, layout, &layout, &t->layout_set));
  t->sharded = layout ? PETSC_TRUE : PETSC_FALSE;
  PetscCall(TNOptionsEnum("-problem", "Embedded problem when no -train is given", "", TNProblems, (PetscEnum)t->problem,
                          (PetscEnum *)&t->problem, &have_problem));
  PetscCall(TNOptionsString("-output", "Results file (HDF5), written at the end", "", t->output, t->output,
                            sizeof t->output, NULL));
  PetscCall(TNOptionsString(
      "-checkpoint",
      "Checkpoint file (HDF5), written every -checkpoint_every epochs, at the end, and on SIGTERM or SIGUSR1", "",
      t->checkpoint, t->checkpoint, sizeof t->checkpoint, NULL));
  PetscCall(TNOptionsInt("-checkpoint_every", "Epochs between checkpoints (0: only at the end and on a signal)", "",
                         t->checkpoint_every, &t->checkpoint_every, NULL));
  PetscCall(TNOptionsString("-restart",
                            "Continue from this checkpoint up to -epochs (model and optimiser come from it)", "",
                            t->restart, t->restart, sizeof t->restart, &t->have_restart));
  PetscCall(PetscOptionsBool("-restart_new_data",
                             "Let -restart continue on another training set than the checkpoint was trained on", "",
                             t->restart_new_data, &t->restart_new_data, NULL));
  PetscCall(PetscOptionsBool("-progress",
                             "Progress line within each epoch (default: stdout is a terminal, not under mpiexec)", "",
                             t->progress, &t->progress, NULL));
  PetscOptionsEnd();
  PetscOptionsBegin(t->comm, NULL, "thetanet train: epochs and grid", "thetanet");
  PetscCall(TNOptionsInt("-epochs", "Total number of epochs", "", t->epochs, &t->epochs, NULL));
  PetscCall(
      TNOptionsInt("-batch", "Global mini-batch size (split across the data ranks)", "", t->batch, &t->batch, NULL));
  PetscCall(TNOptionsInt("-seed", "Seed of the initialisation and the shuffling", "", t->seed, &t->seed, NULL));
  PetscCall(TNOptionsInt("-depth_ranks", "Ranks along depth (P = depth_ranks x data_ranks)", "", t->depth_ranks,
                         &t->depth_ranks, NULL));
  PetscCall(TNOptionsReal("-max_memory", "GB of memory a node may use (0: its physical memory or cgroup limit)", "",
                          t->max_memory, &t->max_memory, NULL));
  PetscOptionsEnd();
  PetscCall(TNDataFormatSetFromOptions(t->comm, &t->format));
  PetscCall(TNModelConfigSetFromOptions(t->comm, &t->cfg));
  PetscCall(TNOptimizerSetFromOptions(t->opt));
  PetscCall(TNScheduleSetFromOptions(t->comm, t->epochs, &t->sched));
  PetscOptionsBegin(t->comm, NULL, "thetanet train: training controls", "thetanet");
  PetscCall(TNOptionsInt("-patience", "Stop when the validation loss has not improved for this many epochs (0: never)",
                         "", t->patience, &t->patience, NULL));
  PetscCall(
      PetscOptionsBool("-keep_best",
                       "Results /model is the model of the epoch with the lowest validation loss, /model_last the "
                       "last epoch's",
                       "", t->keep_best, &t->keep_best, NULL));
  PetscCall(TNOptionsReal("-clip_norm", "Scale the gradient down to this Euclidean norm when it is longer (0: never)",
                          "", t->clip_norm, &t->clip_norm, NULL));
  PetscCall(TNOptionsInt("-allreduce_bucket_kb",
                         "Size of the gradient buckets reduced over the data ranks while the backward pass goes on "
                         "(0: one reduction after it)",
                         "", t->bucket_kb, &t->bucket_kb, NULL));
  PetscCall(TNOptionsEnum("-allreduce_algorithm",
                          "How the ranks share a bucket's sum (the same bits either way): doubling (whole bucket "
                          "each round), halving (reduce-scatter then allgather), auto (halving for large buckets)",
                          "", TNReducerAlgorithms, (PetscEnum)t->reduce_algorithm, (PetscEnum *)&t->reduce_algorithm,
                          NULL));
  PetscCall(TNOptionsInt("-mgrit_exact_epochs",
                         "Under -depth_solver mgrit, the last this many epochs train with the layer-serial "
                         "propagation (converged solves: the exact gradient) (0: none)",
                         "", t->exact_epochs, &t->exact_epochs, NULL));
  PetscCall(PetscOptionsBool(
      "-mgrit_test", "Run the self-test of the MGRIT callbacks on the first training rows and stop (no training)", "",
      t->mgrit_test, &t->mgrit_test, NULL));
  t->ntrace_epochs = (PetscInt)(sizeof t->trace_epochs / sizeof t->trace_epochs[0]);
  PetscCall(
      TNOptionsString("-trace",
                      "Directory for a time-independent trace of each rank (SimGrid replay: rankR.trace, "
                      "ranks.list); the closing trace: line gives the tracer's own CPU time (tracer_s, tracer_share)",
                      "", t->trace, t->trace, sizeof t->trace, NULL));
  PetscCall(PetscOptionsIntArray("-trace_epochs", "Epochs the trace records (default: all)", "", t->trace_epochs,
                                 &t->ntrace_epochs, &have_trace_epochs));
  if (!have_trace_epochs) t->ntrace_epochs = 0;
  PetscCall(TNOptionsReal("-trace_speed", "Flops a trace counts per CPU second of compute (the replay host's speed)",
                          "", t->trace_speed, &t->trace_speed, NULL));
  PetscCall(TNOptionsInt("-max_rejections",
                         "Rejected steps in a row before a failed block solve ends the run (0: the first one does)", "",
                         t->max_rejections, &t->max_rejections, NULL));
  PetscOptionsEnd();
  PetscCall(TNRegularizationSetFromOptions(t->comm, &t->reg));
  TNErrorReadingOptions(PETSC_FALSE);

  PetscCheck(!(t->have_train && have_problem), t->comm, TN_ERR_USER, "-train and -problem exclude each other");
  PetscCheck(!t->have_val || t->have_train, t->comm, TN_ERR_USER, "-val needs -train");
  PetscCheck(t->epochs > 0, t->comm, TN_ERR_USER, "-epochs must be positive, got %" PetscInt_FMT, t->epochs);
  PetscCheck(t->trace_speed > 0 && PetscIsNormalReal(t->trace_speed), t->comm, TN_ERR_USER,
             "-trace_speed must be a positive number of flops per second, got %g", (double)t->trace_speed);
  PetscCheck(t->exact_epochs >= 0, t->comm, TN_ERR_USER, "-mgrit_exact_epochs must be non-negative, got %" PetscInt_FMT,
             t->exact_epochs);
  PetscCheck(t->batch > 0, t->comm, TN_ERR_USER, "-batch must be positive, got %" PetscInt_FMT, t->batch);
  PetscCheck(t->max_memory >= 0, t->comm, TN_ERR_USER, "-max_memory must be non-negative, got %g",
             (double)t->max_memory);
  PetscCheck(t->patience >= 0, t->comm, TN_ERR_USER, "-patience must be non-negative, got %" PetscInt_FMT, t->patience);
  PetscCheck(t->clip_norm >= 0, t->comm, TN_ERR_USER, "-clip_norm must be non-negative, got %g", (double)t->clip_norm);
  PetscCheck(t->bucket_kb >= 0, t->comm, TN_ERR_USER, "-allreduce_bucket_kb must be non-negative, got %" PetscInt_FMT,
             t->bucket_kb);
  PetscCheck(t->max_rejections >= 0, t->comm, TN_ERR_USER, "-max_rejections must be non-negative, got %" PetscInt_FMT,
             t->max_rejections);
  PetscCheck(t->checkpoint_every >= 0, t->comm, TN_ERR_USER,
             "-checkpoint_every must be non-negative, got %" PetscInt_FMT, t->checkpoint_every);
  PetscCheck(!t->checkpoint_every || t->checkpoint[0], t->comm, TN_ERR_USER,
             "-checkpoint_every needs -checkpoint FILE");
  PetscCall(TNGridCreate(t->comm, t->depth_ranks, t->cfg.L, &t->grid));
  if (t->checkpoint[0]) PetscCall(TNOutputPathCheck(t->comm, "-checkpoint", t->checkpoint));
  if (t->output[0]) PetscCall(TNOutputPathCheck(t->comm, "-output", t->output));
  /* no output may overwrite an input (a restart may replace its own checkpoint) */
  {
    const char *out[][2] = {{"-output", t->output}, {"-checkpoint", t->checkpoint}};
    const char *in[][2]  = {
         {"-train", t->train_path}, {"-val", t->val_path}, {"-restart", t->restart}, {"-checkpoint", t->checkpoint}};
    for (int o = 0; o < 2; o++)
      for (int i = 0; i < 4; i++)
        if (strcmp(out[o][0], in[i][0]) && !(o == 1 && i == 2))
          PetscCall(TNOutputNotInput(t->comm, out[o][0], out[o][1], in[i][0], in[i][1]));
  }
  PetscFunctionReturn(0);
}

/* The training set, the validation set (when there is one) and the options must agree. */
static PetscErrorCode CheckData(TNTrainer t)
{
  TNDatasetInfo v;

  PetscFunctionBegin;
  PetscCheck(t->val || !(t->patience || t->keep_best), t->comm, TN_ERR_USER,
             "%s watches the validation loss: give -val", t->patience ? "-patience" : "-keep_best");
  if (!t->val) PetscFunctionReturn(0);
  PetscCall(TNDatasetGetInfo(t->val, &v));
  PetscCheck(v.d == t->train_info.d, t->comm, TN_ERR_USER,
             "%s: input dimension %" PetscInt_FMT " differs from %s's %" PetscInt_FMT, t->val_path, v.d, t->train_path,
             t->train_info.d);
  PetscCheck(v.task == t->train_info.task, t->comm, TN_ERR_USER, "%s: task %s differs from %s's %s", t->val_path,
             TNTasks[v.task], t->train_path, TNTasks[t->train_info.task]);
  if (v.task == TN_TASK_REGRESSION)
    PetscCheck(v.m == t->train_info.m, t->comm, TN_ERR_USER,
               "%s: %" PetscInt_FMT " targets per sample, %s has %" PetscInt_FMT, t->val_path, v.m, t->train_path,
               t->train_info.m);
  PetscFunctionReturn(0);
}

static PetscErrorCode LoadData(TNTrainer t)
{
  PetscFunctionBegin;
  if (t->have_train && !t->layout_set && t->grid.data_size > 1) {
    /* every rank would hold a replica: shard when the node's replicas take over a quarter of it */
    PetscReal bytes, val = 0, node;
    PetscMPIInt ranks;
    PetscCall(TNDatasetMemory(t->grid.data, t->train_path, &t->format, &bytes));
    if (t->have_val) PetscCall(TNDatasetMemory(t->grid.data, t->val_path, &t->format, &val));
    PetscCall(TNNodeMemory(t->comm, t->max_memory, &node, &ranks));
    t->replica_bytes = (bytes + val) * ranks;
    t->node_bytes    = node;
    if (t->replica_bytes > node / 4) t->sharded = t->auto_sharded = PETSC_TRUE;
  }
  if (t->have_train) {
    PetscReal t0 = MPI_Wtime();
    PetscErrorCode (*load)(MPI_Comm, const char *, const TNDataFormat *, TNDataset *) =
        t->sharded ? TNDatasetLoadSharded : TNDatasetLoad;
    PetscCall(PetscLogEventBegin(TN_EVENT_IO, 0, 0, 0, 0));
    PetscCall(load(t->grid.data, t->train_path, &t->format, &t->train));
    if (t->have_val) PetscCall(load(t->grid.data, t->val_path, &t->format, &t->val));
    PetscCall(PetscLogEventEnd(TN_EVENT_IO, 0, 0, 0, 0));
    t->phase[PH_IO] += MPI_Wtime() - t0;
  } else {
    PetscCall(TNProblemCreate(t->problem, &t->train, &t->val));
    if (t->sharded) {
      PetscCall(TNDatasetShard(t->train, t->grid.data));
      PetscCall(TNDatasetShard(t->val, t->grid.data));
    }
    PetscCall(PetscSNPrintf(t->train_path, sizeof t->train_path, "%s", TNProblems[t->problem]));
    PetscCall(PetscSNPrintf(t->val_path, sizeof t->val_path, "%s", TNProblems[t->problem]));
  }
  PetscCall(TNDatasetGetInfo(t->train, &t->train_info));
  PetscCall(CheckData(t));
  t->cfg.d    = t->train_info.d;
  t->cfg.m    = t->train_info.m;
  t->cfg.task = t->train_info.task;
  if (t->val && t->cfg.task == TN_TASK_CLASSIFICATION) {
    TNDatasetInfo v;
    PetscCall(TNDatasetGetInfo(t->val, &v));
    t->cfg.m = PetscMax(t->cfg.m, v.m);
  }
  PetscCheck(t->cfg.task != TN_TASK_CLASSIFICATION || t->cfg.m >= 2, t->comm, TN_ERR_USER,
             "%s: classification needs at least two classes, the labels hold %" PetscInt_FMT, t->train_path, t->cfg.m);
  PetscFunctionReturn(0);
}

/* Memory of this rank outside the network: the parameters, the gradient and the optimiser's
   moments, their copies to undo a step (-max_rejections) and the best model (-keep_best), whole
   copies too while a depth-split model is gathered for a write (on the writer, rank 0) or read
   from a checkpoint (on every rank), and the data sets. */
static PetscErrorCode StateMemory(TNTrainer t, PetscReal *bytes)
{
  const TNModelConfig *c = &t->cfg;
  TNOptimizerRecord rec;
  PetscReal whole = (PetscReal)c->n * c->d + c->n + (PetscReal)c->L * c->n * c->n + (PetscReal)c->L * c->n +
                    (PetscReal)c->m * c->n + c->m;
  PetscReal local   = whole - (PetscReal)(c->L - c->L / t->grid.depth_size) * ((PetscReal)c->n * c->n + c->n),
            moments = 0, data, copies;
  TNDatasetInfo v   = {0};

  PetscFunctionBegin;
  PetscCall(TNOptimizerGetRecord(t->opt, &rec));
  moments = rec.type == 2 ? 2 : rec.type == 1 ? 1 : 0;
  if (t->val) PetscCall(TNDatasetGetInfo(t->val, &v));
  data   = ((PetscReal)t->train_info.Nlocal + v.Nlocal) * (t->cfg.d + t->cfg.m);
  copies = (t->max_rejections ? 2 + moments : 0) + (t->keep_best ? 1 : 0);
  *bytes = sizeof(PetscScalar) *
           (local * (2 + moments + copies) +
            (t->grid.depth_size > 1 && (!t->grid.rank || t->restart[0]) ? whole * (1 + moments + (t->keep_best ? 1 : 0))
                                                                        : 0) +
            data);
  PetscFunctionReturn(0);
}

/* Sizes are checked in 64 bits before anything of the model's size is allocated: the
   parameters must fit 32-bit indices (PetscInt, MPI counts), the memory the node. */
static PetscErrorCode CheckSizes(TNTrainer t)
{
  const TNModelConfig *c = &t->cfg;
  const PetscReal count  = (PetscReal)c->n * c->d + c->n + (PetscReal)c->L * c->n * c->n + (PetscReal)c->L * c->n +
                          (PetscReal)c->m * c->n + c->m;
  const PetscReal batch =
      (PetscReal)(PetscMin(t->batch, t->train_info.N) / t->grid.data_size + 1) * PetscMax(c->n, PetscMax(c->d, c->m));
  char what[128];
  PetscReal bytes;

  PetscFunctionBegin;
  PetscCheck(count + 4 <= PETSC_MAX_INT, t->comm, TN_ERR_USER,
             "-width %" PetscInt_FMT " -layers %" PetscInt_FMT
             ": the model has %.4g parameters, more than the %d that 32-bit indices hold",
             c->n, c->L, count, PETSC_MAX_INT);
  PetscCheck((PetscReal)(c->L + 1) * batch <= PETSC_MAX_INT, t->comm, TN_ERR_USER,
             "-width %" PetscInt_FMT " -layers %" PetscInt_FMT " -batch %" PetscInt_FMT
             ": the states of a batch hold more than %d numbers per rank",
             c->n, c->L, t->batch, PETSC_MAX_INT);
  PetscCall(PetscSNPrintf(what, sizeof what,
                          "a model of width %" PetscInt_FMT " and %" PetscInt_FMT " layers (%.4g parameters)", c->n,
                          c->L, count));
  PetscCall(StateMemory(t, &bytes));
  PetscCall(TNMemoryCheck(t->comm, bytes, t->max_memory, what));
  PetscFunctionReturn(0);
}

/* The gradient's reduction over the data ranks, in buckets (src/reducer.c): bucket 0 the closing
   layer, 1 .. nbuckets-2 groups of t->group blocks from the last held here down, the last the
   opening layer with the loss statistics and flags; with -allreduce_bucket_kb 0 one bucket of
   everything. The backward pass starts each as its gradient becomes final. */
static void BucketSegments(TNTrainer t, PetscInt k, PetscInt *nseg, PetscInt start[2], PetscInt len[2])
{
  const PetscInt n = t->cfg.n, d = t->cfg.d, m = t->cfg.m, nloc = t->model->jhi - t->model->jlo;
  const PetscInt offW = n * d + n, offb = offW + nloc * n * n, offC = offb + nloc * n, np = t->model->nparams;

  if (t->nbuckets == 1) {
    *nseg    = 1;
    start[0] = 0;
    len[0]   = np + 4;
  } else if (k == 0) {
    *nseg    = 1;
    start[0] = offC;
    len[0]   = m * n + m;
  } else if (k == t->nbuckets - 1) {
    *nseg    = 2;
    start[0] = 0;
    len[0]   = n * d + n;
    start[1] = np;
    len[1]   = 4;
  } else {
    const PetscInt i1 = nloc - (k - 1) * t->group, i0 = PetscMax(0, i1 - t->group);
    *nseg    = 2;
    start[0] = offW + i0 * n * n;
    len[0]   = (i1 - i0) * n * n;
    start[1] = offb + i0 * n;
    len[1]   = (i1 - i0) * n;
  }
}

static PetscErrorCode StartBucket(TNTrainer t, PetscInt k)
{
  PetscInt nseg, start[2], len[2];

  PetscFunctionBegin;
  if (t->started[k]) PetscFunctionReturn(0);
  BucketSegments(t, k, &nseg, start, len);
  PetscCall(TNReducerStart(t->reducer, k, nseg, start, len));
  t->started[k] = PETSC_TRUE;
  PetscFunctionReturn(0);
}

/* The backward pass's word that block j's gradient (the closing layer's: j = L) is final: the
   bucket it completes starts, and the started ones move on. */
static PetscErrorCode GradientReady(void *ctx, PetscInt j)
{
  TNTrainer t         = (TNTrainer)ctx;
  const PetscInt nloc = t->model->jhi - t->model->jlo, i = j - t->model->jlo;

  PetscFunctionBegin;
  if (t->nbuckets == 1) PetscFunctionReturn(0);
  if (j == t->cfg.L)
    PetscCall(StartBucket(t, 0));
  else if (j >= 0) {
    const PetscInt k = 1 + (nloc - 1 - i) / t->group;
    if (i == PetscMax(0, nloc - k * t->group)) PetscCall(StartBucket(t, k));
  }
  PetscCall(TNReducerProgress(t->reducer));
  PetscFunctionReturn(0);
}

PetscErrorCode TNTrainerSetUp(TNTrainer t)
{
  PetscInt Bloc;
  time_t now = time(NULL);
  struct tm tmv;

  PetscFunctionBegin;
  gmtime_r(&now, &tmv);
  strftime(t->start_time, sizeof t->start_time, "%Y-%m-%dT%H:%M:%SZ", &tmv);
  PetscCall(TNEventsRegister());
  PetscCall(LoadData(t));
  if (!t->have_restart) PetscCall(CheckSizes(t));
  PetscCall(TNOptimizerKeepPrevious(t->opt, t->max_rejections ? PETSC_TRUE : PETSC_FALSE));
  if (t->have_restart)
    PetscCall(TNTrainerRestartLoad(t));
  else {
    PetscInt jlo = 0, jhi = t->cfg.L;
    if (t->grid.depth_size > 1) PetscCall(TNNetworkDepthOwnership(t->grid.depth, t->cfg.L, &jlo, &jhi));
    PetscCall(TNModelCreateLocal(&t->cfg, t->grid.depth_size > 1 ? t->grid.depth : MPI_COMM_NULL, jlo, jhi, &t->model));
    PetscCall(TNModelInitialize(t->model, t->seed));
    PetscCall(TNOptimizerSetUp(t->opt, t->model->nparams));
    if (t->keep_best) PetscCall(PetscMalloc1(t->model->nparams, &t->best));
  }
  if (t->max_rejections) PetscCall(PetscMalloc1(t->model->nparams, &t->undo));
  /* the largest local batch: a slice of a global batch, or of a shard */
  Bloc = (PetscMin(t->batch, t->train_info.N) + t->grid.data_size - 1) / t->grid.data_size + 1;
  PetscCall(TNNetworkCreate(t->model, Bloc, &t->net));
  PetscCall(TNNetworkSetFromOptions(t->net));
  {
    /* the whole run's memory, network included, before the network allocates it */
    PetscReal state, network;
    char what[160];
    PetscCall(StateMemory(t, &state));
    PetscCall(TNNetworkMemoryEstimate(t->net, &network));
    PetscCall(PetscSNPrintf(
        what, sizeof what, "the run (width %" PetscInt_FMT ", %" PetscInt_FMT " layers, local batch %" PetscInt_FMT ")",
        t->cfg.n, t->cfg.L, Bloc));
    PetscCall(TNMemoryCheck(t->comm, state + network, t->max_memory, what));
  }
  PetscCall(TNNetworkSetUp(t->net));
  /* two gradient buffers when an update may be rejected: one keeps the last update's gradient */
  PetscCall(PetscMalloc1(t->model->nparams + 4, &t->reduce_first));
  if (t->max_rejections) PetscCall(PetscMalloc1(t->model->nparams + 4, &t->reduce_spare));
  t->reduce = t->reduce_first;
  {
    /* gradient buckets of about -allreduce_bucket_kb, whole blocks each */
    const PetscInt nloc = t->model->jhi - t->model->jlo, per = t->cfg.n * t->cfg.n + t->cfg.n;
    t->group    = PetscMax(1, PetscMin(nloc, (PetscInt)(t->bucket_kb * 1024.0 / (sizeof(PetscScalar) * per))));
    t->nbuckets = t->bucket_kb ? 2 + (nloc + t->group - 1) / t->group : 1;
    PetscCall(PetscCalloc1(t->nbuckets, &t->started));
    PetscCall(TNReducerCreate(t->grid.data, t->reduce, t->nbuckets, &t->reducer));
    PetscCall(TNReducerSetAlgorithm(t->reducer, t->reduce_algorithm));
    PetscCall(TNNetworkSetGradientReady(t->net, GradientReady, t));
  }
  PetscCall(PetscMalloc6(Bloc * t->cfg.d, &t->Xb, Bloc * t->cfg.m, &t->Yb, Bloc * t->cfg.m, &t->out, Bloc * t->cfg.m,
                         &t->dout, Bloc, &t->Lb, t->train_info.Nlocal, &t->perm));
  PetscFunctionReturn(0);
}

PetscErrorCode TNTrainerView(TNTrainer t, PetscViewer viewer)
{
  PetscFunctionBegin;
  PetscCall(PetscViewerASCIIPrintf(viewer,
                                   "TNTrainer: %s (N %" PetscInt_FMT ", %s), validation %s; %" PetscInt_FMT
                                   " epochs of batches of %" PetscInt_FMT ", seed %" PetscInt_FMT "; grid %d x %d\n",
                                   t->train_path, t->train_info.N, t->sharded ? "sharded" : "replicated",
                                   t->val ? t->val_path : "none", t->epochs, t->batch, t->seed, t->grid.depth_size,
                                   t->grid.data_size));
  PetscCall(PetscViewerASCIIPushTab(viewer));
  if (t->net) PetscCall(TNNetworkView(t->net, viewer));
  PetscCall(TNOptimizerView(t->opt, viewer));
  PetscCall(PetscViewerASCIIPopTab(viewer));
  PetscFunctionReturn(0);
}

PetscErrorCode TNTrainerDestroy(TNTrainer *tp)
{
  TNTrainer t = *tp;

  PetscFunctionBegin;
  if (!t) PetscFunctionReturn(0);
  PetscCall(TNNetworkDestroy(&t->net));
  PetscCall(TNModelDestroy(&t->model));
  PetscCall(TNDatasetDestroy(&t->train));
  PetscCall(TNDatasetDestroy(&t->val));
  PetscCall(TNOptimizerDestroy(&t->opt));
  PetscCall(TNHistoryDestroy(&t->history));
  PetscCall(PetscFree(t->reduce_first));
  PetscCall(PetscFree(t->reduce_spare));
  PetscCall(PetscFree(t->started));
  PetscCall(TNReducerDestroy(&t->reducer));
  PetscCall(PetscFree(t->undo));
  PetscCall(PetscFree(t->best));
  PetscCall(PetscFree6(t->Xb, t->Yb, t->out, t->dout, t->Lb, t->perm));
  PetscCall(TNGridDestroy(&t->grid));
  PetscCall(PetscFree(t));
  *tp = NULL;
  PetscFunctionReturn(0);
}

/* The epoch's order of the rows: one global permutation of all N rows (replicated: the math does
   not depend on the number of ranks), or each shard's own permutation of its rows (sharded). */
static void EpochPermutation(TNTrainer t, PetscInt epoch)
{
  uint64_t seed = (uint64_t)t->seed;

  if (t->sharded) seed = TNHash64(seed) ^ TNHash64((uint64_t)t->train_info.offset + 1);
  TNPermutation(seed, (uint64_t)epoch, t->train_info.Nlocal, t->perm);
}

/* Step k of nb: this rank's rows perm[a .. a+B) and the global batch size Bg. Replicated, the
   global batch perm[k*batch ..] is split among the data ranks; sharded, every rank takes the
   k-th of nb near-equal slices of its shard. */
static void BatchRows(TNTrainer t, PetscInt k, PetscInt nb, PetscInt *a, PetscInt *B, PetscInt *Bg)
{
  const PetscInt N = t->train_info.N;

  if (!t->sharded) {
    PetscInt lo, hi;
    *Bg = PetscMin(t->batch, N - k * t->batch);
    TNGridSplit(*Bg, t->grid.data_size, t->grid.data_rank, &lo, &hi);
    *a = k * t->batch + lo;
    *B = hi - lo;
    return;
  }
  *Bg = 0;
  for (PetscMPIInt r = 0; r < t->grid.data_size; r++) {
    PetscInt lo, hi, s0, s1;
    TNGridSplit(N, t->grid.data_size, r, &lo, &hi);
    TNGridSplit(hi - lo, (PetscMPIInt)nb, (PetscMPIInt)k, &s0, &s1);
    *Bg += s1 - s0;
    if (r == t->grid.data_rank) {
      *a = s0;
      *B = s1 - s0;
    }
  }
}

/* Set by SIGTERM or SIGUSR1 when checkpoints are written; the ranks agree on it through the
   step's allreduce, so all of them stop after the same step. */
static volatile sig_atomic_t tn_signal = 0;

static void OnSignal(int sig)
{
  tn_signal = sig;
}

/* The learning rate of epoch e, as the schedule says, into force. */
static PetscErrorCode SetRate(TNTrainer t, PetscInt e, PetscReal *lr)
{
  PetscReal base;

  PetscFunctionBegin;
  PetscCall(TNOptimizerGetBaseRate(t->opt, &base));
  *lr = TNScheduleRate(&t->sched, e, base);
  PetscCall(TNOptimizerSetRate(t->opt, *lr));
  PetscFunctionReturn(0);
}

/* After epoch e with validation loss v: the plateau schedule (on the training loss without a
   validation set), the best epoch, -keep_best's copy of it, and whether -patience ends the run. */
static PetscErrorCode Watch(TNTrainer t, const TNEpochReport *r, PetscBool *early)
{
  PetscFunctionBegin;
  TNScheduleObserve(&t->sched, t->val ? r->val_loss : r->train_loss);
  *early = PETSC_FALSE;
  if (!t->val) PetscFunctionReturn(0);
  if (r->val_loss < t->watch.best_val) {
    t->watch.best_val   = r->val_loss;
    t->watch.best_epoch = r->epoch;
    t->watch.stall      = 0;
    if (t->best) PetscCall(PetscArraycpy(t->best, t->model->params, t->model->nparams));
  } else
    t->watch.stall++;
  if (t->patience && t->watch.stall >= t->patience) {
    *early = PETSC_TRUE;
    PetscCall(PetscPrintf(t->comm,
                          "early stop after epoch %" PetscInt_FMT
                          ": the validation loss has not improved for %" PetscInt_FMT
                          " epochs (best %.6g at epoch %" PetscInt_FMT ")\n",
                          r->epoch, t->watch.stall, (double)t->watch.best_val, t->watch.best_epoch));
  }
  PetscFunctionReturn(0);
}

/* A block solve failed in this step, on some rank: the parameters came from the last update,
   which is rejected. Every rank takes it back (parameters and optimiser state as before it),
   lowers the learning rate by -lr_backoff and redoes it with the same gradient; the caller then
   retries the batch. The failure ends the run when there is no update to reject (the first
   step), or after -max_rejections rejections in a row. */
static PetscErrorCode RejectStep(TNTrainer t, PetscInt epoch, const char *agreed)
{
  PetscReal lr;

  PetscFunctionBegin;
  PetscCheck(t->can_undo, t->comm, TN_ERR_RUNTIME, "%s%s", agreed,
             t->max_rejections ? " (with the initial parameters: no step to reject)" : "");
  PetscCheck(t->rejected < t->max_rejections, t->comm, TN_ERR_RUNTIME,
             "%s (after %" PetscInt_FMT " rejected steps in a row)", agreed, t->rejected);
  t->rejected++;
  t->watch.rejections++;
  TNScheduleBackOff(&t->sched);
  PetscCall(SetRate(t, epoch, &lr));
  /* back to the parameters and moments of before the update, then the update again */
  PetscCall(TNModelSwapParameters(t->model, &t->undo));
  PetscCall(TNOptimizerRevert(t->opt));
  PetscCall(TNOptimizerStep(t->opt, t->model->params, t->undo, t->gprev));
  PetscCall(TNModelSwapParameters(t->model, &t->undo));
  if (!t->grid.rank && t->progress) printf("\r\033[K");
  PetscCall(PetscPrintf(t->comm,
                        "warning: %s; the last step is rejected and redone with lr %.3e (rejection %" PetscInt_FMT
                        " of at most %" PetscInt_FMT " in a row)\n",
                        agreed, (double)lr, t->rejected, t->max_rejections));
  PetscFunctionReturn(0);
}

/* The update of the objective's gradient g (the regulariser's added, clipped to -clip_norm). To
   let it be rejected, nothing is copied: the new parameters are written to the spare buffer,
   which then changes places with the model's (the old ones stay there), the optimiser writes its
   moments alternately to two sets, and g's buffer changes places with the other gradient buffer,
   which the next step fills. */
static PetscErrorCode Update(TNTrainer t, PetscScalar *g)
{
  PetscReal R;
  const PetscInt np = t->model->nparams;

  PetscFunctionBegin;
  PetscCall(TNModelRegularizer(t->model, t->reg.alpha, t->reg.beta, &R, g));
  if (t->clip_norm > 0) {
    PetscReal norm;
    PetscCall(TNModelNorm(t->model, g, &norm));
    if (norm > t->clip_norm)
      for (PetscInt i = 0; i < np; i++) g[i] *= t->clip_norm / norm;
  }
  if (t->undo) {
    PetscCall(TNOptimizerStep(t->opt, t->model->params, t->undo, g));
    PetscCall(TNModelSwapParameters(t->model, &t->undo));
    t->gprev    = g;
    t->reduce   = t->reduce_spare == g ? t->reduce_first : t->reduce_spare;
    t->can_undo = PETSC_TRUE;
    PetscCall(TNReducerSetBuffer(t->reducer, t->reduce));
  } else
    PetscCall(TNOptimizerStep(t->opt, t->model->params, t->model->params, g));
  PetscFunctionReturn(0);
}

/* One optimisation step: this rank's B rows idx (local indices) of a global batch of Bg; *retry
   when a failed block solve rejected the last update. */
static PetscErrorCode TrainStep(TNTrainer t, PetscInt epoch, PetscInt batch, const PetscInt *idx, PetscInt B,
                                PetscInt Bg, PetscReal *loss_sum, PetscReal *correct, PetscBool *stop, PetscBool *retry)
{
  const PetscInt np = t->model->nparams;
  PetscInt c        = 0;
  PetscReal l       = 0, t0;
  PetscBool ok      = PETSC_TRUE;

  PetscFunctionBegin;
  *retry = PETSC_FALSE;
  PetscCall(PetscArrayzero(t->started, t->nbuckets));
  PetscCall(TNDatasetGetRows(t->train, B, idx, t->Xb, t->Lb, t->Yb));
  PetscCall(PetscArrayzero(t->reduce, np + 4));
  if (B > 0) {
    t0 = MPI_Wtime();
    PetscCall(TNNetworkForward(t->net, B, t->Xb, t->out, &ok));
    t->phase[PH_FORWARD] += MPI_Wtime() - t0;
    /* the loss lives with the closing layer, on the last depth rank */
    if (ok && t->grid.depth_rank == t->grid.depth_size - 1)
      TNLossEvaluate(t->cfg.task, B, t->cfg.m, t->out, t->Lb, t->Yb, 1.0 / TNLossDivisor(t->cfg.task, Bg, t->cfg.m), &l,
                     &c, t->dout);
    /* across depth every rank takes part in the backward pass, failed or not, so that the
       messages between the ranks keep flowing */
    if (ok || t->grid.depth_size > 1) {
      t0 = MPI_Wtime();
      PetscCall(TNNetworkBackward(t->net, B, t->Xb, t->dout, t->reduce, &ok));
      t->phase[PH_BACKWARD] += MPI_Wtime() - t0;
    }
  }
  t->reduce[np]     = l;
  t->reduce[np + 1] = c;
  t->reduce[np + 2] = ok ? 0 : 1;
  t->reduce[np + 3] = tn_signal ? 1 : 0;
  t0                = MPI_Wtime();
  PetscCall(PetscLogEventBegin(TN_EVENT_ALLREDUCE, 0, 0, 0, 0));
  /* the buckets the backward pass has not started (all of them when it failed, or with MGRIT),
     then the wait for every bucket: the time of this is the allreduce the backward pass did not
     hide */
  for (PetscInt k = 0; k < t->nbuckets; k++) PetscCall(StartBucket(t, k));
  PetscCall(TNReducerWait(t->reducer));
  /* the loss statistics and flags, from the last depth rank and any failing one, to all */
  if (t->grid.depth_size > 1)
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, t->reduce + np, 4, MPIU_SCALAR, MPI_SUM, t->grid.depth));
  PetscCall(PetscLogEventEnd(TN_EVENT_ALLREDUCE, 0, 0, 0, 0));
  t->phase[PH_ALLREDUCE] += MPI_Wtime() - t0;
  if (t->reduce[np + 2] != 0) {
    /* some rank failed: every rank knows it, and all reject the last update together */
    char message[512], agreed[512];
    PetscBool any;
    t0 = MPI_Wtime();
    PetscCall(PetscSNPrintf(message, sizeof message, "epoch %" PetscInt_FMT " batch %" PetscInt_FMT ": %s", epoch,
                            batch, TNNetworkGetFailure(t->net)));
    PetscCall(TNFailureAgree(t->comm, ok ? PETSC_FALSE : PETSC_TRUE, TNNetworkGetFailure(t->net)[0] ? message : NULL,
                             &any, agreed, sizeof agreed));
    PetscCall(RejectStep(t, epoch, agreed));
    t->phase[PH_UPDATE] += MPI_Wtime() - t0;
    *retry = PETSC_TRUE;
    PetscFunctionReturn(0);
  }
  t->rejected = 0;
  PetscCheck(PetscIsNormalReal(t->reduce[np] + 1.0), t->comm, TN_ERR_RUNTIME,
             "epoch %" PetscInt_FMT " batch %" PetscInt_FMT ": the loss is %g", epoch, batch, (double)t->reduce[np]);
  *loss_sum += t->reduce[np];
  *correct += t->reduce[np + 1];
  *stop = t->reduce[np + 3] > 0 ? PETSC_TRUE : PETSC_FALSE;
  t0    = MPI_Wtime();
  PetscCall(PetscLogEventBegin(TN_EVENT_UPDATE, 0, 0, 0, 0));
  PetscCall(Update(t, t->reduce));
  PetscCall(PetscLogEventEnd(TN_EVENT_UPDATE, 0, 0, 0, 0));
  t->phase[PH_UPDATE] += MPI_Wtime() - t0;
  PetscFunctionReturn(0);
}

/* The epoch's validation loss and accuracy (NaN without a validation set), of the network as
   `evaluate` computes them: propagated layer-serially even when MGRIT trains it, so that what the
   run reports is what the saved model does. Its solves do not count as the epoch's. A failed solve
   rejects the epoch's last update. */
static PetscErrorCode Validate(TNTrainer t, PetscInt epoch, PetscInt chunk, TNEpochReport *r)
{
  char where[64];
  PetscReal t0 = MPI_Wtime();

  PetscFunctionBegin;
  r->val_loss = r->val_accuracy = NAN;
  if (!t->val) PetscFunctionReturn(0);
  PetscCall(PetscSNPrintf(where, sizeof where, "epoch %" PetscInt_FMT " validation", epoch));
  for (;;) {
    PetscBool failed;
    char failure[512];
    /* the network itself, propagated layer-serially, whatever solver trains it */
    PetscCall(TNNetworkSetExactForward(t->net, PETSC_TRUE));
    PetscCall(TNEvaluateDatasetTry(t->net, &t->grid, t->val, chunk, where, &r->val_loss, &r->val_accuracy, &failed,
                                   failure, sizeof failure));
    PetscCall(TNNetworkSetExactForward(t->net, t->exact));
    if (!failed) break;
    /* the epoch's last update made the validation's solves fail: it is rejected like any */
    PetscCall(RejectStep(t, epoch, failure));
  }
  PetscCall(TNNetworkResetCounts(t->net));
  t->phase[PH_VALIDATE] += MPI_Wtime() - t0;
  PetscFunctionReturn(0);
}

/* -trace: the directory (made by rank 0), then every rank's file. */
static PetscErrorCode TraceOpen(TNTrainer t)
{
  PetscBool ok = PETSC_TRUE;

  PetscFunctionBegin;
  if (!t->grid.rank && mkdir(t->trace, 0777) && errno != EEXIST) ok = PETSC_FALSE;
  PetscCallMPI(MPI_Bcast(&ok, 1, MPIU_BOOL, 0, t->comm));
  PetscCheck(ok, t->comm, TN_ERR_USER, "-trace %s: cannot make the directory: %s", t->trace, strerror(errno));
  ok = TNTraceOpen(t->trace, (double)t->trace_speed) ? PETSC_FALSE : PETSC_TRUE;
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPIU_BOOL, MPI_LAND, t->comm));
  PetscCheck(ok, t->comm, TN_ERR_USER, "-trace %s: cannot write the trace files", t->trace);
  PetscFunctionReturn(0);
}

static PetscBool TraceEpoch(TNTrainer t, PetscInt e)
{
  if (!t->ntrace_epochs) return PETSC_TRUE;
  for (PetscInt i = 0; i < t->ntrace_epochs; i++)
    if (t->trace_epochs[i] == e) return PETSC_TRUE;
  return PETSC_FALSE;
}

static PetscErrorCode TraceClose(TNTrainer t)
{
  long lines = 0;
  double own = 0, recorded = 0, share;
  PetscBool ok;

  PetscFunctionBegin;
  ok = TNTraceClose(&lines, &own, &recorded) ? PETSC_FALSE : PETSC_TRUE;
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPIU_BOOL, MPI_LAND, t->comm));
  PetscCheck(ok, t->comm, TN_ERR_RUNTIME, "-trace %s: a trace file could not be written", t->trace);
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &lines, 1, MPI_LONG, MPI_SUM, t->comm));
  /* the tracer's cost: its own CPU time against the rank's while recording, where it is largest */
  share = own / PetscMax(recorded, 1e-9);
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &own, 1, MPI_DOUBLE, MPI_MAX, t->comm));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &share, 1, MPI_DOUBLE, MPI_MAX, t->comm));
  PetscCall(PetscPrintf(t->comm,
                        "trace: %ld lines in %s/rank*.trace, replay list %s/ranks.list; tracer_s %.4f CPU seconds: "
                        "tracer_share %.5f of a rank's CPU time while recording\n",
                        lines, t->trace, t->trace, own, share));
  PetscFunctionReturn(0);
}

PetscErrorCode TNTrainerTrain(TNTrainer t)
{
  const PetscInt N = t->train_info.N, nb = (N + t->batch - 1) / t->batch;
  const PetscInt chunk = PetscMax(1, (PetscMin(t->batch, N) + t->grid.data_size - 1) / t->grid.data_size);
  PetscReal start      = MPI_Wtime();
  TNEpochReport r      = {0, NAN, NAN, NAN, 0, 0, 0, 0, 0, 0};

  PetscFunctionBegin;
  {
    TNDepthSolver solver;
    PetscCall(TNNetworkGetDepthSolver(t->net, &solver));
    PetscCheck(!t->exact_epochs || solver == TN_DEPTH_MGRIT, t->comm, TN_ERR_USER,
               "-mgrit_exact_epochs needs -depth_solver mgrit");
    PetscCheck(!t->mgrit_test || solver == TN_DEPTH_MGRIT, t->comm, TN_ERR_USER,
               "-mgrit_test needs -depth_solver mgrit");
  }
  if (t->mgrit_test) {
    TNMGRITTestResult res;
    PetscBool passed;
    const PetscInt B = PetscMin(chunk, t->train_info.Nlocal);
    for (PetscInt i = 0; i < B; i++) t->perm[i] = i;
    PetscCall(TNDatasetGetRows(t->train, B, t->perm, t->Xb, t->Lb, t->Yb));
    PetscCall(TNNetworkMGRITSelfTest(t->net, B, t->Xb, &res, &passed));
    PetscCall(PetscPrintf(
        t->comm,
        "mgrit_test coarse step of stride 1 against the fine step: %" PetscInt_FMT
        " blocks, largest relative difference %.2e\n"
        "mgrit_test pack and unpack of the coarse data: %" PetscInt_FMT " intervals, largest relative difference %.2e\n"
        "mgrit_test adjoint step against the transposed linearised step (dot products): %" PetscInt_FMT
        " blocks, largest relative difference %.2e\n"
        "mgrit_test %s\n",
        res.nstride1, (double)res.stride1, res.npack, (double)res.pack, res.ntranspose, (double)res.transpose,
        passed ? "passed" : "FAILED"));
    PetscCheck(passed, t->comm, TN_ERR_RUNTIME, "the MGRIT self-test failed");
    PetscFunctionReturn(0);
  }
  PetscCall(TNTrainerReportHeader(t));
  if (t->checkpoint[0]) {
    signal(SIGTERM, OnSignal);
    signal(SIGUSR1, OnSignal);
    /* a launcher that is going down may close the ranks' output before they reach the checkpoint */
    signal(SIGPIPE, SIG_IGN);
  }
  PetscCall(TNNetworkResetCounts(t->net));
  if (t->trace[0]) PetscCall(TraceOpen(t));
  for (PetscInt e = t->resume.epoch + 1; e <= t->epochs; e++) {
    const PetscBool resumed = e == t->resume.epoch + 1 ? PETSC_TRUE : PETSC_FALSE;
    PetscReal e0            = MPI_Wtime(), tp, now;
    PetscReal loss_sum = resumed ? t->resume.loss_sum : 0, correct = resumed ? t->resume.correct : 0, lr;
    PetscBool stop = PETSC_FALSE, retry, early;

    PetscCall(SetRate(t, e, &lr));
    if (t->trace[0]) TNTraceRecord(TraceEpoch(t, e));
    t->exact = e > t->epochs - t->exact_epochs ? PETSC_TRUE : PETSC_FALSE;
    PetscCall(TNNetworkSetExactForward(t->net, t->exact));
    EpochPermutation(t, e);
    for (PetscInt k = resumed ? t->resume.batch : 0; k < nb; k++) {
      PetscInt a = 0, B = 0, Bg = 0;
      BatchRows(t, k, nb, &a, &B, &Bg);
      do PetscCall(TrainStep(t, e, k + 1, t->perm + a, B, Bg, &loss_sum, &correct, &stop, &retry));
      while (retry);
      if (stop) {
        const TNResume st = {e - 1, k + 1, t->seed, loss_sum, correct, t->resume.wall_time + MPI_Wtime() - start};
        PetscCall(TNTrainerCheckpointWrite(t, &st));
        SETERRQ(t->comm, TN_ERR_RUNTIME,
                "stopped by a signal in epoch %" PetscInt_FMT " after batch %" PetscInt_FMT
                "; checkpoint written to %s (continue with -restart %s)",
                e, k + 1, t->checkpoint, t->checkpoint);
      }
      PetscCall(TNTrainerReportProgress(
          t, e, k + 1, nb, loss_sum / TNLossDivisor(t->cfg.task, PetscMin(N, (k + 1) * t->batch), t->cfg.m)));
    }
    tp = MPI_Wtime() - e0;
    if (e > t->resume.epoch + 1 || t->epochs == t->resume.epoch + 1) {
      t->train_seconds += tp;
      t->train_samples += N;
    }
    r.epoch      = e;
    r.train_loss = loss_sum / TNLossDivisor(t->cfg.task, N, t->cfg.m);
    PetscCall(TNTrainerEpochCounts(t, &r));
    PetscCall(Validate(t, e, chunk, &r));
    now       = MPI_Wtime();
    r.seconds = now - e0;
    PetscCall(TNTrainerReportEpoch(t, &r, (now - start) / (e - t->resume.epoch) * (t->epochs - e)));
    {
      PetscCall(TNOptimizerGetRate(t->opt, &lr));
      const PetscReal row[TN_HISTORY_COLUMNS] = {
          e,        r.train_loss, r.val_loss, r.val_accuracy, lr, t->resume.wall_time + now - start,
          r.newton, r.krylov,     r.mgrit,    r.mgrit_res};
      PetscCall(TNHistoryAppend(&t->history, row));
    }
    PetscCall(Watch(t, &r, &early));
    if (t->checkpoint[0] && (e == t->epochs || early || (t->checkpoint_every && e % t->checkpoint_every == 0))) {
      const TNResume st = {e, 0, t->seed, 0, 0, t->resume.wall_time + MPI_Wtime() - start};
      if (t->trace[0]) TNTraceRecord(0); /* the trace is of training, not of the file system */
      PetscCall(TNTrainerCheckpointWrite(t, &st));
    }
    if (early) break;
  }
  t->phase[PH_TOTAL] = MPI_Wtime() - start;
  if (t->trace[0]) PetscCall(TraceClose(t));
  PetscCall(TNTrainerReportSummary(t, &r));
  if (t->output[0]) PetscCall(TNTrainerWriteResults(t));
  PetscFunctionReturn(0);
}
