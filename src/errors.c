/* Error reporting: user mistakes become one line on stderr and exit status 2, never a
   traceback; internal and numerical failures keep PETSc's traceback. */
#include "errors.h"

/* While the command line is read, every error is the user's (a malformed number, an unknown
   enum value), whatever code PETSc raised it with. */
static PetscBool reading_options = PETSC_FALSE;

void TNErrorReadingOptions(PetscBool flag)
{
  reading_options = flag;
}

static PetscErrorCode TNErrorHandler(MPI_Comm comm, int line, const char *func, const char *file, PetscErrorCode n,
                                     PetscErrorType p, const char *mess, void *ctx)
{
  if (reading_options && n != TN_ERR_USER && p == PETSC_ERROR_INITIAL) n = TN_ERR_USER;
  if (n == TN_ERR_USER || n == TN_ERR_RUNTIME) {
    /* Raised identically on every rank that detected it: print once, from the first place;
       an empty message means the rank that failed has printed it already. */
    if (p == PETSC_ERROR_INITIAL) {
      PetscMPIInt rank = 0, initialized = 0;
      MPI_Initialized(&initialized);
      if (initialized) MPI_Comm_rank(comm, &rank);
      if (!rank && mess && mess[0]) fprintf(stderr, "thetanet: %s\n", mess);
      fflush(stderr);
    }
    return n;
  }
  return PetscTraceBackErrorHandler(comm, line, func, file, n, p, mess, ctx);
}

PetscErrorCode TNErrorHandlerPush(void)
{
  PetscFunctionBegin;
  PetscCall(PetscPushErrorHandler(TNErrorHandler, NULL));
  PetscFunctionReturn(0);
}

int TNExitStatus(PetscErrorCode ierr)
{
  if (!ierr) return 0;
  return ierr == TN_ERR_USER ? 2 : 1;
}
