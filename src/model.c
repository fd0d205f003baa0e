/* The model object: the network's shape (options and checks), the contiguous parameter layout of
   DESIGN.md §4, a depth rank's share of it, Glorot initialisation and the block operator A_j. */
#include "modelimpl.h"
#include "rng.h"

const char *const TNActivations[] = {"none", "tanh", "relu", "softplus", "sigmoid", "TNActivation", "TN_ACT_", NULL};
const char *const TNTasks[]       = {"classification", "regression", "TNTask", "TN_TASK_", NULL};

/* The options' part of a configuration: everything but the data's shape (d, m). prefix starts
   each message ("" for options, "FILE: " for a file). */
static PetscErrorCode HyperCheck(MPI_Comm comm, const TNModelConfig *c, const char *prefix)
{
  PetscFunctionBegin;
  PetscCheck(c->n > 0, comm, TN_ERR_USER, "%s-width must be positive, got %" PetscInt_FMT, prefix, c->n);
  PetscCheck(c->L > 0, comm, TN_ERR_USER, "%s-layers must be positive, got %" PetscInt_FMT, prefix, c->L);
  PetscCheck(c->theta >= 0 && c->theta <= 1, comm, TN_ERR_USER, "%s-theta must lie in [0, 1], got %g", prefix,
             (double)c->theta);
  PetscCheck(c->T > 0 && PetscIsNormalReal(c->T), comm, TN_ERR_USER, "%s-T must be positive and finite, got %g", prefix,
             (double)c->T);
  PetscCheck(c->gamma >= 0 && PetscIsNormalReal(c->gamma + 1), comm, TN_ERR_USER,
             "%s-gamma must be non-negative and finite, got %g", prefix, (double)c->gamma);
  PetscCheck(c->act != TN_ACT_NONE, comm, TN_ERR_USER, "%s-act none is not allowed: the blocks need a nonlinearity",
             prefix);
  PetscCheck(c->act > TN_ACT_NONE && c->act <= TN_ACT_SIGMOID, comm, TN_ERR_USER,
             "%s-act must be tanh, relu, softplus or sigmoid", prefix);
  PetscFunctionReturn(0);
}

PetscErrorCode TNModelConfigCheck(const TNModelConfig *c, const char *what)
{
  char prefix[PETSC_MAX_PATH_LEN + 2];

  PetscFunctionBegin;
  PetscCall(PetscSNPrintf(prefix, sizeof prefix, "%s: ", what));
  PetscCheck(c->d > 0, PETSC_COMM_SELF, TN_ERR_USER, "%sinput dimension must be positive, got %" PetscInt_FMT, prefix,
             c->d);
  PetscCheck(c->m > 0, PETSC_COMM_SELF, TN_ERR_USER, "%snumber of outputs must be positive, got %" PetscInt_FMT, prefix,
             c->m);
  PetscCall(HyperCheck(PETSC_COMM_SELF, c, prefix));
  PetscFunctionReturn(0);
}

PetscErrorCode TNModelConfigSetFromOptions(MPI_Comm comm, TNModelConfig *c)
{
  PetscFunctionBegin;
  PetscOptionsBegin(comm, NULL, "thetanet train: model", "thetanet");
  PetscCall(TNOptionsInt("-width", "Width n of the blocks", "", c->n, &c->n, NULL));
  PetscCall(TNOptionsInt("-layers", "Number L of theta-blocks", "", c->L, &c->L, NULL));
  PetscCall(TNOptionsReal("-theta", "Theta of the blocks: 0 ResNet, 0.5 trapezoidal, 1 backward Euler", "", c->theta,
                          &c->theta, NULL));
  PetscCall(TNOptionsReal("-T", "Final time; the step is h = T/L", "", c->T, &c->T, NULL));
  PetscCall(TNOptionsEnum("-act", "Activation of the blocks", "", TNActivations, (PetscEnum)c->act,
                          (PetscEnum *)&c->act, NULL));
  PetscCall(TNOptionsEnum("-opening_act", "Activation of the opening layer", "", TNActivations,
                          (PetscEnum)c->opening_act, (PetscEnum *)&c->opening_act, NULL));
  PetscCall(PetscOptionsBool("-antisymmetric", "Blocks use A = W - W^T - gamma I", "", c->antisymmetric,
                             &c->antisymmetric, NULL));
  PetscCall(TNOptionsReal("-gamma", "Diagonal shift gamma of the antisymmetric form", "", c->gamma, &c->gamma, NULL));
  PetscOptionsEnd();
  PetscCall(HyperCheck(comm, c, ""));
  PetscFunctionReturn(0);
}

PetscInt TNParamCountBlocks(const TNModelConfig *c, PetscInt nb)
{
  return c->n * c->d + c->n + nb * c->n * c->n + nb * c->n + c->m * c->n + c->m;
}

void TNParamsSetBlocks(const TNModelConfig *c, PetscInt nb, PetscScalar *buf, TNParams *p)
{
  p->K  = buf;
  p->kb = p->K + c->n * c->d;
  p->W  = p->kb + c->n;
  p->b  = p->W + nb * c->n * c->n;
  p->C  = p->b + nb * c->n;
  p->c  = p->C + c->m * c->n;
}

PetscInt TNParamCount(const TNModelConfig *c)
{
  return TNParamCountBlocks(c, c->L);
}

void TNParamsSet(const TNModelConfig *c, PetscScalar *buf, TNParams *p)
{
  TNParamsSetBlocks(c, c->L, buf, p);
}

void TNModelParams(TNModel M, PetscScalar *buf, TNParams *p)
{
  TNParamsSetBlocks(&M->cfg, M->jhi - M->jlo, buf, p);
}

PetscErrorCode TNModelCreateLocal(const TNModelConfig *cfg, MPI_Comm depth, PetscInt jlo, PetscInt jhi, TNModel *model)
{
  TNModel M;

  PetscFunctionBegin;
  PetscCall(TNModelConfigCheck(cfg, "model"));
  PetscCheck(0 <= jlo && jlo <= jhi && jhi <= cfg->L, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
             "blocks [%" PetscInt_FMT ", %" PetscInt_FMT ") of %" PetscInt_FMT, jlo, jhi, cfg->L);
  PetscCall(PetscNew(&M));
  M->cfg     = *cfg;
  M->jlo     = jlo;
  M->jhi     = jhi;
  M->depth   = depth;
  M->nparams = TNParamCountBlocks(cfg, jhi - jlo);
  PetscCall(PetscCalloc1(M->nparams, &M->params));
  TNModelParams(M, M->params, &M->p);
  *model = M;
  PetscFunctionReturn(0);
}

PetscErrorCode TNModelGetConfig(TNModel M, const TNModelConfig **cfg)
{
  PetscFunctionBegin;
  *cfg = &M->cfg;
  PetscFunctionReturn(0);
}

PetscErrorCode TNModelGetParameters(TNModel M, PetscInt *n, PetscScalar **params)
{
  PetscFunctionBegin;
  if (n) *n = M->nparams;
  if (params) *params = M->params;
  PetscFunctionReturn(0);
}

PetscErrorCode TNModelView(TNModel M, PetscViewer viewer)
{
  const TNModelConfig *c = &M->cfg;

  PetscFunctionBegin;
  PetscCall(PetscViewerASCIIPrintf(viewer,
                                   "TNModel: %s, input_dim %" PetscInt_FMT ", width %" PetscInt_FMT
                                   ", layers %" PetscInt_FMT ", outputs %" PetscInt_FMT "\n",
                                   TNTasks[c->task], c->d, c->n, c->L, c->m));
  PetscCall(PetscViewerASCIIPushTab(viewer));
  PetscCall(PetscViewerASCIIPrintf(
      viewer, "theta %g, T %g, h %g, activation %s, opening activation %s, %s blocks (gamma %g)\n", (double)c->theta,
      (double)c->T, (double)(c->T / c->L), TNActivations[c->act], TNActivations[c->opening_act],
      c->antisymmetric ? "antisymmetric" : "dense", (double)c->gamma));
  PetscCall(PetscViewerASCIIPrintf(viewer,
                                   "%" PetscInt_FMT " parameters in all; blocks [%" PetscInt_FMT ", %" PetscInt_FMT
                                   ") held here (%" PetscInt_FMT " parameters)\n",
                                   TNParamCount(c), M->jlo, M->jhi, M->nparams));
  PetscCall(PetscViewerASCIIPopTab(viewer));
  PetscFunctionReturn(0);
}

PetscErrorCode TNModelCreate(const TNModelConfig *cfg, TNModel *model)
{
  PetscFunctionBegin;
  PetscCall(TNModelCreateLocal(cfg, MPI_COMM_NULL, 0, cfg->L, model));
  PetscFunctionReturn(0);
}

void TNModelExtract(TNModel M, const PetscScalar *full, PetscScalar *local)
{
  const TNModelConfig *c = &M->cfg;
  const PetscInt nn      = c->n * c->n;
  TNParams f, l;

  TNParamsSet(c, (PetscScalar *)full, &f);
  TNModelParams(M, local, &l);
  for (PetscInt i = 0; i < c->n * c->d; i++) l.K[i] = f.K[i];
  for (PetscInt i = 0; i < c->n; i++) l.kb[i] = f.kb[i];
  for (PetscInt i = 0; i < (M->jhi - M->jlo) * nn; i++) l.W[i] = f.W[M->jlo * nn + i];
  for (PetscInt i = 0; i < (M->jhi - M->jlo) * c->n; i++) l.b[i] = f.b[M->jlo * c->n + i];
  for (PetscInt i = 0; i < c->m * c->n; i++) l.C[i] = f.C[i];
  for (PetscInt i = 0; i < c->m; i++) l.c[i] = f.c[i];
}

/* Blocks come from their owners, the opening layer from the first rank, the closing layer from
   the last: a sum over ranks where every entry has exactly one contributor. */
PetscErrorCode TNModelAllgather(TNModel M, const PetscScalar *local, PetscScalar *full)
{
  const TNModelConfig *c = &M->cfg;
  const PetscInt nn      = c->n * c->n;
  const PetscInt N       = TNParamCount(c);
  TNParams f, l;

  PetscFunctionBegin;
  PetscCall(PetscArrayzero(full, N));
  TNParamsSet(c, full, &f);
  TNModelParams(M, (PetscScalar *)local, &l);
  if (M->jlo == 0) {
    PetscCall(PetscArraycpy(f.K, l.K, c->n * c->d));
    PetscCall(PetscArraycpy(f.kb, l.kb, c->n));
  }
  PetscCall(PetscArraycpy(f.W + M->jlo * nn, l.W, (M->jhi - M->jlo) * nn));
  PetscCall(PetscArraycpy(f.b + M->jlo * c->n, l.b, (M->jhi - M->jlo) * c->n));
  if (M->jhi == c->L) {
    PetscCall(PetscArraycpy(f.C, l.C, c->m * c->n));
    PetscCall(PetscArraycpy(f.c, l.c, c->m));
  }
  if (M->depth != MPI_COMM_NULL)
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, full, (PetscMPIInt)N, MPIU_SCALAR, MPI_SUM, M->depth));
  PetscFunctionReturn(0);
}

PetscErrorCode TNModelSwapParameters(TNModel M, PetscScalar **other)
{
  PetscScalar *mine = M->params;

  PetscFunctionBegin;
  M->params = *other;
  *other    = mine;
  TNModelParams(M, M->params, &M->p);
  PetscFunctionReturn(0);
}

PetscErrorCode TNModelNorm(TNModel M, const PetscScalar *v, PetscReal *norm)
{
  const TNModelConfig *c = &M->cfg;
  TNParams l;
  PetscReal sum = 0;

  PetscFunctionBegin;
  TNModelParams(M, (PetscScalar *)v, &l);
  /* every entry counted once: the opening layer on the first rank, the closing on the last */
  if (M->jlo == 0)
    for (PetscInt i = 0; i < c->n * c->d + c->n; i++) sum += PetscRealPart(l.K[i] * l.K[i]);
  for (PetscInt i = 0; i < (M->jhi - M->jlo) * (c->n * c->n + c->n); i++) sum += PetscRealPart(l.W[i] * l.W[i]);
  if (M->jhi == c->L)
    for (PetscInt i = 0; i < c->m * c->n + c->m; i++) sum += PetscRealPart(l.C[i] * l.C[i]);
  if (M->depth != MPI_COMM_NULL) PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &sum, 1, MPIU_REAL, MPI_SUM, M->depth));
  *norm = PetscSqrtReal(sum);
  PetscFunctionReturn(0);
}

/* One piece of the whole buffer from every depth rank to the first: count entries at local from
   this rank, placed offset entries into the piece, which starts at piece on the first rank. */
static PetscErrorCode GatherPiece(MPI_Comm comm, PetscMPIInt rank, PetscMPIInt size, const PetscScalar *local,
                                  PetscInt count, PetscInt offset, PetscScalar *piece)
{
  PetscMPIInt mine[2] = {(PetscMPIInt)count, (PetscMPIInt)offset}, *all = NULL, *counts = NULL, *displs = NULL;

  PetscFunctionBegin;
  if (!rank) PetscCall(PetscMalloc3(2 * size, &all, size, &counts, size, &displs));
  PetscCallMPI(MPI_Gather(mine, 2, MPI_INT, all, 2, MPI_INT, 0, comm));
  for (PetscMPIInt r = 0; !rank && r < size; r++) {
    counts[r] = all[2 * r];
    displs[r] = all[2 * r + 1];
  }
  PetscCallMPI(MPI_Gatherv(local, mine[0], MPIU_SCALAR, piece, counts, displs, MPIU_SCALAR, 0, comm));
  if (!rank) PetscCall(PetscFree3(all, counts, displs));
  PetscFunctionReturn(0);
}

/* Each part of the network comes from its one owner: the opening layer (K kb) from the rank
   holding block 0, the blocks' W and b from theirs, the closing layer (C c) from the last. */
PetscErrorCode TNModelGather(TNModel M, const PetscScalar *local, PetscScalar *full)
{
  const TNModelConfig *c = &M->cfg;
  const PetscInt nn = c->n * c->n, nb = M->jhi - M->jlo;
  PetscMPIInt rank = 0, size = 1;
  TNParams f = {0}, l;

  PetscFunctionBegin;
  if (M->depth != MPI_COMM_NULL) {
    PetscCallMPI(MPI_Comm_rank(M->depth, &rank));
    PetscCallMPI(MPI_Comm_size(M->depth, &size));
  }
  if (size == 1) {
    PetscCall(PetscArraycpy(full, local, TNParamCount(c)));
    PetscFunctionReturn(0);
  }
  TNModelParams(M, (PetscScalar *)local, &l);
  if (!rank) TNParamsSet(c, full, &f);
  PetscCall(GatherPiece(M->depth, rank, size, l.K, M->jlo == 0 ? c->n * c->d + c->n : 0, 0, f.K));
  PetscCall(GatherPiece(M->depth, rank, size, l.W, nb * nn, M->jlo * nn, f.W));
  PetscCall(GatherPiece(M->depth, rank, size, l.b, nb * c->n, M->jlo * c->n, f.b));
  PetscCall(GatherPiece(M->depth, rank, size, l.C, M->jhi == c->L ? c->m * c->n + c->m : 0, 0, f.C));
  PetscFunctionReturn(0);
}

PetscErrorCode TNModelDestroy(TNModel *model)
{
  PetscFunctionBegin;
  if (!*model) PetscFunctionReturn(0);
  PetscCall(PetscFree((*model)->params));
  PetscCall(PetscFree(*model));
  PetscFunctionReturn(0);
}

/* Glorot-uniform U(-a, a), a = sqrt(6/(fan_in+fan_out)); the draw of entry i is a function of
   (seed, i) alone, so every rank layout initialises the same network. */
static void GlorotFill(PetscScalar *w, PetscInt rows, PetscInt cols, PetscInt64 seed, PetscInt offset)
{
  const double a = PetscSqrtReal(6.0 / (double)(rows + cols));
  for (PetscInt i = 0; i < rows * cols; i++)
    w[i] = a * (2.0 * TNUniform((uint64_t)seed, TN_STREAM_INIT, (uint64_t)(offset + i)) - 1.0);
}

PetscErrorCode TNModelInitialize(TNModel M, PetscInt64 seed)
{
  const TNModelConfig *c = &M->cfg;

  PetscFunctionBegin;
  PetscCall(PetscArrayzero(M->params, M->nparams));
  /* offsets in the whole network's layout, whatever share is held here */
  {
    GlorotFill(M->p.K, c->n, c->d, seed, 0);
    for (PetscInt j = M->jlo; j < M->jhi; j++)
      GlorotFill(M->p.W + (j - M->jlo) * c->n * c->n, c->n, c->n, seed,
                 (PetscInt)(c->n * c->d + c->n) + j * c->n * c->n);
    GlorotFill(M->p.C, c->m, c->n, seed, TNParamCount(c) - c->m * c->n - c->m);
  }
  PetscFunctionReturn(0);
}

void TNModelBlockOperator(TNModel M, PetscInt j, PetscScalar *A)
{
  const PetscInt n     = M->cfg.n;
  const PetscScalar *W = M->p.W + (j - M->jlo) * n * n;

  if (!M->cfg.antisymmetric) {
    for (PetscInt i = 0; i < n * n; i++) A[i] = W[i];
    return;
  }
  for (PetscInt i = 0; i < n; i++)
    for (PetscInt k = 0; k < n; k++) A[i * n + k] = W[i * n + k] - W[k * n + i] - (i == k ? M->cfg.gamma : 0.0);
}
