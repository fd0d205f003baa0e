/* SNES forward solve and KSP transpose (adjoint) solve of one implicit theta-block over a local
   batch. The batch is one vector of B*n unknowns whose Jacobian is block diagonal over samples. */
#include "blocksolver.h"
#include "activation.h"
#include "rows.h"
#include <petscsnes.h>
#include <string.h>

const char *const TNBlockMethods[] = {"auto",   "newton",        "newton_assembled", "anderson",
                                      "picard", "TNBlockMethod", "TN_BLOCK_",        NULL};
const char *const TNBlockGuesses[] = {"explicit", "linearized", "TNBlockGuess", "TN_GUESS_", NULL};

/* -block_method auto (measured with jobs/bench/block_methods.sh): up to this width Newton with
   the assembled Jacobian and exact n x n block solves is fastest; wider layers use Picard
   iterations (one GEMM each), with Newton-GMRES as fallback where Picard does not contract. */
#define TN_ASSEMBLED_MAX_WIDTH 4
/* Default tolerances: per-sample forward residual, relative adjoint residual. */
#define TN_BLOCK_ATOL 1e-6
#define TN_ADJOINT_RTOL 1e-6

/* Solvers for one batch size; the last batch of an epoch and evaluation may differ in size,
   so a small cache of them is kept and each is created once. */
typedef struct {
  PetscInt B;
  Vec x, f, rhs, lam, mu;
  Mat J;                                  /* MATSHELL: v -> v - h theta D.(A v) per sample */
  Mat Jb;                                 /* BAIJ block-diagonal copy of J, assembled methods only */
  SNES snes, snes_fb;                     /* block_, and the Newton fallback of -block_method auto */
  KSP ksp, ksp_fb;                        /* adjoint_, and its GMRES fallback */
  PetscScalar *Z, *Fx, *D, *work, *xlast; /* Fx = F(xlast), Z = A xlast + b */
  PetscScalar *guess;                     /* the initial guess, kept for a fallback solve */
  PetscInt64 last_use;
} BatchSolver;

#define TN_BATCH_CACHE 2

struct _n_TNBlockSolver {
  PetscInt n;
  TNBlockMethod requested; /* as asked for: may be auto */
  TNBlockMethod method;    /* resolved: never auto */
  PetscBool fallback;      /* auto: retry a failed Picard solve with Newton-GMRES */
  PetscBool view;          /* -block_view: print the solver at its next set-up */
  PetscInt rough_its;      /* > 0: iterations a rough solve (an MGRIT coarse step) may take, no fallback */
  TNBlockGuess guess;
  PetscReal atol;
  BatchSolver cache[TN_BATCH_CACHE];
  PetscInt64 use_clock;
  /* the current solve */
  const TNBlockLayer *layer;
  BatchSolver *cur;
  const PetscScalar *r;
  PetscReal last_maxres; /* largest per-sample residual of the last evaluation */
  PetscBool have_last;   /* xlast holds a point of this solve */
  PetscInt64 newton, krylov, solves;
};

/* F = s(A y + b) for the rows of y, keeping Z = A y + b. */
static void LayerEval(const TNBlockLayer *L, PetscInt B, const PetscScalar *y, PetscScalar *Z, PetscScalar *F)
{
  TNRowsApply(B, L->n, L->n, y, L->A, L->b, Z);
  TNActivate(L->act, B * L->n, Z, F);
}

static PetscErrorCode FormResidual(SNES snes, Vec x, Vec g, void *ctx)
{
  TNBlockSolver bs      = (TNBlockSolver)ctx;
  BatchSolver *c        = bs->cur;
  const TNBlockLayer *L = bs->layer;
  const PetscReal ht    = L->h * L->theta;
  const PetscScalar *xa;
  PetscScalar *ga;
  PetscReal maxres = 0;

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
  PetscInt maxit;

  PetscFunctionBegin;
  (void)xnorm;
  (void)snorm;
  PetscCall(SNESGetTolerances(snes, NULL, NULL, NULL, &maxit, NULL));
  *reason = SNES_CONVERGED_ITERATING;
  if (PetscIsInfOrNanReal(fnorm) || PetscIsInfOrNanReal(bs->last_maxres))
    *reason = SNES_DIVERGED_FNORM_NAN;
  else if (bs->last_maxres <= bs->atol)
    *reason = SNES_CONVERGED_FNORM_ABS;
  else if (it >= maxit)
    *reason = SNES_DIVERGED_MAX_IT;
  PetscFunctionReturn(0);
}

/* Make Fx = F(x), reusing the last residual evaluation when it was at the same point (the
   solvers evaluate G at the point they then accept, so this saves a GEMM per solve). */
static void LayerAt(TNBlockSolver bs, const PetscScalar *xa)
{
  BatchSolver *c = bs->cur;
  size_t bytes   = (size_t)(c->B * bs->n) * sizeof(PetscScalar);

  if (bs->have_last && !memcmp(xa, c->xlast, bytes)) return;
  LayerEval(bs->layer, c->B, xa, c->Z, c->Fx);
  memcpy(c->xlast, xa, bytes);
  bs->have_last = PETSC_TRUE;
}

/* D = s'(A x + b) at the current iterate */
static PetscErrorCode DerivativeAt(TNBlockSolver bs, Vec x)
{
  BatchSolver *c = bs->cur;
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
  BatchSolver *c        = bs->cur;
  const TNBlockLayer *L = bs->layer;
  const PetscInt n      = bs->n;
  const PetscReal ht    = L->h * L->theta;

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

/* J v = v - h theta D.(A v) and J^T v = v - h theta A^T (D.v) (row-major: (D.v) A), per sample row */
static PetscErrorCode JacobianApply(Mat J, Vec v, Vec out, PetscBool transpose)
{
  TNBlockSolver bs;
  BatchSolver *c;
  const TNBlockLayer *L;
  const PetscScalar *va;
  PetscScalar *oa;
  PetscReal ht;

  PetscFunctionBegin;
  PetscCall(MatShellGetContext(J, &bs));
  c  = bs->cur;
  L  = bs->layer;
  ht = L->h * L->theta;
  PetscCall(VecGetArrayRead(v, &va));
  PetscCall(VecGetArrayWrite(out, &oa));
  if (!transpose) {
    TNRowsApply(c->B, L->n, L->n, va, L->A, NULL, oa);
    for (PetscInt i = 0; i < c->B * L->n; i++) oa[i] = va[i] - ht * c->D[i] * oa[i];
  } else {
    for (PetscInt i = 0; i < c->B * L->n; i++) {
      c->work[i] = c->D[i] * va[i];
      oa[i]      = va[i];
    }
    TNRowsApplyTranspose(c->B, L->n, L->n, -ht, c->work, L->A, 1.0, oa);
  }
  PetscCall(VecRestoreArrayWrite(out, &oa));
  PetscCall(VecRestoreArrayRead(v, &va));
  PetscFunctionReturn(0);
}

static PetscErrorCode JacobianMult(Mat J, Vec v, Vec out)
{
  PetscFunctionBegin;
  PetscCall(JacobianApply(J, v, out, PETSC_FALSE));
  PetscFunctionReturn(0);
}

static PetscErrorCode JacobianMultTranspose(Mat J, Vec v, Vec out)
{
  PetscFunctionBegin;
  PetscCall(JacobianApply(J, v, out, PETSC_TRUE));
  PetscFunctionReturn(0);
}

/* Forward solver of one kind, options prefix `prefix`. */
static PetscErrorCode ForwardSolverCreate(TNBlockSolver bs, BatchSolver *c, TNBlockMethod method, const char *prefix,
                                          SNES *out)
{
  SNES snes;
  SNESLineSearch ls;
  KSP ksp;
  PC pc;

  PetscFunctionBegin;
  PetscCall(SNESCreate(PETSC_COMM_SELF, &snes));
  PetscCall(SNESSetOptionsPrefix(snes, prefix));
  PetscCall(SNESSetFunction(snes, c->f, FormResidual, bs));
  PetscCall(SNESSetJacobian(snes, c->J, method == TN_BLOCK_NEWTON_ASSEMBLED ? c->Jb : c->J, FormJacobian, bs));
  PetscCall(SNESSetConvergenceTest(snes, ConvergedPerSample, bs, NULL));
  PetscCall(SNESSetTolerances(snes, PETSC_DEFAULT, PETSC_DEFAULT, PETSC_DEFAULT, 100, 10000));
  PetscCall(SNESGetKSP(snes, &ksp));
  PetscCall(KSPGetPC(ksp, &pc));
  /* The Jacobian is block diagonal over samples: full Newton steps keep the samples
     independent, where a line search would pick one step length for the whole batch and let
     one hard sample stall all the others. */
  PetscCall(SNESGetLineSearch(snes, &ls));
  PetscCall(SNESLineSearchSetType(ls, SNESLINESEARCHBASIC));
  switch (method) {
  case TN_BLOCK_NEWTON:
    PetscCall(SNESSetType(snes, SNESNEWTONLS));
    PetscCall(KSPSetType(ksp, KSPGMRES));
    PetscCall(PCSetType(pc, PCNONE));
    break;
  case TN_BLOCK_NEWTON_ASSEMBLED:
    PetscCall(SNESSetType(snes, SNESNEWTONLS));
    PetscCall(KSPSetType(ksp, KSPPREONLY));
    PetscCall(PCSetType(pc, PCPBJACOBI));
    break;
  case TN_BLOCK_ANDERSON:
    PetscCall(SNESSetType(snes, SNESANDERSON));
    PetscCall(PCSetType(pc, PCNONE));
    break;
  default:
    /* Picard: x <- x - G(x) = r + h theta F(x). The per-sample test needs no global norms. */
    PetscCall(SNESSetType(snes, SNESNRICHARDSON));
    PetscCall(PCSetType(pc, PCNONE));
    PetscCall(SNESGetLineSearch(snes, &ls));
    PetscCall(SNESLineSearchSetComputeNorms(ls, PETSC_FALSE));
    break;
  }
  PetscCall(SNESSetFromOptions(snes));
  *out = snes;
  PetscFunctionReturn(0);
}

/* Adjoint solver: Richardson pairs with Picard (both converge when the spectral radius of
   h theta diag(D) A is below one, the same for the operator and its transpose), GMRES with
   the Newton and Anderson solves, an exact pbjacobi block solve with the assembled Jacobian. */
static PetscErrorCode AdjointSolverCreate(BatchSolver *c, TNBlockMethod method, const char *prefix, KSP *out)
{
  KSP ksp;
  PC pc;

  PetscFunctionBegin;
  PetscCall(KSPCreate(PETSC_COMM_SELF, &ksp));
  PetscCall(KSPSetOptionsPrefix(ksp, prefix));
  PetscCall(KSPSetOperators(ksp, c->J, method == TN_BLOCK_NEWTON_ASSEMBLED ? c->Jb : c->J));
  PetscCall(KSPGetPC(ksp, &pc));
  PetscCall(KSPSetTolerances(ksp, TN_ADJOINT_RTOL, 1e-50, PETSC_DEFAULT, 200));
  if (method == TN_BLOCK_NEWTON_ASSEMBLED) {
    PetscCall(KSPSetType(ksp, KSPPREONLY));
    PetscCall(PCSetType(pc, PCPBJACOBI));
  } else if (method == TN_BLOCK_PICARD) {
    PetscCall(KSPSetType(ksp, KSPRICHARDSON));
    PetscCall(PCSetType(pc, PCNONE));
    PetscCall(KSPSetTolerances(ksp, TN_ADJOINT_RTOL, 1e-50, 1e3, 100));
  } else {
    PetscCall(KSPSetType(ksp, KSPGMRES));
    PetscCall(PCSetType(pc, PCNONE));
  }
  PetscCall(KSPSetFromOptions(ksp));
  *out = ksp;
  PetscFunctionReturn(0);
}

static PetscErrorCode BatchSolverSetUp(TNBlockSolver bs, BatchSolver *c, PetscInt B)
{
  const PetscInt n = bs->n, N = B * n;

  PetscFunctionBegin;
  c->B = B;
  PetscCall(VecCreateSeq(PETSC_COMM_SELF, N, &c->x));
  PetscCall(VecDuplicate(c->x, &c->f));
  PetscCall(VecDuplicate(c->x, &c->rhs));
  PetscCall(VecDuplicate(c->x, &c->lam));
  PetscCall(VecDuplicate(c->x, &c->mu));
  PetscCall(PetscMalloc6(N, &c->Z, N, &c->Fx, N, &c->D, PetscMax(N, n * n), &c->work, N, &c->xlast, N, &c->guess));
  PetscCall(MatCreateShell(PETSC_COMM_SELF, N, N, N, N, bs, &c->J));
  PetscCall(MatShellSetOperation(c->J, MATOP_MULT, (void (*)(void))JacobianMult));
  PetscCall(MatShellSetOperation(c->J, MATOP_MULT_TRANSPOSE, (void (*)(void))JacobianMultTranspose));
  if (bs->method == TN_BLOCK_NEWTON_ASSEMBLED) {
    PetscCall(MatCreateSeqBAIJ(PETSC_COMM_SELF, n, N, N, 1, NULL, &c->Jb));
    PetscCall(MatSetOption(c->Jb, MAT_ROW_ORIENTED, PETSC_TRUE));
  }
  PetscCall(ForwardSolverCreate(bs, c, bs->method, "block_", &c->snes));
  PetscCall(AdjointSolverCreate(c, bs->method, "adjoint_", &c->ksp));
  if (bs->fallback) {
    PetscCall(ForwardSolverCreate(bs, c, TN_BLOCK_NEWTON, "block_fallback_", &c->snes_fb));
    PetscCall(AdjointSolverCreate(c, TN_BLOCK_NEWTON, "adjoint_fallback_", &c->ksp_fb));
  }
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
  PetscCall(SNESDestroy(&c->snes_fb));
  PetscCall(KSPDestroy(&c->ksp_fb));
  PetscCall(PetscFree6(c->Z, c->Fx, c->D, c->work, c->xlast, c->guess));
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

static PetscClassId TN_CLASSID_BLOCK;
static PetscLogEvent TN_EVENT_BLOCK, TN_EVENT_ADJOINT;

/* The method a request resolves to: auto picks by width and adds the fallback. */
static void Resolve(TNBlockSolver bs)
{
  bs->method   = bs->requested;
  bs->fallback = PETSC_FALSE;
  if (bs->requested == TN_BLOCK_AUTO) {
    bs->method   = bs->n <= TN_ASSEMBLED_MAX_WIDTH ? TN_BLOCK_NEWTON_ASSEMBLED : TN_BLOCK_PICARD;
    bs->fallback = bs->method == TN_BLOCK_PICARD ? PETSC_TRUE : PETSC_FALSE;
  }
}

PetscErrorCode TNBlockSolverCreate(PetscInt width, TNBlockSolver *out)
{
  TNBlockSolver bs;

  PetscFunctionBegin;
  if (!TN_CLASSID_BLOCK) {
    PetscCall(PetscClassIdRegister("TNBlockSolver", &TN_CLASSID_BLOCK));
    PetscCall(PetscLogEventRegister("TNBlockSolve", TN_CLASSID_BLOCK, &TN_EVENT_BLOCK));
    PetscCall(PetscLogEventRegister("TNAdjointSolve", TN_CLASSID_BLOCK, &TN_EVENT_ADJOINT));
  }
  PetscCheck(width > 0, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE, "block width must be positive, got %" PetscInt_FMT,
             width);
  PetscCall(PetscNew(&bs));
  bs->n         = width;
  bs->requested = TN_BLOCK_AUTO;
  bs->guess     = TN_GUESS_EXPLICIT;
  bs->atol      = TN_BLOCK_ATOL;
  Resolve(bs);
  *out = bs;
  PetscFunctionReturn(0);
}

PetscErrorCode TNBlockSolverSetFromOptions(TNBlockSolver bs)
{
  PetscFunctionBegin;
  PetscOptionsBegin(PETSC_COMM_WORLD, NULL, "Implicit block solver", "thetanet");
  PetscCall(TNOptionsEnum("-block_method", "Forward block solver (auto: by width)", "TNBlockSolverSetFromOptions",
                          TNBlockMethods, (PetscEnum)bs->requested, (PetscEnum *)&bs->requested, NULL));
  PetscCall(TNOptionsEnum("-block_guess", "Initial guess of a block solve", "TNBlockSolverSetFromOptions",
                          TNBlockGuesses, (PetscEnum)bs->guess, (PetscEnum *)&bs->guess, NULL));
  PetscCall(TNOptionsReal("-block_atol", "Largest per-sample residual norm of a converged block",
                          "TNBlockSolverSetFromOptions", bs->atol, &bs->atol, NULL));
  PetscCall(
      PetscOptionsName("-block_view", "Print the block solver chosen, once set up", "TNBlockSolverView", &bs->view));
  PetscOptionsEnd();
  PetscCheck(bs->atol > 0, PETSC_COMM_WORLD, TN_ERR_USER, "-block_atol must be positive, got %g", (double)bs->atol);
  Resolve(bs);
  /* solvers made before were configured by the options of then */
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
  PetscCall(BatchSolverGet(bs, B, &c));
  if (bs->view) {
    PetscCall(TNBlockSolverView(bs, PETSC_VIEWER_STDOUT_WORLD));
    bs->view = PETSC_FALSE;
  }
  PetscFunctionReturn(0);
}

PetscErrorCode TNBlockSolverView(TNBlockSolver bs, PetscViewer viewer)
{
  BatchSolver *c = NULL;
  PetscReal rtol = TN_ADJOINT_RTOL;

  PetscFunctionBegin;
  for (PetscInt i = 0; i < TN_BATCH_CACHE; i++)
    if (bs->cache[i].B && (!c || bs->cache[i].last_use > c->last_use)) c = &bs->cache[i];
  /* the adjoint tolerance in force (-adjoint_ksp_rtol); none for an exact pbjacobi solve */
  if (c) PetscCall(KSPGetTolerances(c->ksp, &rtol, NULL, NULL, NULL));
  if (bs->method == TN_BLOCK_NEWTON_ASSEMBLED) rtol = 0;
  PetscCall(PetscViewerASCIIPrintf(viewer,
                                   "TNBlockSolver: width %" PetscInt_FMT
                                   ", -block_method %s%s%s, guess %s, per-sample atol %g, adjoint rtol %g (0: exact)\n",
                                   bs->n, TNBlockMethods[bs->method], bs->requested == TN_BLOCK_AUTO ? " (auto)" : "",
                                   bs->fallback ? " with a Newton-GMRES fallback" : "", TNBlockGuesses[bs->guess],
                                   (double)bs->atol, (double)rtol));
  if (c) {
    PetscCall(PetscViewerASCIIPushTab(viewer));
    PetscCall(
        PetscViewerASCIIPrintf(viewer, "forward solver (prefix block_) for batches of %" PetscInt_FMT ":\n", c->B));
    PetscCall(SNESView(c->snes, viewer));
    PetscCall(PetscViewerASCIIPrintf(viewer, "adjoint solver (prefix adjoint_):\n"));
    PetscCall(KSPView(c->ksp, viewer));
    PetscCall(PetscViewerASCIIPopTab(viewer));
  }
  PetscFunctionReturn(0);
}

PetscErrorCode TNBlockSolverSetRough(TNBlockSolver bs, PetscInt its)
{
  PetscFunctionBegin;
  bs->rough_its = its;
  PetscFunctionReturn(0);
}

/* The paper's linearised estimate y_j + (I - h theta J_F(y_j))^{-1} h F(y_j), J_F(y_j) = D_j A. */
static PetscErrorCode LinearizedGuess(TNBlockSolver bs, const PetscScalar *Fj, PetscScalar *y)
{
  BatchSolver *c   = bs->cur;
  const PetscInt N = c->B * bs->n;
  PetscScalar *rhs;
  const PetscReal h = bs->layer->h;
  PetscInt its;

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

/* One forward solve with snes from the guess in y; counts its iterations. */
static PetscErrorCode ForwardRun(TNBlockSolver bs, BatchSolver *c, SNES snes, PetscScalar *y,
                                 SNESConvergedReason *reason)
{
  PetscInt its, lits;

  PetscFunctionBegin;
  PetscCall(VecPlaceArray(c->x, y));
  PetscCall(SNESSolve(snes, NULL, c->x));
  PetscCall(VecResetArray(c->x));
  PetscCall(SNESGetConvergedReason(snes, reason));
  PetscCall(SNESGetIterationNumber(snes, &its));
  PetscCall(SNESGetLinearSolveIterations(snes, &lits));
  bs->newton += its;
  bs->krylov += lits;
  PetscFunctionReturn(0);
}

static PetscErrorCode BlockSolve(TNBlockSolver bs, const TNBlockLayer *L, PetscInt B, const PetscScalar *Fj,
                                 const PetscScalar *r, PetscScalar *y, PetscScalar *Fn, PetscBool *converged,
                                 PetscReal *residual)
{
  BatchSolver *c;
  const PetscInt N = B * L->n;
  SNESConvergedReason reason;

  PetscFunctionBegin;
  PetscCheck(L->n == bs->n, PETSC_COMM_SELF, PETSC_ERR_ARG_SIZ,
             "block width %" PetscInt_FMT " != solver width %" PetscInt_FMT, L->n, bs->n);
  PetscCall(BatchSolverGet(bs, B, &c));
  bs->cur       = c;
  bs->layer     = L;
  bs->r         = r;
  bs->have_last = PETSC_FALSE;
  /* explicit predictor y_j + h F(y_j), optionally refined by the linearised step */
  if (bs->guess == TN_GUESS_LINEARIZED)
    PetscCall(LinearizedGuess(bs, Fj, y));
  else
    for (PetscInt i = 0; i < N; i++) y[i] += L->h * Fj[i];
  if (bs->fallback) PetscCall(PetscArraycpy(c->guess, y, N));
  if (bs->rough_its) {
    PetscReal atol, rtol, stol;
    PetscInt maxit, maxf;
    PetscCall(SNESGetTolerances(c->snes, &atol, &rtol, &stol, &maxit, &maxf));
    PetscCall(SNESSetTolerances(c->snes, atol, rtol, stol, bs->rough_its, maxf));
    PetscCall(ForwardRun(bs, c, c->snes, y, &reason));
    PetscCall(SNESSetTolerances(c->snes, atol, rtol, stol, maxit, maxf));
  } else
    PetscCall(ForwardRun(bs, c, c->snes, y, &reason));
  if (reason <= 0 && bs->fallback && !bs->rough_its) {
    PetscCall(PetscArraycpy(y, c->guess, N));
    PetscCall(ForwardRun(bs, c, c->snes_fb, y, &reason));
  }
  bs->solves++;
  /* F(y_{j+1}) is the last residual evaluation's when that was at the solution */
  LayerAt(bs, y);
  PetscCall(PetscArraycpy(Fn, c->Fx, N));
  *converged = reason > 0 ? PETSC_TRUE : PETSC_FALSE;
  *residual  = bs->last_maxres;
  PetscFunctionReturn(0);
}

static PetscErrorCode AdjointRun(TNBlockSolver bs, BatchSolver *c, KSP ksp, KSPConvergedReason *reason,
                                 PetscReal *residual)
{
  PetscInt its;

  PetscFunctionBegin;
  PetscCall(KSPSolveTranspose(ksp, c->lam, c->mu));
  PetscCall(KSPGetConvergedReason(ksp, reason));
  PetscCall(KSPGetIterationNumber(ksp, &its));
  PetscCall(KSPGetResidualNorm(ksp, residual));
  bs->krylov += its;
  PetscFunctionReturn(0);
}

PetscErrorCode TNBlockSolverSolve(TNBlockSolver bs, const TNBlockLayer *L, PetscInt B, const PetscScalar *Fj,
                                  const PetscScalar *r, PetscScalar *y, PetscScalar *Fn, PetscBool *converged,
                                  PetscReal *residual)
{
  PetscFunctionBegin;
  PetscCall(PetscLogEventBegin(TN_EVENT_BLOCK, 0, 0, 0, 0));
  PetscCall(BlockSolve(bs, L, B, Fj, r, y, Fn, converged, residual));
  PetscCall(PetscLogEventEnd(TN_EVENT_BLOCK, 0, 0, 0, 0));
  PetscFunctionReturn(0);
}

static PetscErrorCode BlockAdjoint(TNBlockSolver bs, const TNBlockLayer *L, PetscInt B, const PetscScalar *D,
                                   const PetscScalar *lambda, PetscScalar *mu, PetscBool *converged,
                                   PetscReal *residual)
{
  BatchSolver *c;
  KSPConvergedReason reason;

  PetscFunctionBegin;
  PetscCall(BatchSolverGet(bs, B, &c));
  bs->cur   = c;
  bs->layer = L;
  PetscCall(PetscArraycpy(c->D, D, B * L->n));
  if (c->Jb) PetscCall(AssembleBlocks(bs, c->Jb));
  PetscCall(VecPlaceArray(c->lam, lambda));
  PetscCall(VecPlaceArray(c->mu, mu));
  if (bs->rough_its) {
    PetscReal rtol, abstol, dtol;
    PetscInt maxit;
    PetscCall(KSPGetTolerances(c->ksp, &rtol, &abstol, &dtol, &maxit));
    PetscCall(KSPSetTolerances(c->ksp, rtol, abstol, dtol, bs->rough_its));
    PetscCall(AdjointRun(bs, c, c->ksp, &reason, residual));
    PetscCall(KSPSetTolerances(c->ksp, rtol, abstol, dtol, maxit));
  } else
    PetscCall(AdjointRun(bs, c, c->ksp, &reason, residual));
  if (reason <= 0 && bs->fallback && !bs->rough_its) {
    PetscCall(AdjointRun(bs, c, c->ksp_fb, &reason, residual));
  }
  PetscCall(VecResetArray(c->lam));
  PetscCall(VecResetArray(c->mu));
  *converged = reason > 0 ? PETSC_TRUE : PETSC_FALSE;
  PetscFunctionReturn(0);
}

PetscErrorCode TNBlockSolverAdjoint(TNBlockSolver bs, const TNBlockLayer *L, PetscInt B, const PetscScalar *D,
                                    const PetscScalar *lambda, PetscScalar *mu, PetscBool *converged,
                                    PetscReal *residual)
{
  PetscFunctionBegin;
  PetscCall(PetscLogEventBegin(TN_EVENT_ADJOINT, 0, 0, 0, 0));
  PetscCall(BlockAdjoint(bs, L, B, D, lambda, mu, converged, residual));
  PetscCall(PetscLogEventEnd(TN_EVENT_ADJOINT, 0, 0, 0, 0));
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
  BatchSolver *c;
  const PetscInt N    = B * L->n;
  const PetscReal eps = 1e-6;
  Vec v, w, Jv, JTw, yp, Gp, Gm;
  PetscRandom rnd;
  PetscScalar vJTw, wJv, *r;
  PetscReal nJv, nd;

  PetscFunctionBegin;
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
