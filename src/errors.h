/* User errors versus run-time failures: a user mistake is one clear line and exit status 2,
   anything else keeps PETSc's traceback and exits 1. */
#ifndef THETANET_ERRORS_H
#define THETANET_ERRORS_H

#include "thetanet.h"

/* Installs the handler that prints a TN_ERR_USER message as a single line (on rank 0 of the
   communicator that raised it) and defers every other error to PETSc's traceback handler. */
PETSC_EXTERN PetscErrorCode TNErrorHandlerPush(void);
/* Between PETSC_TRUE and PETSC_FALSE every error raised is reported as a user error. */
PETSC_EXTERN void TNErrorReadingOptions(PetscBool);
/* Exit status for an error code returned to main: 0, 1 (run-time failure) or 2 (user error). */
PETSC_EXTERN int TNExitStatus(PetscErrorCode);

#endif
