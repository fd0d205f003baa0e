/* The objective's regulariser R of DESIGN.md §1 (weight decay and depth smoothness) and its
   gradient, for a whole model or a depth rank's share of the blocks. */
#include "modelimpl.h"

PetscErrorCode TNRegularizationSetFromOptions(MPI_Comm comm, TNRegularization *reg)
{
  PetscFunctionBegin;
  PetscOptionsBegin(comm, NULL, "Regulariser of the objective", "thetanet");
  PetscCall(TNOptionsReal("-weight_decay", "alpha: weight decay of K, W_j, C", "", reg->alpha, &reg->alpha, NULL));
  PetscCall(TNOptionsReal("-smooth", "beta: depth smoothness of W_j and b_j", "", reg->beta, &reg->beta, NULL));
  PetscOptionsEnd();
  PetscCheck(reg->alpha >= 0 && PetscIsNormalReal(reg->alpha + 1), comm, TN_ERR_USER,
             "-weight_decay must be non-negative, got %g", (double)reg->alpha);
  PetscCheck(reg->beta >= 0 && PetscIsNormalReal(reg->beta + 1), comm, TN_ERR_USER,
             "-smooth must be non-negative, got %g", (double)reg->beta);
  PetscFunctionReturn(0);
}

/* The neighbours' boundary blocks: W, b of block jlo-1 from the previous depth rank and of
   block jhi from the next (left unset where there is none). */
static PetscErrorCode NeighbourBlocks(TNModel M, PetscScalar *prev, PetscScalar *next)
{
  const PetscInt n = M->cfg.n, w = n * n + n, nloc = M->jhi - M->jlo;
  PetscMPIInt rank, size;
  PetscScalar *first, *last;
  MPI_Request req[4];
  PetscInt k = 0;

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
static PetscReal SmoothTerm(PetscReal s, PetscInt len, const PetscScalar *x0, const PetscScalar *x1, PetscScalar *g0,
                            PetscScalar *g1, PetscBool count)
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
  const PetscInt n = c->n, nn = n * n, nloc = M->jhi - M->jlo;
  const PetscBool first = M->jlo == 0 ? PETSC_TRUE : PETSC_FALSE, last = M->jhi == c->L ? PETSC_TRUE : PETSC_FALSE;
  const PetscReal h = c->T / c->L;
  TNParams g        = {NULL, NULL, NULL, NULL, NULL, NULL};
  PetscReal r       = 0;

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
    PetscScalar *prev, *next;
    PetscCall(PetscMalloc2(nn + n, &prev, nn + n, &next));
    PetscCall(NeighbourBlocks(M, prev, next));
    for (PetscInt j = M->jlo - 1; j + 1 < M->jhi; j++) {
      const PetscInt k      = j - M->jlo; /* local index of block j, -1 for the neighbour's */
      const PetscScalar *W0 = k >= 0 ? M->p.W + k * nn : prev, *b0 = k >= 0 ? M->p.b + k * n : prev + nn;
      if (j < 0) continue;
      r += SmoothTerm(s, nn, W0, M->p.W + (k + 1) * nn, grad && k >= 0 ? g.W + k * nn : NULL,
                      grad ? g.W + (k + 1) * nn : NULL, PETSC_TRUE);
      r += SmoothTerm(s, n, b0, M->p.b + (k + 1) * n, grad && k >= 0 ? g.b + k * n : NULL,
                      grad ? g.b + (k + 1) * n : NULL, PETSC_TRUE);
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
