/* The implicit part of one theta-block for a whole local batch: the SNES forward solve of
   G(y) = y - r - h theta F_j(y) = 0 and the KSP transpose solve of the adjoint step. A solver sees
   the layer only through TNBlockLayer; -log_view times them as TNBlockSolve and TNAdjointSolve. */
#ifndef THETANET_BLOCKSOLVER_H
#define THETANET_BLOCKSOLVER_H

#include "thetanet.h"

typedef enum {
  TN_BLOCK_AUTO,             /* chosen by width (measured: see README) */
  TN_BLOCK_NEWTON,           /* Newton, MATSHELL Jacobian, GMRES */
  TN_BLOCK_NEWTON_ASSEMBLED, /* Newton, block-diagonal BAIJ Jacobian, exact pbjacobi block solve */
  TN_BLOCK_ANDERSON,         /* Jacobian-free Anderson-accelerated fixed point */
  TN_BLOCK_PICARD            /* Jacobian-free fixed point, SNES NRICHARDSON */
} TNBlockMethod;
PETSC_EXTERN const char *const TNBlockMethods[];

typedef enum { TN_GUESS_EXPLICIT, TN_GUESS_LINEARIZED } TNBlockGuess;
PETSC_EXTERN const char *const TNBlockGuesses[];
/* Arithmetic of the iterations' corrections: mixed computes the products of small increments (a
   fixed-point step's change of Z, an adjoint preconditioner's Neumann terms) in single precision
   where a rounding bound shows the result is unchanged at the tolerance; double never does. */
typedef enum { TN_PRECISION_MIXED, TN_PRECISION_DOUBLE } TNBlockPrecision;
PETSC_EXTERN const char *const TNBlockPrecisions[];

/* What one block solve sees of the layer: F(y) = s(A y + b) applied to rows of a batch. */
typedef struct {
  PetscInt n;
  const PetscScalar *A; /* n x n, row-major: A[i*n+k] multiplies y_k into component i */
  const PetscScalar *b; /* n */
  TNActivation act;
  PetscReal h, theta;
} TNBlockLayer;

typedef struct _n_TNBlockSolver *TNBlockSolver;

PETSC_EXTERN PetscErrorCode TNBlockSolverCreate(PetscInt width, TNBlockSolver *);
/* Reads -block_method, -block_guess, -block_precision, -block_atol, -block_view and the SNES/KSP options (prefixes
   block_, adjoint_) of the solvers it creates. Without it the defaults hold. */
PETSC_EXTERN PetscErrorCode TNBlockSolverSetFromOptions(TNBlockSolver);
/* Creates the SNES and KSP for batches of B samples now (they are otherwise made on first use);
   with -block_view prints the solver once. */
PETSC_EXTERN PetscErrorCode TNBlockSolverSetUp(TNBlockSolver, PetscInt B);
/* The method chosen, its tolerances, and the SNES and KSP of the latest batch size. */
PETSC_EXTERN PetscErrorCode TNBlockSolverView(TNBlockSolver, PetscViewer);
PETSC_EXTERN PetscErrorCode TNBlockSolverDestroy(TNBlockSolver *);

/* Solve y = r + h theta F(y) for the B rows of y. On entry y holds y_j, Fj = F(y_j) and r the
   explicit part y_j + h(1-theta)F(y_j); on exit y holds y_{j+1} and Fn = F(y_{j+1}).
   *converged is PETSC_FALSE (and *residual the largest per-sample residual) on failure. */
PETSC_EXTERN PetscErrorCode TNBlockSolverSolve(TNBlockSolver, const TNBlockLayer *, PetscInt B, const PetscScalar *Fj,
                                               const PetscScalar *r, PetscScalar *y, PetscScalar *Fn,
                                               PetscBool *converged, PetscReal *residual);
/* Solve (I - h theta diag(D) A)^T mu = lambda for each of the B rows, D = s'(A y_{j+1} + b). */
PETSC_EXTERN PetscErrorCode TNBlockSolverAdjoint(TNBlockSolver, const TNBlockLayer *, PetscInt B, const PetscScalar *D,
                                                 const PetscScalar *lambda, PetscScalar *mu, PetscBool *converged,
                                                 PetscReal *residual);
/* Iterations since the last reset: nonlinear, linear (forward and adjoint), and forward solves. */
PETSC_EXTERN PetscErrorCode TNBlockSolverGetCounts(TNBlockSolver, PetscInt64 *newton, PetscInt64 *krylov,
                                                   PetscInt64 *solves);
/* Layer products over the batch (GEMMs) since the last reset, in single and in double precision. */
PETSC_EXTERN PetscErrorCode TNBlockSolverGetProducts(TNBlockSolver, PetscInt64 *single, PetscInt64 *dbl);
PETSC_EXTERN PetscErrorCode TNBlockSolverResetCounts(TNBlockSolver);
/* its > 0: the following solves stop after its iterations without falling back (an MGRIT
   coarse step needs no more than a rough solve); 0: solves to tolerance again. */
PETSC_EXTERN PetscErrorCode TNBlockSolverSetRough(TNBlockSolver, PetscInt its);
/* Self-test of the layer operators at the states y (B rows): relative error of the Jacobian
   against central differences, and of its transpose by the dot-product test. */
PETSC_EXTERN PetscErrorCode TNBlockSolverSelfTest(TNBlockSolver, const TNBlockLayer *, PetscInt B, const PetscScalar *y,
                                                  PetscReal *jacobian_error, PetscReal *transpose_error);

#endif
