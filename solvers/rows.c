/* Batched row operations: each is one BLAS GEMM on the row-major batch, read as its column-major
   transpose; the flops are logged for -log_view. */
#include "rows.h"
#include <petscblaslapack.h>

void TNRowsApply(PetscInt B, PetscInt nout, PetscInt nin, const PetscScalar *Y, const PetscScalar *A,
                 const PetscScalar *bias, PetscScalar *Z)
{
  PetscBLASInt M = (PetscBLASInt)nout, N = (PetscBLASInt)B, K = (PetscBLASInt)nin;
  const PetscScalar one = 1.0, zero = 0.0;

  /* row-major Z = Y A^T is column-major Z^T = A Y^T */
  BLASgemm_("T", "N", &M, &N, &K, &one, A, &K, Y, &K, &zero, Z, &M);
  (void)PetscLogFlops(2.0 * M * N * K);
  if (bias)
    for (PetscInt s = 0; s < B; s++)
      for (PetscInt i = 0; i < nout; i++) Z[s * nout + i] += bias[i];
}

void TNRowsApplyTranspose(PetscInt B, PetscInt nout, PetscInt nin, PetscScalar alpha, const PetscScalar *U,
                          const PetscScalar *A, PetscScalar beta, PetscScalar *Out)
{
  PetscBLASInt M = (PetscBLASInt)nin, N = (PetscBLASInt)B, K = (PetscBLASInt)nout;

  BLASgemm_("N", "N", &M, &N, &K, &alpha, A, &M, U, &K, &beta, Out, &M);
  (void)PetscLogFlops(2.0 * M * N * K);
}

void TNRowsOuterAdd(PetscInt B, PetscInt nu, PetscInt ny, PetscScalar alpha, const PetscScalar *U, const PetscScalar *Y,
                    PetscScalar *G)
{
  PetscBLASInt M = (PetscBLASInt)ny, N = (PetscBLASInt)nu, K = (PetscBLASInt)B;
  const PetscScalar one = 1.0;

  if (!B) return;
  BLASgemm_("N", "T", &M, &N, &K, &alpha, Y, &M, U, &N, &one, G, &M);
  (void)PetscLogFlops(2.0 * M * N * K);
}

void TNRowsColumnSums(PetscInt B, PetscInt n, const PetscScalar *U, PetscScalar *g)
{
  for (PetscInt s = 0; s < B; s++)
    for (PetscInt i = 0; i < n; i++) g[i] += U[s * n + i];
}
