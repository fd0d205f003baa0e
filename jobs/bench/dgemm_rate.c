/* The DGEMM rate an epoch can reach: the GEMMs of a theta = 0 training step, replayed with the
   very calls thetanet makes (solvers/rows.c), the same shapes and leading dimensions, L distinct
   weight matrices and L + 1 distinct state buffers as the network holds them, in the step's
   order (forward over the blocks, then backward: weight gradient and input gradient per block),
   warm, repeated. Nothing but the GEMMs: no activation, bias, loss or update. The reference of
   jobs/bench/epoch.sh, which divides thetanet's rate by it, so the fraction stays below 1.

   usage: tn_dgemm_rate -n WIDTH -B BATCH -L LAYERS [-reps R] */
#include <petscsys.h>
#include "../../solvers/rows.h"

int main(int argc, char **argv)
{
  PetscInt n = 128, B = 256, L = 32, reps = 20;
  PetscScalar *W, *Y, *G, *U, *lambda;
  double t0 = 0, t;

  if (PetscInitialize(&argc, &argv, NULL, "tn_dgemm_rate -n N -B B -L L -reps R")) return 1;
  PetscCall(PetscOptionsGetInt(NULL, NULL, "-n", &n, NULL));
  PetscCall(PetscOptionsGetInt(NULL, NULL, "-B", &B, NULL));
  PetscCall(PetscOptionsGetInt(NULL, NULL, "-L", &L, NULL));
  PetscCall(PetscOptionsGetInt(NULL, NULL, "-reps", &reps, NULL));
  /* the network's buffers: W_j and their gradients [L, n, n], states y_0..y_L [L + 1, B, n] */
  PetscCall(PetscMalloc5(L * n * n, &W, (L + 1) * B * n, &Y, L * n * n, &G, B * n, &U, B * n, &lambda));
  for (PetscInt i = 0; i < L * n * n; i++) W[i] = 0.01 / (1 + i % 7);
  for (PetscInt i = 0; i < B * n; i++) Y[i] = 1.0 / (1 + i % 5);
  PetscCall(PetscArrayzero(G, L * n * n));
  for (PetscInt i = 0; i < B * n; i++) U[i] = 1.0 / (2 + i % 3);
  for (PetscInt r = -1; r < reps; r++) { /* r = -1 warms up */
    if (r == 0) t0 = MPI_Wtime();
    for (PetscInt j = 0; j < L; j++) TNRowsApply(B, n, n, Y + j * B * n, W + j * n * n, NULL, Y + (j + 1) * B * n);
    for (PetscInt j = L - 1; j >= 0; j--) {
      TNRowsOuterAdd(B, n, n, 1.0, U, Y + j * B * n, G + j * n * n);
      TNRowsApplyTranspose(B, n, n, 1.0, U, W + j * n * n, 0.0, lambda);
    }
  }
  t = MPI_Wtime() - t0;
  PetscCall(PetscPrintf(PETSC_COMM_SELF,
                        "epoch GEMMs n %" PetscInt_FMT " B %" PetscInt_FMT " L %" PetscInt_FMT " gflops %.2f\n", n, B,
                        L, 6.0 * n * n * B * L * reps / t * 1e-9));
  PetscCall(PetscFree5(W, Y, G, U, lambda));
  PetscCall(PetscFinalize());
  return 0;
}
