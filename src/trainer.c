/* Data-parallel training: one seeded global permutation per epoch, each global batch split
   across the data ranks, one MPI_Allreduce per step over a buffer holding the whole gradient,
   the loss statistics and a failure flag (so a rank whose block solve failed never leaves the
   others waiting). */
#include "trainer.h"
#include "errors.h"
#include "rng.h"
#include "events.h"
#include <petsctime.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

/* ---- process grid ---- */

PetscErrorCode TNGridCreate(MPI_Comm world, PetscInt depth_ranks, PetscInt layers, TNGrid *g)
{
  PetscFunctionBegin;
  PetscCall(PetscMemzero(g, sizeof(*g)));
  g->world = world;
  PetscCallMPI(MPI_Comm_size(world, &g->size));
  PetscCallMPI(MPI_Comm_rank(world, &g->rank));
  PetscCheck(depth_ranks >= 1, world, TN_ERR_USER, "-depth_ranks must be at least 1, got %" PetscInt_FMT, depth_ranks);
  PetscCheck(g->size % depth_ranks == 0, world, TN_ERR_USER,
             "-depth_ranks %" PetscInt_FMT " does not divide the %d ranks of the job", depth_ranks, g->size);
  PetscCheck(layers >= depth_ranks, world, TN_ERR_USER, "-depth_ranks %" PetscInt_FMT " exceeds -layers %" PetscInt_FMT,
             depth_ranks, layers);
  /* ranks r and r + depth_ranks share a depth position: data communicator by r / depth_ranks */
  PetscCallMPI(MPI_Comm_split(world, g->rank % (PetscMPIInt)depth_ranks, g->rank, &g->data));
  PetscCallMPI(MPI_Comm_split(world, g->rank / (PetscMPIInt)depth_ranks, g->rank, &g->depth));
  PetscCallMPI(MPI_Comm_size(g->data, &g->data_size));
  PetscCallMPI(MPI_Comm_rank(g->data, &g->data_rank));
  PetscCallMPI(MPI_Comm_size(g->depth, &g->depth_size));
  PetscCallMPI(MPI_Comm_rank(g->depth, &g->depth_rank));
  PetscFunctionReturn(0);
}

PetscErrorCode TNGridDestroy(TNGrid *g)
{
  PetscFunctionBegin;
  if (g->data != MPI_COMM_NULL && g->data) PetscCallMPI(MPI_Comm_free(&g->data));
  if (g->depth != MPI_COMM_NULL && g->depth) PetscCallMPI(MPI_Comm_free(&g->depth));
  PetscFunctionReturn(0);
}

/* ---- trainer ---- */

enum { PH_FORWARD, PH_BACKWARD, PH_ALLREDUCE, PH_UPDATE, PH_VALIDATE, PH_IO, PH_TOTAL, PH_COUNT };
static const char *const phase_names[PH_COUNT] = {"forward", "backward", "allreduce", "update", "validate", "io", "total"};

struct _n_TNTrainer {
  MPI_Comm         comm;
  TNGrid           grid;
  TNModelConfig    cfg;
  TNRegularization reg;
  TNOptimizer      opt;
  PetscInt         epochs, batch, depth_ranks;
  PetscInt         seed;
  char             train_path[PETSC_MAX_PATH_LEN], val_path[PETSC_MAX_PATH_LEN], output[PETSC_MAX_PATH_LEN];
  char             checkpoint[PETSC_MAX_PATH_LEN], restart[PETSC_MAX_PATH_LEN];
  PetscInt         checkpoint_every;
  PetscBool        have_restart;
  TNCheckpointState resume; /* where training starts: a restart's checkpoint state, else zero */
  TNMemoryMode     memory;
  TNDepthSolver    depth_solver;
  PetscInt         memory_stride;
  PetscReal        memory_tol;
  TNProblem        problem;
  PetscBool        have_train, have_val, progress, sharded;
  TNDataset        train, val;
  TNModel          model;
  TNNetwork        net;
  TNHistory        history;
  PetscReal        phase[PH_COUNT];
  PetscReal        train_seconds; /* training passes, epoch 1 excluded when there are more */
  PetscInt64       train_samples;
  PetscReal        mgrit_logfactor; /* this rank's MGRIT convergence factors (log, summed) */
  PetscInt64       mgrit_nfactor;
  char             start_time[64];
  /* per-step buffers */
  PetscScalar *reduce; /* gradient | loss_sum | correct | failed | signalled */
  PetscReal   *Xb, *Yb, *out, *dout;
  PetscInt    *Lb, *perm;
};

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
  t->batch             = 64;
  t->seed              = 1;
  t->depth_ranks       = 1;
  t->opt.type          = TN_OPT_ADAM;
  t->opt.lr            = 1e-2;
  t->opt.momentum      = 0.9;
  t->opt.beta1         = 0.9;
  t->opt.beta2         = 0.999;
  t->opt.eps           = 1e-8;
  t->reg.alpha         = 0;
  t->reg.beta          = 0;
  t->problem           = TN_PROBLEM_SPIRALS;
  t->memory            = TN_MEMORY_STORE;
  t->memory_stride     = 0;
  t->memory_tol        = 1e-4;
  /* An MPI launcher hands every rank a pseudo-terminal whatever its own output is, so a
     terminal is only trusted outside one. */
  t->progress = (isatty(STDOUT_FILENO) && !getenv("OMPI_COMM_WORLD_SIZE") && !getenv("PMI_SIZE") && !getenv("PMIX_RANK") && !getenv("SLURM_PROCID")) ? PETSC_TRUE : PETSC_FALSE;
  *out = t;
  PetscFunctionReturn(0);
}

PetscErrorCode TNTrainerSetFromOptions(TNTrainer t)
{
  PetscBool have_problem;

  PetscFunctionBegin;
  TNErrorReadingOptions(PETSC_TRUE);
  PetscOptionsBegin(t->comm, NULL, "thetanet train: data", "thetanet");
  PetscCall(PetscOptionsString("-train", "Training set (HDF5: /X [N,d], /Y)", "", t->train_path, t->train_path, sizeof t->train_path, &t->have_train));
  PetscCall(PetscOptionsString("-val", "Validation set (HDF5, same layout)", "", t->val_path, t->val_path, sizeof t->val_path, &t->have_val));
  {
    const char *const layouts[] = {"replicated", "sharded", "TNDataLayout", "TN_DATA_", NULL};
    PetscEnum         layout    = (PetscEnum)t->sharded;
    PetscCall(PetscOptionsEnum("-data_layout", "replicated: every rank holds the data sets; sharded: each data rank reads and shuffles only its block of rows", "",
                               layouts, layout, &layout, NULL));
    t->sharded = layout ? PETSC_TRUE : PETSC_FALSE;
  }
  PetscCall(PetscOptionsEnum("-problem", "Embedded problem when no -train is given", "", TNProblems, (PetscEnum)t->problem, (PetscEnum *)&t->problem, &have_problem));
  PetscCall(PetscOptionsString("-output", "Results file (HDF5), written at the end", "", t->output, t->output, sizeof t->output, NULL));
  PetscCall(PetscOptionsString("-checkpoint", "Checkpoint file (HDF5), written every -checkpoint_every epochs, at the end, and on SIGTERM or SIGUSR1", "", t->checkpoint, t->checkpoint, sizeof t->checkpoint, NULL));
  PetscCall(PetscOptionsInt("-checkpoint_every", "Epochs between checkpoints (0: only at the end and on a signal)", "", t->checkpoint_every, &t->checkpoint_every, NULL));
  PetscCall(PetscOptionsString("-restart", "Continue from this checkpoint up to -epochs (model and optimiser come from it)", "", t->restart, t->restart, sizeof t->restart, &t->have_restart));
  PetscCall(PetscOptionsBool("-progress", "Progress line within each epoch (default: stdout is a terminal, not under mpiexec)", "", t->progress, &t->progress, NULL));
  PetscOptionsEnd();

  PetscOptionsBegin(t->comm, NULL, "thetanet train: model", "thetanet");
  PetscCall(PetscOptionsInt("-width", "Width n of the blocks", "", t->cfg.n, &t->cfg.n, NULL));
  PetscCall(PetscOptionsInt("-layers", "Number L of theta-blocks", "", t->cfg.L, &t->cfg.L, NULL));
  PetscCall(PetscOptionsReal("-theta", "Theta of the blocks: 0 ResNet, 0.5 trapezoidal, 1 backward Euler", "", t->cfg.theta, &t->cfg.theta, NULL));
  PetscCall(PetscOptionsReal("-T", "Final time; the step is h = T/L", "", t->cfg.T, &t->cfg.T, NULL));
  PetscCall(PetscOptionsEnum("-act", "Activation of the blocks", "", TNActivations, (PetscEnum)t->cfg.act, (PetscEnum *)&t->cfg.act, NULL));
  PetscCall(PetscOptionsEnum("-opening_act", "Activation of the opening layer", "", TNActivations, (PetscEnum)t->cfg.opening_act, (PetscEnum *)&t->cfg.opening_act, NULL));
  PetscCall(PetscOptionsBool("-antisymmetric", "Blocks use A = W - W^T - gamma I", "", t->cfg.antisymmetric, &t->cfg.antisymmetric, NULL));
  PetscCall(PetscOptionsReal("-gamma", "Diagonal shift gamma of the antisymmetric form", "", t->cfg.gamma, &t->cfg.gamma, NULL));
  PetscOptionsEnd();

  PetscOptionsBegin(t->comm, NULL, "thetanet train: optimiser", "thetanet");
  PetscCall(PetscOptionsInt("-epochs", "Total number of epochs", "", t->epochs, &t->epochs, NULL));
  PetscCall(PetscOptionsInt("-batch", "Global mini-batch size (split across the data ranks)", "", t->batch, &t->batch, NULL));
  PetscCall(PetscOptionsReal("-lr", "Learning rate", "", t->opt.lr, &t->opt.lr, NULL));
  PetscCall(PetscOptionsEnum("-optimizer", "Optimiser", "", TNOptimizerTypes, (PetscEnum)t->opt.type, (PetscEnum *)&t->opt.type, NULL));
  PetscCall(PetscOptionsReal("-momentum", "Momentum of -optimizer momentum", "", t->opt.momentum, &t->opt.momentum, NULL));
  PetscCall(PetscOptionsReal("-adam_beta1", "Adam first-moment decay", "", t->opt.beta1, &t->opt.beta1, NULL));
  PetscCall(PetscOptionsReal("-adam_beta2", "Adam second-moment decay", "", t->opt.beta2, &t->opt.beta2, NULL));
  PetscCall(PetscOptionsReal("-adam_eps", "Adam epsilon", "", t->opt.eps, &t->opt.eps, NULL));
  PetscCall(PetscOptionsReal("-weight_decay", "alpha: weight decay of K, W_j, C", "", t->reg.alpha, &t->reg.alpha, NULL));
  PetscCall(PetscOptionsReal("-smooth", "beta: depth smoothness of W_j and b_j", "", t->reg.beta, &t->reg.beta, NULL));
  PetscCall(PetscOptionsInt("-seed", "Seed of the initialisation and the shuffling", "", t->seed, &t->seed, NULL));
  PetscOptionsEnd();

  PetscOptionsBegin(t->comm, NULL, "thetanet train: parallelism and memory", "thetanet");
  PetscCall(PetscOptionsInt("-depth_ranks", "Ranks along depth (P = depth_ranks x data_ranks)", "", t->depth_ranks, &t->depth_ranks, NULL));
  PetscCall(PetscOptionsEnum("-depth_solver", "Propagation across depth: sequential (layer-serial) or mgrit", "", TNDepthSolvers,
                             (PetscEnum)t->depth_solver, (PetscEnum *)&t->depth_solver, NULL));
  PetscCall(PetscOptionsEnum("-memory", "What the forward pass keeps: store (every state), reversible (y_L only), checkpoint (every -memory_stride-th)", "",
                             TNMemoryModes, (PetscEnum)t->memory, (PetscEnum *)&t->memory, NULL));
  PetscCall(PetscOptionsInt("-memory_stride", "States between checkpoints of -memory checkpoint (0: about sqrt(layers))", "", t->memory_stride, &t->memory_stride, NULL));
  PetscCall(PetscOptionsReal("-memory_tol", "Reconstruction error of y_0 above which -memory reversible warns", "", t->memory_tol, &t->memory_tol, NULL));
  PetscOptionsEnd();
  TNErrorReadingOptions(PETSC_FALSE);

  PetscCheck(!(t->have_train && have_problem), t->comm, TN_ERR_USER, "-train and -problem exclude each other");
  PetscCheck(!t->have_val || t->have_train, t->comm, TN_ERR_USER, "-val needs -train");
  PetscCheck(t->cfg.n > 0, t->comm, TN_ERR_USER, "-width must be positive, got %" PetscInt_FMT, t->cfg.n);
  PetscCheck(t->cfg.L > 0, t->comm, TN_ERR_USER, "-layers must be positive, got %" PetscInt_FMT, t->cfg.L);
  PetscCheck(t->cfg.theta >= 0 && t->cfg.theta <= 1, t->comm, TN_ERR_USER, "-theta must lie in [0, 1], got %g", (double)t->cfg.theta);
  PetscCheck(t->cfg.T > 0, t->comm, TN_ERR_USER, "-T must be positive, got %g", (double)t->cfg.T);
  PetscCheck(t->cfg.gamma >= 0, t->comm, TN_ERR_USER, "-gamma must be non-negative, got %g", (double)t->cfg.gamma);
  PetscCheck(t->cfg.act != TN_ACT_NONE, t->comm, TN_ERR_USER, "-act none is not allowed: the blocks need a nonlinearity");
  PetscCheck(t->epochs > 0, t->comm, TN_ERR_USER, "-epochs must be positive, got %" PetscInt_FMT, t->epochs);
  PetscCheck(t->batch > 0, t->comm, TN_ERR_USER, "-batch must be positive, got %" PetscInt_FMT, t->batch);
  PetscCheck(t->opt.lr > 0 && PetscIsNormalReal(t->opt.lr), t->comm, TN_ERR_USER, "-lr must be positive, got %g", (double)t->opt.lr);
  PetscCheck(t->opt.momentum >= 0 && t->opt.momentum < 1, t->comm, TN_ERR_USER, "-momentum must lie in [0, 1), got %g", (double)t->opt.momentum);
  PetscCheck(t->opt.beta1 >= 0 && t->opt.beta1 < 1 && t->opt.beta2 >= 0 && t->opt.beta2 < 1, t->comm, TN_ERR_USER, "-adam_beta1 and -adam_beta2 must lie in [0, 1)");
  PetscCheck(t->opt.eps > 0, t->comm, TN_ERR_USER, "-adam_eps must be positive, got %g", (double)t->opt.eps);
  PetscCheck(t->reg.alpha >= 0, t->comm, TN_ERR_USER, "-weight_decay must be non-negative, got %g", (double)t->reg.alpha);
  PetscCheck(t->reg.beta >= 0, t->comm, TN_ERR_USER, "-smooth must be non-negative, got %g", (double)t->reg.beta);
  PetscCheck(t->memory_stride >= 0, t->comm, TN_ERR_USER, "-memory_stride must be non-negative, got %" PetscInt_FMT, t->memory_stride);
  PetscCheck(t->memory_tol > 0, t->comm, TN_ERR_USER, "-memory_tol must be positive, got %g", (double)t->memory_tol);
  PetscCheck(t->checkpoint_every >= 0, t->comm, TN_ERR_USER, "-checkpoint_every must be non-negative, got %" PetscInt_FMT, t->checkpoint_every);
  PetscCheck(!t->checkpoint_every || t->checkpoint[0], t->comm, TN_ERR_USER, "-checkpoint_every needs -checkpoint FILE");
  PetscCall(TNGridCreate(t->comm, t->depth_ranks, t->cfg.L, &t->grid));
  if (t->checkpoint[0]) PetscCall(TNOutputPathCheck(t->comm, "-checkpoint", t->checkpoint));
  if (t->output[0]) PetscCall(TNOutputPathCheck(t->comm, "-output", t->output));
  PetscFunctionReturn(0);
}

/* Model, validation set and training set must agree. */
static PetscErrorCode CheckData(TNTrainer t)
{
  PetscFunctionBegin;
  if (!t->val) PetscFunctionReturn(0);
  PetscCheck(t->val->d == t->train->d, t->comm, TN_ERR_USER, "%s: input dimension %" PetscInt_FMT " differs from %s's %" PetscInt_FMT,
             t->val_path, t->val->d, t->train_path, t->train->d);
  PetscCheck(t->val->task == t->train->task, t->comm, TN_ERR_USER, "%s: task %s differs from %s's %s", t->val_path,
             TNTasks[t->val->task], t->train_path, TNTasks[t->train->task]);
  if (t->train->task == TN_TASK_REGRESSION)
    PetscCheck(t->val->m == t->train->m, t->comm, TN_ERR_USER, "%s: %" PetscInt_FMT " targets per sample, %s has %" PetscInt_FMT,
               t->val_path, t->val->m, t->train_path, t->train->m);
  PetscFunctionReturn(0);
}

typedef struct {
  const char *option;
  PetscBool   differs;
} OptionCheck;

/* The blocks this depth rank holds: a contiguous, even share (under either depth solver). */
static PetscErrorCode DepthOwnership(TNTrainer t, PetscInt *jlo, PetscInt *jhi)
{
  PetscFunctionBegin;
  if (t->grid.depth_size == 1) {
    *jlo = 0;
    *jhi = t->cfg.L;
  } else PetscCall(TNNetworkDepthOwnershipFor(t->grid.depth, t->cfg.L, t->depth_solver, jlo, jhi));
  PetscFunctionReturn(0);
}

/* A restart takes the model, the optimiser state, the history and the seed from the checkpoint;
   options given on the command line must agree with them (-lr and -epochs may change). */
static PetscErrorCode RestartLoad(TNTrainer t)
{
  const TNModelConfig want = t->cfg;
  const TNOptimizerType opt_type = t->opt.type;
  const PetscReal       lr = t->opt.lr;
  TNModelConfig        *c;
  PetscBool             set;
  OptionCheck           checks[10];
  PetscInt nchecks = 0;
  PetscReal t0;
  TNModel     full;
  TNOptimizer fopt;

  PetscFunctionBegin;
  PetscCall(PetscMemzero(&fopt, sizeof fopt));
  t0 = MPI_Wtime();
  PetscCall(TNCheckpointRead(t->comm, t->restart, &full, &fopt, &t->history, &t->resume));
  t0 = MPI_Wtime() - t0;
  t->phase[PH_IO] += t0;
  c = &full->cfg;
#define CHECK_OPTION(name, cond) checks[nchecks++] = (OptionCheck){name, (cond) ? PETSC_TRUE : PETSC_FALSE}
  CHECK_OPTION("-width", want.n != c->n);
  CHECK_OPTION("-layers", want.L != c->L);
  CHECK_OPTION("-theta", want.theta != c->theta);
  CHECK_OPTION("-T", want.T != c->T);
  CHECK_OPTION("-act", want.act != c->act);
  CHECK_OPTION("-opening_act", want.opening_act != c->opening_act);
  CHECK_OPTION("-antisymmetric", want.antisymmetric != c->antisymmetric);
  CHECK_OPTION("-gamma", want.gamma != c->gamma);
  CHECK_OPTION("-optimizer", opt_type != fopt.type);
  CHECK_OPTION("-seed", t->seed != t->resume.seed);
#undef CHECK_OPTION
  for (PetscInt i = 0; i < nchecks; i++) {
    PetscCall(PetscOptionsHasName(NULL, NULL, checks[i].option, &set));
    PetscCheck(!set || !checks[i].differs, t->comm, TN_ERR_USER, "%s differs from the checkpoint %s being restarted (leave it out)", checks[i].option, t->restart);
  }
  t->seed = t->resume.seed;
  PetscCheck(c->d == t->cfg.d, t->comm, TN_ERR_USER, "%s: input dimension %" PetscInt_FMT " but the checkpoint %s takes %" PetscInt_FMT, t->train_path,
             t->cfg.d, t->restart, c->d);
  PetscCheck(c->task == t->cfg.task, t->comm, TN_ERR_USER, "%s: a %s data set but the checkpoint %s does %s", t->train_path, TNTasks[t->cfg.task],
             t->restart, TNTasks[c->task]);
  PetscCheck(t->cfg.task == TN_TASK_CLASSIFICATION ? t->cfg.m <= c->m : t->cfg.m == c->m, t->comm, TN_ERR_USER,
             "%s: %" PetscInt_FMT " outputs needed but the checkpoint %s has %" PetscInt_FMT, t->train_path, t->cfg.m, t->restart, c->m);
  PetscCheck(t->resume.batch <= (t->train->N + t->batch - 1) / t->batch, t->comm, TN_ERR_USER,
             "%s: stopped after batch %" PetscInt_FMT " of an epoch, more than -batch %" PetscInt_FMT " gives", t->restart, t->resume.batch, t->batch);
  t->cfg = *c;
  /* this rank's share of the model and of the optimiser state */
  {
    PetscInt jlo, jhi;
    PetscCall(DepthOwnership(t, &jlo, &jhi));
    PetscCall(TNModelCreateLocal(&t->cfg, t->grid.depth_size > 1 ? t->grid.depth : MPI_COMM_NULL, jlo, jhi, &t->model));
    TNModelExtract(t->model, full->theta_buf, t->model->theta_buf);
    t->opt.type = fopt.type;
    t->opt.momentum = fopt.momentum;
    t->opt.beta1 = fopt.beta1;
    t->opt.beta2 = fopt.beta2;
    t->opt.eps = fopt.eps;
    PetscCall(PetscOptionsHasName(NULL, NULL, "-lr", &set));
    t->opt.lr = set ? lr : fopt.lr;
    PetscCall(TNOptimizerSetUp(&t->opt, t->model->nparams));
    t->opt.step = fopt.step;
    if (fopt.m1) TNModelExtract(t->model, fopt.m1, t->opt.m1);
    if (fopt.m2) TNModelExtract(t->model, fopt.m2, t->opt.m2);
    PetscCall(TNOptimizerDestroy(&fopt));
    PetscCall(TNModelDestroy(&full));
  }
  PetscCall(PetscPrintf(t->comm, "thetanet train: restarting from %s after epoch %" PetscInt_FMT " batch %" PetscInt_FMT " (step %" PetscInt64_FMT ", read in %.3f s)\n",
                        t->restart, t->resume.epoch, t->resume.batch, t->opt.step, (double)t0));
  PetscFunctionReturn(0);
}

PetscErrorCode TNTrainerSetUp(TNTrainer t)
{
  PetscInt  Bloc;
  time_t    now = time(NULL);
  struct tm tmv;

  PetscFunctionBegin;
  gmtime_r(&now, &tmv);
  strftime(t->start_time, sizeof t->start_time, "%Y-%m-%dT%H:%M:%SZ", &tmv);
  PetscCall(TNEventsRegister());
  if (t->have_train) {
    PetscReal t0 = MPI_Wtime();
    PetscErrorCode (*load)(MPI_Comm, const char *, TNDataset *) = t->sharded ? TNDatasetLoadSharded : TNDatasetLoad;
    PetscCall(PetscLogEventBegin(TN_EVENT_IO, 0, 0, 0, 0));
    PetscCall(load(t->grid.data, t->train_path, &t->train));
    if (t->have_val) PetscCall(load(t->grid.data, t->val_path, &t->val));
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
  PetscCall(CheckData(t));
  t->cfg.d    = t->train->d;
  t->cfg.m    = t->val && t->train->task == TN_TASK_CLASSIFICATION ? PetscMax(t->train->m, t->val->m) : t->train->m;
  t->cfg.task = t->train->task;
  PetscCheck(t->cfg.task != TN_TASK_CLASSIFICATION || t->cfg.m >= 2, t->comm, TN_ERR_USER,
             "%s: classification needs at least two classes, the labels hold %" PetscInt_FMT, t->train_path, t->cfg.m);
  if (t->have_restart) PetscCall(RestartLoad(t));
  else {
    PetscInt jlo, jhi;
    PetscCall(DepthOwnership(t, &jlo, &jhi));
    PetscCall(TNModelCreateLocal(&t->cfg, t->grid.depth_size > 1 ? t->grid.depth : MPI_COMM_NULL, jlo, jhi, &t->model));
    PetscCall(TNModelInitialize(t->model, t->seed));
    PetscCall(TNOptimizerSetUp(&t->opt, t->model->nparams));
  }
  /* the largest local batch: a slice of a global batch, or of a shard */
  Bloc = (PetscMin(t->batch, t->train->N) + t->grid.data_size - 1) / t->grid.data_size + 1;
  PetscCall(TNNetworkCreate(t->model, Bloc, &t->net));
  PetscCall(TNNetworkSetFromOptions(t->net));
  PetscCall(TNNetworkSetMemory(t->net, t->memory, t->memory_stride, t->memory_tol));
  PetscCall(TNNetworkSetDepthSolver(t->net, t->depth_solver));
  {
    /* make the solvers now, so their options are read before training starts */
    TNBlockSolver bs;
    PetscCall(TNNetworkGetBlockSolver(t->net, &bs));
    PetscCall(TNBlockSolverSetUp(bs, Bloc));
  }
  PetscCall(PetscMalloc1(t->model->nparams + 4, &t->reduce));
  PetscCall(PetscMalloc6(Bloc * t->cfg.d, &t->Xb, Bloc * t->cfg.m, &t->Yb, Bloc * t->cfg.m, &t->out, Bloc * t->cfg.m, &t->dout, Bloc, &t->Lb,
                         t->train->Nlocal, &t->perm));
  PetscFunctionReturn(0);
}

PetscInt TNTrainerGetWidth(TNTrainer t)
{
  return t->cfg.n;
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
  PetscCall(PetscFree(t->reduce));
  PetscCall(PetscFree6(t->Xb, t->Yb, t->out, t->dout, t->Lb, t->perm));
  PetscCall(TNGridDestroy(&t->grid));
  PetscCall(PetscFree(t));
  *tp = NULL;
  PetscFunctionReturn(0);
}

/* Copy the rows idx[0..B) of D into the contiguous batch buffers. */
static void GatherRows(TNDataset D, PetscInt B, const PetscInt *idx, PetscReal *X, PetscInt *labels, PetscReal *Y)
{
  for (PetscInt s = 0; s < B; s++) {
    const PetscInt i = idx[s];
    for (PetscInt k = 0; k < D->d; k++) X[s * D->d + k] = D->X[i * D->d + k];
    if (D->task == TN_TASK_CLASSIFICATION) labels[s] = D->labels[i];
    else
      for (PetscInt k = 0; k < D->m; k++) Y[s * D->m + k] = D->Y[i * D->m + k];
  }
}

static PetscReal LossDivisor(TNDataset D, PetscInt N)
{
  return (PetscReal)N * (D->task == TN_TASK_REGRESSION ? D->m : 1);
}

PetscErrorCode TNEvaluateDataset(TNNetwork net, const TNGrid *grid, TNDataset D, PetscInt chunk, const char *where, PetscReal *loss,
                                 PetscReal *accuracy, PetscScalar *grad, PetscReal *predictions)
{
  PetscInt    start, end, m;
  PetscReal   sums[3] = {0, 0, 0}, *X, *Y, *out, *dout;
  PetscInt   *labels, *idx;
  PetscBool   ok = PETSC_TRUE;
  const char *failure = NULL;

  PetscFunctionBegin;
  {
    TNModel M;
    PetscCall(TNNetworkGetModel(net, &M));
    m = M->cfg.m;
  }
  TNGridSplit(D->N, grid->data_size, grid->data_rank, &start, &end);
  PetscCall(PetscMalloc6(chunk * D->d, &X, chunk * m, &Y, chunk * m, &out, chunk * m, &dout, chunk, &labels, chunk, &idx));
  for (PetscInt s0 = start; s0 < end && ok; s0 += chunk) {
    const PetscInt B = PetscMin(chunk, end - s0);
    PetscReal      l;
    PetscInt       c;
    for (PetscInt s = 0; s < B; s++) idx[s] = s0 + s - D->offset;
    GatherRows(D, B, idx, X, labels, Y);
    PetscCall(TNNetworkForward(net, B, X, out, &ok));
    if (!ok) break;
    if (grid->depth_rank == grid->depth_size - 1) {
      TNLossEvaluate(D->task, B, m, out, labels, Y, 1.0 / LossDivisor(D, D->N), &l, &c, grad ? dout : NULL);
      sums[0] += l;
      sums[1] += c;
    }
    if (predictions) PetscCall(PetscArraycpy(predictions + s0 * m, out, B * m));
    if (grad) PetscCall(TNNetworkBackward(net, B, X, dout, grad, &ok));
  }
  failure = TNNetworkGetFailure(net);
  if (!ok && failure[0]) PetscCall(PetscFPrintf(PETSC_COMM_SELF, stderr, "thetanet: %s: %s\n", where, failure));
  sums[2] = ok ? 0 : 1;
  PetscCall(PetscFree6(X, Y, out, dout, labels, idx));
  /* over every rank: the loss comes from the last depth ranks, a failure from anywhere */
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, sums, 3, MPIU_REAL, MPI_SUM, grid->world));
  PetscCheck(sums[2] == 0, grid->world, TN_ERR_RUNTIME, "%s", "");
  if (grad) {
    TNModel M;
    PetscCall(TNNetworkGetModel(net, &M));
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, grad, (PetscMPIInt)M->nparams, MPIU_SCALAR, MPI_SUM, grid->data));
  }
  if (predictions) {
    PetscMPIInt *counts, *displs;
    PetscCall(PetscMalloc2(grid->data_size, &counts, grid->data_size, &displs));
    for (PetscMPIInt r = 0; r < grid->data_size; r++) {
      PetscInt a, b;
      TNGridSplit(D->N, grid->data_size, r, &a, &b);
      counts[r] = (PetscMPIInt)((b - a) * m);
      displs[r] = (PetscMPIInt)(a * m);
    }
    PetscCallMPI(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, predictions, counts, displs, MPIU_REAL, grid->data));
    PetscCall(PetscFree2(counts, displs));
  }
  *loss = sums[0] / LossDivisor(D, D->N);
  if (accuracy) *accuracy = D->task == TN_TASK_CLASSIFICATION ? sums[1] / D->N : NAN;
  PetscFunctionReturn(0);
}

/* One optimisation step on the global batch gidx[0..Bg). */
/* The epoch's order of the rows: one global permutation of all N rows (replicated: the math does
   not depend on the number of ranks), or each shard's own permutation of its rows (sharded). */
static void EpochPermutation(TNTrainer t, PetscInt epoch)
{
  uint64_t seed = (uint64_t)t->seed;

  if (t->sharded) seed = TNHash64(seed) ^ TNHash64((uint64_t)t->train->offset + 1);
  TNPermutation(seed, (uint64_t)epoch, t->train->Nlocal, t->perm);
}

/* Step k of nb: this rank's rows perm[a .. a+B) and the global batch size Bg. Replicated, the
   global batch perm[k*batch ..] is split among the data ranks; sharded, every rank takes the
   k-th of nb near-equal slices of its shard. */
static void BatchRows(TNTrainer t, PetscInt k, PetscInt nb, PetscInt *a, PetscInt *B, PetscInt *Bg)
{
  const PetscInt N = t->train->N;

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

/* One optimisation step: this rank's B rows idx (local indices) of a global batch of Bg. */
static PetscErrorCode TrainStep(TNTrainer t, PetscInt epoch, PetscInt batch, const PetscInt *idx, PetscInt B, PetscInt Bg, PetscReal *loss_sum,
                                PetscReal *correct, PetscBool *stop)
{
  const PetscInt np = t->model->nparams;
  PetscInt       c = 0;
  PetscReal      l = 0, R, t0;
  PetscBool      ok = PETSC_TRUE;

  PetscFunctionBegin;
  GatherRows(t->train, B, idx, t->Xb, t->Lb, t->Yb);
  PetscCall(PetscArrayzero(t->reduce, np + 4));
  if (B > 0) {
    t0 = MPI_Wtime();
    PetscCall(TNNetworkForward(t->net, B, t->Xb, t->out, &ok));
    t->phase[PH_FORWARD] += MPI_Wtime() - t0;
    /* the loss lives with the closing layer, on the last depth rank */
    if (ok && t->grid.depth_rank == t->grid.depth_size - 1)
      TNLossEvaluate(t->cfg.task, B, t->cfg.m, t->out, t->Lb, t->Yb, 1.0 / LossDivisor(t->train, Bg), &l, &c, t->dout);
    /* across depth every rank takes part in the backward pass, failed or not, so that the
       messages between the ranks keep flowing */
    if (ok || t->grid.depth_size > 1) {
      t0 = MPI_Wtime();
      PetscCall(TNNetworkBackward(t->net, B, t->Xb, t->dout, t->reduce, &ok));
      t->phase[PH_BACKWARD] += MPI_Wtime() - t0;
    }
  }
  if (!ok && TNNetworkGetFailure(t->net)[0])
    PetscCall(PetscFPrintf(PETSC_COMM_SELF, stderr, "thetanet: epoch %" PetscInt_FMT " batch %" PetscInt_FMT ": %s\n", epoch, batch, TNNetworkGetFailure(t->net)));
  t->reduce[np]     = l;
  t->reduce[np + 1] = c;
  t->reduce[np + 2] = ok ? 0 : 1;
  t->reduce[np + 3] = tn_signal ? 1 : 0;
  t0                = MPI_Wtime();
  PetscCall(PetscLogEventBegin(TN_EVENT_ALLREDUCE, 0, 0, 0, 0));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, t->reduce, (PetscMPIInt)(np + 4), MPIU_SCALAR, MPI_SUM, t->grid.data));
  /* the loss statistics and flags, from the last depth rank and any failing one, to all */
  if (t->grid.depth_size > 1) PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, t->reduce + np, 4, MPIU_SCALAR, MPI_SUM, t->grid.depth));
  PetscCall(PetscLogEventEnd(TN_EVENT_ALLREDUCE, 0, 0, 0, 0));
  t->phase[PH_ALLREDUCE] += MPI_Wtime() - t0;
  PetscCheck(t->reduce[np + 2] == 0, t->comm, TN_ERR_RUNTIME, "%s", "");
  PetscCheck(PetscIsNormalReal(t->reduce[np] + 1.0), t->comm, TN_ERR_RUNTIME, "epoch %" PetscInt_FMT " batch %" PetscInt_FMT ": the loss is %g", epoch, batch,
             (double)t->reduce[np]);
  *loss_sum += t->reduce[np];
  *correct += t->reduce[np + 1];
  *stop = t->reduce[np + 3] > 0 ? PETSC_TRUE : PETSC_FALSE;
  t0 = MPI_Wtime();
  PetscCall(PetscLogEventBegin(TN_EVENT_UPDATE, 0, 0, 0, 0));
  PetscCall(TNModelRegularizer(t->model, t->reg.alpha, t->reg.beta, &R, t->reduce));
  PetscCall(TNOptimizerStep(&t->opt, t->model->theta_buf, t->reduce));
  PetscCall(PetscLogEventEnd(TN_EVENT_UPDATE, 0, 0, 0, 0));
  t->phase[PH_UPDATE] += MPI_Wtime() - t0;
  PetscFunctionReturn(0);
}

static void FormatDuration(PetscReal s, char *buf, size_t len)
{
  long v = (long)(s + 0.5);
  if (v >= 3600) snprintf(buf, len, "%ldh%02ldm", v / 3600, (v / 60) % 60);
  else if (v >= 60) snprintf(buf, len, "%ldm%02lds", v / 60, v % 60);
  else snprintf(buf, len, "%lds", v);
}

static PetscReal PeakRSSMB(MPI_Comm comm)
{
  struct rusage ru;
  double        mine, max = 0;

  getrusage(RUSAGE_SELF, &ru);
  mine = ru.ru_maxrss / 1024.0; /* Linux: kilobytes */
  MPI_Allreduce(&mine, &max, 1, MPI_DOUBLE, MPI_MAX, comm);
  return max;
}

/* Nonlinear and linear iterations per block solve, MGRIT iterations per MGRIT solve and the
   largest final C-point residual norm of those solves, since the last call, over all ranks. */
static PetscErrorCode SolverCounts(TNTrainer t, PetscReal *newton, PetscReal *krylov, PetscReal *mgrit, PetscReal *mgrit_res)
{
  TNBlockSolver bs;
  PetscInt64    c[5];
  PetscReal     res;

  PetscFunctionBegin;
  PetscCall(TNNetworkGetBlockSolver(t->net, &bs));
  PetscCall(TNBlockSolverGetCounts(bs, &c[0], &c[1], &c[2]));
  PetscCall(TNBlockSolverResetCounts(bs));
  PetscCall(TNNetworkGetMGRITCounts(t->net, &c[3], &c[4], &res));
  {
    PetscReal  f;
    PetscInt64 nf;
    PetscCall(TNNetworkGetMGRITFactor(t->net, &f, &nf));
    t->mgrit_logfactor += f;
    t->mgrit_nfactor += nf;
  }
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, c, 5, MPIU_INT64, MPI_SUM, t->grid.world));
  *newton = c[2] ? (PetscReal)c[0] / c[2] : 0;
  *krylov = c[2] ? (PetscReal)c[1] / c[2] : 0;
  *mgrit  = c[4] ? (PetscReal)c[3] / c[4] : 0;
  PetscCallMPI(MPI_Allreduce(&res, mgrit_res, 1, MPIU_REAL, MPI_MAX, t->grid.world));
  PetscFunctionReturn(0);
}

/* What files hold is the whole network: with the blocks split across depth ranks, the model
   and the optimiser moments are gathered into whole copies for the time of a write. */
static PetscErrorCode GatherWhole(TNTrainer t, TNModel *full, TNOptimizer *fopt)
{
  PetscFunctionBegin;
  if (t->grid.depth_size == 1) {
    *full = t->model;
    *fopt = t->opt;
    PetscFunctionReturn(0);
  }
  PetscCall(TNModelCreate(&t->cfg, full));
  PetscCall(TNModelAllgather(t->model, t->model->theta_buf, (*full)->theta_buf));
  *fopt = t->opt;
  fopt->m1 = fopt->m2 = NULL;
  PetscCall(TNOptimizerSetUp(fopt, (*full)->nparams));
  fopt->step = t->opt.step;
  if (t->opt.m1) PetscCall(TNModelAllgather(t->model, t->opt.m1, fopt->m1));
  if (t->opt.m2) PetscCall(TNModelAllgather(t->model, t->opt.m2, fopt->m2));
  PetscFunctionReturn(0);
}

static PetscErrorCode GatherWholeDestroy(TNTrainer t, TNModel *full, TNOptimizer *fopt)
{
  PetscFunctionBegin;
  if (t->grid.depth_size == 1) PetscFunctionReturn(0);
  PetscCall(TNModelDestroy(full));
  PetscCall(TNOptimizerDestroy(fopt));
  PetscFunctionReturn(0);
}

static PetscErrorCode CheckpointWrite(TNTrainer t, const TNCheckpointState *st)
{
  PetscReal   t0 = MPI_Wtime();
  TNModel     full;
  TNOptimizer fopt;

  PetscFunctionBegin;
  PetscCall(PetscLogEventBegin(TN_EVENT_IO, 0, 0, 0, 0));
  PetscCall(GatherWhole(t, &full, &fopt));
  /* every rank now holds a replica: the first one writes */
  PetscCall(TNCheckpointWrite(t->comm, t->checkpoint, t->grid.rank == 0 ? PETSC_TRUE : PETSC_FALSE, full, &fopt, &t->history, st));
  PetscCall(GatherWholeDestroy(t, &full, &fopt));
  PetscCall(PetscLogEventEnd(TN_EVENT_IO, 0, 0, 0, 0));
  t->phase[PH_IO] += MPI_Wtime() - t0;
  if (!t->grid.rank) {
    struct stat sb;
    double      mb = stat(t->checkpoint, &sb) ? 0 : sb.st_size / 1048576.0;
    PetscCall(PetscPrintf(PETSC_COMM_SELF, "checkpoint epoch %" PetscInt_FMT " batch %" PetscInt_FMT " written to %s (%.2f MB, %.3f s)\n", st->epoch, st->batch,
                          t->checkpoint, mb, MPI_Wtime() - t0));
  }
  PetscFunctionReturn(0);
}

/* /config: what a reader needs to reproduce or tabulate the run. */
static PetscErrorCode TNTrainerWriteResults(TNTrainer t)
{
  char          v[20][64];
  TNConfigEntry cfg[20];
  PetscInt      k = 0;
  TNTiming      timing;

  PetscFunctionBegin;
#define ENTRY(name, ...) \
  do { \
    PetscCall(PetscSNPrintf(v[k], sizeof v[k], __VA_ARGS__)); \
    cfg[k].key   = name; \
    cfg[k].value = v[k]; \
    k++; \
  } while (0)
  ENTRY("grid", "%d x %d", t->grid.depth_size, t->grid.data_size);
  ENTRY("depth_ranks", "%d", t->grid.depth_size);
  ENTRY("data_ranks", "%d", t->grid.data_size);
  ENTRY("start_time", "%s", t->start_time);
  ENTRY("train", "%s", t->train_path);
  ENTRY("val", "%s", t->val ? t->val_path : "");
  ENTRY("width", "%" PetscInt_FMT, t->cfg.n);
  ENTRY("layers", "%" PetscInt_FMT, t->cfg.L);
  ENTRY("theta", "%.17g", (double)t->cfg.theta);
  ENTRY("T", "%.17g", (double)t->cfg.T);
  ENTRY("epochs", "%" PetscInt_FMT, t->epochs);
  ENTRY("batch", "%" PetscInt_FMT, t->batch);
  ENTRY("lr", "%.17g", (double)t->opt.lr);
  ENTRY("optimizer", "%s", TNOptimizerTypes[t->opt.type]);
  ENTRY("seed", "%" PetscInt_FMT, t->seed);
  ENTRY("memory", "%s", TNMemoryModes[t->memory]);
  ENTRY("depth_solver", "%s", TNDepthSolvers[t->depth_solver]);
  ENTRY("data_layout", "%s", t->sharded ? "sharded" : "replicated");
#undef ENTRY
  timing.nphases = PH_COUNT;
  for (PetscInt i = 0; i < PH_COUNT; i++) {
    timing.names[i]   = phase_names[i];
    timing.seconds[i] = t->phase[i];
  }
  PetscCall(PetscLogEventBegin(TN_EVENT_IO, 0, 0, 0, 0));
  {
    TNModel     full;
    TNOptimizer fopt;
    PetscCall(GatherWhole(t, &full, &fopt));
    PetscCall(TNResultsWrite(t->comm, t->output, full, &t->history, &timing, k, cfg));
    PetscCall(GatherWholeDestroy(t, &full, &fopt));
  }
  PetscCall(PetscLogEventEnd(TN_EVENT_IO, 0, 0, 0, 0));
  PetscCall(PetscPrintf(t->comm, "results written to %s\n", t->output));
  PetscFunctionReturn(0);
}

PetscErrorCode TNTrainerTrain(TNTrainer t)
{
  const PetscInt N = t->train->N, nb = (N + t->batch - 1) / t->batch;
  const PetscInt chunk = PetscMax(1, (PetscMin(t->batch, N) + t->grid.data_size - 1) / t->grid.data_size);
  PetscReal      start = MPI_Wtime(), newton_all = 0, krylov_all = 0, mgrit_all = 0, mgrit_res_all = 0;
  PetscReal      train_loss = NAN, val_loss = NAN, val_acc = NAN;
  PetscBool      tty = (!t->grid.rank && t->progress) ? PETSC_TRUE : PETSC_FALSE;
  char           eta[32], recon[32] = "";

  PetscFunctionBegin;
  PetscCall(PetscPrintf(t->comm, "thetanet train: %s, N %" PetscInt_FMT ", d %" PetscInt_FMT ", %s with %" PetscInt_FMT " outputs; width %" PetscInt_FMT ", layers %" PetscInt_FMT ", theta %g, T %g, %" PetscInt_FMT " parameters; %d ranks (depth %d x data %d)\n",
                        t->train_path, N, t->cfg.d, TNTasks[t->cfg.task], t->cfg.m, t->cfg.n, t->cfg.L, (double)t->cfg.theta,
                        (double)t->cfg.T, t->model->nparams, t->grid.size, t->grid.depth_size, t->grid.data_size));
  /* Only the trapezoidal step reversed is the same method backwards in depth; for other theta the
     reverse step amplifies what the forward solves leave behind. */
  if (t->memory == TN_MEMORY_REVERSIBLE && t->cfg.theta != 0.5)
    PetscCall(PetscFPrintf(t->comm, PETSC_STDERR,
                           "thetanet: warning: -memory reversible with -theta %g: the reversal is symmetric only for theta 0.5, so the rebuilt states may drift (see recon on the epoch lines)\n",
                           (double)t->cfg.theta));
  if (t->checkpoint[0]) {
    signal(SIGTERM, OnSignal);
    signal(SIGUSR1, OnSignal);
  }
  for (PetscInt e = t->resume.epoch + 1; e <= t->epochs; e++) {
    const PetscBool resumed = e == t->resume.epoch + 1 ? PETSC_TRUE : PETSC_FALSE;
    PetscReal e0 = MPI_Wtime(), loss_sum = resumed ? t->resume.loss_sum : 0, correct = resumed ? t->resume.correct : 0, last_tty = e0, newton = 0, krylov = 0, mgrit = 0, mgrit_res = 0, now, tp;
    PetscBool stop = PETSC_FALSE;

    EpochPermutation(t, e);
    for (PetscInt k = resumed ? t->resume.batch : 0; k < nb; k++) {
      PetscInt a = 0, B = 0, Bg = 0;
      BatchRows(t, k, nb, &a, &B, &Bg);
      PetscCall(TrainStep(t, e, k + 1, t->perm + a, B, Bg, &loss_sum, &correct, &stop));
      if (stop) {
        const TNCheckpointState st = {e - 1, k + 1, t->seed, loss_sum, correct, t->resume.wall_time + MPI_Wtime() - start};
        PetscCall(CheckpointWrite(t, &st));
        SETERRQ(t->comm, TN_ERR_RUNTIME, "stopped by a signal in epoch %" PetscInt_FMT " after batch %" PetscInt_FMT "; checkpoint written to %s (continue with -restart %s)", e, k + 1,
                t->checkpoint, t->checkpoint);
      }
      if (tty && MPI_Wtime() - last_tty > 0.5) {
        last_tty = MPI_Wtime();
        printf("\r  epoch %" PetscInt_FMT "/%" PetscInt_FMT " batch %" PetscInt_FMT "/%" PetscInt_FMT " loss %.4f", e, t->epochs, k + 1, nb,
               (double)(loss_sum / LossDivisor(t->train, PetscMin(N, (k + 1) * t->batch))));
        fflush(stdout);
      }
    }
    tp = MPI_Wtime() - e0;
    if (e > t->resume.epoch + 1 || t->epochs == t->resume.epoch + 1) {
      t->train_seconds += tp;
      t->train_samples += N;
    }
    train_loss = loss_sum / LossDivisor(t->train, N);
    PetscCall(SolverCounts(t, &newton, &krylov, &mgrit, &mgrit_res));
    newton_all += newton;
    mgrit_all += mgrit;
    mgrit_res_all = PetscMax(mgrit_res_all, mgrit_res);
    krylov_all += krylov;
    if (t->memory == TN_MEMORY_REVERSIBLE) {
      PetscReal err;
      PetscCall(TNNetworkGetReconstructionError(t->net, &err));
      PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &err, 1, MPIU_REAL, MPI_MAX, t->grid.data));
      PetscCall(PetscSNPrintf(recon, sizeof recon, " recon %.1e", (double)err));
      if (!(err <= t->memory_tol))
        PetscCall(PetscFPrintf(t->comm, PETSC_STDERR, "thetanet: warning: epoch %" PetscInt_FMT ": reconstruction error of y_0 %.1e exceeds -memory_tol %g\n", e,
                               (double)err, (double)t->memory_tol));
    }
    if (t->val) {
      now = MPI_Wtime();
      char where[64];
      PetscCall(PetscSNPrintf(where, sizeof where, "epoch %" PetscInt_FMT " validation", e));
      PetscCall(TNEvaluateDataset(t->net, &t->grid, t->val, chunk, where, &val_loss, &val_acc, NULL, NULL));
      {
        /* the per-epoch counts are the training solves' */
        TNBlockSolver bs;
        PetscInt64    mgrit_its, mgrit_solves;
        PetscReal     mgrit_res;
        PetscCall(TNNetworkGetBlockSolver(t->net, &bs));
        PetscCall(TNBlockSolverResetCounts(bs));
        PetscCall(TNNetworkGetMGRITCounts(t->net, &mgrit_its, &mgrit_solves, &mgrit_res));
      }
      t->phase[PH_VALIDATE] += MPI_Wtime() - now;
    }
    now = MPI_Wtime();
    FormatDuration((now - start) / (e - t->resume.epoch) * (t->epochs - e), eta, sizeof eta);
    if (tty) printf("\r\033[K");
    PetscCall(PetscPrintf(t->comm, "epoch %" PetscInt_FMT "/%" PetscInt_FMT " train_loss %.4f", e, t->epochs, (double)train_loss));
    if (t->val) PetscCall(PetscPrintf(t->comm, " val_loss %.4f", (double)val_loss));
    if (t->val && t->cfg.task == TN_TASK_CLASSIFICATION) PetscCall(PetscPrintf(t->comm, " val_acc %.4f", (double)val_acc));
    PetscCall(PetscPrintf(t->comm, " lr %.1e newton %.1f krylov %.1f mgrit %.1f", (double)t->opt.lr, (double)newton, (double)krylov, (double)mgrit));
    if (t->depth_solver == TN_DEPTH_MGRIT) PetscCall(PetscPrintf(t->comm, " mgrit_res %.1e", (double)mgrit_res));
    PetscCall(PetscPrintf(t->comm, " time %.3fs eta %s%s\n", (double)(now - e0), eta, recon));
    PetscCall(TNHistoryAppend(&t->history, e, train_loss, val_loss, val_acc, t->opt.lr, t->resume.wall_time + now - start, newton, krylov, mgrit,
                              mgrit_res));
    if (t->checkpoint[0] && (e == t->epochs || (t->checkpoint_every && e % t->checkpoint_every == 0))) {
      const TNCheckpointState st = {e, 0, t->seed, 0, 0, t->resume.wall_time + MPI_Wtime() - start};
      PetscCall(CheckpointWrite(t, &st));
    }
  }
  t->phase[PH_TOTAL] = MPI_Wtime() - start;
  {
    const PetscInt  run = PetscMax(1, t->epochs - t->resume.epoch); /* epochs trained by this run */
    const PetscReal wall = t->phase[PH_TOTAL], epoch_s = t->train_seconds / PetscMax(1, run > 1 ? run - 1 : 1);
    PetscReal       sps  = t->train_seconds > 0 ? t->train_samples / t->train_seconds : 0, rss = PeakRSSMB(t->comm);
    PetscReal       lf[2] = {t->mgrit_logfactor, (PetscReal)t->mgrit_nfactor}, factor;
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, lf, 2, MPIU_REAL, MPI_SUM, t->comm));
    factor = lf[1] > 0 ? PetscExpReal(lf[0] / lf[1]) : 0;
    PetscCall(PetscPrintf(t->comm,
                          "summary ranks %d depth_ranks %d data_ranks %d layers %" PetscInt_FMT " width %" PetscInt_FMT " theta %g epochs %" PetscInt_FMT
                          " wall_s %.3f epoch_s %.4f samples_per_s %.1f train_loss %.6g val_loss %.6g val_accuracy %.6g newton_its %.3f krylov_its %.3f mgrit_its %.3f mgrit_factor %.3g mgrit_res %.3g peak_rss_mb %.1f\n",
                          t->grid.size, t->grid.depth_size, t->grid.data_size, t->cfg.L, t->cfg.n, (double)t->cfg.theta, t->epochs, (double)wall,
                          (double)epoch_s, (double)sps, (double)train_loss, (double)val_loss, (double)val_acc, (double)(newton_all / run),
                          (double)(krylov_all / run), (double)(mgrit_all / run), (double)factor, (double)mgrit_res_all, (double)rss));
  }
  if (t->output[0]) PetscCall(TNTrainerWriteResults(t));
  PetscFunctionReturn(0);
}
