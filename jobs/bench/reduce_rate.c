/* The gradient sum alone: a buffer of the epoch benchmark's gradient (-values, default that of
   width 128 and 32 blocks) summed over the ranks in buckets of -bucket_kb, as the trainer cuts
   it, with each algorithm of src/reducer.c, warm, repeated; the algorithms alternate repetition
   by repetition so that the machine's noise falls on both. Prints each algorithm's seconds per
   sum (the slowest rank's mean) and the ratio. Nothing overlaps: this is the cost a backward
   pass has to hide.

   usage: mpiexec -n P tn_reduce_rate [-values N] [-bucket_kb KB] [-reps R] */
#include <petscsys.h>
#include "../../src/reducer.h"

int main(int argc, char **argv)
{
  PetscInt nvalues = 32 * (128 * 128 + 128) + 128 * 32 + 8 * 128 + 8, bucket_kb = 512, reps = 20, per, nb;
  PetscScalar *buf;
  TNReducer R[2];
  double t[2] = {0, 0};
  PetscMPIInt size;

  if (PetscInitialize(&argc, &argv, NULL, "mpiexec -n P tn_reduce_rate [-values N] [-bucket_kb KB] [-reps R]"))
    return 1;
  PetscCall(PetscOptionsGetInt(NULL, NULL, "-values", &nvalues, NULL));
  PetscCall(PetscOptionsGetInt(NULL, NULL, "-bucket_kb", &bucket_kb, NULL));
  PetscCall(PetscOptionsGetInt(NULL, NULL, "-reps", &reps, NULL));
  PetscCallMPI(MPI_Comm_size(PETSC_COMM_WORLD, &size));
  per = PetscMax(1, bucket_kb * 1024 / (PetscInt)sizeof(PetscScalar));
  nb  = (nvalues + per - 1) / per;
  PetscCall(PetscMalloc1(nvalues, &buf));
  for (PetscInt i = 0; i < nvalues; i++) buf[i] = 1.0 / (1 + i % 11);
  for (int a = 0; a < 2; a++) {
    PetscCall(TNReducerCreate(PETSC_COMM_WORLD, buf, nb, &R[a]));
    PetscCall(TNReducerSetAlgorithm(R[a], a ? TN_REDUCE_HALVING : TN_REDUCE_DOUBLING));
  }
  for (PetscInt r = -1; r < reps; r++) /* r = -1 warms up */
    for (int a = 0; a < 2; a++) {
      double t0;
      PetscCallMPI(MPI_Barrier(PETSC_COMM_WORLD));
      t0 = MPI_Wtime();
      for (PetscInt k = nb - 1; k >= 0; k--) { /* last first, as the backward pass starts them */
        const PetscInt start = k * per, len = PetscMin(per, nvalues - start);
        PetscCall(TNReducerStart(R[a], k, 1, &start, &len));
      }
      PetscCall(TNReducerWait(R[a]));
      if (r >= 0) t[a] += MPI_Wtime() - t0;
    }
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, t, 2, MPI_DOUBLE, MPI_MAX, PETSC_COMM_WORLD));
  PetscCall(PetscPrintf(PETSC_COMM_WORLD,
                        "ranks %d values %" PetscInt_FMT " (%.2f MB) buckets %" PetscInt_FMT
                        " doubling_s %.5f halving_s %.5f doubling/halving %.2f\n",
                        size, nvalues, nvalues * 8e-6, nb, t[0] / reps, t[1] / reps, t[0] / t[1]));
  for (int a = 0; a < 2; a++) PetscCall(TNReducerDestroy(&R[a]));
  PetscCall(PetscFree(buf));
  PetscCall(PetscFinalize());
  return 0;
}
