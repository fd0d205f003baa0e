/* Checkpoints (DESIGN.md §4): the whole network, gathered by the ranks that hold it, written by
   rank 0 into a temporary file whose /state `complete` attribute is written last, synced and
   renamed over the previous checkpoint, so a crash at any moment leaves a loadable one; a failed
   write reaches every rank as one error. Read back by rank 0, validated, broadcast. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include "h5util.h"

static const char *const MomentNames[TN_OPTIMIZER_MOMENTS] = {"m1", "m2"};

typedef struct {
  TNModel model;
  const TNOptimizerRecord *opt;
  const TNTable *history;
  PetscInt nstate;
  const TNAttribute *state;
  const PetscScalar *best;
} CheckpointWrite;

static PetscErrorCode CheckpointFill(hid_t file, void *ctx)
{
  const CheckpointWrite *w   = (const CheckpointWrite *)ctx;
  const TNOptimizerRecord *o = w->opt;
  PetscScalar *params;
  hid_t g;

  PetscFunctionBegin;
  PetscCall(TNModelGetParameters(w->model, NULL, &params));
  PetscCall(TNH5ModelWrite(file, "model", w->model, params));
  if (w->best) PetscCall(TNH5ModelWrite(file, "model_best", w->model, w->best));
  PetscCall(TNH5GroupCreate(file, "optimizer", &g));
  PetscCall(TNH5AttrWriteString(g, "type", o->types[o->type]));
  PetscCall(TNH5AttrWriteInt(g, "step", o->step));
  for (PetscInt k = 0; k < o->nhyper; k++) PetscCall(TNH5AttrWriteReal(g, o->hyper_names[k], o->hyper[k]));
  for (int k = 0; k < TN_OPTIMIZER_MOMENTS; k++)
    if (o->moment[k]) PetscCall(TNH5ModelWrite(g, MomentNames[k], w->model, o->moment[k]));
  H5Gclose(g);
  PetscCall(TNH5TableWrite(file, "history", w->history));
  PetscCall(TNH5GroupCreate(file, "state", &g));
  for (PetscInt k = 0; k < w->nstate; k++) {
    const TNAttribute *a = &w->state[k];
    if (a->type == TN_ATTR_INT)
      PetscCall(TNH5AttrWriteInt(g, a->name, (PetscInt64)a->value));
    else if (a->type == TN_ATTR_REAL)
      PetscCall(TNH5AttrWriteReal(g, a->name, a->value));
    else
      PetscCall(TNH5AttrWriteString(g, a->name, a->text));
  }
  PetscCall(TNH5AttrWriteString(g, "version", THETANET_VERSION));
  PetscCall(TNH5AttrWriteInt(g, "complete", 1));
  H5Gclose(g);
  PetscFunctionReturn(0);
}

PetscErrorCode TNCheckpointWrite(MPI_Comm comm, const char *path, TNModel model, const TNOptimizerRecord *opt,
                                 const TNTable *history, PetscInt nstate, const TNAttribute state[],
                                 const PetscScalar *best)
{
  CheckpointWrite w = {model, opt, history, nstate, state, best};

  PetscFunctionBegin;
  PetscCall(TNH5RootWrite(comm, path, CheckpointFill, &w));
  PetscFunctionReturn(0);
}

/* What rank 0 reads besides /model and the moments, broadcast afterwards. */
typedef struct {
  TNOptimizerRecord *opt;
  TNTable *history;
  PetscInt required, nstate;
  TNAttribute *state;
  PetscBool has[TN_OPTIMIZER_MOMENTS], has_best;
} StateRead;

static PetscErrorCode CheckpointStateRead(hid_t file, void *ctx)
{
  StateRead *r = (StateRead *)ctx;
  char path[PETSC_MAX_PATH_LEN], group[64];
  PetscInt64 complete = 0;
  PetscBool found;
  hid_t g;

  PetscFunctionBegin;
  H5Fget_name(file, path, sizeof path);
  PetscCheck(H5Lexists(file, "state", H5P_DEFAULT) > 0, PETSC_COMM_SELF, TN_ERR_USER,
             "%s: not a checkpoint (no /state group)", path);
  g = H5Gopen2(file, "state", H5P_DEFAULT);
  PetscCheck(g >= 0, PETSC_COMM_SELF, TN_ERR_USER, "%s: cannot open /state", path);
  PetscCall(TNH5AttrReadInt(g, path, "/state", "complete", &complete, &found));
  PetscCheck(found && complete == 1, PETSC_COMM_SELF, TN_ERR_USER,
             "%s: incomplete checkpoint (/state complete is not 1)", path);
  for (PetscInt k = 0; k < r->nstate; k++) {
    TNAttribute *a     = &r->state[k];
    PetscBool *present = a->optional ? &a->found : NULL;
    a->found           = PETSC_TRUE;
    if (a->type == TN_ATTR_INT) {
      PetscInt64 v = 0;
      PetscCall(TNH5AttrReadInt(g, path, "/state", a->name, &v, present));
      PetscCheck(v >= 0 && v < ((PetscInt64)1 << 53), PETSC_COMM_SELF, TN_ERR_USER,
                 "%s: /state %s %" PetscInt64_FMT " out of range", path, a->name, v);
      a->value = (PetscReal)v;
    } else if (a->type == TN_ATTR_REAL)
      PetscCall(TNH5AttrReadReal(g, path, "/state", a->name, &a->value, present));
    else
      PetscCall(TNH5AttrReadString(g, path, "/state", a->name, a->text, sizeof a->text, present));
  }
  H5Gclose(g);

  PetscCheck(H5Lexists(file, "optimizer", H5P_DEFAULT) > 0, PETSC_COMM_SELF, TN_ERR_USER, "%s: no /optimizer group",
             path);
  g = H5Gopen2(file, "optimizer", H5P_DEFAULT);
  PetscCheck(g >= 0, PETSC_COMM_SELF, TN_ERR_USER, "%s: cannot open /optimizer", path);
  PetscCall(TNH5AttrReadChoice(g, path, "/optimizer", "type", r->opt->types, &r->opt->type, NULL));
  PetscCall(TNH5AttrReadInt(g, path, "/optimizer", "step", &r->opt->step, NULL));
  for (PetscInt k = 0; k < r->opt->nhyper; k++)
    PetscCall(TNH5AttrReadReal(g, path, "/optimizer", r->opt->hyper_names[k], &r->opt->hyper[k], NULL));
  H5Gclose(g);
  for (int k = 0; k < TN_OPTIMIZER_MOMENTS; k++) {
    snprintf(group, sizeof group, "/optimizer/%s", MomentNames[k]);
    r->has[k] = TNH5LinkExists(file, group);
  }
  r->has_best = TNH5LinkExists(file, "/model_best");
  PetscCall(TNH5TableRead(file, path, "history", r->required, r->history));
  PetscFunctionReturn(0);
}

typedef struct {
  const TNModelConfig *cfg;
  PetscScalar *moment[TN_OPTIMIZER_MOMENTS], *best;
} MomentRead;

static PetscErrorCode CheckpointMomentsRead(hid_t file, void *ctx)
{
  MomentRead *r = (MomentRead *)ctx;
  char path[PETSC_MAX_PATH_LEN], group[64];

  PetscFunctionBegin;
  H5Fget_name(file, path, sizeof path);
  for (int k = 0; k < TN_OPTIMIZER_MOMENTS; k++) {
    snprintf(group, sizeof group, "/optimizer/%s", MomentNames[k]);
    if (r->moment[k]) PetscCall(TNH5ModelArraysRead(file, path, group, r->cfg, r->moment[k]));
  }
  if (r->best) PetscCall(TNH5ModelArraysRead(file, path, "/model_best", r->cfg, r->best));
  PetscFunctionReturn(0);
}

PetscErrorCode TNCheckpointRead(MPI_Comm comm, const char *path, TNModel *model, TNOptimizerRecord *opt,
                                TNTable *history, PetscInt required, PetscInt nstate, TNAttribute state[],
                                PetscScalar **best)
{
  StateRead r = {opt, history, required, nstate, state, {PETSC_FALSE, PETSC_FALSE}, PETSC_FALSE};
  MomentRead mr;
  PetscMPIInt rank;
  PetscInt n, nrows;
  const TNModelConfig *cfg;

  PetscFunctionBegin;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCall(TNH5RootRead(comm, path, CheckpointStateRead, &r));
  /* the history, the state and the optimiser's scalars, from rank 0 to all */
  nrows = history->nrows;
  PetscCallMPI(MPI_Bcast(&nrows, 1, MPIU_INT, 0, comm));
  if (rank)
    for (PetscInt k = 0; k < history->ncols; k++) PetscCall(PetscMalloc1(nrows + 1, &history->columns[k]));
  history->nrows = nrows;
  for (PetscInt k = 0; k < history->ncols; k++)
    PetscCallMPI(MPI_Bcast(history->columns[k], (PetscMPIInt)nrows, MPIU_REAL, 0, comm));
  /* the attributes read are plain data of the same binary on every rank: they travel as bytes,
     all but their names (pointers, the same already) */
  for (PetscInt k = 0; k < nstate; k++)
    PetscCallMPI(MPI_Bcast(&state[k].value, (PetscMPIInt)(sizeof(TNAttribute) - offsetof(TNAttribute, value)), MPI_BYTE,
                           0, comm));
  PetscCallMPI(MPI_Bcast(&opt->type, 1, MPIU_INT, 0, comm));
  PetscCallMPI(MPI_Bcast(&opt->step, 1, MPIU_INT64, 0, comm));
  PetscCallMPI(MPI_Bcast(opt->hyper, (PetscMPIInt)opt->nhyper, MPIU_REAL, 0, comm));
  PetscCallMPI(MPI_Bcast(r.has, TN_OPTIMIZER_MOMENTS, MPIU_BOOL, 0, comm));
  PetscCallMPI(MPI_Bcast(&r.has_best, 1, MPIU_BOOL, 0, comm));

  PetscCall(TNModelLoad(comm, path, model));
  PetscCall(TNModelGetConfig(*model, &cfg));
  PetscCall(TNModelGetParameters(*model, &n, NULL));
  mr.cfg = cfg;
  for (int k = 0; k < TN_OPTIMIZER_MOMENTS; k++) {
    opt->moment[k] = NULL;
    if (r.has[k]) PetscCall(PetscMalloc1(n, &opt->moment[k]));
    mr.moment[k] = opt->moment[k];
  }
  *best = mr.best = NULL;
  if (r.has_best) PetscCall(PetscMalloc1(n, &mr.best));
  PetscCall(TNH5RootRead(comm, path, CheckpointMomentsRead, &mr));
  for (int k = 0; k < TN_OPTIMIZER_MOMENTS; k++)
    if (opt->moment[k]) PetscCallMPI(MPI_Bcast(opt->moment[k], (PetscMPIInt)n, MPIU_SCALAR, 0, comm));
  if (mr.best) PetscCallMPI(MPI_Bcast(mr.best, (PetscMPIInt)n, MPIU_SCALAR, 0, comm));
  *best = mr.best;
  PetscFunctionReturn(0);
}
