/* Checkpoints (DESIGN.md §4): written collectively with MPI-IO into a temporary file whose
   /state `complete` attribute is written last, synced and renamed over the previous checkpoint,
   so a crash at any moment leaves a loadable one; read back by rank 0, validated, broadcast. */
#include <string.h>
#include "h5util.h"
#include "tnio.h"
#include "optimizer.h"

typedef struct {
  TNModel             model;
  const TNOptimizer  *opt;
  const TNHistory    *history;
  const TNCheckpointState *state;
} CheckpointWrite;

static PetscErrorCode CheckpointFill(hid_t file, const CheckpointWrite *w)
{
  hid_t g;

  PetscFunctionBegin;
  PetscCall(TNH5ModelWrite(file, "model", w->model, w->model->theta_buf));
  PetscCall(TNH5GroupCreate(file, "optimizer", &g));
  PetscCall(TNH5AttrWriteString(g, "type", TNOptimizerTypes[w->opt->type]));
  PetscCall(TNH5AttrWriteInt(g, "step", w->opt->step));
  PetscCall(TNH5AttrWriteReal(g, "lr", w->opt->lr));
  PetscCall(TNH5AttrWriteReal(g, "momentum", w->opt->momentum));
  PetscCall(TNH5AttrWriteReal(g, "beta1", w->opt->beta1));
  PetscCall(TNH5AttrWriteReal(g, "beta2", w->opt->beta2));
  PetscCall(TNH5AttrWriteReal(g, "eps", w->opt->eps));
  if (w->opt->m1) PetscCall(TNH5ModelWrite(g, "m1", w->model, w->opt->m1));
  if (w->opt->m2) PetscCall(TNH5ModelWrite(g, "m2", w->model, w->opt->m2));
  H5Gclose(g);
  PetscCall(TNH5HistoryWrite(file, w->history));
  PetscCall(TNH5GroupCreate(file, "state", &g));
  PetscCall(TNH5AttrWriteInt(g, "epoch", w->state->epoch));
  PetscCall(TNH5AttrWriteInt(g, "batch", w->state->batch));
  PetscCall(TNH5AttrWriteInt(g, "seed", w->state->seed));
  /* the generator is counter-based: the next draw is the permutation of (seed, rng_epoch),
     entered at batch rng_batch */
  PetscCall(TNH5AttrWriteInt(g, "rng_epoch", w->state->epoch + 1));
  PetscCall(TNH5AttrWriteInt(g, "rng_batch", w->state->batch));
  PetscCall(TNH5AttrWriteReal(g, "loss_sum", w->state->loss_sum));
  PetscCall(TNH5AttrWriteReal(g, "correct", w->state->correct));
  PetscCall(TNH5AttrWriteReal(g, "wall_time", w->state->wall_time));
  PetscCall(TNH5AttrWriteString(g, "version", THETANET_VERSION));
  PetscCall(TNH5AttrWriteInt(g, "complete", 1));
  H5Gclose(g);
  PetscFunctionReturn(0);
}

PetscErrorCode TNCheckpointWrite(MPI_Comm comm, const char *path, PetscBool writer, TNModel model, const TNOptimizer *opt,
                                 const TNHistory *history, const TNCheckpointState *state)
{
  CheckpointWrite w = {model, opt, history, state};
  hid_t           fapl, file;
  PetscErrorCode  ierr;

  PetscFunctionBegin;
  fapl = H5Pcreate(H5P_FILE_ACCESS);
  PetscCheck(fapl >= 0 && H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL) >= 0, PETSC_COMM_SELF, PETSC_ERR_LIB, "HDF5 has no MPI-IO driver");
  ierr = TNH5TempCreate(path, fapl, &file);
  H5Pclose(fapl);
  PetscCall(ierr);
  TNH5CollectiveSet(PETSC_TRUE, writer);
  ierr = CheckpointFill(file, &w);
  TNH5CollectiveSet(PETSC_FALSE, PETSC_TRUE);
  PetscCall(TNH5TempClose(comm, path, ierr ? PETSC_FALSE : PETSC_TRUE, &file));
  PetscCall(ierr);
  PetscFunctionReturn(0);
}

/* What rank 0 reads besides /model, broadcast afterwards. */
typedef struct {
  TNCheckpointState state;
  PetscInt          type;
  PetscInt64        step;
  PetscReal         hyper[5]; /* lr, momentum, beta1, beta2, eps */
  TNHistory        *history;
} StateRead;

static PetscErrorCode CheckpointStateRead(hid_t file, void *ctx)
{
  StateRead  *r = (StateRead *)ctx;
  const char *path;
  char        name[PETSC_MAX_PATH_LEN];
  PetscInt64  v, complete = 0;
  PetscBool   found;
  hid_t       g;
  const char *hyper[5] = {"lr", "momentum", "beta1", "beta2", "eps"};

  PetscFunctionBegin;
  H5Fget_name(file, name, sizeof name);
  path = name;
  PetscCheck(H5Lexists(file, "state", H5P_DEFAULT) > 0, PETSC_COMM_SELF, TN_ERR_USER, "%s: not a checkpoint (no /state group)", path);
  g = H5Gopen2(file, "state", H5P_DEFAULT);
  PetscCheck(g >= 0, PETSC_COMM_SELF, TN_ERR_USER, "%s: cannot open /state", path);
  PetscCall(TNH5AttrReadInt(g, path, "/state", "complete", &complete, &found));
  PetscCheck(found && complete == 1, PETSC_COMM_SELF, TN_ERR_USER, "%s: incomplete checkpoint (/state complete is not 1)", path);
  PetscCall(TNH5AttrReadInt(g, path, "/state", "epoch", &v, NULL));
  r->state.epoch = (PetscInt)v;
  PetscCall(TNH5AttrReadInt(g, path, "/state", "batch", &v, NULL));
  r->state.batch = (PetscInt)v;
  PetscCall(TNH5AttrReadInt(g, path, "/state", "seed", &v, NULL));
  r->state.seed = (PetscInt)v;
  PetscCall(TNH5AttrReadReal(g, path, "/state", "loss_sum", &r->state.loss_sum, NULL));
  PetscCall(TNH5AttrReadReal(g, path, "/state", "correct", &r->state.correct, NULL));
  PetscCall(TNH5AttrReadReal(g, path, "/state", "wall_time", &r->state.wall_time, NULL));
  H5Gclose(g);
  PetscCheck(r->state.epoch >= 0 && r->state.batch >= 0, PETSC_COMM_SELF, TN_ERR_USER, "%s: /state epoch %" PetscInt_FMT " batch %" PetscInt_FMT " out of range",
             path, r->state.epoch, r->state.batch);

  PetscCheck(H5Lexists(file, "optimizer", H5P_DEFAULT) > 0, PETSC_COMM_SELF, TN_ERR_USER, "%s: no /optimizer group", path);
  g = H5Gopen2(file, "optimizer", H5P_DEFAULT);
  PetscCheck(g >= 0, PETSC_COMM_SELF, TN_ERR_USER, "%s: cannot open /optimizer", path);
  PetscCall(TNH5AttrReadChoice(g, path, "/optimizer", "type", TNOptimizerTypes, &r->type, NULL));
  PetscCall(TNH5AttrReadInt(g, path, "/optimizer", "step", &r->step, NULL));
  for (int k = 0; k < 5; k++) PetscCall(TNH5AttrReadReal(g, path, "/optimizer", hyper[k], &r->hyper[k], NULL));
  H5Gclose(g);
  PetscCall(TNH5HistoryRead(file, path, r->history));
  PetscCheck(r->history->n == r->state.epoch, PETSC_COMM_SELF, TN_ERR_USER, "%s: /history has %" PetscInt_FMT " epochs but /state says %" PetscInt_FMT,
             path, r->history->n, r->state.epoch);
  PetscFunctionReturn(0);
}

typedef struct {
  const TNModelConfig *cfg;
  PetscScalar         *m1, *m2;
} MomentRead;

static PetscErrorCode CheckpointMomentsRead(hid_t file, void *ctx)
{
  MomentRead *r = (MomentRead *)ctx;
  char        path[PETSC_MAX_PATH_LEN];

  PetscFunctionBegin;
  H5Fget_name(file, path, sizeof path);
  if (r->m1) PetscCall(TNH5ModelArraysRead(file, path, "/optimizer/m1", r->cfg, r->m1));
  if (r->m2) PetscCall(TNH5ModelArraysRead(file, path, "/optimizer/m2", r->cfg, r->m2));
  PetscFunctionReturn(0);
}

static PetscErrorCode HistoryBcast(MPI_Comm comm, TNHistory *h)
{
  PetscInt     n = h->n;
  PetscMPIInt  rank;
  PetscReal   *buf;
  const PetscInt w = 10;

  PetscFunctionBegin;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCallMPI(MPI_Bcast(&n, 1, MPIU_INT, 0, comm));
  PetscCall(PetscMalloc1(w * n + 1, &buf));
  if (!rank)
    for (PetscInt i = 0; i < n; i++) {
      const PetscReal row[10] = {(PetscReal)h->epoch[i], h->train_loss[i], h->val_loss[i], h->val_accuracy[i], h->lr[i],
                                 h->wall_time[i],        h->newton_its[i], h->krylov_its[i], h->mgrit_its[i], h->mgrit_res[i]};
      PetscCall(PetscArraycpy(buf + w * i, row, w));
    }
  PetscCallMPI(MPI_Bcast(buf, (PetscMPIInt)(w * n), MPIU_REAL, 0, comm));
  if (rank)
    for (PetscInt i = 0; i < n; i++) {
      const PetscReal *r = buf + w * i;
      PetscCall(TNHistoryAppend(h, (PetscInt)r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9]));
    }
  PetscCall(PetscFree(buf));
  PetscFunctionReturn(0);
}

PetscErrorCode TNCheckpointRead(MPI_Comm comm, const char *path, TNModel *model, TNOptimizer *opt, TNHistory *history,
                                TNCheckpointState *state)
{
  StateRead  r;
  MomentRead mr;
  PetscMPIInt rank;

  PetscFunctionBegin;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCall(PetscMemzero(&r, sizeof r));
  r.history = history;
  PetscCall(TNH5RootRead(comm, path, CheckpointStateRead, &r));
  PetscCall(HistoryBcast(comm, history));
  PetscCallMPI(MPI_Bcast(&r.state, sizeof r.state, MPI_BYTE, 0, comm));
  PetscCallMPI(MPI_Bcast(&r.type, 1, MPIU_INT, 0, comm));
  PetscCallMPI(MPI_Bcast(&r.step, 1, MPIU_INT64, 0, comm));
  PetscCallMPI(MPI_Bcast(r.hyper, 5, MPIU_REAL, 0, comm));
  PetscCall(TNModelLoad(comm, path, model));
  opt->type     = (TNOptimizerType)r.type;
  opt->lr       = r.hyper[0];
  opt->momentum = r.hyper[1];
  opt->beta1    = r.hyper[2];
  opt->beta2    = r.hyper[3];
  opt->eps      = r.hyper[4];
  PetscCall(TNOptimizerSetUp(opt, (*model)->nparams));
  opt->step = r.step;
  mr.cfg    = &(*model)->cfg;
  mr.m1     = opt->m1;
  mr.m2     = opt->m2;
  PetscCall(TNH5RootRead(comm, path, CheckpointMomentsRead, &mr));
  if (opt->m1) PetscCallMPI(MPI_Bcast(opt->m1, (PetscMPIInt)opt->n, MPIU_SCALAR, 0, comm));
  if (opt->m2) PetscCallMPI(MPI_Bcast(opt->m2, (PetscMPIInt)opt->n, MPIU_SCALAR, 0, comm));
  *state = r.state;
  PetscFunctionReturn(0);
}
