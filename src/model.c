/* The network's parameters: shape checks, the contiguous layout of DESIGN.md §4, Glorot
   initialisation, the block operator A_j and the regulariser R. */
#include "thetanet.h"
#include "rng.h"

const char *const TNActivations[] = {"none", "tanh", "relu", "softplus", "sigmoid", "TNActivation", "TN_ACT_", NULL};
const char *const TNTasks[]       = {"classification", "regression", "TNTask", "TN_TASK_", NULL};

PetscErrorCode TNModelConfigCheck(const TNModelConfig *c, const char *what)
{
  PetscFunctionBegin;
  PetscCheck(c->d > 0, PETSC_COMM_SELF, TN_ERR_USER, "%s: input dimension must be positive, got %" PetscInt_FMT, what, c->d);
  PetscCheck(c->n > 0, PETSC_COMM_SELF, TN_ERR_USER, "%s: -width must be positive, got %" PetscInt_FMT, what, c->n);
  PetscCheck(c->L > 0, PETSC_COMM_SELF, TN_ERR_USER, "%s: -layers must be positive, got %" PetscInt_FMT, what, c->L);
  PetscCheck(c->m > 0, PETSC_COMM_SELF, TN_ERR_USER, "%s: number of outputs must be positive, got %" PetscInt_FMT, what, c->m);
  PetscCheck(c->theta >= 0 && c->theta <= 1, PETSC_COMM_SELF, TN_ERR_USER, "%s: -theta must lie in [0, 1], got %g", what,
             (double)c->theta);
  PetscCheck(c->T > 0 && PetscIsNormalReal(c->T), PETSC_COMM_SELF, TN_ERR_USER, "%s: -T must be positive and finite, got %g",
             what, (double)c->T);
  PetscCheck(c->gamma >= 0 && PetscIsNormalReal(c->gamma + 1), PETSC_COMM_SELF, TN_ERR_USER,
             "%s: -gamma must be non-negative and finite, got %g", what, (double)c->gamma);
  PetscCheck(c->act > TN_ACT_NONE && c->act <= TN_ACT_SIGMOID, PETSC_COMM_SELF, TN_ERR_USER,
             "%s: -act must be tanh, relu, softplus or sigmoid", what);
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
  PetscCheck(0 <= jlo && jlo <= jhi && jhi <= cfg->L, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE, "blocks [%" PetscInt_FMT ", %" PetscInt_FMT ") of %" PetscInt_FMT,
             jlo, jhi, cfg->L);
  PetscCall(PetscNew(&M));
  M->cfg     = *cfg;
  M->jlo     = jlo;
  M->jhi     = jhi;
  M->depth   = depth;
  M->nparams = TNParamCountBlocks(cfg, jhi - jlo);
  PetscCall(PetscCalloc1(M->nparams, &M->theta_buf));
  TNModelParams(M, M->theta_buf, &M->p);
  *model = M;
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
  const TNModelConfig *c  = &M->cfg;
  const PetscInt       nn = c->n * c->n;
  TNParams             f, l;

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
  const TNModelConfig *c  = &M->cfg;
  const PetscInt       nn = c->n * c->n;
  const PetscInt       N  = TNParamCount(c);
  TNParams             f, l;

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
  if (M->depth != MPI_COMM_NULL) PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, full, (PetscMPIInt)N, MPIU_SCALAR, MPI_SUM, M->depth));
  PetscFunctionReturn(0);
}

PetscErrorCode TNModelDestroy(TNModel *model)
{
  PetscFunctionBegin;
  if (!*model) PetscFunctionReturn(0);
  PetscCall(PetscFree((*model)->theta_buf));
  PetscCall(PetscFree(*model));
  PetscFunctionReturn(0);
}

/* Glorot-uniform U(-a, a), a = sqrt(6/(fan_in+fan_out)); the draw of entry i is a function of
   (seed, i) alone, so every rank layout initialises the same network. */
static void GlorotFill(PetscScalar *w, PetscInt rows, PetscInt cols, PetscInt64 seed, PetscInt offset)
{
  const double a = PetscSqrtReal(6.0 / (double)(rows + cols));
  for (PetscInt i = 0; i < rows * cols; i++) w[i] = a * (2.0 * TNUniform((uint64_t)seed, TN_STREAM_INIT, (uint64_t)(offset + i)) - 1.0);
}

PetscErrorCode TNModelInitialize(TNModel M, PetscInt64 seed)
{
  const TNModelConfig *c = &M->cfg;

  PetscFunctionBegin;
  PetscCall(PetscArrayzero(M->theta_buf, M->nparams));
  /* offsets in the whole network's layout, whatever share is held here */
  {
    GlorotFill(M->p.K, c->n, c->d, seed, 0);
    for (PetscInt j = M->jlo; j < M->jhi; j++)
      GlorotFill(M->p.W + (j - M->jlo) * c->n * c->n, c->n, c->n, seed, (PetscInt)(c->n * c->d + c->n) + j * c->n * c->n);
    GlorotFill(M->p.C, c->m, c->n, seed, TNParamCount(c) - c->m * c->n - c->m);
  }
  PetscFunctionReturn(0);
}

void TNModelBlockOperator(TNModel M, PetscInt j, PetscScalar *A)
{
  const PetscInt     n = M->cfg.n;
  const PetscScalar *W = M->p.W + (j - M->jlo) * n * n;

  if (!M->cfg.antisymmetric) {
    for (PetscInt i = 0; i < n * n; i++) A[i] = W[i];
    return;
  }
  for (PetscInt i = 0; i < n; i++)
    for (PetscInt k = 0; k < n; k++) A[i * n + k] = W[i * n + k] - W[k * n + i] - (i == k ? M->cfg.gamma : 0.0);
}

/* The neighbours' boundary blocks: W, b of block jlo-1 from the previous depth rank and of
   block jhi from the next (left unset where there is none). */
static PetscErrorCode NeighbourBlocks(TNModel M, PetscScalar *prev, PetscScalar *next)
{
  const PetscInt    n = M->cfg.n, w = n * n + n, nloc = M->jhi - M->jlo;
  PetscMPIInt       rank, size;
  PetscScalar      *first, *last;
  MPI_Request       req[4];
  PetscInt          k = 0;

  PetscFunctionBegin;
  if (M->depth == MPI_COMM_NULL) PetscFunctionReturn(0);
  PetscCallMPI(MPI_Comm_rank(M->depth, &rank));
  PetscCallMPI(MPI_Comm_size(M->depth, &size));
  PetscCall(PetscMalloc2(w, &first, w, &last));
  PetscCall(PetscArraycpy(first, M->p.W, n * n));
  PetscCall(PetscArraycpy(first + n * n, M->p.b, n));
  PetscCall(PetscArraycpy(last, M->p.W + (nloc - 1) * n * n, n * n));
  PetscCall(PetscArraycpy(last + n * n, M->p.b + (nloc - 1) * n, n));
  if (rank > 0) {
    PetscCallMPI(MPI_Irecv(prev, (PetscMPIInt)w, MPIU_SCALAR, rank - 1, 11, M->depth, &req[k++]));
    PetscCallMPI(MPI_Isend(first, (PetscMPIInt)w, MPIU_SCALAR, rank - 1, 12, M->depth, &req[k++]));
  }
  if (rank < size - 1) {
    PetscCallMPI(MPI_Irecv(next, (PetscMPIInt)w, MPIU_SCALAR, rank + 1, 12, M->depth, &req[k++]));
    PetscCallMPI(MPI_Isend(last, (PetscMPIInt)w, MPIU_SCALAR, rank + 1, 11, M->depth, &req[k++]));
  }
  PetscCallMPI(MPI_Waitall((PetscMPIInt)k, req, MPI_STATUSES_IGNORE));
  PetscCall(PetscFree2(first, last));
  PetscFunctionReturn(0);
}

static PetscReal SumSquares(const PetscScalar *x, PetscInt len)
{
  PetscReal s = 0;
  for (PetscInt i = 0; i < len; i++) s += x[i] * x[i];
  return s;
}

/* One smoothness term 1/(2h) beta |x1 - x0|^2 over len entries; gradients into g0, g1 where given. */
static PetscReal SmoothTerm(PetscReal s, PetscInt len, const PetscScalar *x0, const PetscScalar *x1, PetscScalar *g0, PetscScalar *g1, PetscBool count)
{
  PetscReal r = 0;
  for (PetscInt i = 0; i < len; i++) {
    const PetscScalar dx = x1[i] - x0[i];
    r += 0.5 * s * dx * dx;
    if (g1) g1[i] += s * dx;
    if (g0) g0[i] -= s * dx;
  }
  return count ? r : 0;
}

/* R = alpha/2 (|K|^2 + sum_j |W_j|^2 + |C|^2) + beta/(2h) sum_{j<L-1} (|W_{j+1}-W_j|^2 + |b_{j+1}-b_j|^2).
   A depth rank counts the opening layer if it holds block 0, the closing layer if it holds block
   L-1, and the smoothness pairs (j, j+1) with j+1 held here; the pair across its lower boundary
   and the one across its upper boundary both add to its gradient. */
PetscErrorCode TNModelRegularizer(TNModel M, PetscReal alpha, PetscReal beta, PetscReal *R, PetscScalar *grad)
{
  const TNModelConfig *c = &M->cfg;
  const PetscInt       n = c->n, nn = n * n, nloc = M->jhi - M->jlo;
  const PetscBool      first = M->jlo == 0 ? PETSC_TRUE : PETSC_FALSE, last = M->jhi == c->L ? PETSC_TRUE : PETSC_FALSE;
  const PetscReal      h = c->T / c->L;
  TNParams             g = {NULL, NULL, NULL, NULL, NULL, NULL};
  PetscReal            r = 0;

  PetscFunctionBegin;
  if (grad) TNModelParams(M, grad, &g);
  if (alpha != 0) {
    r += 0.5 * alpha * SumSquares(M->p.W, nloc * nn);
    if (first) r += 0.5 * alpha * SumSquares(M->p.K, n * c->d);
    if (last) r += 0.5 * alpha * SumSquares(M->p.C, c->m * n);
    if (grad) {
      for (PetscInt i = 0; i < nloc * nn; i++) g.W[i] += alpha * M->p.W[i];
      if (first)
        for (PetscInt i = 0; i < n * c->d; i++) g.K[i] += alpha * M->p.K[i];
      if (last)
        for (PetscInt i = 0; i < c->m * n; i++) g.C[i] += alpha * M->p.C[i];
    }
  }
  if (beta != 0) {
    const PetscReal s = beta / h;
    PetscScalar    *prev, *next;
    PetscCall(PetscMalloc2(nn + n, &prev, nn + n, &next));
    PetscCall(NeighbourBlocks(M, prev, next));
    for (PetscInt j = M->jlo - 1; j + 1 < M->jhi; j++) {
      const PetscInt     k  = j - M->jlo; /* local index of block j, -1 for the neighbour's */
      const PetscScalar *W0 = k >= 0 ? M->p.W + k * nn : prev, *b0 = k >= 0 ? M->p.b + k * n : prev + nn;
      if (j < 0) continue;
      r += SmoothTerm(s, nn, W0, M->p.W + (k + 1) * nn, grad && k >= 0 ? g.W + k * nn : NULL, grad ? g.W + (k + 1) * nn : NULL, PETSC_TRUE);
      r += SmoothTerm(s, n, b0, M->p.b + (k + 1) * n, grad && k >= 0 ? g.b + k * n : NULL, grad ? g.b + (k + 1) * n : NULL, PETSC_TRUE);
    }
    if (!last && grad) {
      /* the pair (jhi-1, jhi) is counted by the next rank; its gradient for block jhi-1 is ours */
      (void)SmoothTerm(s, nn, M->p.W + (nloc - 1) * nn, next, g.W + (nloc - 1) * nn, NULL, PETSC_FALSE);
      (void)SmoothTerm(s, n, M->p.b + (nloc - 1) * n, next + nn, g.b + (nloc - 1) * n, NULL, PETSC_FALSE);
    }
    PetscCall(PetscFree2(prev, next));
  }
  *R = r;
  PetscFunctionReturn(0);
}

PetscErrorCode TNDatasetCreate(PetscInt N, PetscInt d, PetscInt m, TNTask task, TNDataset *ds)
{
  TNDataset D;

  PetscFunctionBegin;
  PetscCall(PetscNew(&D));
  D->N    = N;
  D->d    = d;
  D->m    = m;
  D->task   = task;
  D->Nlocal = N;
  D->offset = 0;
  PetscCall(PetscMalloc1(N * d, &D->X));
  if (task == TN_TASK_CLASSIFICATION) PetscCall(PetscMalloc1(N, &D->labels));
  else PetscCall(PetscMalloc1(N * m, &D->Y));
  *ds = D;
  PetscFunctionReturn(0);
}

PetscErrorCode TNDatasetShard(TNDataset D, MPI_Comm comm)
{
  PetscMPIInt size, rank;
  PetscInt    start, end, w = D->task == TN_TASK_CLASSIFICATION ? 1 : D->m;

  PetscFunctionBegin;
  PetscCheck(D->Nlocal == D->N, PETSC_COMM_SELF, PETSC_ERR_ARG_WRONGSTATE, "data set is sharded already");
  PetscCallMPI(MPI_Comm_size(comm, &size));
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  TNGridSplit(D->N, size, rank, &start, &end);
  PetscCall(PetscArraymove(D->X, D->X + start * D->d, (end - start) * D->d));
  if (D->labels) PetscCall(PetscArraymove(D->labels, D->labels + start, end - start));
  if (D->Y) PetscCall(PetscArraymove(D->Y, D->Y + start * w, (end - start) * w));
  D->offset = start;
  D->Nlocal = end - start;
  PetscFunctionReturn(0);
}

PetscErrorCode TNDatasetDestroy(TNDataset *ds)
{
  PetscFunctionBegin;
  if (!*ds) PetscFunctionReturn(0);
  PetscCall(PetscFree((*ds)->X));
  PetscCall(PetscFree((*ds)->labels));
  PetscCall(PetscFree((*ds)->Y));
  PetscCall(PetscFree(*ds));
  PetscFunctionReturn(0);
}

void TNGridSplit(PetscInt N, PetscMPIInt P, PetscMPIInt r, PetscInt *start, PetscInt *end)
{
  *start = (PetscInt)(((PetscInt64)N * r) / P);
  *end   = (PetscInt)(((PetscInt64)N * (r + 1)) / P);
}
