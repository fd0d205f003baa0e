/* The network: forward and backward propagation of a local batch through the opening layer, the
   theta-blocks and the closing layer, in a memory mode, with the blocks on one rank or split
   across depth ranks (layer-serial pipeline or MGRIT). Blocks are reached through BlockStep and
   BlockAdjointStep, the layer interface a parallel-in-depth solver drives. */
#ifndef THETANET_NETWORK_H
#define THETANET_NETWORK_H

#include "thetanet.h"
#include "blocksolver.h"
#include "mgrit.h"

typedef struct _n_TNNetwork *TNNetwork;

/* What the forward pass keeps for the backward pass (DESIGN.md §1, memory modes). */
typedef enum { TN_MEMORY_STORE, TN_MEMORY_REVERSIBLE, TN_MEMORY_CHECKPOINT } TNMemoryMode;
PETSC_EXTERN const char *const TNMemoryModes[];

/* How the states and adjoints are propagated across depth: layer-serially, or by MGRIT (forward
   for the states, backward for the adjoints; -mgrit_* options). */
typedef enum { TN_DEPTH_SEQUENTIAL, TN_DEPTH_MGRIT } TNDepthSolver;
PETSC_EXTERN const char *const TNDepthSolvers[];
typedef enum { TN_COARSE_INJECT, TN_COARSE_AVERAGE } TNCoarseWeight;
PETSC_EXTERN const char *const TNCoarseWeights[];
#define TN_MGRIT_COARSE_ITS 10

/* Propagates batches of up to max_batch samples: memory mode `store`, layer-serial across depth,
   default block solver, until told otherwise. */
PETSC_EXTERN PetscErrorCode TNNetworkCreate(TNModel, PetscInt max_batch, TNNetwork *);
/* -memory, -memory_stride, -memory_tol, -depth_solver, -mgrit_coarse_weights, -mgrit_coarse_its,
   -network_view, and the block solver's options. With -help every solver the network may use
   lists its options. */
PETSC_EXTERN PetscErrorCode TNNetworkSetFromOptions(TNNetwork);
/* store: every state (L+1 states, L values F_j(y_j) and, for theta > 0, L values F_j(y_{j+1}));
   reversible: O(1) in L, the states rebuilt backwards by solving
   y_j + h(1-theta)F_j(y_j) = y_{j+1} - h theta F_j(y_{j+1}); checkpoint: every stride-th state,
   the others recomputed segment by segment (stride 0: about sqrt(L)). tol: reconstruction
   error of y_0 above which a batch is logged with -info. */
PETSC_EXTERN PetscErrorCode TNNetworkSetMemory(TNNetwork, TNMemoryMode, PetscInt stride, PetscReal tol);
/* MGRIT needs -memory store; the model must hold the blocks TNNetworkDepthOwnership gives. */
PETSC_EXTERN PetscErrorCode TNNetworkSetDepthSolver(TNNetwork, TNDepthSolver);
/* Allocates the storage of the memory mode and creates the solvers (done by the first forward
   pass otherwise); prints the network with -network_view. */
PETSC_EXTERN PetscErrorCode TNNetworkSetUp(TNNetwork);
PETSC_EXTERN PetscErrorCode TNNetworkView(TNNetwork, PetscViewer);
/* Bytes this rank's network will hold once set up, for its settings: states and layer values of
   the memory mode, work arrays, the block solvers, MGRIT's levels (an estimate, from above). */
PETSC_EXTERN PetscErrorCode TNNetworkMemoryEstimate(TNNetwork, PetscReal *bytes);
PETSC_EXTERN PetscErrorCode TNNetworkDestroy(TNNetwork *);

/* out = z (B x m) for the B rows of X (B x d). A block solve that misses its tolerance leaves
   *ok = PETSC_FALSE and the failure recorded (TNNetworkGetFailure); the caller decides,
   collectively, what to do. */
PETSC_EXTERN PetscErrorCode TNNetworkForward(TNNetwork, PetscInt B, const PetscReal *X, PetscReal *out, PetscBool *ok);
/* Adds dJ/dparams into grad (model layout) given dout = dJ/dz of the last forward batch. */
PETSC_EXTERN PetscErrorCode TNNetworkBackward(TNNetwork, PetscInt B, const PetscReal *X, const PetscReal *dout,
                                              PetscScalar *grad, PetscBool *ok);
/* Told during the layer-serial backward pass as parts of the gradient become final: the closing
   layer's (j = L), each block j held here (from the last down), the opening layer's (j = -1). Not
   called by the MGRIT backward pass (its gradients are final together at its end) nor where the
   pass fails. */
typedef PetscErrorCode (*TNGradientReady)(void *ctx, PetscInt j);
/* Forward and backward passes propagate layer-serially (the network itself, exactly) even where
   the depth solver is MGRIT: what validation and evaluation of a depth-parallel training use, and
   the converged last epochs of -mgrit_exact_epochs. */
PETSC_EXTERN PetscErrorCode TNNetworkSetExactForward(TNNetwork, PetscBool);
/* The MGRIT settings in force (cfactor .. skip zero when the network has no MGRIT solver). */
typedef struct {
  PetscInt cfactor, levels, max_it, coarse_its;
  PetscReal tol, rtol;
  PetscBool skip;
  TNCoarseWeight coarse_weights;
} TNNetworkMGRITSettings;
PETSC_EXTERN PetscErrorCode TNNetworkGetMGRITSettings(TNNetwork, TNNetworkMGRITSettings *);
PETSC_EXTERN PetscErrorCode TNNetworkSetGradientReady(TNNetwork, TNGradientReady, void *ctx);
/* A one-line description of the first failure since the last forward, e.g.
   "block 3 forward solve did not converge: residual 2.1e-03". */
PETSC_EXTERN const char *TNNetworkGetFailure(TNNetwork);

/* The layer interface (what a parallel-in-depth solver drives): one theta-step of block j,
   y_{j+1} = y_j + h[(1-theta)F_j(y_j) + theta F_j(y_{j+1})], returning Fj = F_j(y_j) and
   Fn = F_j(y_{j+1}); and its adjoint lambda_j from lambda_{j+1}, adding block j's weight
   gradient into grad (when not NULL). */
PETSC_EXTERN PetscErrorCode TNNetworkBlockStep(TNNetwork, PetscInt j, PetscInt B, const PetscScalar *yj,
                                               PetscScalar *yj1, PetscScalar *Fj, PetscScalar *Fn, PetscBool *ok);
PETSC_EXTERN PetscErrorCode TNNetworkBlockAdjointStep(TNNetwork, PetscInt j, PetscInt B, const PetscScalar *yj,
                                                      const PetscScalar *yj1, const PetscScalar *Fj,
                                                      const PetscScalar *Fn, const PetscScalar *lambda_in,
                                                      PetscScalar *lambda_out, PetscScalar *grad, PetscBool *ok);

PETSC_EXTERN PetscErrorCode TNNetworkGetBlockSolver(TNNetwork, TNBlockSolver *);
/* The memory mode and its reconstruction tolerance; the depth solver. */
PETSC_EXTERN PetscErrorCode TNNetworkGetMemory(TNNetwork, TNMemoryMode *, PetscReal *tol);
PETSC_EXTERN PetscErrorCode TNNetworkGetDepthSolver(TNNetwork, TNDepthSolver *);
PETSC_EXTERN PetscErrorCode TNNetworkGetModel(TNNetwork, TNModel *);
/* The blocks [jlo, jhi) that this rank of the depth communicator holds: an even, contiguous
   share, under either depth solver. A network whose model holds a share of the blocks passes
   states forward and adjoints backward between the depth ranks: the first one runs the opening
   layer, the last one the closing layer (out and dout live there), and the forward and backward
   calls are collective on the depth ranks. */
PETSC_EXTERN PetscErrorCode TNNetworkDepthOwnership(MPI_Comm depth, PetscInt L, PetscInt *jlo, PetscInt *jhi);

/* What the solves of a network have done since the last reset, on this rank. */
typedef struct {
  PetscInt64 newton, krylov, block_solves; /* block solver: nonlinear and linear iterations, forward solves */
  PetscInt64 mgrit_its, mgrit_solves;      /* MGRIT iterations and solves */
  PetscReal mgrit_res;                     /* the largest final C-point residual norm of those solves */
  PetscReal mgrit_logfactor;               /* sum of log per-iteration convergence factors ... */
  PetscInt64 mgrit_nfactor;                /* ... over the solves that had one (two or more iterations) */
  PetscReal recon;                         /* reversible: largest reconstruction error of y_0 */
} TNNetworkCounts;

PETSC_EXTERN PetscErrorCode TNNetworkGetCounts(TNNetwork, TNNetworkCounts *);
PETSC_EXTERN PetscErrorCode TNNetworkResetCounts(TNNetwork);

/* The local blocks' weight gradients recomputed from the states and adjoints the last MGRIT
   forward and backward solves returned, added to grad: block by block, as DESIGN.md §2 defines
   them. (The solves take them from their last sweeps; this is the reference to check that.) */
PETSC_EXTERN PetscErrorCode TNNetworkMGRITBlockGradients(TNNetwork, PetscInt B, PetscScalar *grad);
/* Self-test of the MGRIT callbacks (in the spirit of XBraid's braid_TestAll) at the states of the
   B inputs X, on every depth rank: (1) the coarse step of stride 1 equals the fine step, block by
   block; (2) packing an interval's coarse data and unpacking it gives the operator (and, for the
   adjoint, the end state) the coarse step computes itself, for each coarse interval held here;
   (3) each block's adjoint step is the transpose of its linearised forward step (dot-product
   test; the tangent solved by fixed-point iteration); errors are relative, the largest over the ranks. passed: every
   error below 1e-8, but 1e-4 for the dot-product test, which sees the block and adjoint solves'
   tolerances (a wrong transpose is off by O(1)). */
typedef struct {
  PetscReal stride1, pack, transpose;   /* largest relative errors */
  PetscInt nstride1, npack, ntranspose; /* checks made, over all ranks */
} TNMGRITTestResult;
PETSC_EXTERN PetscErrorCode TNNetworkMGRITSelfTest(TNNetwork, PetscInt B, const PetscReal *X, TNMGRITTestResult *,
                                                   PetscBool *passed);
/* Test hook (for the tests of the self-test only): every coarse step takes a wrong step size,
   (m+1)h for m blocks. */
PETSC_EXTERN PetscErrorCode TNNetworkMGRITBreakCoarseStep(TNNetwork, PetscBool);

/* Loss of B outputs: returns the summed loss (over samples, and outputs for regression), the
   number of correctly classified samples, and when dout != NULL, scale * dloss/dout. */
PETSC_EXTERN void TNLossEvaluate(TNTask, PetscInt B, PetscInt m, const PetscReal *out, const PetscInt *labels,
                                 const PetscReal *targets, PetscReal scale, PetscReal *loss_sum, PetscInt *correct,
                                 PetscReal *dout);

#endif
