/* The commands of the thetanet program: train, evaluate, predict, info (DESIGN.md §3) and export. */
#ifndef THETANET_COMMANDS_H
#define THETANET_COMMANDS_H

#include "thetanet.h"

/* Runs the command named cmd (NULL: none given; with -help every command's options are listed). */
PETSC_EXTERN PetscErrorCode TNCommandRun(MPI_Comm, const char *cmd);
PETSC_EXTERN PetscErrorCode TNCommandTrain(MPI_Comm);
PETSC_EXTERN PetscErrorCode TNCommandEvaluate(MPI_Comm, PetscBool predict);
PETSC_EXTERN PetscErrorCode TNCommandInfo(MPI_Comm);
/* Writes an embedded problem's training and validation sets as data files. */
PETSC_EXTERN PetscErrorCode TNCommandExport(MPI_Comm);

#endif
