/* The training loop: data-parallel mini-batch optimisation of a TNModel over a process grid,
   with per-epoch reporting, the summary line and the results file. */
#ifndef THETANET_TRAINER_H
#define THETANET_TRAINER_H

#include "thetanet.h"
#include "network.h"
#include "optimizer.h"
#include "problems.h"
#include "tnio.h"

/* The process grid P = depth_ranks x data_ranks. Until layers are split across ranks,
   depth_ranks is 1 and every rank is a data rank. */
typedef struct {
  MPI_Comm    world, data, depth;
  PetscMPIInt size, rank, data_size, data_rank, depth_size, depth_rank;
} TNGrid;

PETSC_EXTERN PetscErrorCode TNGridCreate(MPI_Comm, PetscInt depth_ranks, PetscInt layers, TNGrid *);
PETSC_EXTERN PetscErrorCode TNGridDestroy(TNGrid *);

/* Options shared by train and evaluate: the objective's regulariser. */
typedef struct {
  PetscReal alpha, beta;
} TNRegularization;

typedef struct _n_TNTrainer *TNTrainer;

PETSC_EXTERN PetscErrorCode TNTrainerCreate(MPI_Comm, TNTrainer *);
/* Reads and validates every option of `train` (exit status 2 material on a bad one). */
PETSC_EXTERN PetscErrorCode TNTrainerSetFromOptions(TNTrainer);
/* Loads or generates the data, builds and initialises the model. */
PETSC_EXTERN PetscErrorCode TNTrainerSetUp(TNTrainer);
PETSC_EXTERN PetscErrorCode TNTrainerTrain(TNTrainer);
PETSC_EXTERN PetscErrorCode TNTrainerDestroy(TNTrainer *);
PETSC_EXTERN PetscInt       TNTrainerGetWidth(TNTrainer);
/* Loss statistics of a data set under the model: mean loss, accuracy (classification), and when
   grad != NULL the gradient of the mean loss; summed over the data communicator. A failed block
   solve is reported as "thetanet: <where>: <failure>". */
PETSC_EXTERN PetscErrorCode TNEvaluateDataset(TNNetwork, const TNGrid *, TNDataset, PetscInt chunk, const char *where, PetscReal *loss,
                                              PetscReal *accuracy, PetscScalar *grad, PetscReal *predictions);

#endif
