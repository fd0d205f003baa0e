/* SNES forward solve and KSP transpose (adjoint) solve of one implicit theta-block over a local
   batch. The batch is one vector of B*n unknowns whose Jacobian is block diagonal over samples. */
#include "blocksolver.h"
#include "activation.h"
#include "rows.h"
#include <float.h>
#include <petscsnes.h>
#include <string.h>

const char *const TNBlockMethods[]    = {"auto",   "newton",        "newton_assembled", "anderson",
                                         "picard", "TNBlockMethod", "TN_BLOCK_",        NULL};
const char *const TNBlockGuesses[]    = {"explicit", "linearized", "TNBlockGuess", "TN_GUESS_", NULL};
const char *const TNBlockPrecisions[] = {"mixed", "double", "TNBlockPrecision", "TN_PRECISION_", NULL};

/* -block_method auto (measured with jobs/bench/block_methods.sh): up to this width Newton with
   the assembled Jacobian and exact n x n block solves is fastest; wider layers use Picard
   iterations (one GEMM each), with Newton-GMRES as fallback where Picard does not contract. */
#define TN_ASSEMBLED_MAX_WIDTH 4
/* Default tolerances: per-sample forward residual, relative adjoint residual. */
#define TN_BLOCK_ATOL 1e-6
#define TN_ADJOINT_RTOL 1e-6
/* -block_precision mixed: the share of -block_atol that the rounding of single-precision
   increments may take of a forward residual (the convergence test adds it to the residual). */
#define TN_MIXED_SHARE 0.1
/* most terms of one application of the Neumann-series preconditioner */
#define TN_NEUMANN_MAX_TERMS 50

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
  PetscScalar *Fxown, *Down;              /* Fx and D when they are not the caller's Fn and D */
  PetscScalar *guess;                     /* a linearised initial guess, kept for a fallback solve */
  float *sx, *sz;                         /* single-precision operand and product of a correction */
  PetscReal *errz, *errnew;               /* per sample: bound on |Z - (A xlast + b)|_2 */
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
  TNBlockPrecision precision;
  PetscReal atol;
  BatchSolver cache[TN_BATCH_CACHE];
  PetscInt64 use_clock;
  /* the current solve */
  const TNBlockLayer *layer;
  BatchSolver *cur;
  const PetscScalar *r;
  PetscReal last_maxres;      /* largest per-sample residual of the last evaluation, with its bound */
  PetscReal last_maxcomputed; /* the same without the bound */
  PetscBool have_last;        /* xlast holds a point of this solve */
  PetscBool exact;            /* double-precision evaluations only (finite differences of the self-test) */
  float *Af;                  /* the layer's A rounded to single precision, n x n */
  PetscReal Anorm;            /* |A|_F */
  PetscReal pc_rtol;          /* relative tolerance of the solve the Neumann preconditioner serves */
  PetscReal pc_target;        /* its terms stop below this norm; < 0: set by the solve's first v */
  PetscInt64 newton, krylov, solves;
  PetscInt64 single, dbl; /* layer products (GEMMs over the batch) in each precision */
};

/* |h theta| Lip(s): how far an error in Z moves the residual G */
static PetscReal ResidualSlack(TNBlockSolver bs)
{
  return PetscAbsReal(bs->layer->h * bs->layer->theta) * TNActivationLipschitz(bs->layer->act);
}

/* How an evaluation at x goes: nothing to do (x is the last point), the product A x into Z
   (bias and activation to follow), or the increment A (x - xlast) into sz (added to Z). */
typedef enum { LAYER_SAME, LAYER_FULL, LAYER_INCREMENT } LayerUpdate;

/* Mixed precision: Z moved from xlast to x by A (x - xlast) in single precision, when every
   sample's bound on the error of Z, (n + 2) u |A|_F |x - xlast|_2 added to the bound so far, keeps
   its effect on the residual within TN_MIXED_SHARE of atol. An iteration's late increments are
   small, so their products need few digits; a tight atol leaves every evaluation in double.
   Copies x to xlast on the way; PETSC_FALSE when the bound does not allow it. */
static PetscBool LayerIncrement(TNBlockSolver bs, const PetscScalar *xa, LayerUpdate *how)
{
  BatchSolver *c        = bs->cur;
  const PetscInt n      = bs->n;
  const PetscReal gA    = TNRowsSingleError(n) * bs->Anorm;
  const PetscReal limit = TN_MIXED_SHARE * bs->atol / ResidualSlack(bs);
  /* local pointers: through c the compiler must assume a store may move them (and gathers) */
  PetscScalar *xlast = c->xlast;
  float *sx          = c->sx;
  PetscReal *swap, moved = 0;

  for (PetscInt s = 0; s < c->B; s++) {
    PetscReal ss = 0;
#pragma omp simd reduction(+ : ss)
    for (PetscInt i = s * n; i < (s + 1) * n; i++) {
      const PetscScalar d = xa[i] - xlast[i];
      sx[i]               = (float)d;
      xlast[i]            = xa[i];
      ss += d * d;
    }
    c->errnew[s] = c->errz[s] + gA * PetscSqrtReal(ss);
    if (!(c->errnew[s] <= limit)) return PETSC_FALSE;
    moved += ss;
  }
  *how = LAYER_SAME;
  if (moved > 0) {
    TNRowsApplySingle(c->B, n, n, c->sx, bs->Af, c->sz);
    bs->single++;
    swap      = c->errz;
    c->errz   = c->errnew;
    c->errnew = swap;
    *how      = LAYER_INCREMENT;
  }
  return PETSC_TRUE;
}

/* The product of an evaluation at x in double precision. */
static LayerUpdate LayerProductDouble(TNBlockSolver bs, const PetscScalar *xa)
{
  BatchSolver *c = bs->cur;
  size_t bytes   = (size_t)(c->B * bs->n) * sizeof(PetscScalar);

  TNRowsApply(c->B, bs->n, bs->n, xa, bs->layer->A, NULL, c->Z);
  bs->dbl++;
  memset(c->errz, 0, (size_t)c->B * sizeof(*c->errz));
  memcpy(c->xlast, xa, bytes);
  bs->have_last = PETSC_TRUE;
  return LAYER_FULL;
}

/* The product of an evaluation at x, unless the last evaluation was at x (the solvers evaluate
   G at the point they accept, so F(y_{j+1}) comes free); errz bounds per sample how far Z is
   from its double-precision value. */
static LayerUpdate LayerProduct(TNBlockSolver bs, const PetscScalar *xa)
{
  BatchSolver *c = bs->cur;
  LayerUpdate how;

  if (bs->have_last) {
    if (bs->precision == TN_PRECISION_MIXED && !bs->exact) {
      if (LayerIncrement(bs, xa, &how)) return how;
    } else if (!memcmp(xa, c->xlast, (size_t)(c->B * bs->n) * sizeof(PetscScalar)))
      return LAYER_SAME;
  }
  return LayerProductDouble(bs, xa);
}

/* Z = A x + b and Fx = F(x) from the product, row by row (a row stays in cache from Z to F);
   with g also the residual G(x) = x - r - h theta F(x), and the largest over samples of |G|_2 plus
   the bound of its rounding: a sample counts as converged only when its residual with
   double-precision products is within atol. */
static void LayerRows(TNBlockSolver bs, LayerUpdate how, const PetscScalar *xa, PetscScalar *ga)
{
  BatchSolver *c        = bs->cur;
  const TNBlockLayer *L = bs->layer;
  const PetscInt n      = bs->n;
  const PetscReal ht = L->h * L->theta, slack = ResidualSlack(bs);
  const PetscScalar *bias = L->b;
  PetscReal maxres = 0, maxcomputed = 0;

  for (PetscInt s = 0; s < c->B; s++) {
    PetscScalar *z = c->Z + s * n, *F = c->Fx + s * n;
    if (how == LAYER_FULL) {
#pragma omp simd
      for (PetscInt i = 0; i < n; i++) z[i] += bias[i];
      TNActivate(L->act, n, z, F);
    } else if (how == LAYER_INCREMENT) {
      const float *dz = c->sz + s * n;
#pragma omp simd
      for (PetscInt i = 0; i < n; i++) z[i] += dz[i];
      if (!TNActivateStep(L->act, n, dz, F)) TNActivate(L->act, n, z, F);
    }
    if (ga) {
      const PetscScalar *x = xa + s * n, *r = bs->r + s * n;
      PetscScalar *g = ga + s * n;
      PetscReal ss   = 0, res;
#pragma omp simd reduction(+ : ss)
      for (PetscInt i = 0; i < n; i++) {
        g[i] = x[i] - r[i] - ht * F[i];
        ss += g[i] * g[i];
      }
      res = PetscSqrtReal(ss) + slack * c->errz[s];
      /* NaN must not compare as converged */
      if (!(res <= maxres)) maxres = res;
      if (!(ss <= maxcomputed)) maxcomputed = ss;
    }
  }
  if (ga) {
    bs->last_maxres      = maxres;
    bs->last_maxcomputed = PetscSqrtReal(maxcomputed);
  }
}

/* Z = A x + b and Fx = F(x) at x */
static void LayerAt(TNBlockSolver bs, const PetscScalar *xa)
{
  LayerUpdate how = LayerProduct(bs, xa);
  if (how != LAYER_SAME) LayerRows(bs, how, xa, NULL);
}

static PetscErrorCode FormResidual(SNES snes, Vec x, Vec g, void *ctx)
{
  TNBlockSolver bs = (TNBlockSolver)ctx;
  const PetscScalar *xa;
  PetscScalar *ga;

  PetscFunctionBegin;
  (void)snes;
  PetscCall(VecGetArrayRead(x, &xa));
  PetscCall(VecGetArrayWrite(g, &ga));
  LayerRows(bs, LayerProduct(bs, xa), xa, ga);
  /* converged but for the rounding bound: the product again in double settles it, rather than
     more iterations to leave room for the bound */
  if (bs->last_maxres > bs->atol && bs->last_maxcomputed <= bs->atol) LayerRows(bs, LayerProductDouble(bs, xa), xa, ga);
  PetscCall(VecRestoreArrayWrite(g, &ga));
  PetscCall(VecRestoreArrayRead(x, &xa));
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
  const PetscScalar *va, *D;
  PetscScalar *oa, *work;
  PetscReal ht;
  PetscInt N;

  PetscFunctionBegin;
  PetscCall(MatShellGetContext(J, &bs));
  c    = bs->cur;
  L    = bs->layer;
  ht   = L->h * L->theta;
  N    = c->B * L->n;
  D    = c->D;
  work = c->work;
  bs->dbl++;
  PetscCall(VecGetArrayRead(v, &va));
  PetscCall(VecGetArrayWrite(out, &oa));
  if (!transpose) {
    TNRowsApply(c->B, L->n, L->n, va, L->A, NULL, oa);
#pragma omp simd
    for (PetscInt i = 0; i < N; i++) oa[i] = va[i] - ht * D[i] * oa[i];
  } else {
#pragma omp simd
    for (PetscInt i = 0; i < N; i++) {
      work[i] = D[i] * va[i];
      oa[i]   = va[i];
    }
    TNRowsApplyTranspose(c->B, L->n, L->n, -ht, work, L->A, 1.0, oa);
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

/* Neumann-series preconditioner in single precision: P v = sum_{i<m} M^i v ~ (I - M)^{-1} v with
   M = h theta diag(D) A, the Jacobian J = I - M (for J^T: M^T = h theta A^T diag(D)). The terms
   shrink by the contraction of the fixed-point iteration; they stop when the next one would be
   below half the relative tolerance pc_rtol of the right-hand side (the first v a solve applies
   this to), or at what single precision resolves of the first correction. The Richardson
   iteration around it computes the residual in double, so the rounding here decides only how
   many outer iterations run (one at the default tolerance), never the accuracy of the solution. */
static PetscErrorCode NeumannApply(PC pc, Vec v, Vec out, PetscBool transpose)
{
  TNBlockSolver bs;
  BatchSolver *c;
  const PetscScalar *va;
  PetscScalar *oa;
  const PetscScalar *D;
  float *sx, *sz;
  PetscReal ht, ss = 0, prev, target;
  PetscInt n, N;

  PetscFunctionBegin;
  PetscCall(PCShellGetContext(pc, &bs));
  c  = bs->cur;
  n  = bs->n;
  N  = c->B * n;
  ht = bs->layer->h * bs->layer->theta;
  D  = c->D;
  sx = c->sx;
  sz = c->sz;
  PetscCall(VecGetArrayRead(v, &va));
  PetscCall(VecGetArrayWrite(out, &oa));
  /* out = v, and the operand of the first product: M v = D.(A v), M^T v = A^T (D.v) */
#pragma omp simd reduction(+ : ss)
  for (PetscInt i = 0; i < N; i++) {
    oa[i] = va[i];
    sx[i] = (float)(transpose ? ht * D[i] * va[i] : va[i]);
    ss += va[i] * va[i];
  }
  prev = PetscSqrtReal(ss);
  if (bs->pc_target < 0) bs->pc_target = 0.5 * bs->pc_rtol * prev;
  target = bs->pc_target;
  for (PetscInt k = 1; k < TN_NEUMANN_MAX_TERMS && prev > 0; k++) {
    PetscReal tnorm, ratio;
    if (transpose)
      TNRowsApplyTransposeSingle(c->B, n, n, sx, bs->Af, sz);
    else
      TNRowsApplySingle(c->B, n, n, sx, bs->Af, sz);
    bs->single++;
    /* the term t = M^k v: added to out, and the operand of the next product */
    ss = 0;
#pragma omp simd reduction(+ : ss)
    for (PetscInt i = 0; i < N; i++) {
      const PetscScalar t = transpose ? (PetscScalar)sz[i] : ht * D[i] * sz[i];
      oa[i] += t;
      sx[i] = (float)(transpose ? ht * D[i] * t : t);
      ss += t * t;
    }
    tnorm = PetscSqrtReal(ss);
    ratio = tnorm / prev;
    /* v itself is exact; the rounding of the sum is that of the first correction's terms */
    if (k == 1) target = PetscMax(target, 16 * FLT_EPSILON * tnorm);
    /* a series that does not shrink leaves the outer iteration to fail (and fall back) */
    if (!(ratio < 1) || tnorm * ratio <= target) break;
    prev = tnorm;
  }
  PetscCall(VecRestoreArrayWrite(out, &oa));
  PetscCall(VecRestoreArrayRead(v, &va));
  PetscFunctionReturn(0);
}

static PetscErrorCode NeumannMult(PC pc, Vec v, Vec out)
{
  PetscFunctionBegin;
  PetscCall(NeumannApply(pc, v, out, PETSC_FALSE));
  PetscFunctionReturn(0);
}

static PetscErrorCode NeumannMultTranspose(PC pc, Vec v, Vec out)
{
  PetscFunctionBegin;
  PetscCall(NeumannApply(pc, v, out, PETSC_TRUE));
  PetscFunctionReturn(0);
}

/* The Picard step x <- x - G(x), in place: the basic line search's full step without its trial
   vector, the copy back and a global norm (the convergence test is per sample). */
static PetscErrorCode PicardStep(SNESLineSearch ls, void *ctx)
{
  TNBlockSolver bs = (TNBlockSolver)ctx;
  SNES snes;
  Vec X, F, Y;

  PetscFunctionBegin;
  PetscCall(SNESLineSearchGetSNES(ls, &snes));
  PetscCall(SNESLineSearchGetVecs(ls, &X, &F, &Y, NULL, NULL));
  PetscCall(VecAXPY(X, -1.0, Y));
  PetscCall(SNESComputeFunction(snes, X, F));
  PetscCall(SNESLineSearchSetNorms(ls, 0.0, bs->last_maxres, 0.0));
  PetscCall(SNESLineSearchSetReason(ls, SNES_LINESEARCH_SUCCEEDED));
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
    PetscCall(SNESLineSearchSetType(ls, SNESLINESEARCHSHELL));
    PetscCall(SNESLineSearchShellSetUserFunc(ls, PicardStep, bs));
    break;
  }
  PetscCall(SNESSetFromOptions(snes));
  *out = snes;
  PetscFunctionReturn(0);
}

/* Adjoint solver: Richardson pairs with Picard (both converge when the spectral radius of
   h theta diag(D) A is below one, the same for the operator and its transpose), preconditioned
   by the single-precision Neumann series with -block_precision mixed; GMRES with the Newton and
   Anderson solves, an exact pbjacobi block solve with the assembled Jacobian. */
static PetscErrorCode AdjointSolverCreate(TNBlockSolver bs, BatchSolver *c, TNBlockMethod method, const char *prefix,
                                          KSP *out)
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
    PetscCall(KSPSetTolerances(ksp, TN_ADJOINT_RTOL, 1e-50, 1e3, 100));
    if (bs->precision == TN_PRECISION_MIXED) {
      PetscCall(PCSetType(pc, PCSHELL));
      PetscCall(PCShellSetContext(pc, bs));
      PetscCall(PCShellSetApply(pc, NeumannMult));
      PetscCall(PCShellSetApplyTranspose(pc, NeumannMultTranspose));
      PetscCall(PCShellSetName(pc, "Neumann series of the Jacobian in single precision"));
      /* the test on the true residual, and no extra preconditioner application for its norm */
      PetscCall(KSPSetNormType(ksp, KSP_NORM_UNPRECONDITIONED));
    } else
      PetscCall(PCSetType(pc, PCNONE));
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
  PetscCall(
      PetscMalloc6(N, &c->Z, N, &c->Fxown, N, &c->Down, PetscMax(N, n * n), &c->work, N, &c->xlast, N, &c->guess));
  c->Fx = c->Fxown;
  c->D  = c->Down;
  PetscCall(PetscMalloc4(N, &c->sx, N, &c->sz, B, &c->errz, B, &c->errnew));
  PetscCall(MatCreateShell(PETSC_COMM_SELF, N, N, N, N, bs, &c->J));
  PetscCall(MatShellSetOperation(c->J, MATOP_MULT, (void (*)(void))JacobianMult));
  PetscCall(MatShellSetOperation(c->J, MATOP_MULT_TRANSPOSE, (void (*)(void))JacobianMultTranspose));
  if (bs->method == TN_BLOCK_NEWTON_ASSEMBLED) {
    PetscCall(MatCreateSeqBAIJ(PETSC_COMM_SELF, n, N, N, 1, NULL, &c->Jb));
    PetscCall(MatSetOption(c->Jb, MAT_ROW_ORIENTED, PETSC_TRUE));
  }
  PetscCall(ForwardSolverCreate(bs, c, bs->method, "block_", &c->snes));
  PetscCall(AdjointSolverCreate(bs, c, bs->method, "adjoint_", &c->ksp));
  if (bs->fallback) {
    PetscCall(ForwardSolverCreate(bs, c, TN_BLOCK_NEWTON, "block_fallback_", &c->snes_fb));
    PetscCall(AdjointSolverCreate(bs, c, TN_BLOCK_NEWTON, "adjoint_fallback_", &c->ksp_fb));
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
  PetscCall(PetscFree6(c->Z, c->Fxown, c->Down, c->work, c->xlast, c->guess));
  PetscCall(PetscFree4(c->sx, c->sz, c->errz, c->errnew));
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
  PetscCall(PetscMalloc1(width * width, &bs->Af));
  bs->n         = width;
  bs->requested = TN_BLOCK_AUTO;
  bs->guess     = TN_GUESS_EXPLICIT;
  bs->precision = TN_PRECISION_MIXED;
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
  PetscCall(TNOptionsEnum("-block_precision",
                          "Products of the iterations' small corrections: mixed (single precision where a "
                          "rounding bound shows the result unchanged at the tolerance) or double",
                          "TNBlockSolverSetFromOptions", TNBlockPrecisions, (PetscEnum)bs->precision,
                          (PetscEnum *)&bs->precision, NULL));
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
  PetscCall(PetscFree((*bs)->Af));
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
                                   ", -block_method %s%s%s, guess %s, precision %s, per-sample atol %g, adjoint rtol "
                                   "%g (0: exact)\n",
                                   bs->n, TNBlockMethods[bs->method], bs->requested == TN_BLOCK_AUTO ? " (auto)" : "",
                                   bs->fallback ? " with a Newton-GMRES fallback" : "", TNBlockGuesses[bs->guess],
                                   TNBlockPrecisions[bs->precision], (double)bs->atol, (double)rtol));
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

/* The layer of the solves that follow, with A rounded to single precision and |A|_F for the
   bounds of mixed precision. */
static void LayerSet(TNBlockSolver bs, const TNBlockLayer *L)
{
  const PetscScalar *A = L->A;
  float *Af            = bs->Af;
  const PetscInt nn    = L->n * L->n;
  PetscReal ss         = 0;

  bs->layer = L;
  if (bs->precision != TN_PRECISION_MIXED) return;
#pragma omp simd reduction(+ : ss)
  for (PetscInt i = 0; i < nn; i++) {
    Af[i] = (float)A[i];
    ss += A[i] * A[i];
  }
  bs->Anorm = PetscSqrtReal(ss);
}

/* The tolerance of the solve by ksp that follows, for the Neumann preconditioner. */
static PetscErrorCode NeumannTarget(TNBlockSolver bs, KSP ksp)
{
  PetscFunctionBegin;
  PetscCall(KSPGetTolerances(ksp, &bs->pc_rtol, NULL, NULL, NULL));
  bs->pc_target = -1;
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
  PetscCall(NeumannTarget(bs, c->ksp));
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
  bs->cur = c;
  LayerSet(bs, L);
  bs->r         = r;
  bs->have_last = PETSC_FALSE;
  c->Fx         = Fn; /* the evaluations write F(y_{j+1}) where the caller wants it */
  /* explicit predictor y_j + h F(y_j), optionally refined by the linearised step */
  if (bs->guess == TN_GUESS_LINEARIZED) {
    PetscCall(LinearizedGuess(bs, Fj, y));
    if (bs->fallback) PetscCall(PetscArraycpy(c->guess, y, N));
  } else {
    const PetscReal h = L->h;
    for (PetscInt i = 0; i < N; i++) y[i] += h * Fj[i];
  }
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
    if (bs->guess == TN_GUESS_LINEARIZED)
      PetscCall(PetscArraycpy(y, c->guess, N));
    else /* the explicit predictor again: y_j + h F(y_j) = r + h theta F(y_j) */
      for (PetscInt i = 0; i < N; i++) y[i] = r[i] + L->h * L->theta * Fj[i];
    PetscCall(ForwardRun(bs, c, c->snes_fb, y, &reason));
  }
  bs->solves++;
  /* F(y_{j+1}) is the last residual evaluation's when that was at the solution */
  LayerAt(bs, y);
  c->Fx      = c->Fxown;
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
  bs->cur = c;
  LayerSet(bs, L);
  PetscCall(NeumannTarget(bs, c->ksp));
  c->D = (PetscScalar *)D; /* read only, until the solve ends */
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
  c->D       = c->Down;
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

PetscErrorCode TNBlockSolverGetProducts(TNBlockSolver bs, PetscInt64 *single, PetscInt64 *dbl)
{
  PetscFunctionBegin;
  if (single) *single = bs->single;
  if (dbl) *dbl = bs->dbl;
  PetscFunctionReturn(0);
}

PetscErrorCode TNBlockSolverResetCounts(TNBlockSolver bs)
{
  PetscFunctionBegin;
  bs->newton = bs->krylov = bs->solves = bs->single = bs->dbl = 0;
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
  bs->cur = c;
  LayerSet(bs, L);
  bs->have_last = PETSC_FALSE;
  bs->exact     = PETSC_TRUE; /* finite differences need every digit of G */
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
  bs->exact = PETSC_FALSE;
  PetscFunctionReturn(0);
}
