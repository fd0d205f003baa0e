/* Propagation of a whole data set through a network, over the process grid: the loss, the
   accuracy, and optionally the gradient and the predictions (validation, evaluate, predict). */
#ifndef THETANET_EVALUATE_H
#define THETANET_EVALUATE_H

#include "network.h"
#include "grid.h"
#include "tnio.h"

/* Mean loss, accuracy (classification, else NaN), and when grad != NULL the gradient of the mean
   loss, when predictions != NULL the outputs [N, m]; summed over the data communicator, chunk
   samples at a time per rank. A failed block solve is reported as "thetanet: <where>:
   <failure>" and raised on every rank as TN_ERR_RUNTIME. */
PETSC_EXTERN PetscErrorCode TNEvaluateDataset(TNNetwork, const TNGrid *, TNDataset, PetscInt chunk, const char *where,
                                              PetscReal *loss, PetscReal *accuracy, PetscScalar *grad,
                                              PetscReal *predictions);
/* The same without gradient and predictions, for a failure the caller handles: *failed on every
   rank when a block solve failed on one, failure its words ("<where>: <failure>"), loss NaN. */
PETSC_EXTERN PetscErrorCode TNEvaluateDatasetTry(TNNetwork, const TNGrid *, TNDataset, PetscInt chunk,
                                                 const char *where, PetscReal *loss, PetscReal *accuracy,
                                                 PetscBool *failed, char *failure, size_t len);
/* Gaussian noise added to the inputs: std times a standard normal that is a function of (seed,
   draw, global row, component) alone, so the same on any number of ranks, and the same draw
   scaled for every std. */
typedef struct {
  PetscReal std;
  PetscInt seed, draw;
} TNInputNoise;
/* The loss and accuracy of the data set with noisy inputs. */
PETSC_EXTERN PetscErrorCode TNEvaluateDatasetNoisy(TNNetwork, const TNGrid *, TNDataset, PetscInt chunk,
                                                   const char *where, const TNInputNoise *, PetscReal *loss,
                                                   PetscReal *accuracy);
/* Rows of a data set of N samples and m outputs over which its mean loss is taken. */
PETSC_EXTERN PetscReal TNLossDivisor(TNTask, PetscInt N, PetscInt m);

#endif
