/* GFLOP/s of the GEMM shapes a theta-block layer uses: (n x n) times (n x B), as thetanet
   calls it (column-major view of row-major batches). The reference rate of jobs/bench/epoch.sh. */
#include <petscsys.h>
#include <petscblaslapack.h>

int main(int argc, char **argv)
{
  PetscInt n = 128, B = 256, reps = 200;
  PetscScalar *A, *Y, *Z, one = 1.0, zero = 0.0;
  PetscBLASInt bn, bB;
  double t0, t;

  if (PetscInitialize(&argc, &argv, NULL, "dgemm_rate -n N -B B -reps R")) return 1;
  PetscCall(PetscOptionsGetInt(NULL, NULL, "-n", &n, NULL));
  PetscCall(PetscOptionsGetInt(NULL, NULL, "-B", &B, NULL));
  PetscCall(PetscOptionsGetInt(NULL, NULL, "-reps", &reps, NULL));
  PetscCall(PetscMalloc3(n * n, &A, n * B, &Y, n * B, &Z));
  for (PetscInt i = 0; i < n * n; i++) A[i] = 1.0 / (1 + i % 7);
  for (PetscInt i = 0; i < n * B; i++) Y[i] = 1.0 / (1 + i % 5);
  bn = (PetscBLASInt)n;
  bB = (PetscBLASInt)B;
  BLASgemm_("T", "N", &bn, &bB, &bn, &one, A, &bn, Y, &bn, &zero, Z, &bn); /* warm up */
  t0 = MPI_Wtime();
  for (PetscInt r = 0; r < reps; r++) BLASgemm_("T", "N", &bn, &bB, &bn, &one, A, &bn, Y, &bn, &zero, Z, &bn);
  t = MPI_Wtime() - t0;
  PetscCall(PetscPrintf(PETSC_COMM_SELF, "dgemm n %" PetscInt_FMT " B %" PetscInt_FMT " gflops %.2f\n", n, B,
                        2.0 * n * n * B * reps / t * 1e-9));
  PetscCall(PetscFree3(A, Y, Z));
  PetscCall(PetscFinalize());
  return 0;
}
