/* The bucketed sum over the ranks (src/reducer.c): every algorithm, bucket layout and start
   order gives, on every rank, the bits of one fixed tree, computed here independently from all
   ranks' values. The values span 16 orders of magnitude, so another order of the additions
   changes the bits (checked on 3 ranks and more, where there is another order). */
#include "testing.h"
#include <math.h>
#include "reducer.h"

#define N_VALUES 30011

/* rank r's values: signs and magnitudes from 1e-8 to 1e8 */
static void RankValues(PetscMPIInt r, PetscScalar *x)
{
  for (PetscInt i = 0; i < N_VALUES; i++) {
    const double u = TNUniform(17, (uint64_t)r, (uint64_t)i), e = TNUniform(18, (uint64_t)r, (uint64_t)i);
    x[i] = (2 * u - 1) * pow(10.0, 16 * e - 8);
  }
}

/* The tree: ranks r >= p2 folded into r - p2, then pairs (r, r + d) for d = 1, 2, ... < p2. */
static void TreeSum(PetscMPIInt size, PetscScalar *ref)
{
  PetscMPIInt p2 = 1;
  PetscScalar *v;

  while (2 * p2 <= size) p2 *= 2;
  CHECK(PetscMalloc1((size_t)size * N_VALUES, &v));
  for (PetscMPIInt r = 0; r < size; r++) RankValues(r, v + (size_t)r * N_VALUES);
  for (PetscInt i = 0; i < N_VALUES; i++) {
    for (PetscMPIInt r = p2; r < size; r++) v[(size_t)(r - p2) * N_VALUES + i] += v[(size_t)r * N_VALUES + i];
    for (PetscMPIInt d = 1; d < p2; d *= 2)
      for (PetscMPIInt r = 0; r < p2; r += 2 * d) v[(size_t)r * N_VALUES + i] += v[(size_t)(r + d) * N_VALUES + i];
    ref[i] = v[i];
  }
  CHECK(PetscFree(v));
}

typedef struct {
  PetscInt nbuckets, nseg[8], start[8][2], len[8][2];
} Layout;

static void test_reducer_tree(void **state)
{
  PetscMPIInt size, rank;
  PetscScalar *buf, *ref, *naive;
  const PetscInt n = N_VALUES;
  /* one bucket; buckets of 1, 7, a few thousand values and the rest; buckets of two segments far
     apart (as the trainer's first and last), one of them shorter than the number of ranks */
  const Layout layouts[] = {
      {1, {1}, {{0}}, {{n}}},
      {5, {1, 1, 1, 1, 1}, {{0}, {1}, {8}, {3008}, {9000}}, {{1}, {7}, {3000}, {5992}, {n - 9000}}},
      {3, {2, 2, 1}, {{0, n - 3}, {100, 20000}, {10100}}, {{100, 3}, {10000, n - 20003}, {9900}}},
  };

  (void)state;
  CHECK(MPI_Comm_size(PETSC_COMM_WORLD, &size));
  CHECK(MPI_Comm_rank(PETSC_COMM_WORLD, &rank));
  CHECK(PetscMalloc3(n, &buf, n, &ref, n, &naive));
  TreeSum(size, ref);
  if (size >= 3) { /* the data tell orders apart: rank by rank from the first differs */
    PetscInt differ = 0;
    RankValues(0, naive);
    for (PetscMPIInt r = 1; r < size; r++) {
      RankValues(r, buf);
      for (PetscInt i = 0; i < n; i++) naive[i] += buf[i];
    }
    for (PetscInt i = 0; i < n; i++) differ += naive[i] != ref[i];
    print_message("%d ranks: %" PetscInt_FMT " of %" PetscInt_FMT " sums differ from rank-by-rank order\n", size,
                  differ, n);
    assert_true(differ > n / 100);
  }
  for (size_t l = 0; l < sizeof layouts / sizeof layouts[0]; l++)
    for (int a = 0; a < 3; a++) {
      const Layout *L = &layouts[l];
      TNReducer R;
      PetscInt wrong = 0;
      RankValues(rank, buf);
      CHECK(TNReducerCreate(PETSC_COMM_WORLD, buf, L->nbuckets, &R));
      CHECK(TNReducerSetAlgorithm(R, (TNReducerAlgorithm)a));
      /* started last first, with progress between, as the backward pass does */
      for (PetscInt k = L->nbuckets - 1; k >= 0; k--) {
        CHECK(TNReducerStart(R, k, L->nseg[k], L->start[k], L->len[k]));
        CHECK(TNReducerProgress(R));
      }
      CHECK(TNReducerWait(R));
      for (PetscInt i = 0; i < n; i++) wrong += memcmp(&buf[i], &ref[i], sizeof buf[i]) != 0;
      print_message("%d ranks, layout %d, %s: %" PetscInt_FMT " sums off the tree\n", size, (int)l,
                    TNReducerAlgorithms[a], wrong);
      assert_true(TestAll(wrong == 0));
      /* a second reduction with the same reducer (its datatypes kept) */
      RankValues(rank, buf);
      for (PetscInt k = 0; k < L->nbuckets; k++) CHECK(TNReducerStart(R, k, L->nseg[k], L->start[k], L->len[k]));
      CHECK(TNReducerWait(R));
      wrong = 0;
      for (PetscInt i = 0; i < n; i++) wrong += memcmp(&buf[i], &ref[i], sizeof buf[i]) != 0;
      assert_true(TestAll(wrong == 0));
      CHECK(TNReducerDestroy(&R));
    }
  CHECK(PetscFree3(buf, ref, naive));
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_reducer_tree)};

  return TestRun(argc, argv, tests, sizeof tests / sizeof tests[0], NULL);
}
