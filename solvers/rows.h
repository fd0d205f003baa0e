/* Batched row operations of a layer. A batch is B rows of width n, row-major, so a layer applied
   to a whole batch is one GEMM. */
#ifndef THETANET_ROWS_H
#define THETANET_ROWS_H

#include "thetanet.h"

/* Z = Y A^T (+ bias): Y is B x nin, A nout x nin, Z B x nout. */
PETSC_EXTERN void TNRowsApply(PetscInt B, PetscInt nout, PetscInt nin, const PetscScalar *Y, const PetscScalar *A,
                              const PetscScalar *bias, PetscScalar *Z);
/* Out = alpha U A + beta Out: U is B x nout, A nout x nin, Out B x nin. */
PETSC_EXTERN void TNRowsApplyTranspose(PetscInt B, PetscInt nout, PetscInt nin, PetscScalar alpha, const PetscScalar *U,
                                       const PetscScalar *A, PetscScalar beta, PetscScalar *Out);
/* G += alpha U^T Y: U is B x nu, Y B x ny, G nu x ny. */
PETSC_EXTERN void TNRowsOuterAdd(PetscInt B, PetscInt nu, PetscInt ny, PetscScalar alpha, const PetscScalar *U,
                                 const PetscScalar *Y, PetscScalar *G);
/* Single-precision Z = Y A^T and Out = U A, for corrections whose rounding error the caller
   bounds: (nin + 2) u |A|_F |Y row|_2 per row of Z, u = 2^-24 (TNRowsSingleError). */
PETSC_EXTERN void TNRowsApplySingle(PetscInt B, PetscInt nout, PetscInt nin, const float *Y, const float *A, float *Z);
PETSC_EXTERN void TNRowsApplyTransposeSingle(PetscInt B, PetscInt nout, PetscInt nin, const float *U, const float *A,
                                             float *Out);
/* gamma with |fl(A y) - A y| <= gamma |A||y| for a single-precision product of inner length k,
   counting the rounding of A and y to single precision */
PETSC_EXTERN PetscReal TNRowsSingleError(PetscInt k);
/* g += the column sums of U (B x n): a bias gradient. */
PETSC_EXTERN void TNRowsColumnSums(PetscInt B, PetscInt n, const PetscScalar *U, PetscScalar *g);

#endif
