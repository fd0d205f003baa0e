/* First-order optimisers over the contiguous parameter buffer: SGD, momentum (heavy ball) and
   Adam. Their state shares the model's layout, so it checkpoints like the model. */
#ifndef THETANET_OPTIMIZER_H
#define THETANET_OPTIMIZER_H

#include "thetanet.h"

typedef enum { TN_OPT_SGD, TN_OPT_MOMENTUM, TN_OPT_ADAM } TNOptimizerType;
PETSC_EXTERN const char *const TNOptimizerTypes[];

typedef struct TNOptimizerS {
  TNOptimizerType type;
  PetscReal       lr, momentum, beta1, beta2, eps;
  PetscInt64      step;   /* updates taken */
  PetscInt        n;      /* parameters */
  PetscScalar    *m1, *m2; /* velocity / first moment, second moment (Adam) */
} TNOptimizer;

PETSC_EXTERN PetscErrorCode TNOptimizerSetUp(TNOptimizer *, PetscInt nparams);
/* params -= update(grad); grad is the gradient of the objective J. */
PETSC_EXTERN PetscErrorCode TNOptimizerStep(TNOptimizer *, PetscScalar *params, const PetscScalar *grad);
PETSC_EXTERN PetscErrorCode TNOptimizerDestroy(TNOptimizer *);

#endif
