/* The network object's fields and the functions its files share: network.c (composition and the
   depth pipeline), step.c (the theta step and its adjoint), memory.c (the memory modes) and
   mgritapp.c (the MGRIT application). */
#ifndef THETANET_NETWORKIMPL_H
#define THETANET_NETWORKIMPL_H

#include "network.h"
#include "modelimpl.h"

/* The blocks are taken in segments of `stride` blocks, segment k = blocks [k s, min((k+1) s, L)).
   The segment buffers hold one segment's states and layer values, exactly what the adjoint steps
   read. The forward pass leaves the last segment in them; the backward pass restores each
   earlier segment before its adjoint steps:
     store       s = L: one segment, nothing to restore;
     checkpoint  s: the first state of every segment but the last is kept, and the segment is
                 recomputed forward from it;
     reversible  s = 1: nothing is kept; y_j is rebuilt from y_{j+1} by the reverse solve. */
struct _n_TNNetwork {
  TNModel model;
  PetscInt Bmax;
  TNBlockSolver solver;
  PetscBool setup, view;
  /* memory mode */
  TNMemoryMode mode;
  PetscInt stride;          /* blocks per segment; 0: about sqrt(L) */
  PetscInt seg;             /* the segment length in force */
  PetscReal recon_tol;      /* reversible: a batch whose y_0 is rebuilt worse than this is logged (-info) */
  PetscReal recon;          /* reversible: largest |rebuilt y_0 - y_0| since the last reset */
  PetscScalar *states;      /* s+1 states of a segment, each Bmax x n, contiguous so y_j, y_{j+1} stack */
  PetscScalar *Fyj;         /* s values F_j(y_j) */
  PetscScalar *Fyj1;        /* s values F_j(y_{j+1}) (implicit blocks, and every block in reversible mode) */
  PetscScalar *checkpoints; /* checkpoint mode: y_{ks} for the segments k before the last */
  /* work arrays of one batch */
  PetscScalar *antisym;     /* the local blocks' W_j - W_j^T - gamma I (antisymmetric models only) */
  PetscScalar *message;     /* a state passed between depth ranks, and a failure flag after it */
  PetscScalar *lambda, *mu; /* adjoints */
  PetscScalar *scaled;      /* 2 arrays: h(1-theta) s'(z_j).mu and h theta s'(z_{j+1}).mu */
  PetscScalar *deriv;       /* s' values */
  PetscScalar *z;           /* pre-activations, right-hand sides */
  PetscScalar *dA;          /* n x n: an antisymmetric block's dJ/dA before it becomes dJ/dW */
  PetscBool forward_ok;
  char failure[256];
  TNGradientReady ready; /* told as parts of the gradient become final (layer-serial backward) */
  PetscBool exact;       /* forward passes propagate layer-serially whatever the depth solver */
  void *ready_ctx;
  /* -depth_solver */
  TNDepthSolver depth_solver;
  TNCoarseWeight coarse_weights;
  PetscInt coarse_its; /* iterations a coarse step's solve may take */
  TNMGRIT mg_fwd, mg_adj;
  PetscScalar *adjoints;            /* adjoints at this rank's points: adjoints[q] = lambda_{jhi-q} */
  PetscScalar *coarse_A, *coarse_b; /* a coarse step's averaged operator and bias */
  PetscInt mg_batch;                /* batch size of the MGRIT solve under way */
  PetscBool mg_ok;
  PetscBool mg_last_sweep;   /* fine steps now may be the last at their points */
  PetscBool mg_break_coarse; /* test hook: coarse steps take a wrong step size */
  PetscScalar *block_grad;   /* the adjoint solve's block gradients, from each block's last step */
  /* coarse intervals whose blocks lie on more than one depth rank, as the MGRIT solver assembles
     them (coarse_pack / coarse_unpack): the coarse operator, and for the adjoint the state y_j1 at
     the interval's end, where the coarse adjoint step is linearised */
  PetscInt nspan, capspan;
  PetscInt *span;            /* span[2k], span[2k+1]: the first block and one past the last */
  PetscScalar *span_op;      /* n*n + n each: the coarse operator and bias */
  PetscScalar *span_state;   /* Bmax*n each: y_j1 */
  TNNetworkCounts mg_counts; /* the MGRIT part of the counters */
};

/* Blocks held here: all L, or a depth rank's share [jlo, jhi) of the model. */
static inline PetscInt TNNetworkLocalBlocks(TNNetwork net)
{
  return net->model->jhi - net->model->jlo;
}

/* step.c: block j as the block solver sees it; one theta-solve with the step and theta of L
   (the forward step with the block's own, the reverse step with (-h, 1-theta)); the reverse
   step y_{j+1} -> y_j. */
PETSC_INTERN void TNNetworkBlockLayer(TNNetwork, PetscInt j, TNBlockLayer *);
PETSC_INTERN PetscErrorCode TNNetworkThetaSolve(TNNetwork, PetscInt j, const char *direction, const TNBlockLayer *,
                                                PetscInt B, const PetscScalar *yfrom, PetscScalar *yto,
                                                PetscScalar *Ffrom, PetscScalar *Fto, PetscBool *ok);
PETSC_INTERN PetscErrorCode TNNetworkBlockReverseStep(TNNetwork, PetscInt j, PetscInt B, const PetscScalar *yj1,
                                                      PetscScalar *yj, PetscScalar *Fj, PetscScalar *Fn, PetscBool *ok);

/* memory.c: the segment buffers of the memory mode; the forward steps of segment k from its first
   state; segment k (not the last) restored before its adjoint steps; the reconstruction check of
   reversible mode at y_0 (exact is s0(K x + k)). */
PETSC_INTERN PetscErrorCode TNNetworkMemoryAllocate(TNNetwork);
PETSC_INTERN PetscErrorCode TNNetworkMemoryFree(TNNetwork);
PETSC_INTERN PetscInt TNNetworkSegmentCount(TNNetwork);
PETSC_INTERN PetscErrorCode TNNetworkSegmentForward(TNNetwork, PetscInt k, PetscInt B, PetscBool *ok);
PETSC_INTERN PetscErrorCode TNNetworkSegmentRestore(TNNetwork, PetscInt k, PetscInt B, PetscBool *ok);
PETSC_INTERN PetscErrorCode TNNetworkReconstructionCheck(TNNetwork, PetscInt S, const PetscScalar *exact);

/* mgritapp.c: set-up and teardown of the MGRIT solvers, and the MGRIT forward and backward
   passes (in place of the layer-serial ones). */
/* The default -mgrit_rtol of training: the states and adjoints to 1e-4 of their norm. */
#define TN_MGRIT_RTOL 1e-4
PETSC_INTERN PetscErrorCode TNNetworkMGRITSetUp(TNNetwork);
PETSC_INTERN PetscErrorCode TNNetworkMGRITDestroy(TNNetwork);
PETSC_INTERN PetscErrorCode TNNetworkForwardMGRIT(TNNetwork, PetscInt B, const PetscReal *X, PetscReal *out,
                                                  PetscBool *ok);
PETSC_INTERN PetscErrorCode TNNetworkBackwardMGRIT(TNNetwork, PetscInt B, const PetscReal *X, const PetscReal *dout,
                                                   PetscScalar *grad, PetscBool *ok);

/* network.c: the opening layer's forward map and derivative. */
PETSC_INTERN void TNNetworkOpening(TNNetwork, PetscInt B, const PetscReal *X, PetscScalar *y0);
PETSC_INTERN void TNNetworkOpeningGradient(TNNetwork, PetscInt B, const PetscReal *X, const PetscScalar *y0,
                                           const PetscScalar *lambda0, PetscScalar *grad);
PETSC_INTERN void TNNetworkClosingGradient(TNNetwork, PetscInt B, const PetscScalar *yL, const PetscReal *dout,
                                           PetscScalar *grad, PetscScalar *lambdaL);

#endif
