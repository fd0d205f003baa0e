/* Error reporting: user mistakes become one line on stderr and exit status 2, run-time failures
(a solve that did not converge, a NaN loss, a write that failed) one line and exit status 1;
only internal errors keep PETSc's traceback. */
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
  if (reading_options && n != TN_ERR_USER && p == PETSC_ERROR_INITIAL) {
    n = TN_ERR_USER;
    /* every rank reads the same options and fails alike: one of them speaks */
    comm = PETSC_COMM_WORLD;
  }
  if (n == TN_ERR_USER || n == TN_ERR_RUNTIME || n == PETSC_ERR_FILE_WRITE) {
    /* Raised identically on every rank of comm: printed once, where it was raised. */
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

PetscErrorCode TNFailureAgree(MPI_Comm comm, PetscBool failed, const char *message, PetscBool *any, char *agreed,
                              size_t len)
{
  PetscMPIInt rank, size, first;
  int one       = failed ? 1 : 0;
  char msg[512] = "";

  PetscFunctionBegin;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCallMPI(MPI_Comm_size(comm, &size));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &one, 1, MPI_INT, MPI_MAX, comm));
  *any = one ? PETSC_TRUE : PETSC_FALSE;
  if (!one) PetscFunctionReturn(0);
  first = failed && message && message[0] ? rank : size;
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &first, 1, MPI_INT, MPI_MIN, comm));
  if (first < size) {
    if (rank == first) PetscCall(PetscStrncpy(msg, message, sizeof msg));
    PetscCallMPI(MPI_Bcast(msg, (int)sizeof msg, MPI_CHAR, first, comm));
  } else
    PetscCall(PetscStrncpy(msg, "a rank failed without saying why", sizeof msg));
  PetscCall(PetscStrncpy(agreed, msg, len));
  PetscFunctionReturn(0);
}

PetscErrorCode TNFailureRaise(MPI_Comm comm, PetscBool failed, const char *message, PetscErrorCode code)
{
  PetscBool any;
  char msg[512];

  PetscFunctionBegin;
  PetscCall(TNFailureAgree(comm, failed, message, &any, msg, sizeof msg));
  PetscCheck(!any, comm, code, "%s", msg);
  PetscFunctionReturn(0);
}
