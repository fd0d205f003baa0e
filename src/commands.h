/* The four commands of the thetanet program: train, evaluate, predict, info (DESIGN.md §3). */
#ifndef THETANET_COMMANDS_H
#define THETANET_COMMANDS_H

#include "thetanet.h"

/* Runs the command named cmd (NULL: none given; with -help every command's options are listed). */
PETSC_EXTERN PetscErrorCode TNCommandRun(MPI_Comm, const char *cmd);
PETSC_EXTERN PetscErrorCode TNCommandTrain(MPI_Comm);
PETSC_EXTERN PetscErrorCode TNCommandEvaluate(MPI_Comm, PetscBool predict);
PETSC_EXTERN PetscErrorCode TNCommandInfo(MPI_Comm);

#endif
