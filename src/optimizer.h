/* First-order optimisers over the contiguous parameter buffer: SGD, momentum (heavy ball) and
   Adam. Their moments share the model's layout, so they checkpoint like the model. */
#ifndef THETANET_OPTIMIZER_H
#define THETANET_OPTIMIZER_H

#include "thetanet.h"
#include "tnio.h"

typedef enum { TN_OPT_SGD, TN_OPT_MOMENTUM, TN_OPT_ADAM } TNOptimizerType;
PETSC_EXTERN const char *const TNOptimizerTypes[];

typedef struct _n_TNOptimizer *TNOptimizer;

/* Adam with learning rate 1e-2 until told otherwise. */
PETSC_EXTERN PetscErrorCode TNOptimizerCreate(MPI_Comm, TNOptimizer *);
/* -optimizer, -lr, -momentum, -adam_beta1, -adam_beta2, -adam_eps, -optimizer_view. */
PETSC_EXTERN PetscErrorCode TNOptimizerSetFromOptions(TNOptimizer);
/* Moments for nparams parameters, zero, and the step count 0; prints the optimiser with
   -optimizer_view. */
PETSC_EXTERN PetscErrorCode TNOptimizerSetUp(TNOptimizer, PetscInt nparams);
/* xnew = x - update(grad) (xnew may be x); grad is the gradient of the objective J. */
PETSC_EXTERN PetscErrorCode TNOptimizerStep(TNOptimizer, const PetscScalar *x, PetscScalar *xnew,
                                            const PetscScalar *grad);
/* The base learning rate (-lr), and the rate in force for the next steps (the schedule's). */
PETSC_EXTERN PetscErrorCode TNOptimizerGetBaseRate(TNOptimizer, PetscReal *);
PETSC_EXTERN PetscErrorCode TNOptimizerGetRate(TNOptimizer, PetscReal *);
PETSC_EXTERN PetscErrorCode TNOptimizerSetRate(TNOptimizer, PetscReal);
/* Before SetUp: keep the moments of before the last step (a second set, written alternately,
   so no step copies them), for TNOptimizerRevert: back to the state of before the last step. */
PETSC_EXTERN PetscErrorCode TNOptimizerKeepPrevious(TNOptimizer, PetscBool);
PETSC_EXTERN PetscErrorCode TNOptimizerRevert(TNOptimizer);
/* The checkpoint record: type, step, hyper-parameters and the moment arrays of this object (to
   be read, or, after SetUp, filled). */
PETSC_EXTERN PetscErrorCode TNOptimizerGetRecord(TNOptimizer, TNOptimizerRecord *);
/* A record's type, hyper-parameters and step (the moments are the caller's to copy after SetUp);
   the learning rate too unless keep_lr. */
PETSC_EXTERN PetscErrorCode TNOptimizerRestore(TNOptimizer, const TNOptimizerRecord *, PetscBool keep_lr);
/* An empty record with the names a checkpoint's /optimizer is read by. */
PETSC_EXTERN void TNOptimizerRecordInit(TNOptimizerRecord *, PetscReal hyper[]);
#define TN_OPTIMIZER_HYPER 5
PETSC_EXTERN PetscErrorCode TNOptimizerView(TNOptimizer, PetscViewer);
PETSC_EXTERN PetscErrorCode TNOptimizerDestroy(TNOptimizer *);

#endif
