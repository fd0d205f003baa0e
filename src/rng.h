/* Counter-based random numbers: every value is a pure function of (seed, stream, index), so a
   run draws the same numbers on any number of ranks and restarts need no generator state. */
#ifndef THETANET_RNG_H
#define THETANET_RNG_H

#include <petscsys.h>
#include <stdint.h>

PETSC_EXTERN uint64_t TNHash64(uint64_t x);
/* Uniform in [0, 1). */
PETSC_EXTERN double TNUniform(uint64_t seed, uint64_t stream, uint64_t index);
/* Standard normal (Box-Muller on two uniforms of the stream: indices 2 index and 2 index + 1). */
PETSC_EXTERN double TNNormal(uint64_t seed, uint64_t stream, uint64_t index);
/* The seeded global permutation of 0..N-1 for one epoch (Fisher-Yates). */
PETSC_EXTERN void TNPermutation(uint64_t seed, uint64_t epoch, PetscInt N, PetscInt *perm);

/* Streams of distinct uses. */
enum { TN_STREAM_INIT = 1, TN_STREAM_SHUFFLE = 2, TN_STREAM_NOISE = 3 };

#endif
