/* The learning rate of each epoch: a schedule (constant, step, cosine, or cut on a plateau of the
   validation loss) after an optional linear warm-up, times the back-off of rejected steps. */
#ifndef THETANET_SCHEDULE_H
#define THETANET_SCHEDULE_H

#include "thetanet.h"

typedef enum { TN_SCHEDULE_CONSTANT, TN_SCHEDULE_STEP, TN_SCHEDULE_COSINE, TN_SCHEDULE_PLATEAU } TNScheduleType;
PETSC_EXTERN const char *const TNScheduleTypes[];

/* What a schedule carries from epoch to epoch (saved in checkpoints): the plateau's best loss,
   the epochs since it and the cuts made, and the back-off factor of rejected steps. */
typedef struct {
  PetscReal best, scale;
  PetscInt wait, cuts;
} TNScheduleState;

typedef struct {
  TNScheduleType type;
  PetscReal gamma, min_lr, backoff;
  PetscInt step, patience, warmup, epochs;
  TNScheduleState state;
} TNSchedule;

/* -lr_schedule, -lr_step, -lr_gamma, -lr_min, -lr_plateau, -lr_warmup, -lr_backoff; epochs is the
   run's total (the cosine's period). */
PETSC_EXTERN PetscErrorCode TNScheduleSetFromOptions(MPI_Comm, PetscInt epochs, TNSchedule *);
/* The rate of epoch e (counted from 1) for the base rate lr0. */
PETSC_EXTERN PetscReal TNScheduleRate(const TNSchedule *, PetscInt epoch, PetscReal lr0);
/* After epoch e: the validation loss it reached (NaN: none), for the plateau schedule. */
PETSC_EXTERN void TNScheduleObserve(TNSchedule *, PetscReal val_loss);
/* A rejected step: the rate from now on is multiplied by -lr_backoff. */
PETSC_EXTERN void TNScheduleBackOff(TNSchedule *);

#endif
