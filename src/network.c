/* Propagation of a local batch: y_0 = s0(K x + k), the theta-blocks, z = C y_L + c, forward and
   adjoint (DESIGN.md §1). Batches are row-major B x width, so every layer is one GEMM. */
#include "network.h"
#include "activation.h"
#include "events.h"

const char *const TNMemoryModes[] = {"store", "reversible", "checkpoint", "TNMemoryMode", "TN_MEMORY_", NULL};

struct _n_TNNetwork {
  TNModel       model;
  PetscInt      Bmax;
  TNBlockSolver solver;
  PetscScalar  *Y;  /* (L+1) states, each Bmax x n, contiguous so y_j, y_{j+1} stack */
  PetscScalar  *FJ; /* L values F_j(y_j) */
  PetscScalar  *FN; /* L values F_j(y_{j+1}) (implicit blocks only) */
  PetscScalar  *A;  /* L operators W_j - W_j^T - gamma I (antisymmetric models only) */
  PetscScalar  *lam, *mu, *U, *G, *D;
  PetscScalar  *rhs;
  char          failure[256];
};

PetscErrorCode TNNetworkCreate(TNModel model, PetscInt max_batch, TNNetwork *out)
{
  TNNetwork            net;
  const TNModelConfig *c = &model->cfg;
  const PetscInt       S = max_batch * c->n;

  PetscFunctionBegin;
  PetscCheck(max_batch > 0, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE, "batch must be positive");
  PetscCall(TNEventsRegister());
  PetscCall(PetscNew(&net));
  net->model = model;
  net->Bmax  = max_batch;
  PetscCall(TNBlockSolverCreate(c->n, &net->solver));
  PetscCall(PetscMalloc1((c->L + 1) * S, &net->Y));
  PetscCall(PetscMalloc1(c->L * S, &net->FJ));
  if (c->theta > 0) PetscCall(PetscMalloc1(c->L * S, &net->FN));
  if (c->antisymmetric) PetscCall(PetscMalloc1(c->L * c->n * c->n, &net->A));
  PetscCall(PetscMalloc6(S, &net->lam, S, &net->mu, 2 * S, &net->U, c->n * c->n, &net->G, S, &net->D, S, &net->rhs));
  *out = net;
  PetscFunctionReturn(0);
}

PetscErrorCode TNNetworkSetFromOptions(TNNetwork net)
{
  PetscFunctionBegin;
  PetscCall(TNBlockSolverSetFromOptions(net->solver));
  PetscFunctionReturn(0);
}

PetscErrorCode TNNetworkDestroy(TNNetwork *net)
{
  PetscFunctionBegin;
  if (!*net) PetscFunctionReturn(0);
  PetscCall(TNBlockSolverDestroy(&(*net)->solver));
  PetscCall(PetscFree((*net)->Y));
  PetscCall(PetscFree((*net)->FJ));
  PetscCall(PetscFree((*net)->FN));
  PetscCall(PetscFree((*net)->A));
  PetscCall(PetscFree6((*net)->lam, (*net)->mu, (*net)->U, (*net)->G, (*net)->D, (*net)->rhs));
  PetscCall(PetscFree(*net));
  PetscFunctionReturn(0);
}

PetscErrorCode TNNetworkGetBlockSolver(TNNetwork net, TNBlockSolver *bs)
{
  PetscFunctionBegin;
  *bs = net->solver;
  PetscFunctionReturn(0);
}

PetscErrorCode TNNetworkSetMemory(TNNetwork net, TNMemoryMode mode, PetscInt stride, PetscReal tol)
{
  PetscFunctionBegin;
  (void)net;
  (void)stride;
  (void)tol;
  PetscCheck(mode == TN_MEMORY_STORE, PETSC_COMM_SELF, TN_ERR_USER, "-memory %s: this version keeps every state (use -memory store)",
             TNMemoryModes[mode]);
  PetscFunctionReturn(0);
}

PetscErrorCode TNNetworkGetReconstructionError(TNNetwork net, PetscReal *error)
{
  PetscFunctionBegin;
  (void)net;
  *error = 0;
  PetscFunctionReturn(0);
}

PetscErrorCode TNNetworkGetModel(TNNetwork net, TNModel *M)
{
  PetscFunctionBegin;
  *M = net->model;
  PetscFunctionReturn(0);
}

const char *TNNetworkGetFailure(TNNetwork net)
{
  return net->failure;
}

static void BlockLayer(TNNetwork net, PetscInt j, TNBlockLayer *L)
{
  const TNModelConfig *c = &net->model->cfg;

  L->n     = c->n;
  L->A     = c->antisymmetric ? net->A + j * c->n * c->n : net->model->p.W + j * c->n * c->n;
  L->b     = net->model->p.b + j * c->n;
  L->act   = c->act;
  L->h     = c->T / c->L;
  L->theta = c->theta;
}

PetscErrorCode TNNetworkBlockStep(TNNetwork net, PetscInt j, PetscInt B, const PetscScalar *yj, PetscScalar *yj1,
                                  PetscScalar *Fj, PetscScalar *Fn, PetscBool *ok)
{
  TNBlockLayer   L;
  const PetscInt N = B * net->model->cfg.n;
  PetscReal      res;

  PetscFunctionBegin;
  BlockLayer(net, j, &L);
  TNRowsApply(B, L.n, L.n, yj, L.A, L.b, net->rhs);
  TNActivate(L.act, N, net->rhs, Fj);
  *ok = PETSC_TRUE;
  if (L.theta == 0) {
    for (PetscInt i = 0; i < N; i++) yj1[i] = yj[i] + L.h * Fj[i];
    PetscFunctionReturn(0);
  }
  for (PetscInt i = 0; i < N; i++) {
    net->rhs[i] = yj[i] + L.h * (1 - L.theta) * Fj[i];
    yj1[i]      = yj[i];
  }
  PetscCall(PetscLogEventBegin(TN_EVENT_BLOCK, 0, 0, 0, 0));
  PetscCall(TNBlockSolverSolve(net->solver, &L, B, Fj, net->rhs, yj1, Fn, ok, &res));
  PetscCall(PetscLogEventEnd(TN_EVENT_BLOCK, 0, 0, 0, 0));
  if (!*ok) PetscCall(PetscSNPrintf(net->failure, sizeof net->failure, "block %" PetscInt_FMT " forward solve did not converge: residual %.3e", j, (double)res));
  PetscFunctionReturn(0);
}

/* Column sums of U (B x n) scaled and added into g. */
static void AddColumnSums(PetscInt B, PetscInt n, const PetscScalar *U, PetscScalar *g)
{
  for (PetscInt s = 0; s < B; s++)
    for (PetscInt i = 0; i < n; i++) g[i] += U[s * n + i];
}

/* mu = (I - h theta J_F(y_{j+1}))^{-T} lambda_{j+1}; lambda_j = mu + h(1-theta) J_F(y_j)^T mu;
   dA_j += U0^T y_j + U1^T y_{j+1} with U0 = h(1-theta) s'(z_j).mu, U1 = h theta s'(z_{j+1}).mu. */
PetscErrorCode TNNetworkBlockAdjointStep(TNNetwork net, PetscInt j, PetscInt B, const PetscScalar *yj,
                                         const PetscScalar *yj1, const PetscScalar *Fj, const PetscScalar *Fn,
                                         const PetscScalar *lambda_in, PetscScalar *lambda_out, PetscScalar *grad,
                                         PetscBool *ok)
{
  const TNModelConfig *c = &net->model->cfg;
  const PetscInt       n = c->n, N = B * n;
  TNBlockLayer         L;
  TNParams             g;
  PetscScalar         *mu = net->mu, *U0 = net->U, *U1 = net->U + N, *dA;
  const PetscReal      w0 = 1 - c->theta, w1 = c->theta;

  PetscFunctionBegin;
  BlockLayer(net, j, &L);
  TNParamsSet(c, grad, &g);
  *ok = PETSC_TRUE;
  if (w1 > 0) {
    PetscReal res;
    TNActivationDerivative(L.act, N, Fn, net->D);
    PetscCall(PetscLogEventBegin(TN_EVENT_ADJOINT, 0, 0, 0, 0));
    PetscCall(TNBlockSolverAdjoint(net->solver, &L, B, net->D, lambda_in, mu, ok, &res));
    PetscCall(PetscLogEventEnd(TN_EVENT_ADJOINT, 0, 0, 0, 0));
    if (!*ok) {
      PetscCall(PetscSNPrintf(net->failure, sizeof net->failure, "block %" PetscInt_FMT " adjoint solve did not converge: residual %.3e", j, (double)res));
      PetscFunctionReturn(0);
    }
    for (PetscInt i = 0; i < N; i++) U1[i] = L.h * w1 * net->D[i] * mu[i];
  } else mu = (PetscScalar *)lambda_in;
  if (w0 > 0) {
    TNActivationDerivative(L.act, N, Fj, U0);
    for (PetscInt i = 0; i < N; i++) U0[i] *= L.h * w0 * mu[i];
  }

  /* the weight gradient of block j, before lambda_out may overwrite lambda_in */
  dA = c->antisymmetric ? net->G : g.W + j * n * n;
  if (c->antisymmetric) PetscCall(PetscArrayzero(dA, n * n));
  if (w0 > 0 && w1 > 0 && yj1 == yj + N) TNRowsOuterAdd(2 * B, n, n, 1.0, U0, yj, dA); /* one GEMM over [y_j; y_{j+1}] */
  else {
    if (w0 > 0) TNRowsOuterAdd(B, n, n, 1.0, U0, yj, dA);
    if (w1 > 0) TNRowsOuterAdd(B, n, n, 1.0, U1, yj1, dA);
  }
  if (c->antisymmetric)
    for (PetscInt i = 0; i < n; i++)
      for (PetscInt k = 0; k < n; k++) g.W[j * n * n + i * n + k] += dA[i * n + k] - dA[k * n + i];
  if (w0 > 0) AddColumnSums(B, n, U0, g.b + j * n);
  if (w1 > 0) AddColumnSums(B, n, U1, g.b + j * n);

  if (lambda_out != mu) PetscCall(PetscArraycpy(lambda_out, mu, N));
  if (w0 > 0) TNRowsApplyTranspose(B, n, n, 1.0, U0, L.A, 1.0, lambda_out);
  PetscFunctionReturn(0);
}

PetscErrorCode TNNetworkForward(TNNetwork net, PetscInt B, const PetscReal *X, PetscReal *out, PetscBool *ok)
{
  TNModel              M = net->model;
  const TNModelConfig *c = &M->cfg;
  const PetscInt       S = B * c->n;

  PetscFunctionBegin;
  PetscCheck(B <= net->Bmax, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE, "batch %" PetscInt_FMT " exceeds %" PetscInt_FMT, B, net->Bmax);
  PetscCall(PetscLogEventBegin(TN_EVENT_FORWARD, 0, 0, 0, 0));
  net->failure[0] = 0;
  *ok             = PETSC_TRUE;
  if (c->antisymmetric)
    for (PetscInt j = 0; j < c->L; j++) TNModelBlockOperator(M, j, net->A + j * c->n * c->n);
  TNRowsApply(B, c->n, c->d, X, M->p.K, M->p.kb, net->Y);
  TNActivate(c->opening_act, S, net->Y, net->Y);
  for (PetscInt j = 0; j < c->L && *ok; j++)
    PetscCall(TNNetworkBlockStep(net, j, B, net->Y + j * S, net->Y + (j + 1) * S, net->FJ + j * S, net->FN ? net->FN + j * S : NULL, ok));
  TNRowsApply(B, c->m, c->n, net->Y + c->L * S, M->p.C, M->p.c, out);
  PetscCall(PetscLogEventEnd(TN_EVENT_FORWARD, 0, 0, 0, 0));
  PetscFunctionReturn(0);
}

PetscErrorCode TNNetworkBackward(TNNetwork net, PetscInt B, const PetscReal *X, const PetscReal *dout, PetscScalar *grad,
                                 PetscBool *ok)
{
  TNModel              M = net->model;
  const TNModelConfig *c = &M->cfg;
  const PetscInt       S = B * c->n;
  TNParams             g;

  PetscFunctionBegin;
  PetscCall(PetscLogEventBegin(TN_EVENT_BACKWARD, 0, 0, 0, 0));
  TNParamsSet(c, grad, &g);
  *ok = PETSC_TRUE;
  /* closing layer: dC += dout^T y_L, dc += sum dout, lambda_L = dout C */
  TNRowsOuterAdd(B, c->m, c->n, 1.0, dout, net->Y + c->L * S, g.C);
  AddColumnSums(B, c->m, dout, g.c);
  TNRowsApplyTranspose(B, c->m, c->n, 1.0, dout, M->p.C, 0.0, net->lam);
  for (PetscInt j = c->L - 1; j >= 0 && *ok; j--)
    PetscCall(TNNetworkBlockAdjointStep(net, j, B, net->Y + j * S, net->Y + (j + 1) * S, net->FJ + j * S, net->FN ? net->FN + j * S : NULL,
                                        net->lam, net->lam, grad, ok));
  /* opening layer: dz_0 = lambda_0 . s0'(K x + k) */
  TNActivationDerivative(c->opening_act, S, net->Y, net->D);
  for (PetscInt i = 0; i < S; i++) net->D[i] *= net->lam[i];
  TNRowsOuterAdd(B, c->n, c->d, 1.0, net->D, X, g.K);
  AddColumnSums(B, c->n, net->D, g.kb);
  PetscCall(PetscLogEventEnd(TN_EVENT_BACKWARD, 0, 0, 0, 0));
  PetscFunctionReturn(0);
}

void TNLossEvaluate(TNTask task, PetscInt B, PetscInt m, const PetscReal *out, const PetscInt *labels, const PetscReal *targets,
                    PetscReal scale, PetscReal *loss_sum, PetscInt *correct, PetscReal *dout)
{
  PetscReal loss = 0;
  PetscInt  right = 0;

  for (PetscInt s = 0; s < B; s++) {
    const PetscReal *z = out + s * m;
    if (task == TN_TASK_CLASSIFICATION) {
      /* softmax cross-entropy: log sum exp(z) - z_label, shifted by max z against overflow */
      PetscInt  arg = 0;
      PetscReal zmax = z[0], sum = 0;
      for (PetscInt k = 1; k < m; k++)
        if (z[k] > zmax) zmax = z[k], arg = k;
      for (PetscInt k = 0; k < m; k++) sum += PetscExpReal(z[k] - zmax);
      loss += PetscLogReal(sum) + zmax - z[labels[s]];
      right += arg == labels[s];
      if (dout)
        for (PetscInt k = 0; k < m; k++) dout[s * m + k] = scale * (PetscExpReal(z[k] - zmax) / sum - (k == labels[s]));
    } else {
      for (PetscInt k = 0; k < m; k++) {
        const PetscReal e = z[k] - targets[s * m + k];
        loss += e * e;
        if (dout) dout[s * m + k] = scale * 2 * e;
      }
    }
  }
  *loss_sum = loss;
  *correct  = right;
}
