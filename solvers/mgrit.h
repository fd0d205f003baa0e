/* Multigrid reduction in time (MGRIT, FAS, FCF relaxation, V-cycles over any number of levels)
   for a one-step recursion u_p = Phi_p(u_{p-1}), p = 1..N, distributed over the ranks of a
   communicator. The solver owns the communication; it sees the problem only through TNMGRITApp.
   -log_view times each iteration as TNMGRITCycle. */
#ifndef THETANET_MGRIT_H
#define THETANET_MGRIT_H

#include "thetanet.h"

/* The recursion as the solver sees it. step() advances a state of `size` local entries from point
   `from` to point `to` (fine indices): to = from + 1 is the fine step Phi; a longer stride is the
   coarse propagator of the interval [from, to) (for thetanet: the theta-step of size (to-from)h).
   final_sweep (optional) brackets the steps that may be a solve's last at each point: the fine
   F-relaxation and residual sweep that end every iteration (final_sweep(ctx, PETSC_TRUE) before,
   PETSC_FALSE after). When the solve returns, each fine step's last evaluation was in such a
   sweep, from the final states: an application can take what it needs of a step (for thetanet
   the weight gradient) there, rather than in another pass. */
typedef struct {
  PetscInt size;
  void *ctx;
  PetscErrorCode (*step)(void *ctx, PetscInt from, PetscInt to, const PetscScalar *u, PetscScalar *out);
  PetscErrorCode (*final_sweep)(void *ctx, PetscBool on);
  /* Optional: what a coarse step needs of the fine steps of its interval, for the intervals whose
     fine steps lie on more than one rank (the others' ranks hold all of it). At the start of each
     solve, for each such interval [from, to), every rank holding some of its steps, [lo, hi),
     adds their share to a zeroed buffer of coarse_size entries (coarse_pack); the solver sums
     the buffers over the ranks and hands every rank the sum (coarse_unpack), before any step. */
  PetscInt coarse_size;
  PetscErrorCode (*coarse_pack)(void *ctx, PetscInt from, PetscInt to, PetscInt lo, PetscInt hi, PetscScalar *buf);
  PetscErrorCode (*coarse_unpack)(void *ctx, PetscInt from, PetscInt to, const PetscScalar *buf);
} TNMGRITApp;

typedef struct _n_TNMGRIT *TNMGRIT;

/* N steps over the ranks of comm, in rank order. With mirror set, the coarse points are those of
   the forward problem seen from the other end (p -> N - p): an adjoint recursion run backwards,
   on a communicator whose rank order is reversed, then keeps the coarse intervals, and so the
   ownership, of the forward one. */
PETSC_EXTERN PetscErrorCode TNMGRITCreate(MPI_Comm comm, PetscInt N, PetscBool mirror, const TNMGRITApp *app,
                                          TNMGRIT *mg);
/* The mirrored problem on the ranks of comm taken in reverse order (the solver makes that
   communicator): the adjoint of a forward problem on comm, each rank keeping its steps. */
PETSC_EXTERN PetscErrorCode TNMGRITCreateReversed(MPI_Comm comm, PetscInt N, const TNMGRITApp *app, TNMGRIT *mg);
/* Whether every rank of the solver says ok (a logical and over its ranks, e.g. of step failures). */
PETSC_EXTERN PetscErrorCode TNMGRITAgree(TNMGRIT, PetscBool *ok);
/* Start guess: with from_start set, every point starts at u_0 of the first rank (not read from u),
   unless the nested start needs no start values. */
PETSC_EXTERN PetscErrorCode TNMGRITSetStartGuess(TNMGRIT, PetscBool from_start);
/* -mgrit_cfactor m (default 4), -mgrit_levels (2), -mgrit_max_it (30), -mgrit_tol (1e-10, on the
   2-norm of the fine C-point residuals), -mgrit_rtol (relative to the C-point states; default
   that of TNMGRITSetRelativeTolerance), -mgrit_skip (true: the first iteration is the nested
   start, the coarsest level's propagation interpolated by F-relaxation, rather than a cycle
   from the initial values), -mgrit_view. */
PETSC_EXTERN PetscErrorCode TNMGRITSetFromOptions(TNMGRIT);
/* The callbacks (app may be given at creation or here, before the first solve). */
PETSC_EXTERN PetscErrorCode TNMGRITSetApp(TNMGRIT, const TNMGRITApp *);
/* cfactor and levels are fixed once the hierarchy exists (after TNMGRITSetUp or an ownership or
   level query); max_it and tol may change between solves. */
PETSC_EXTERN PetscErrorCode TNMGRITSetParameters(TNMGRIT, PetscInt cfactor, PetscInt levels, PetscInt max_it,
                                                 PetscReal tol);
PETSC_EXTERN PetscErrorCode TNMGRITGetParameters(TNMGRIT, PetscInt *cfactor, PetscInt *levels, PetscInt *max_it,
                                                 PetscReal *tol);
/* -mgrit_rtol: a solve also stops once the C-point residual is at most rtol times the 2-norm of
   the C-point states (0, the default: -mgrit_tol alone). A tolerance relative to the states
   means the same accuracy whatever their scale; it may change between solves. */
PETSC_EXTERN PetscErrorCode TNMGRITSetRelativeTolerance(TNMGRIT, PetscReal rtol);
PETSC_EXTERN PetscErrorCode TNMGRITGetRelativeTolerance(TNMGRIT, PetscReal *rtol);
PETSC_EXTERN PetscErrorCode TNMGRITSetSkip(TNMGRIT, PetscBool skip);
PETSC_EXTERN PetscErrorCode TNMGRITGetSkip(TNMGRIT, PetscBool *skip);
/* Builds the level hierarchy and the ownership: the ranks split the steps evenly and own the
   points of every level in their share; intervals may span ranks. */
PETSC_EXTERN PetscErrorCode TNMGRITSetUp(TNMGRIT);
/* Steps, ranks, coarsening and the intervals of each level. */
PETSC_EXTERN PetscErrorCode TNMGRITView(TNMGRIT, PetscViewer);
/* This rank's steps [lo, hi): it holds the points lo..hi. */
PETSC_EXTERN PetscErrorCode TNMGRITGetOwnership(TNMGRIT, PetscInt *lo, PetscInt *hi);
/* The levels the hierarchy has (after coarsening stops), and the fine indices pos[0..n] of the
   points of level l (l = 0: every point). */
PETSC_EXTERN PetscErrorCode TNMGRITGetLevels(TNMGRIT, PetscInt *nlevels);
PETSC_EXTERN PetscErrorCode TNMGRITGetLevelPoints(TNMGRIT, PetscInt l, PetscInt *n, const PetscInt **pos);
/* Whether fine point p is a C-point (a point of the next level): its final value comes from the
   coarse correction, not from the step into it. */
PETSC_EXTERN PetscErrorCode TNMGRITIsCPoint(TNMGRIT, PetscInt p, PetscBool *cpoint);
/* Solves from u_0 (read on the first rank) for the local points u[(p - lo) * size], p = lo..hi,
   starting from the values in u (set them, e.g. to u_0, before the first solve; with skip only
   u_0 is read). Each iteration ends with an F-relaxation and the C-point residual, so the
   F-points are consistent with the C-points on return. Returns the iterations and the final
   C-point residual norm; iterates to -mgrit_tol or -mgrit_max_it. */
PETSC_EXTERN PetscErrorCode TNMGRITSolve(TNMGRIT, const PetscScalar *u0, PetscScalar *u, PetscInt *its,
                                         PetscReal *residual);
/* Residual norm after each iteration of the last solve (history[0..its)). */
PETSC_EXTERN PetscErrorCode TNMGRITGetResidualHistory(TNMGRIT, PetscInt *its, const PetscReal **history);
PETSC_EXTERN PetscErrorCode TNMGRITDestroy(TNMGRIT *);

/* Sequential reference on one rank: u_p = Phi(u_{p-1}) for p = 1..N, u of (N+1)*size. */
PETSC_EXTERN PetscErrorCode TNMGRITSequential(const TNMGRITApp *app, PetscInt N, PetscScalar *u);

#endif
