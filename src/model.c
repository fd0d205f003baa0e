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

PetscInt TNParamCount(const TNModelConfig *c)
{
  return c->n * c->d + c->n + c->L * c->n * c->n + c->L * c->n + c->m * c->n + c->m;
}

void TNParamsSet(const TNModelConfig *c, PetscScalar *buf, TNParams *p)
{
  p->K  = buf;
  p->kb = p->K + c->n * c->d;
  p->W  = p->kb + c->n;
  p->b  = p->W + c->L * c->n * c->n;
  p->C  = p->b + c->L * c->n;
  p->c  = p->C + c->m * c->n;
}

PetscErrorCode TNModelCreate(const TNModelConfig *cfg, TNModel *model)
{
  TNModel M;

  PetscFunctionBegin;
  PetscCall(TNModelConfigCheck(cfg, "model"));
  PetscCall(PetscNew(&M));
  M->cfg     = *cfg;
  M->nparams = TNParamCount(cfg);
  PetscCall(PetscCalloc1(M->nparams, &M->theta_buf));
  TNParamsSet(cfg, M->theta_buf, &M->p);
  *model = M;
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
  GlorotFill(M->p.K, c->n, c->d, seed, (PetscInt)(M->p.K - M->theta_buf));
  for (PetscInt j = 0; j < c->L; j++) GlorotFill(M->p.W + j * c->n * c->n, c->n, c->n, seed, (PetscInt)(M->p.W - M->theta_buf) + j * c->n * c->n);
  GlorotFill(M->p.C, c->m, c->n, seed, (PetscInt)(M->p.C - M->theta_buf));
  PetscFunctionReturn(0);
}

void TNModelBlockOperator(TNModel M, PetscInt j, PetscScalar *A)
{
  const PetscInt     n = M->cfg.n;
  const PetscScalar *W = M->p.W + j * n * n;

  if (!M->cfg.antisymmetric) {
    for (PetscInt i = 0; i < n * n; i++) A[i] = W[i];
    return;
  }
  for (PetscInt i = 0; i < n; i++)
    for (PetscInt k = 0; k < n; k++) A[i * n + k] = W[i * n + k] - W[k * n + i] - (i == k ? M->cfg.gamma : 0.0);
}

static PetscReal SumSquares(const PetscScalar *x, PetscInt len)
{
  PetscReal s = 0;
  for (PetscInt i = 0; i < len; i++) s += x[i] * x[i];
  return s;
}

/* R = alpha/2 (|K|^2 + sum_j |W_j|^2 + |C|^2) + beta/(2h) sum_{j<L-1} (|W_{j+1}-W_j|^2 + |b_{j+1}-b_j|^2) */
PetscErrorCode TNModelRegularizer(TNModel M, PetscReal alpha, PetscReal beta, PetscReal *R, PetscScalar *grad)
{
  const TNModelConfig *c  = &M->cfg;
  const PetscInt       nn = c->n * c->n;
  const PetscReal      h  = c->T / c->L;
  TNParams             g = {NULL, NULL, NULL, NULL, NULL, NULL};
  PetscReal            r = 0;

  PetscFunctionBegin;
  if (grad) TNParamsSet(c, grad, &g);
  if (alpha != 0) {
    r += 0.5 * alpha * (SumSquares(M->p.K, c->n * c->d) + SumSquares(M->p.W, c->L * nn) + SumSquares(M->p.C, c->m * c->n));
    if (grad) {
      for (PetscInt i = 0; i < c->n * c->d; i++) g.K[i] += alpha * M->p.K[i];
      for (PetscInt i = 0; i < c->L * nn; i++) g.W[i] += alpha * M->p.W[i];
      for (PetscInt i = 0; i < c->m * c->n; i++) g.C[i] += alpha * M->p.C[i];
    }
  }
  if (beta != 0) {
    const PetscReal s = beta / h;
    for (PetscInt j = 0; j + 1 < c->L; j++) {
      const PetscScalar *W0 = M->p.W + j * nn, *W1 = W0 + nn, *b0 = M->p.b + j * c->n, *b1 = b0 + c->n;
      for (PetscInt i = 0; i < nn; i++) {
        const PetscScalar dw = W1[i] - W0[i];
        r += 0.5 * s * dw * dw;
        if (grad) {
          g.W[(j + 1) * nn + i] += s * dw;
          g.W[j * nn + i] -= s * dw;
        }
      }
      for (PetscInt i = 0; i < c->n; i++) {
        const PetscScalar db = b1[i] - b0[i];
        r += 0.5 * s * db * db;
        if (grad) {
          g.b[(j + 1) * c->n + i] += s * db;
          g.b[j * c->n + i] -= s * db;
        }
      }
    }
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
