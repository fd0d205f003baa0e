/* What the cmocka tests share: the call check, reproducible random values, a model with
   non-trivial biases, and the main that runs a group of tests under PETSc. */
#ifndef THETANET_TESTING_H
#define THETANET_TESTING_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include "modelimpl.h"
#include "rng.h"

#define CHECK(call) assert_int_equal((call), 0)

/* A condition over every rank: an assert on it fails on all ranks or none, so that a failure on
   one rank cannot leave the others waiting in their next MPI call (assert_true(TestAll(c))). */
static inline int TestAll(int local)
{
  int all = 0;

  if (MPI_Allreduce(&local, &all, 1, MPI_INT, MPI_LAND, PETSC_COMM_WORLD)) return 0;
  return all;
}

/* x[i] uniform in [-scale, scale], a function of (seed, stream, i) alone. */
static inline void TestFill(PetscScalar *x, PetscInt len, PetscReal scale, uint64_t seed, uint64_t stream)
{
  for (PetscInt i = 0; i < len; i++) x[i] = scale * (2 * TNUniform(seed, stream, (uint64_t)i) - 1);
}

/* A model of cfg with Glorot weights from init_seed, the block weights scaled by wscale (large
   enough for the implicit terms to matter) and biases in [-0.3, 0.3] from fill_seed, so that
   every parameter's derivative is exercised. */
static inline TNModel TestModel(const TNModelConfig *cfg, PetscInt64 init_seed, PetscReal wscale, uint64_t fill_seed)
{
  TNModel M;

  CHECK(TNModelCreate(cfg, &M));
  CHECK(TNModelInitialize(M, init_seed));
  TestFill(M->p.kb, cfg->n, 0.3, fill_seed, 11);
  TestFill(M->p.b, cfg->L * cfg->n, 0.3, fill_seed, 12);
  TestFill(M->p.c, cfg->m, 0.3, fill_seed, 13);
  for (PetscInt i = 0; i < cfg->L * cfg->n * cfg->n; i++) M->p.W[i] *= wscale;
  return M;
}

/* PetscInitialize, the options given as name/value pairs (NULL-terminated), the tests,
   PetscFinalize; the exit status is the number of failed tests. */
static inline int TestRun(int argc, char **argv, const struct CMUnitTest *tests, size_t ntests,
                          const char *const *options)
{
  int fails;

  if (PetscInitialize(&argc, &argv, NULL, NULL)) return 1;
  for (; options && options[0]; options += 2)
    if (PetscOptionsSetValue(NULL, options[0], options[1])) return 1;
  fails = _cmocka_run_group_tests("tests", tests, ntests, NULL, NULL);
  if (PetscFinalize()) return 1;
  return fails;
}

#endif
