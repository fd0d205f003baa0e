/* Batched row operations: each is one BLAS GEMM on the row-major batch, read as its column-major
   transpose; the flops are logged for -log_view. */
#include "rows.h"
#include <float.h>
#include <petscblaslapack.h>

/* single-precision GEMM of the same BLAS (not among PETSc's bindings, which follow PetscScalar) */
extern void sgemm_(const char *, const char *, const PetscBLASInt *, const PetscBLASInt *, const PetscBLASInt *,
                   const float *, const float *, const PetscBLASInt *, const float *, const PetscBLASInt *,
                   const float *, float *, const PetscBLASInt *);

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

void TNRowsApplySingle(PetscInt B, PetscInt nout, PetscInt nin, const float *Y, const float *A, float *Z)
{
  PetscBLASInt M = (PetscBLASInt)nout, N = (PetscBLASInt)B, K = (PetscBLASInt)nin;
  const float one = 1.0f, zero = 0.0f;

  sgemm_("T", "N", &M, &N, &K, &one, A, &K, Y, &K, &zero, Z, &M);
  (void)PetscLogFlops(2.0 * M * N * K);
}

void TNRowsApplyTransposeSingle(PetscInt B, PetscInt nout, PetscInt nin, const float *U, const float *A, float *Out)
{
  PetscBLASInt M = (PetscBLASInt)nin, N = (PetscBLASInt)B, K = (PetscBLASInt)nout;
  const float one = 1.0f, zero = 0.0f;

  sgemm_("N", "N", &M, &N, &K, &one, A, &M, U, &K, &zero, Out, &M);
  (void)PetscLogFlops(2.0 * M * N * K);
}

PetscReal TNRowsSingleError(PetscInt k)
{
  /* k products and sums, plus the rounding of both factors (Higham, Accuracy and Stability, 3.5) */
  const PetscReal ku = (PetscReal)(k + 2) * (FLT_EPSILON / 2);
  return ku / (1 - ku);
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
