/* The theta step of one block and its adjoint (DESIGN.md §1): the forward step y_j -> y_{j+1},
   the same equation solved backwards for y_j (reversible memory), and the adjoint step with the
   block's weight gradient. The implicit part goes to the block solver. */
#include "networkimpl.h"
#include "activation.h"
#include "rows.h"

void TNNetworkBlockLayer(TNNetwork net, PetscInt j, TNBlockLayer *L)
{
  const TNModelConfig *c = &net->model->cfg;
  const PetscInt k       = j - net->model->jlo; /* held here as the k-th block */

  L->n     = c->n;
  L->A     = c->antisymmetric ? net->antisym + k * c->n * c->n : net->model->p.W + k * c->n * c->n;
  L->b     = net->model->p.b + k * c->n;
  L->act   = c->act;
  L->h     = c->T / c->L;
  L->theta = c->theta;
}

/* y_to = y_from + h[(1-theta) F(y_from) + theta F(y_to)], returning F_from = F(y_from) and, when
   theta > 0, F_to = F(y_to). With the block's own (h, theta) this is the forward step
   y_j -> y_{j+1}. With (-h, 1-theta) it is the same equation read backwards,
   y_j + h(1-theta) F_j(y_j) = y_{j+1} - h theta F_j(y_{j+1}): the reverse step y_{j+1} -> y_j,
   whose predictor is y_{j+1} - h F_j(y_{j+1}). */
PetscErrorCode TNNetworkThetaSolve(TNNetwork net, PetscInt j, const char *direction, const TNBlockLayer *L, PetscInt B,
                                   const PetscScalar *yfrom, PetscScalar *yto, PetscScalar *Ffrom, PetscScalar *Fto,
                                   PetscBool *ok)
{
  const PetscInt N = B * L->n;
  PetscReal res;

  PetscFunctionBegin;
  TNRowsApply(B, L->n, L->n, yfrom, L->A, L->b, net->z);
  TNActivate(L->act, N, net->z, Ffrom);
  *ok = PETSC_TRUE;
  if (L->theta == 0) {
    for (PetscInt i = 0; i < N; i++) yto[i] = yfrom[i] + L->h * Ffrom[i];
    PetscFunctionReturn(0);
  }
  for (PetscInt i = 0; i < N; i++) {
    net->z[i] = yfrom[i] + L->h * (1 - L->theta) * Ffrom[i];
    yto[i]    = yfrom[i];
  }
  PetscCall(TNBlockSolverSolve(net->solver, L, B, Ffrom, net->z, yto, Fto, ok, &res));
  if (!*ok)
    PetscCall(PetscSNPrintf(net->failure, sizeof net->failure,
                            "block %" PetscInt_FMT " %s solve did not converge: residual %.3e", j, direction,
                            (double)res));
  PetscFunctionReturn(0);
}

PetscErrorCode TNNetworkBlockStep(TNNetwork net, PetscInt j, PetscInt B, const PetscScalar *yj, PetscScalar *yj1,
                                  PetscScalar *Fj, PetscScalar *Fn, PetscBool *ok)
{
  TNBlockLayer L;

  PetscFunctionBegin;
  TNNetworkBlockLayer(net, j, &L);
  PetscCall(TNNetworkThetaSolve(net, j, "forward", &L, B, yj, yj1, Fj, Fn, ok));
  PetscFunctionReturn(0);
}

/* y_j from y_{j+1} (reversible mode), with Fn = F_j(y_{j+1}) and, for theta < 1, Fj = F_j(y_j);
   for theta = 1 the reversal is explicit and Fj is not needed (the adjoint step has no
   (1-theta) term). */
PetscErrorCode TNNetworkBlockReverseStep(TNNetwork net, PetscInt j, PetscInt B, const PetscScalar *yj1, PetscScalar *yj,
                                         PetscScalar *Fj, PetscScalar *Fn, PetscBool *ok)
{
  TNBlockLayer L;

  PetscFunctionBegin;
  TNNetworkBlockLayer(net, j, &L);
  L.h     = -L.h;
  L.theta = 1 - L.theta;
  PetscCall(TNNetworkThetaSolve(net, j, "reverse", &L, B, yj1, yj, Fn, Fj, ok));
  PetscFunctionReturn(0);
}

/* mu = (I - h theta J_F(y_{j+1}))^{-T} lambda_{j+1}; lambda_j = mu + h(1-theta) J_F(y_j)^T mu;
   dA_j += U0^T y_j + U1^T y_{j+1} with U0 = h(1-theta) s'(z_j).mu, U1 = h theta s'(z_{j+1}).mu. */
PetscErrorCode TNNetworkBlockAdjointStep(TNNetwork net, PetscInt j, PetscInt B, const PetscScalar *yj,
                                         const PetscScalar *yj1, const PetscScalar *Fj, const PetscScalar *Fn,
                                         const PetscScalar *lambda_in, PetscScalar *lambda_out, PetscScalar *grad,
                                         PetscBool *ok)
{
  const TNModelConfig *c = &net->model->cfg;
  const PetscInt n = c->n, N = B * n, k = j - net->model->jlo;
  TNBlockLayer L;
  TNParams g;
  PetscScalar *mu = net->mu, *U0 = net->scaled, *U1 = net->scaled + N, *dA;
  const PetscReal w0 = 1 - c->theta, w1 = c->theta;

  PetscFunctionBegin;
  TNNetworkBlockLayer(net, j, &L);
  *ok = PETSC_TRUE;
  if (w1 > 0) {
    PetscReal res;
    TNActivationDerivative(L.act, N, Fn, net->deriv);
    PetscCall(TNBlockSolverAdjoint(net->solver, &L, B, net->deriv, lambda_in, mu, ok, &res));
    if (!*ok) {
      PetscCall(PetscSNPrintf(net->failure, sizeof net->failure,
                              "block %" PetscInt_FMT " adjoint solve did not converge: residual %.3e", j, (double)res));
      PetscFunctionReturn(0);
    }
    for (PetscInt i = 0; i < N; i++) U1[i] = L.h * w1 * net->deriv[i] * mu[i];
  } else
    mu = (PetscScalar *)lambda_in;
  if (w0 > 0) {
    TNActivationDerivative(L.act, N, Fj, U0);
    for (PetscInt i = 0; i < N; i++) U0[i] *= L.h * w0 * mu[i];
  }

  /* the weight gradient of block j, before lambda_out may overwrite lambda_in (skipped while
     MGRIT iterates on the adjoints alone) */
  if (grad) {
    TNModelParams(net->model, grad, &g);
    dA = c->antisymmetric ? net->dA : g.W + k * n * n;
    if (c->antisymmetric) PetscCall(PetscArrayzero(dA, n * n));
    if (w0 > 0 && w1 > 0 && yj1 == yj + N)
      TNRowsOuterAdd(2 * B, n, n, 1.0, U0, yj, dA); /* one GEMM over [y_j; y_{j+1}] */
    else {
      if (w0 > 0) TNRowsOuterAdd(B, n, n, 1.0, U0, yj, dA);
      if (w1 > 0) TNRowsOuterAdd(B, n, n, 1.0, U1, yj1, dA);
    }
    /* A = W - W^T - gamma I: dJ/dW = G - G^T */
    if (c->antisymmetric)
      for (PetscInt i = 0; i < n; i++)
        for (PetscInt l = 0; l < n; l++) g.W[k * n * n + i * n + l] += dA[i * n + l] - dA[l * n + i];
    if (w0 > 0) TNRowsColumnSums(B, n, U0, g.b + k * n);
    if (w1 > 0) TNRowsColumnSums(B, n, U1, g.b + k * n);
  }

  if (lambda_out != mu) PetscCall(PetscArraycpy(lambda_out, mu, N));
  if (w0 > 0) TNRowsApplyTranspose(B, n, n, 1.0, U0, L.A, 1.0, lambda_out);
  PetscFunctionReturn(0);
}
