/* SNES forward solve and KSP transpose (adjoint) solve of one implicit theta-block over a local
   batch. The batch is one vector of B*n unknowns whose Jacobian is block diagonal over samples. */
#include "blocksolver.h"
#include "activation.h"
#include <petscsnes.h>
#include <petscblaslapack.h>
#include <string.h>

const char *const TNBlockMethods[] = {"auto", "newton", "newton_assembled", "anderson", "picard", "TNBlockMethod", "TN_BLOCK_", NULL};
const char *const TNBlockGuesses[] = {"explicit", "linearized", "TNBlockGuess", "TN_GUESS_", NULL};

/* Widths up to this use the assembled Jacobian with exact n x n block solves by default; wider
   layers use Anderson (the n^3 per sample factorisation then costs more than the iterations). */
#define TN_ASSEMBLED_MAX_WIDTH 8

/* Solvers for one batch size; the last batch of an epoch and evaluation may differ in size,
   so a small cache of them is kept and each is created once. */
typedef struct {
  PetscInt     B;
  Vec          x, f, rhs, lam, mu;
  Mat          J;  /* MATSHELL: v -> v - h theta D.(A v) per sample */
  Mat          Jb; /* BAIJ block-diagonal copy of J, assembled methods only */
  SNES         snes;
  KSP          ksp; /* adjoint_ */
  PetscScalar *Z, *Fx, *D, *work, *xlast; /* Fx = F(xlast), Z = A xlast + b */
  PetscInt64   last_use;
} BatchSolver;

#define TN_BATCH_CACHE 2

struct _n_TNBlockSolver {
  PetscInt      n;
  TNBlockMethod method;
  TNBlockGuess  guess;
  PetscReal     atol;
  BatchSolver   cache[TN_BATCH_CACHE];
  PetscInt64    use_clock;
  /* the current solve */
  const TNBlockLayer *layer;
  BatchSolver        *cur;
  const PetscScalar  *r;
  PetscReal           last_maxres; /* largest per-sample residual of the last evaluation */
  PetscBool           have_last;   /* xlast holds a point of this solve */
  PetscInt64          newton, krylov, solves;
};

void TNRowsApply(PetscInt B, PetscInt nout, PetscInt nin, const PetscScalar *Y, const PetscScalar *A,
                 const PetscScalar *bias, PetscScalar *Z)
{
  PetscBLASInt      M = (PetscBLASInt)nout, N = (PetscBLASInt)B, K = (PetscBLASInt)nin;
  const PetscScalar one = 1.0, zero = 0.0;

  /* row-major Z = Y A^T is column-major Z^T = A Y^T */
  BLASgemm_("T", "N", &M, &N, &K, &one, A, &K, Y, &K, &zero, Z, &M);
  if (bias)
    for (PetscInt s = 0; s < B; s++)
      for (PetscInt i = 0; i < nout; i++) Z[s * nout + i] += bias[i];
}

void TNRowsApplyTranspose(PetscInt B, PetscInt nout, PetscInt nin, const PetscScalar *U, const PetscScalar *A,
                          PetscScalar beta, PetscScalar *Out)
{
  PetscBLASInt      M = (PetscBLASInt)nin, N = (PetscBLASInt)B, K = (PetscBLASInt)nout;
  const PetscScalar one = 1.0;

  BLASgemm_("N", "N", &M, &N, &K, &one, A, &M, U, &K, &beta, Out, &M);
}

void TNRowsOuterAdd(PetscInt B, PetscInt nu, PetscInt ny, PetscScalar alpha, const PetscScalar *U, const PetscScalar *Y,
                    PetscScalar *G)
{
  PetscBLASInt      M = (PetscBLASInt)ny, N = (PetscBLASInt)nu, K = (PetscBLASInt)B;
  const PetscScalar one = 1.0;

  if (!B) return;
  BLASgemm_("N", "T", &M, &N, &K, &alpha, Y, &M, U, &N, &one, G, &M);
}

/* F = s(A y + b) for the rows of y, keeping Z = A y + b. */
static void LayerEval(const TNBlockLayer *L, PetscInt B, const PetscScalar *y, PetscScalar *Z, PetscScalar *F)
{
  TNRowsApply(B, L->n, L->n, y, L->A, L->b, Z);
  TNActivate(L->act, B * L->n, Z, F);
}

static PetscErrorCode FormResidual(SNES snes, Vec x, Vec g, void *ctx)
{
  TNBlockSolver      bs = (TNBlockSolver)ctx;
  BatchSolver       *c  = bs->cur;
  const TNBlockLayer *L = bs->layer;
  const PetscReal     ht = L->h * L->theta;
  const PetscScalar  *xa;
  PetscScalar        *ga;
  PetscReal           maxres = 0;

  PetscFunctionBegin;
  (void)snes;
  PetscCall(VecGetArrayRead(x, &xa));
  PetscCall(VecGetArrayWrite(g, &ga));
  LayerEval(L, c->B, xa, c->Z, c->Fx);
  for (PetscInt s = 0; s < c->B; s++) {
    PetscReal ss = 0;
    for (PetscInt i = s * L->n; i < (s + 1) * L->n; i++) {
      ga[i] = xa[i] - bs->r[i] - ht * c->Fx[i];
      ss += ga[i] * ga[i];
    }
    /* NaN must not compare as converged */
    if (!(ss <= maxres)) maxres = ss;
  }
  PetscCall(VecRestoreArrayWrite(g, &ga));
  PetscCall(PetscArraycpy(c->xlast, xa, c->B * L->n));
  PetscCall(VecRestoreArrayRead(x, &xa));
  bs->have_last   = PETSC_TRUE;
  bs->last_maxres = PetscSqrtReal(maxres);
  PetscFunctionReturn(0);
}

/* Per-sample test: every sample's residual below -block_atol, so how a batch is split across
   ranks does not decide whether a sample has converged. */
static PetscErrorCode ConvergedPerSample(SNES snes, PetscInt it, PetscReal xnorm, PetscReal snorm, PetscReal fnorm,
                                         SNESConvergedReason *reason, void *ctx)
{
  TNBlockSolver bs = (TNBlockSolver)ctx;
  PetscInt      maxit;

  PetscFunctionBegin;
  (void)xnorm;
  (void)snorm;
  PetscCall(SNESGetTolerances(snes, NULL, NULL, NULL, &maxit, NULL));
  *reason = SNES_CONVERGED_ITERATING;
  if (PetscIsInfOrNanReal(fnorm) || PetscIsInfOrNanReal(bs->last_maxres)) *reason = SNES_DIVERGED_FNORM_NAN;
  else if (bs->last_maxres <= bs->atol) *reason = SNES_CONVERGED_FNORM_ABS;
  else if (it >= maxit) *reason = SNES_DIVERGED_MAX_IT;
  PetscFunctionReturn(0);
}

/* Make Fx = F(x), reusing the last residual evaluation when it was at the same point (the
   solvers evaluate G at the point they then accept, so this saves a GEMM per solve). */
static void LayerAt(TNBlockSolver bs, const PetscScalar *xa)
{
  BatchSolver *c = bs->cur;
  size_t       bytes = (size_t)(c->B * bs->n) * sizeof(PetscScalar);

  if (bs->have_last && !memcmp(xa, c->xlast, bytes)) return;
  LayerEval(bs->layer, c->B, xa, c->Z, c->Fx);
  memcpy(c->xlast, xa, bytes);
  bs->have_last = PETSC_TRUE;
}

/* D = s'(A x + b) at the current iterate */
static PetscErrorCode DerivativeAt(TNBlockSolver bs, Vec x)
{
  BatchSolver       *c = bs->cur;
  const PetscScalar *xa;

  PetscFunctionBegin;
  PetscCall(VecGetArrayRead(x, &xa));
  LayerAt(bs, xa);
  PetscCall(VecRestoreArrayRead(x, &xa));
  TNActivationDerivative(bs->layer->act, c->B * bs->n, c->Fx, c->D);
  PetscFunctionReturn(0);
}

/* Fill the BAIJ matrix with the n x n blocks I - h theta diag(D_s) A. */
static PetscErrorCode AssembleBlocks(TNBlockSolver bs, Mat Jb)
{
  BatchSolver        *c = bs->cur;
  const TNBlockLayer *L = bs->layer;
  const PetscInt      n = bs->n;
  const PetscReal     ht = L->h * L->theta;

  PetscFunctionBegin;
  for (PetscInt s = 0; s < c->B; s++) {
    const PetscScalar *D = c->D + s * n;
    for (PetscInt i = 0; i < n; i++)
      for (PetscInt k = 0; k < n; k++) c->work[i * n + k] = (i == k ? 1.0 : 0.0) - ht * D[i] * L->A[i * n + k];
    PetscCall(MatSetValuesBlocked(Jb, 1, &s, 1, &s, c->work, INSERT_VALUES));
  }
  PetscCall(MatAssemblyBegin(Jb, MAT_FINAL_ASSEMBLY));
  PetscCall(MatAssemblyEnd(Jb, MAT_FINAL_ASSEMBLY));
  PetscFunctionReturn(0);
}

static PetscErrorCode FormJacobian(SNES snes, Vec x, Mat J, Mat P, void *ctx)
{
  TNBlockSolver bs = (TNBlockSolver)ctx;

  PetscFunctionBegin;
  (void)snes;
  (void)J;
  PetscCall(DerivativeAt(bs, x));
  if (P != bs->cur->J) PetscCall(AssembleBlocks(bs, P));
  PetscFunctionReturn(0);
}

/* J v = v - h theta D.(A v), per sample row */
static PetscErrorCode JacobianMult(Mat J, Vec v, Vec out)
{
  TNBlockSolver       bs;
  BatchSolver        *c;
  const TNBlockLayer *L;
  const PetscScalar  *va;
  PetscScalar        *oa;
  PetscReal           ht;

  PetscFunctionBegin;
  PetscCall(MatShellGetContext(J, &bs));
  c  = bs->cur;
  L  = bs->layer;
  ht = L->h * L->theta;
  PetscCall(VecGetArrayRead(v, &va));
  PetscCall(VecGetArrayWrite(out, &oa));
  TNRowsApply(c->B, L->n, L->n, va, L->A, NULL, oa);
  for (PetscInt i = 0; i < c->B * L->n; i++) oa[i] = va[i] - ht * c->D[i] * oa[i];
  PetscCall(VecRestoreArrayWrite(out, &oa));
  PetscCall(VecRestoreArrayRead(v, &va));
  PetscFunctionReturn(0);
}

/* J^T v = v - h theta A^T (D.v), per sample row (row-major: (D.v) A) */
static PetscErrorCode JacobianMultTranspose(Mat J, Vec v, Vec out)
{
  TNBlockSolver       bs;
  BatchSolver        *c;
  const TNBlockLayer *L;
  const PetscScalar  *va;
  PetscScalar        *oa;
  PetscReal           ht;

  PetscFunctionBegin;
  PetscCall(MatShellGetContext(J, &bs));
  c  = bs->cur;
  L  = bs->layer;
  ht = L->h * L->theta;
  PetscCall(VecGetArrayRead(v, &va));
  PetscCall(VecGetArrayWrite(out, &oa));
  for (PetscInt i = 0; i < c->B * L->n; i++) c->work[i] = c->D[i] * va[i];
  for (PetscInt i = 0; i < c->B * L->n; i++) oa[i] = va[i];
  TNRowsApplyTranspose(c->B, L->n, L->n, c->work, L->A, 1.0, oa);
  /* oa = v + (D.v) A; fix the sign and scale without a second pass over A */
  for (PetscInt i = 0; i < c->B * L->n; i++) oa[i] = va[i] - ht * (oa[i] - va[i]);
  PetscCall(VecRestoreArrayWrite(out, &oa));
  PetscCall(VecRestoreArrayRead(v, &va));
  PetscFunctionReturn(0);
}

static PetscBool MethodAssembled(TNBlockMethod m)
{
  return m == TN_BLOCK_NEWTON_ASSEMBLED ? PETSC_TRUE : PETSC_FALSE;
}

static PetscErrorCode BatchSolverSetUp(TNBlockSolver bs, BatchSolver *c, PetscInt B)
{
  const PetscInt n = bs->n, N = B * n;
  SNESLineSearch ls;
  KSP            sksp;
  PC             pc;
  Mat            P;

  PetscFunctionBegin;
  c->B = B;
  PetscCall(VecCreateSeq(PETSC_COMM_SELF, N, &c->x));
  PetscCall(VecDuplicate(c->x, &c->f));
  PetscCall(VecDuplicate(c->x, &c->rhs));
  PetscCall(VecDuplicate(c->x, &c->lam));
  PetscCall(VecDuplicate(c->x, &c->mu));
  PetscCall(PetscMalloc5(N, &c->Z, N, &c->Fx, N, &c->D, PetscMax(N, n * n), &c->work, N, &c->xlast));
  PetscCall(MatCreateShell(PETSC_COMM_SELF, N, N, N, N, bs, &c->J));
  PetscCall(MatShellSetOperation(c->J, MATOP_MULT, (void (*)(void))JacobianMult));
  PetscCall(MatShellSetOperation(c->J, MATOP_MULT_TRANSPOSE, (void (*)(void))JacobianMultTranspose));
  P = c->J;
  if (MethodAssembled(bs->method)) {
    PetscCall(MatCreateSeqBAIJ(PETSC_COMM_SELF, n, N, N, 1, NULL, &c->Jb));
    PetscCall(MatSetOption(c->Jb, MAT_ROW_ORIENTED, PETSC_TRUE));
    P = c->Jb;
  }

  PetscCall(SNESCreate(PETSC_COMM_SELF, &c->snes));
  PetscCall(SNESSetOptionsPrefix(c->snes, "block_"));
  PetscCall(SNESSetFunction(c->snes, c->f, FormResidual, bs));
  PetscCall(SNESSetJacobian(c->snes, c->J, P, FormJacobian, bs));
  PetscCall(SNESSetConvergenceTest(c->snes, ConvergedPerSample, bs, NULL));
  PetscCall(SNESSetTolerances(c->snes, PETSC_DEFAULT, PETSC_DEFAULT, PETSC_DEFAULT, 100, 10000));
  PetscCall(SNESGetLineSearch(c->snes, &ls));
  PetscCall(SNESLineSearchSetType(ls, SNESLINESEARCHBASIC));
  PetscCall(SNESGetKSP(c->snes, &sksp));
  PetscCall(KSPGetPC(sksp, &pc));
  switch (bs->method) {
  case TN_BLOCK_NEWTON:
    PetscCall(SNESSetType(c->snes, SNESNEWTONLS));
    PetscCall(SNESLineSearchSetType(ls, SNESLINESEARCHBT));
    PetscCall(KSPSetType(sksp, KSPGMRES));
    PetscCall(PCSetType(pc, PCNONE));
    break;
  case TN_BLOCK_NEWTON_ASSEMBLED:
    PetscCall(SNESSetType(c->snes, SNESNEWTONLS));
    PetscCall(SNESLineSearchSetType(ls, SNESLINESEARCHBT));
    PetscCall(KSPSetType(sksp, KSPPREONLY));
    PetscCall(PCSetType(pc, PCPBJACOBI));
    break;
  case TN_BLOCK_ANDERSON:
    PetscCall(SNESSetType(c->snes, SNESANDERSON));
    PetscCall(PCSetType(pc, PCNONE));
    break;
  default:
    PetscCall(SNESSetType(c->snes, SNESNRICHARDSON));
    PetscCall(PCSetType(pc, PCNONE));
    break;
  }
  PetscCall(SNESSetFromOptions(c->snes));

  PetscCall(KSPCreate(PETSC_COMM_SELF, &c->ksp));
  PetscCall(KSPSetOptionsPrefix(c->ksp, "adjoint_"));
  PetscCall(KSPSetOperators(c->ksp, c->J, P));
  PetscCall(KSPGetPC(c->ksp, &pc));
  if (MethodAssembled(bs->method)) {
    /* the assembled block-diagonal transpose is exact: one application solves it */
    PetscCall(KSPSetType(c->ksp, KSPPREONLY));
    PetscCall(PCSetType(pc, PCPBJACOBI));
  } else {
    PetscCall(KSPSetType(c->ksp, KSPGMRES));
    PetscCall(PCSetType(pc, PCNONE));
  }
  PetscCall(KSPSetTolerances(c->ksp, 1e-10, 1e-50, PETSC_DEFAULT, 200));
  PetscCall(KSPSetFromOptions(c->ksp));
  PetscFunctionReturn(0);
}

static PetscErrorCode BatchSolverDestroy(BatchSolver *c)
{
  PetscFunctionBegin;
  if (!c->B) PetscFunctionReturn(0);
  PetscCall(VecDestroy(&c->x));
  PetscCall(VecDestroy(&c->f));
  PetscCall(VecDestroy(&c->rhs));
  PetscCall(VecDestroy(&c->lam));
  PetscCall(VecDestroy(&c->mu));
  PetscCall(MatDestroy(&c->J));
  PetscCall(MatDestroy(&c->Jb));
  PetscCall(SNESDestroy(&c->snes));
  PetscCall(KSPDestroy(&c->ksp));
  PetscCall(PetscFree5(c->Z, c->Fx, c->D, c->work, c->xlast));
  PetscCall(PetscMemzero(c, sizeof(*c)));
  PetscFunctionReturn(0);
}

/* The solvers for batch size B: a cached one, or the least recently used slot rebuilt. */
static PetscErrorCode BatchSolverGet(TNBlockSolver bs, PetscInt B, BatchSolver **out)
{
  BatchSolver *slot = &bs->cache[0];

  PetscFunctionBegin;
  for (PetscInt i = 0; i < TN_BATCH_CACHE; i++) {
    if (bs->cache[i].B == B) {
      slot = &bs->cache[i];
      goto found;
    }
    if (bs->cache[i].last_use < slot->last_use) slot = &bs->cache[i];
  }
  PetscCall(BatchSolverDestroy(slot));
  PetscCall(BatchSolverSetUp(bs, slot, B));
found:
  slot->last_use = ++bs->use_clock;
  *out           = slot;
  PetscFunctionReturn(0);
}

PetscErrorCode TNBlockSolverCreate(PetscInt width, TNBlockSolver *out)
{
  TNBlockSolver bs;

  PetscFunctionBegin;
  PetscCall(PetscNew(&bs));
  bs->n      = width;
  bs->method = TN_BLOCK_AUTO;
  bs->guess  = TN_GUESS_EXPLICIT;
  bs->atol   = 1e-10;
  *out       = bs;
  PetscFunctionReturn(0);
}

PetscErrorCode TNBlockSolverSetFromOptions(TNBlockSolver bs)
{
  PetscFunctionBegin;
  PetscOptionsBegin(PETSC_COMM_WORLD, NULL, "Implicit block solver", "thetanet");
  PetscCall(PetscOptionsEnum("-block_method", "Forward block solver (auto: by width)", "TNBlockSolverSetFromOptions",
                             TNBlockMethods, (PetscEnum)bs->method, (PetscEnum *)&bs->method, NULL));
  PetscCall(PetscOptionsEnum("-block_guess", "Initial guess of a block solve", "TNBlockSolverSetFromOptions", TNBlockGuesses,
                             (PetscEnum)bs->guess, (PetscEnum *)&bs->guess, NULL));
  PetscCall(PetscOptionsReal("-block_atol", "Largest per-sample residual norm of a converged block", "TNBlockSolverSetFromOptions",
                             bs->atol, &bs->atol, NULL));
  PetscOptionsEnd();
  PetscCheck(bs->atol > 0, PETSC_COMM_WORLD, TN_ERR_USER, "-block_atol must be positive, got %g", (double)bs->atol);
  if (bs->method == TN_BLOCK_AUTO) bs->method = bs->n <= TN_ASSEMBLED_MAX_WIDTH ? TN_BLOCK_NEWTON_ASSEMBLED : TN_BLOCK_ANDERSON;
  for (PetscInt i = 0; i < TN_BATCH_CACHE; i++) PetscCall(BatchSolverDestroy(&bs->cache[i]));
  PetscFunctionReturn(0);
}

PetscErrorCode TNBlockSolverDestroy(TNBlockSolver *bs)
{
  PetscFunctionBegin;
  if (!*bs) PetscFunctionReturn(0);
  for (PetscInt i = 0; i < TN_BATCH_CACHE; i++) PetscCall(BatchSolverDestroy(&(*bs)->cache[i]));
  PetscCall(PetscFree(*bs));
  PetscFunctionReturn(0);
}

PetscErrorCode TNBlockSolverSetUp(TNBlockSolver bs, PetscInt B)
{
  BatchSolver *c;

  PetscFunctionBegin;
  if (bs->method == TN_BLOCK_AUTO) PetscCall(TNBlockSolverSetFromOptions(bs));
  PetscCall(BatchSolverGet(bs, B, &c));
  PetscFunctionReturn(0);
}

PetscErrorCode TNBlockSolverGetMethod(TNBlockSolver bs, TNBlockMethod *m)
{
  PetscFunctionBegin;
  *m = bs->method;
  PetscFunctionReturn(0);
}

/* The paper's linearised estimate y_j + (I - h theta J_F(y_j))^{-1} h F(y_j), J_F(y_j) = D_j A. */
static PetscErrorCode LinearizedGuess(TNBlockSolver bs, const PetscScalar *Fj, PetscScalar *y)
{
  BatchSolver    *c = bs->cur;
  const PetscInt  N = c->B * bs->n;
  PetscScalar    *rhs;
  const PetscReal h = bs->layer->h;
  PetscInt        its;

  PetscFunctionBegin;
  TNActivationDerivative(bs->layer->act, N, Fj, c->D);
  if (c->Jb) PetscCall(AssembleBlocks(bs, c->Jb));
  PetscCall(VecGetArrayWrite(c->rhs, &rhs));
  for (PetscInt i = 0; i < N; i++) rhs[i] = h * Fj[i];
  PetscCall(VecRestoreArrayWrite(c->rhs, &rhs));
  PetscCall(KSPSolve(c->ksp, c->rhs, c->mu));
  PetscCall(KSPGetIterationNumber(c->ksp, &its));
  bs->krylov += its;
  {
    const PetscScalar *du;
    PetscCall(VecGetArrayRead(c->mu, &du));
    for (PetscInt i = 0; i < N; i++) y[i] += du[i];
    PetscCall(VecRestoreArrayRead(c->mu, &du));
  }
  PetscFunctionReturn(0);
}

PetscErrorCode TNBlockSolverSolve(TNBlockSolver bs, const TNBlockLayer *L, PetscInt B, const PetscScalar *Fj,
                                  const PetscScalar *r, PetscScalar *y, PetscScalar *Fn, PetscBool *converged,
                                  PetscReal *residual)
{
  BatchSolver        *c;
  const PetscInt      N = B * L->n;
  SNESConvergedReason reason;
  PetscInt            its, lits;

  PetscFunctionBegin;
  PetscCheck(L->n == bs->n, PETSC_COMM_SELF, PETSC_ERR_ARG_SIZ, "block width %" PetscInt_FMT " != solver width %" PetscInt_FMT, L->n, bs->n);
  if (bs->method == TN_BLOCK_AUTO) PetscCall(TNBlockSolverSetFromOptions(bs));
  PetscCall(BatchSolverGet(bs, B, &c));
  bs->cur    = c;
  bs->layer  = L;
  bs->r         = r;
  bs->have_last = PETSC_FALSE;
  /* explicit predictor y_j + h F(y_j), optionally refined by the linearised step */
  if (bs->guess == TN_GUESS_LINEARIZED) PetscCall(LinearizedGuess(bs, Fj, y));
  else
    for (PetscInt i = 0; i < N; i++) y[i] += L->h * Fj[i];
  PetscCall(VecPlaceArray(c->x, y));
  PetscCall(SNESSolve(c->snes, NULL, c->x));
  PetscCall(SNESGetConvergedReason(c->snes, &reason));
  PetscCall(SNESGetIterationNumber(c->snes, &its));
  PetscCall(SNESGetLinearSolveIterations(c->snes, &lits));
  bs->newton += its;
  bs->krylov += lits;
  bs->solves++;
  PetscCall(VecResetArray(c->x));
  LayerAt(bs, y);
  PetscCall(PetscArraycpy(Fn, c->Fx, N));
  *converged = reason > 0 ? PETSC_TRUE : PETSC_FALSE;
  *residual  = bs->last_maxres;
  PetscFunctionReturn(0);
}

PetscErrorCode TNBlockSolverAdjoint(TNBlockSolver bs, const TNBlockLayer *L, PetscInt B, const PetscScalar *D,
                                    const PetscScalar *lambda, PetscScalar *mu, PetscBool *converged, PetscReal *residual)
{
  BatchSolver       *c;
  KSPConvergedReason reason;
  PetscInt           its;

  PetscFunctionBegin;
  if (bs->method == TN_BLOCK_AUTO) PetscCall(TNBlockSolverSetFromOptions(bs));
  PetscCall(BatchSolverGet(bs, B, &c));
  bs->cur   = c;
  bs->layer = L;
  PetscCall(PetscArraycpy(c->D, D, B * L->n));
  if (c->Jb) PetscCall(AssembleBlocks(bs, c->Jb));
  PetscCall(VecPlaceArray(c->lam, lambda));
  PetscCall(VecPlaceArray(c->mu, mu));
  PetscCall(KSPSolveTranspose(c->ksp, c->lam, c->mu));
  PetscCall(KSPGetConvergedReason(c->ksp, &reason));
  PetscCall(KSPGetIterationNumber(c->ksp, &its));
  PetscCall(KSPGetResidualNorm(c->ksp, residual));
  PetscCall(VecResetArray(c->lam));
  PetscCall(VecResetArray(c->mu));
  bs->krylov += its;
  *converged = reason > 0 ? PETSC_TRUE : PETSC_FALSE;
  PetscFunctionReturn(0);
}

PetscErrorCode TNBlockSolverGetCounts(TNBlockSolver bs, PetscInt64 *newton, PetscInt64 *krylov, PetscInt64 *solves)
{
  PetscFunctionBegin;
  if (newton) *newton = bs->newton;
  if (krylov) *krylov = bs->krylov;
  if (solves) *solves = bs->solves;
  PetscFunctionReturn(0);
}

PetscErrorCode TNBlockSolverResetCounts(TNBlockSolver bs)
{
  PetscFunctionBegin;
  bs->newton = bs->krylov = bs->solves = 0;
  PetscFunctionReturn(0);
}

/* Consistency of the layer's operators at y (braid_TestAll-style): the MATSHELL Jacobian
   against central differences of the residual G, and its transpose by a dot-product test.
   Returns relative errors; both should be near rounding for a correct layer. */
PetscErrorCode TNBlockSolverSelfTest(TNBlockSolver bs, const TNBlockLayer *L, PetscInt B, const PetscScalar *y,
                                     PetscReal *jacobian_error, PetscReal *transpose_error)
{
  BatchSolver    *c;
  const PetscInt  N = B * L->n;
  const PetscReal eps = 1e-6;
  Vec             v, w, Jv, JTw, yp, Gp, Gm;
  PetscRandom     rnd;
  PetscScalar     vJTw, wJv, *r;
  PetscReal       nJv, nd;

  PetscFunctionBegin;
  if (bs->method == TN_BLOCK_AUTO) PetscCall(TNBlockSolverSetFromOptions(bs));
  PetscCall(BatchSolverGet(bs, B, &c));
  bs->cur       = c;
  bs->layer     = L;
  bs->have_last = PETSC_FALSE;
  PetscCall(PetscCalloc1(N, &r));
  bs->r = r; /* G(y) = y - h theta F(y): the explicit part does not enter the Jacobian */
  PetscCall(VecDuplicate(c->x, &v));
  PetscCall(VecDuplicate(c->x, &w));
  PetscCall(VecDuplicate(c->x, &Jv));
  PetscCall(VecDuplicate(c->x, &JTw));
  PetscCall(VecDuplicate(c->x, &yp));
  PetscCall(VecDuplicate(c->x, &Gp));
  PetscCall(VecDuplicate(c->x, &Gm));
  PetscCall(PetscRandomCreate(PETSC_COMM_SELF, &rnd));
  PetscCall(PetscRandomSetInterval(rnd, -1.0, 1.0));
  PetscCall(VecSetRandom(v, rnd));
  PetscCall(VecSetRandom(w, rnd));
  PetscCall(PetscRandomDestroy(&rnd));

  PetscCall(VecPlaceArray(c->x, y));
  PetscCall(DerivativeAt(bs, c->x));
  PetscCall(VecResetArray(c->x));
  PetscCall(MatMult(c->J, v, Jv));
  PetscCall(MatMultTranspose(c->J, w, JTw));
  PetscCall(VecDot(v, JTw, &vJTw));
  PetscCall(VecDot(w, Jv, &wJv));
  *transpose_error = PetscAbsScalar(vJTw - wJv) / PetscMax(PetscAbsScalar(wJv), PETSC_SMALL);

  /* (G(y + eps v) - G(y - eps v)) / (2 eps) */
  PetscCall(VecPlaceArray(c->x, y));
  PetscCall(VecWAXPY(yp, eps, v, c->x));
  PetscCall(VecResetArray(c->x));
  PetscCall(FormResidual(c->snes, yp, Gp, bs));
  PetscCall(VecAXPY(yp, -2 * eps, v));
  PetscCall(FormResidual(c->snes, yp, Gm, bs));
  PetscCall(VecAXPY(Gp, -1.0, Gm));
  PetscCall(VecScale(Gp, 1.0 / (2 * eps)));
  PetscCall(VecAXPY(Gp, -1.0, Jv));
  PetscCall(VecNorm(Gp, NORM_2, &nd));
  PetscCall(VecNorm(Jv, NORM_2, &nJv));
  *jacobian_error = nd / nJv;

  PetscCall(VecDestroy(&v));
  PetscCall(VecDestroy(&w));
  PetscCall(VecDestroy(&Jv));
  PetscCall(VecDestroy(&JTw));
  PetscCall(VecDestroy(&yp));
  PetscCall(VecDestroy(&Gp));
  PetscCall(VecDestroy(&Gm));
  PetscCall(PetscFree(r));
  PetscFunctionReturn(0);
}
