/* The trainer: mini-batch optimisation of a network over the process grid, with per-epoch
   reporting, checkpoints, restarts and the results file (DESIGN.md §3, §4). */
#ifndef THETANET_TRAINER_H
#define THETANET_TRAINER_H

#include "thetanet.h"

typedef struct _n_TNTrainer *TNTrainer;

PETSC_EXTERN PetscErrorCode TNTrainerCreate(MPI_Comm, TNTrainer *);
/* Reads and validates the options of `train` that decide the data, the model, the optimiser and
   the grid (exit status 2 material on a bad one). */
PETSC_EXTERN PetscErrorCode TNTrainerSetFromOptions(TNTrainer);
/* Loads or generates the data, builds and initialises (or restores) the model, the network and
   the optimiser, which read their own options. */
PETSC_EXTERN PetscErrorCode TNTrainerSetUp(TNTrainer);
PETSC_EXTERN PetscErrorCode TNTrainerTrain(TNTrainer);
/* The data, the epochs and batches, and the objects the trainer drives. */
PETSC_EXTERN PetscErrorCode TNTrainerView(TNTrainer, PetscViewer);
PETSC_EXTERN PetscErrorCode TNTrainerDestroy(TNTrainer *);

#endif
