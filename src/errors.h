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
/* Collective on comm, after the ranks learnt that some rank failed: the message of the lowest
   rank that has one (failed set, message not empty) is raised on every rank with the given
   code, so that it is printed once. Returns 0 when no rank failed. */
PETSC_EXTERN PetscErrorCode TNFailureRaise(MPI_Comm, PetscBool failed, const char *message, PetscErrorCode code);
/* The same agreement without the error: any says whether a rank failed, agreed its words. */
PETSC_EXTERN PetscErrorCode TNFailureAgree(MPI_Comm, PetscBool failed, const char *message, PetscBool *any,
                                           char *agreed, size_t len);
/* Exit status for an error code returned to main: 0, 1 (run-time failure) or 2 (user error). */
PETSC_EXTERN int TNExitStatus(PetscErrorCode);

#endif
