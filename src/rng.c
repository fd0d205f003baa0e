/* Counter-based generator: splitmix64's finaliser applied to a mixed (seed, stream, index). */
#include "rng.h"
#include <math.h>

uint64_t TNHash64(uint64_t x)
{
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

static uint64_t Counter(uint64_t seed, uint64_t stream, uint64_t index)
{
  return TNHash64(TNHash64(TNHash64(seed) ^ (stream * 0xd1b54a32d192ed03ULL)) ^ index);
}

double TNUniform(uint64_t seed, uint64_t stream, uint64_t index)
{
  return (double)(Counter(seed, stream, index) >> 11) * 0x1.0p-53;
}

double TNNormal(uint64_t seed, uint64_t stream, uint64_t index)
{
  const double u1 = 1.0 - TNUniform(seed, stream, 2 * index), u2 = TNUniform(seed, stream, 2 * index + 1);

  return sqrt(-2.0 * log(u1)) * cos(2.0 * PETSC_PI * u2);
}

void TNPermutation(uint64_t seed, uint64_t epoch, PetscInt N, PetscInt *perm)
{
  for (PetscInt i = 0; i < N; i++) perm[i] = i;
  for (PetscInt i = N - 1; i > 0; i--) {
    /* Multiply-shift maps 64 random bits to [0, i] without modulo bias worth noticing. */
    uint64_t r = Counter(seed, TN_STREAM_SHUFFLE, (epoch << 32) ^ (uint64_t)i);
    PetscInt k = (PetscInt)(((unsigned __int128)r * (uint64_t)(i + 1)) >> 64);
    PetscInt t = perm[i];
    perm[i]    = perm[k];
    perm[k]    = t;
  }
}
