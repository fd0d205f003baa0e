/* The sum over a communicator of a buffer, in buckets: each bucket (up to two segments of the
   buffer) is started as soon as its values are final and moves on in the background while the
   caller computes, progressed by TNReducerProgress. Every element is summed in one fixed order,
   a binary tree over the ranks (pairs of ranks r, r ^ 1, then pairs of pairs, ...), so the result
   depends neither on how the buffer is cut into buckets, nor on when they start, nor on message
   sizes (an MPI_Allreduce chooses its algorithm, and with it the order of the additions, by
   message size); and every rank holds the same bits. */
#ifndef THETANET_REDUCER_H
#define THETANET_REDUCER_H

#include "thetanet.h"

typedef struct _n_TNReducer *TNReducer;

/* How a bucket's rounds share the work (the sums are the same bits either way): recursive
   doubling (every round the whole bucket), halving then doubling (reduce-scatter, allgather:
   about 2 buckets' worth moved and 1 added per rank, whatever the number of ranks), or auto:
   halving for buckets of at least 1024 values per rank. */
typedef enum { TN_REDUCE_AUTO, TN_REDUCE_DOUBLING, TN_REDUCE_HALVING } TNReducerAlgorithm;
PETSC_EXTERN const char *const TNReducerAlgorithms[];

/* buf is summed in place; nbuckets is the most buckets one reduction uses. */
PETSC_EXTERN PetscErrorCode TNReducerCreate(MPI_Comm, PetscScalar *buf, PetscInt nbuckets, TNReducer *);
/* Start bucket k (0 <= k < nbuckets) of this reduction: the nseg (1 or 2) segments
   buf[start[i] .. start[i] + len[i]). Every rank starts the same buckets with the same segments,
   in any order. The segments are sent from and summed into in place: the caller leaves them
   alone until TNReducerWait. */
PETSC_EXTERN PetscErrorCode TNReducerStart(TNReducer, PetscInt k, PetscInt nseg, const PetscInt start[],
                                           const PetscInt len[]);
/* The algorithm of the reductions that follow (none may be under way); default auto. */
PETSC_EXTERN PetscErrorCode TNReducerSetAlgorithm(TNReducer, TNReducerAlgorithm);
/* Sum another buffer from the next reduction on (none may be under way). */
PETSC_EXTERN PetscErrorCode TNReducerSetBuffer(TNReducer, PetscScalar *buf);
/* Advance what has arrived, without waiting. */
PETSC_EXTERN PetscErrorCode TNReducerProgress(TNReducer);
/* Finish every started bucket: their segments of buf hold the sums. Ends the reduction. */
PETSC_EXTERN PetscErrorCode TNReducerWait(TNReducer);
PETSC_EXTERN PetscErrorCode TNReducerDestroy(TNReducer *);

#endif
