/* thetanet: train, evaluate, predict and inspect implicit residual networks with MPI.
   main only dispatches the command and turns the outcome into the exit status. */
#include <signal.h>
#include "blas.h"
#include "commands.h"
#include "errors.h"
#include "tnio.h"

static const char usage[] =
    "thetanet: MPI-parallel trainer for implicit residual networks (theta-method blocks).\n"
    "Usage:\n"
    "  thetanet train    [-train F.h5 [-val F.h5] | -problem spirals|sine|peaks] [options] [-output results.h5]\n"
    "  thetanet evaluate -model M.h5 -data F.h5 [-output eval.h5] [-gradient]\n"
    "  thetanet predict  -model M.h5 -data F.h5 -output pred.h5\n"
    "  thetanet info     -model M.h5\n"
    "  thetanet export   -problem spirals|sine|peaks [-train T.h5] [-val V.h5]\n"
    "  thetanet COMMAND -help   lists every option of COMMAND with its default\n"
    "Exit status: 0 done, 1 failed at run time, 2 bad usage or bad input.\n\n";

int main(int argc, char **argv)
{
  PetscErrorCode ierr;
  const char *cmd = (argc > 1 && argv[1][0] != '-') ? argv[1] : NULL;

  /* a file size limit (ulimit -f) makes a write fail with EFBIG, which thetanet reports, rather
     than kill the process */
  signal(SIGXFSZ, SIG_IGN);
  /* the right OpenBLAS kernel, before MPI and PETSc start (may restart the program once) */
  TNBlasSelectKernel(argv);
  if (PetscInitialize(&argc, &argv, NULL, usage)) return 1;
  /* output piped into a reader that has gone (thetanet ... | head) ends the process quietly, as
     for any command, not with PETSc's signal traceback */
  signal(SIGPIPE, SIG_DFL);
  ierr = TNErrorHandlerPush();
  /* errors must not be raised in main itself: PETSc aborts the job for those */
  if (!ierr) {
    ierr = TNCommandRun(PETSC_COMM_WORLD, cmd);
    if (PetscPopErrorHandler()) return 1;
  }
  if (TNIOFinalize() || PetscFinalize()) return 1;
  return TNExitStatus(ierr);
}
