/* Forward and backward propagation of a local batch through the whole network: opening layer,
   theta-blocks, closing layer, loss. Blocks are reached through BlockStep/BlockAdjointStep. */
#ifndef THETANET_NETWORK_H
#define THETANET_NETWORK_H

#include "thetanet.h"
#include "blocksolver.h"
#include "mgrit.h"

typedef struct _n_TNNetwork *TNNetwork;

/* What the forward pass keeps for the backward pass (DESIGN.md §1, memory modes). */
typedef enum { TN_MEMORY_STORE, TN_MEMORY_REVERSIBLE, TN_MEMORY_CHECKPOINT } TNMemoryMode;
PETSC_EXTERN const char *const TNMemoryModes[];

/* Propagates batches of up to max_batch samples, in memory mode `store` until TNNetworkSetMemory
   says otherwise; the state storage is allocated by TNNetworkSetMemory or the first forward. */
PETSC_EXTERN PetscErrorCode TNNetworkCreate(TNModel, PetscInt max_batch, TNNetwork *);
PETSC_EXTERN PetscErrorCode TNNetworkSetFromOptions(TNNetwork);
/* store: every state (L+1 states, L values F_j(y_j) and, for theta > 0, L values F_j(y_{j+1}));
   reversible: O(1) in L, the states rebuilt backwards by solving
   y_j + h(1-theta)F_j(y_j) = y_{j+1} - h theta F_j(y_{j+1}); checkpoint: every stride-th state,
   the others recomputed segment by segment (stride 0: about sqrt(L)). tol: reconstruction
   error of y_0 above which a batch is logged with -info. Replaces the storage of a previous call. */
PETSC_EXTERN PetscErrorCode TNNetworkSetMemory(TNNetwork, TNMemoryMode, PetscInt stride, PetscReal tol);
/* Largest reconstruction error of y_0 (max norm of the rebuilt y_0 against s0(K x + k)) over the
   backward passes since the last call; 0 outside reversible mode. */
PETSC_EXTERN PetscErrorCode TNNetworkGetReconstructionError(TNNetwork, PetscReal *error);
PETSC_EXTERN PetscErrorCode TNNetworkDestroy(TNNetwork *);

/* out = z (B x m) for the B rows of X (B x d). A block solve that misses its tolerance leaves
   *ok = PETSC_FALSE and the failure recorded (TNNetworkGetFailure); the caller decides,
   collectively, what to do. */
PETSC_EXTERN PetscErrorCode TNNetworkForward(TNNetwork, PetscInt B, const PetscReal *X, PetscReal *out, PetscBool *ok);
/* Adds dJ/dparams into grad (model layout) given dout = dJ/dz of the last forward batch. */
PETSC_EXTERN PetscErrorCode TNNetworkBackward(TNNetwork, PetscInt B, const PetscReal *X, const PetscReal *dout,
                                              PetscScalar *grad, PetscBool *ok);
/* A one-line description of the first failure since the last forward, e.g.
   "block 3 forward solve did not converge: residual 2.1e-03". */
PETSC_EXTERN const char *TNNetworkGetFailure(TNNetwork);

/* The layer interface (what a parallel-in-depth solver drives): one theta-step of block j,
   y_{j+1} = y_j + h[(1-theta)F_j(y_j) + theta F_j(y_{j+1})], returning Fj = F_j(y_j) and
   Fn = F_j(y_{j+1}); and its adjoint lambda_j from lambda_{j+1}, adding block j's weight
   gradient into grad. */
PETSC_EXTERN PetscErrorCode TNNetworkBlockStep(TNNetwork, PetscInt j, PetscInt B, const PetscScalar *yj, PetscScalar *yj1,
                                               PetscScalar *Fj, PetscScalar *Fn, PetscBool *ok);
PETSC_EXTERN PetscErrorCode TNNetworkBlockAdjointStep(TNNetwork, PetscInt j, PetscInt B, const PetscScalar *yj,
                                                      const PetscScalar *yj1, const PetscScalar *Fj, const PetscScalar *Fn,
                                                      const PetscScalar *lambda_in, PetscScalar *lambda_out,
                                                      PetscScalar *grad, PetscBool *ok);

PETSC_EXTERN PetscErrorCode TNNetworkGetBlockSolver(TNNetwork, TNBlockSolver *);
PETSC_EXTERN PetscErrorCode TNNetworkGetModel(TNNetwork, TNModel *);
/* The blocks [jlo, jhi) that this rank of the depth communicator holds. A network whose model
   holds a share of the blocks passes states forward and adjoints backward between the depth
   ranks: the first one runs the opening layer, the last one the closing layer (out and dout
   live there), and the forward and backward calls are collective on the depth ranks. */
PETSC_EXTERN PetscErrorCode TNNetworkDepthOwnership(MPI_Comm depth, PetscInt L, PetscInt *jlo, PetscInt *jhi);

/* How the states and adjoints are propagated across depth: layer-serially, or by MGRIT (forward
   for the states, backward for the adjoints; -mgrit_* options). */
typedef enum { TN_DEPTH_SEQUENTIAL, TN_DEPTH_MGRIT } TNDepthSolver;
PETSC_EXTERN const char *const TNDepthSolvers[];
typedef enum { TN_COARSE_INJECT, TN_COARSE_AVERAGE } TNCoarseWeight;
PETSC_EXTERN const char *const TNCoarseWeights[];
/* The blocks a depth rank holds under a depth solver (both split them evenly). */
PETSC_EXTERN PetscErrorCode TNNetworkDepthOwnershipFor(MPI_Comm depth, PetscInt L, TNDepthSolver, PetscInt *jlo, PetscInt *jhi);
/* Reads -mgrit_coarse_weights, -mgrit_coarse_its (default TN_MGRIT_COARSE_ITS) and, given an
   MGRIT solver, its -mgrit_* options (also what -help lists). */
#define TN_MGRIT_COARSE_ITS 10
PETSC_EXTERN PetscErrorCode TNNetworkMGRITOptions(TNCoarseWeight *, PetscInt *coarse_its, TNMGRIT);
/* After TNNetworkSetMemory; the model must hold the blocks TNNetworkDepthOwnershipFor gives. */
PETSC_EXTERN PetscErrorCode TNNetworkSetDepthSolver(TNNetwork, TNDepthSolver);
/* The local blocks' weight gradients recomputed from the states and adjoints the last MGRIT
   forward and backward solves returned, added to grad: block by block, as DESIGN.md §2 defines
   them. (The solves take them from their closing sweeps; this is the reference to check that.) */
PETSC_EXTERN PetscErrorCode TNNetworkMGRITBlockGradients(TNNetwork, PetscInt B, PetscScalar *grad);
/* MGRIT iterations and solves since the last call, and the largest final C-point residual norm
   of those solves. */
PETSC_EXTERN PetscErrorCode TNNetworkGetMGRITCounts(TNNetwork, PetscInt64 *its, PetscInt64 *solves, PetscReal *residual);
/* Sum of the logarithms of the per-iteration convergence factors of the MGRIT solves since the
   last call, and how many solves had one (two or more iterations). */
PETSC_EXTERN PetscErrorCode TNNetworkGetMGRITFactor(TNNetwork, PetscReal *logsum, PetscInt64 *n);

/* Loss of B outputs: returns the summed loss (over samples, and outputs for regression), the
   number of correctly classified samples, and when dout != NULL, scale * dloss/dout. */
PETSC_EXTERN void TNLossEvaluate(TNTask, PetscInt B, PetscInt m, const PetscReal *out, const PetscInt *labels,
                                 const PetscReal *targets, PetscReal scale, PetscReal *loss_sum, PetscInt *correct,
                                 PetscReal *dout);

#endif
