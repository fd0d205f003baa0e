/* The trainer's checkpoints and restarts: what a checkpoint holds is the whole network, its
   optimiser state, the history and where the run stands, whatever the grid that wrote it; a
   restart takes them back onto any grid and continues the run exactly. */
#include "trainerimpl.h"
#include "events.h"
#include <sys/stat.h>

/* The checkpoint's /state attributes, in this order (rng_epoch and rng_batch say where the
   counter-based generator resumes: the permutation of (seed, rng_epoch), from batch rng_batch;
   train_* identify the training data, so that a restart on other data is noticed; lr_* are the
   schedule's state, best_*, stall and rejections the training controls'). */
enum {
  ST_EPOCH,
  ST_BATCH,
  ST_SEED,
  ST_RNG_EPOCH,
  ST_RNG_BATCH,
  ST_LOSS_SUM,
  ST_CORRECT,
  ST_WALL_TIME,
  ST_TRAIN_NAME,
  ST_TRAIN_ROWS,
  ST_TRAIN_DIM,
  ST_TRAIN_CHECKSUM,
  ST_LR_SCALE,
  ST_LR_BEST,
  ST_LR_WAIT,
  ST_LR_CUTS,
  ST_BEST_VAL,
  ST_BEST_EPOCH,
  ST_STALL,
  ST_REJECTIONS,
  ST_COUNT
};

/* The training data's identity: its name, shape and checksum. */
static PetscErrorCode DataIdentity(TNTrainer t, TNAttribute a[ST_COUNT])
{
  PetscInt64 checksum;

  PetscFunctionBegin;
  PetscCall(TNDatasetChecksum(t->train, t->grid.data, &checksum));
  PetscCall(PetscStrncpy(a[ST_TRAIN_NAME].text, t->train_info.name, sizeof a[ST_TRAIN_NAME].text));
  a[ST_TRAIN_ROWS].value     = t->train_info.N;
  a[ST_TRAIN_DIM].value      = t->train_info.d;
  a[ST_TRAIN_CHECKSUM].value = (PetscReal)checksum;
  PetscFunctionReturn(0);
}

static void StateAttributes(TNTrainer t, const TNResume *r, TNAttribute a[ST_COUNT])
{
  const TNAttribute blank[ST_COUNT] = {
      {.name = "epoch", .type = TN_ATTR_INT},
      {.name = "batch", .type = TN_ATTR_INT},
      {.name = "seed", .type = TN_ATTR_INT},
      {.name = "rng_epoch", .type = TN_ATTR_INT},
      {.name = "rng_batch", .type = TN_ATTR_INT},
      {.name = "loss_sum", .type = TN_ATTR_REAL},
      {.name = "correct", .type = TN_ATTR_REAL},
      {.name = "wall_time", .type = TN_ATTR_REAL},
      {.name = "train_name", .type = TN_ATTR_STRING, .optional = PETSC_TRUE},
      {.name = "train_rows", .type = TN_ATTR_INT, .optional = PETSC_TRUE},
      {.name = "train_dim", .type = TN_ATTR_INT, .optional = PETSC_TRUE},
      {.name = "train_checksum", .type = TN_ATTR_INT, .optional = PETSC_TRUE},
      {.name = "lr_scale", .type = TN_ATTR_REAL, .optional = PETSC_TRUE},
      {.name = "lr_best", .type = TN_ATTR_REAL, .optional = PETSC_TRUE},
      {.name = "lr_wait", .type = TN_ATTR_INT, .optional = PETSC_TRUE},
      {.name = "lr_cuts", .type = TN_ATTR_INT, .optional = PETSC_TRUE},
      {.name = "best_val_loss", .type = TN_ATTR_REAL, .optional = PETSC_TRUE},
      {.name = "best_epoch", .type = TN_ATTR_INT, .optional = PETSC_TRUE},
      {.name = "stall", .type = TN_ATTR_INT, .optional = PETSC_TRUE},
      {.name = "rejections", .type = TN_ATTR_INT, .optional = PETSC_TRUE},
  };

  for (int k = 0; k < ST_COUNT; k++) a[k] = blank[k];
  if (!r) return;
  a[ST_EPOCH].value      = r->epoch;
  a[ST_BATCH].value      = r->batch;
  a[ST_SEED].value       = r->seed;
  a[ST_RNG_EPOCH].value  = r->epoch + 1;
  a[ST_RNG_BATCH].value  = r->batch;
  a[ST_LOSS_SUM].value   = r->loss_sum;
  a[ST_CORRECT].value    = r->correct;
  a[ST_WALL_TIME].value  = r->wall_time;
  a[ST_LR_SCALE].value   = t->sched.state.scale;
  a[ST_LR_BEST].value    = t->sched.state.best;
  a[ST_LR_WAIT].value    = t->sched.state.wait;
  a[ST_LR_CUTS].value    = t->sched.state.cuts;
  a[ST_BEST_VAL].value   = t->watch.best_val;
  a[ST_BEST_EPOCH].value = t->watch.best_epoch;
  a[ST_STALL].value      = t->watch.stall;
  a[ST_REJECTIONS].value = t->watch.rejections;
}

/* The controls' state from a checkpoint; a checkpoint of an earlier version has none: the
   schedule starts afresh. */
static void StateControls(TNTrainer t, const TNAttribute a[ST_COUNT])
{
  if (a[ST_LR_SCALE].found) t->sched.state.scale = a[ST_LR_SCALE].value;
  if (a[ST_LR_BEST].found) t->sched.state.best = a[ST_LR_BEST].value;
  if (a[ST_LR_WAIT].found) t->sched.state.wait = (PetscInt)a[ST_LR_WAIT].value;
  if (a[ST_LR_CUTS].found) t->sched.state.cuts = (PetscInt)a[ST_LR_CUTS].value;
  if (a[ST_BEST_VAL].found) t->watch.best_val = a[ST_BEST_VAL].value;
  if (a[ST_BEST_EPOCH].found) t->watch.best_epoch = (PetscInt)a[ST_BEST_EPOCH].value;
  if (a[ST_STALL].found) t->watch.stall = (PetscInt)a[ST_STALL].value;
  if (a[ST_REJECTIONS].found) t->watch.rejections = (PetscInt)a[ST_REJECTIONS].value;
}

PetscErrorCode TNTrainerWholeModel(TNTrainer t, TNModel *whole, TNOptimizerRecord *rec, PetscReal hyper[])
{
  TNOptimizerRecord local;

  PetscFunctionBegin;
  PetscCall(TNOptimizerGetRecord(t->opt, &local));
  *rec = local;
  if (t->grid.depth_size == 1) {
    *whole = t->model;
    PetscFunctionReturn(0);
  }
  /* the blocks are split across depth ranks: whole copies on the writer (rank 0, the first depth
     rank of the first data slice) for the time of a write; the other ranks of that slice send
     their parts, the other slices hold replicas of them and take no part */
  *whole = NULL;
  for (PetscInt k = 0; k < rec->nhyper; k++) hyper[k] = local.hyper[k];
  rec->hyper = hyper;
  for (int k = 0; k < TN_OPTIMIZER_MOMENTS; k++) rec->moment[k] = NULL;
  if (t->grid.data_rank) PetscFunctionReturn(0);
  if (!t->grid.rank) PetscCall(TNModelCreate(&t->cfg, whole));
  PetscCall(TNModelGather(t->model, t->model->params, *whole ? (*whole)->params : NULL));
  for (int k = 0; k < TN_OPTIMIZER_MOMENTS; k++) {
    if (!local.moment[k]) continue;
    if (!t->grid.rank) PetscCall(PetscMalloc1(TNParamCount(&t->cfg), &rec->moment[k]));
    PetscCall(TNModelGather(t->model, local.moment[k], rec->moment[k]));
  }
  PetscFunctionReturn(0);
}

PetscErrorCode TNTrainerWholeDestroy(TNTrainer t, TNModel *whole, TNOptimizerRecord *rec)
{
  PetscFunctionBegin;
  if (t->grid.depth_size == 1) PetscFunctionReturn(0);
  PetscCall(TNModelDestroy(whole));
  for (int k = 0; k < TN_OPTIMIZER_MOMENTS; k++) PetscCall(PetscFree(rec->moment[k]));
  PetscFunctionReturn(0);
}

PetscErrorCode TNTrainerWholeBest(TNTrainer t, PetscScalar **best)
{
  PetscFunctionBegin;
  *best = NULL;
  if (!t->best || !t->watch.best_epoch) PetscFunctionReturn(0);
  if (t->grid.depth_size == 1) {
    *best = t->best;
    PetscFunctionReturn(0);
  }
  if (t->grid.data_rank) PetscFunctionReturn(0);
  if (!t->grid.rank) PetscCall(PetscMalloc1(TNParamCount(&t->cfg), best));
  PetscCall(TNModelGather(t->model, t->best, *best));
  PetscFunctionReturn(0);
}

PetscErrorCode TNTrainerWholeBestDestroy(TNTrainer t, PetscScalar **best)
{
  PetscFunctionBegin;
  if (*best != t->best) PetscCall(PetscFree(*best));
  *best = NULL;
  PetscFunctionReturn(0);
}

PetscErrorCode TNTrainerCheckpointWrite(TNTrainer t, const TNResume *st)
{
  PetscReal t0 = MPI_Wtime(), hyper[TN_OPTIMIZER_HYPER];
  PetscScalar *best;
  TNModel whole;
  TNOptimizerRecord rec;
  TNTable history;
  TNAttribute state[ST_COUNT];

  PetscFunctionBegin;
  PetscCall(PetscLogEventBegin(TN_EVENT_IO, 0, 0, 0, 0));
  PetscCall(TNTrainerWholeModel(t, &whole, &rec, hyper));
  TNHistoryTable(&t->history, &history);
  StateAttributes(t, st, state);
  PetscCall(DataIdentity(t, state));
  PetscCall(TNTrainerWholeBest(t, &best));
  /* the first rank holds the whole network and writes */
  PetscCall(TNCheckpointWrite(t->comm, t->checkpoint, whole, &rec, &history, ST_COUNT, state, best));
  PetscCall(TNTrainerWholeBestDestroy(t, &best));
  PetscCall(TNTrainerWholeDestroy(t, &whole, &rec));
  PetscCall(PetscLogEventEnd(TN_EVENT_IO, 0, 0, 0, 0));
  t->phase[PH_IO] += MPI_Wtime() - t0;
  if (!t->grid.rank) {
    struct stat sb;
    double mb = stat(t->checkpoint, &sb) ? 0 : sb.st_size / 1048576.0;
    PetscCall(PetscPrintf(
        PETSC_COMM_SELF, "checkpoint epoch %" PetscInt_FMT " batch %" PetscInt_FMT " written to %s (%.2f MB, %.3f s)\n",
        st->epoch, st->batch, t->checkpoint, mb, MPI_Wtime() - t0));
  }
  PetscFunctionReturn(0);
}

typedef struct {
  const char *option;
  int differs;
} OptionCheck;

/* A restart takes the model, the optimiser state, the history and the seed from the checkpoint;
   options given on the command line must agree with them (-lr and -epochs may change). */
PetscErrorCode TNTrainerRestartLoad(TNTrainer t)
{
  const TNModelConfig want = t->cfg;
  TNModelConfig *c;
  TNOptimizerRecord mine;
  TNOptimizerRecord rec;
  PetscReal hyper[TN_OPTIMIZER_HYPER], t0, *columns[TN_HISTORY_COLUMNS];
  TNTable table;
  TNAttribute state[ST_COUNT];
  TNModel whole;
  PetscScalar *best;
  PetscBool set, lr_set;
  PetscInt jlo = 0, jhi;

  PetscFunctionBegin;
  t0 = MPI_Wtime();
  TNOptimizerRecordInit(&rec, hyper);
  TNHistoryTableEmpty(&table, columns);
  StateAttributes(t, NULL, state);
  PetscCall(TNCheckpointRead(t->comm, t->restart, &whole, &rec, &table, TN_HISTORY_REQUIRED, ST_COUNT, state, &best));
  StateControls(t, state);
  t0 = MPI_Wtime() - t0;
  t->phase[PH_IO] += t0;
  t->resume =
      (TNResume){(PetscInt)state[ST_EPOCH].value, (PetscInt)state[ST_BATCH].value, (PetscInt)state[ST_SEED].value,
                 state[ST_LOSS_SUM].value,        state[ST_CORRECT].value,         state[ST_WALL_TIME].value};
  PetscCheck(table.nrows == t->resume.epoch, t->comm, TN_ERR_USER,
             "%s: /history has %" PetscInt_FMT " epochs but /state says %" PetscInt_FMT, t->restart, table.nrows,
             t->resume.epoch);
  PetscCall(TNHistoryAppendTable(&t->history, &table));
  PetscCall(TNTableFree(&table));
  c = &whole->cfg;
  PetscCall(TNOptimizerGetRecord(t->opt, &mine));
  {
    const OptionCheck checks[] = {
        {"-width", want.n != c->n},
        {"-layers", want.L != c->L},
        {"-theta", want.theta != c->theta},
        {"-T", want.T != c->T},
        {"-act", want.act != c->act},
        {"-opening_act", want.opening_act != c->opening_act},
        {"-antisymmetric", want.antisymmetric != c->antisymmetric},
        {"-gamma", want.gamma != c->gamma},
        {"-optimizer", mine.type != rec.type},
        {"-seed", t->seed != t->resume.seed},
    };
    for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++) {
      PetscCall(PetscOptionsHasName(NULL, NULL, checks[i].option, &set));
      PetscCheck(!set || !checks[i].differs, t->comm, TN_ERR_USER,
                 "%s differs from the checkpoint %s being restarted (leave it out)", checks[i].option, t->restart);
    }
  }
  t->seed = t->resume.seed;
  PetscCheck(c->d == t->cfg.d, t->comm, TN_ERR_USER,
             "%s: input dimension %" PetscInt_FMT " but the checkpoint %s takes %" PetscInt_FMT, t->train_path,
             t->cfg.d, t->restart, c->d);
  PetscCheck(c->task == t->cfg.task, t->comm, TN_ERR_USER, "%s: a %s data set but the checkpoint %s does %s",
             t->train_path, TNTasks[t->cfg.task], t->restart, TNTasks[c->task]);
  PetscCheck(t->cfg.task == TN_TASK_CLASSIFICATION ? t->cfg.m <= c->m : t->cfg.m == c->m, t->comm, TN_ERR_USER,
             "%s: %" PetscInt_FMT " outputs needed but the checkpoint %s has %" PetscInt_FMT, t->train_path, t->cfg.m,
             t->restart, c->m);
  PetscCheck(t->epochs > t->resume.epoch, t->comm, TN_ERR_USER,
             "-epochs %" PetscInt_FMT ": the checkpoint %s has done %" PetscInt_FMT
             " epochs already (-epochs is the total: give more)",
             t->epochs, t->restart, t->resume.epoch);
  if (state[ST_TRAIN_CHECKSUM].found && !t->restart_new_data) {
    TNAttribute now[ST_COUNT];
    PetscCall(DataIdentity(t, now));
    PetscCheck(now[ST_TRAIN_ROWS].value == state[ST_TRAIN_ROWS].value &&
                   now[ST_TRAIN_DIM].value == state[ST_TRAIN_DIM].value &&
                   now[ST_TRAIN_CHECKSUM].value == state[ST_TRAIN_CHECKSUM].value,
               t->comm, TN_ERR_USER,
               "%s (%s, %.0f x %.0f) is not the training set the checkpoint %s was trained on (%s, %.0f x %.0f, other "
               "values): give "
               "-restart_new_data to continue on it",
               t->train_path, now[ST_TRAIN_NAME].text, now[ST_TRAIN_ROWS].value, now[ST_TRAIN_DIM].value, t->restart,
               state[ST_TRAIN_NAME].text, state[ST_TRAIN_ROWS].value, state[ST_TRAIN_DIM].value);
  }
  PetscCheck(t->resume.batch <= (t->train_info.N + t->batch - 1) / t->batch, t->comm, TN_ERR_USER,
             "%s: stopped after batch %" PetscInt_FMT " of an epoch, more than -batch %" PetscInt_FMT " gives",
             t->restart, t->resume.batch, t->batch);
  t->cfg = *c;
  /* this rank's share of the model and of the optimiser state */
  jhi = t->cfg.L;
  if (t->grid.depth_size > 1) PetscCall(TNNetworkDepthOwnership(t->grid.depth, t->cfg.L, &jlo, &jhi));
  PetscCall(TNModelCreateLocal(&t->cfg, t->grid.depth_size > 1 ? t->grid.depth : MPI_COMM_NULL, jlo, jhi, &t->model));
  TNModelExtract(t->model, whole->params, t->model->params);
  if (t->keep_best) {
    /* the best model so far: the checkpoint's, or (a checkpoint without one) the next epoch's */
    PetscCall(PetscMalloc1(t->model->nparams, &t->best));
    if (best)
      TNModelExtract(t->model, best, t->best);
    else
      t->watch = (TNWatch){PETSC_MAX_REAL, 0, 0, t->watch.rejections};
  }
  PetscCall(PetscFree(best));
  PetscCall(PetscOptionsHasName(NULL, NULL, "-lr", &lr_set));
  PetscCall(TNOptimizerSetUp(t->opt, t->model->nparams));
  PetscCall(TNOptimizerRestore(t->opt, &rec, lr_set));
  {
    PetscCall(TNOptimizerGetRecord(t->opt, &mine));
    for (int k = 0; k < TN_OPTIMIZER_MOMENTS; k++) {
      PetscCheck(!mine.moment[k] == !rec.moment[k], t->comm, TN_ERR_USER, "%s: /optimizer/%s %s for a %s optimiser",
                 t->restart, k ? "m2" : "m1", rec.moment[k] ? "present" : "missing", TNOptimizerTypes[rec.type]);
      if (mine.moment[k]) TNModelExtract(t->model, rec.moment[k], mine.moment[k]);
      PetscCall(PetscFree(rec.moment[k]));
    }
  }
  PetscCall(TNModelDestroy(&whole));
  PetscCall(PetscPrintf(t->comm,
                        "thetanet train: restarting from %s after epoch %" PetscInt_FMT " batch %" PetscInt_FMT
                        " (step %" PetscInt64_FMT ", read in %.3f s)\n",
                        t->restart, t->resume.epoch, t->resume.batch, rec.step, (double)t0));
  PetscFunctionReturn(0);
}
