/* Blocks split across depth ranks: the shares of a model initialise as the whole model does,
   gather back to it, and give the whole model's regulariser and its gradient, including the
   smoothness terms that couple blocks across rank boundaries. */
#include "testing.h"
#include <string.h>
#include "evaluate.h"

static void test_split_model(void **state)
{
  TNModelConfig cfg = {
      .d = 3, .n = 4, .L = 7, .m = 2, .theta = 0.5, .T = 1.3, .act = TN_ACT_TANH, .task = TN_TASK_CLASSIFICATION};
  TNModel full, part;
  PetscMPIInt size, rank;
  PetscInt jlo, jhi;
  PetscScalar *gfull, *gpart, *gathered;
  PetscReal Rfull, Rpart, err = 0;

  (void)state;
  CHECK(MPI_Comm_size(PETSC_COMM_WORLD, &size));
  CHECK(MPI_Comm_rank(PETSC_COMM_WORLD, &rank));
  CHECK(TNModelCreate(&cfg, &full));
  CHECK(TNModelInitialize(full, 5));
  for (PetscInt i = 0; i < cfg.L * cfg.n; i++) full->p.b[i] = TNUniform(5, 9, (uint64_t)i) - 0.5;
  TNGridSplit(cfg.L, size, rank, &jlo, &jhi);
  CHECK(TNModelCreateLocal(&cfg, PETSC_COMM_WORLD, jlo, jhi, &part));
  CHECK(TNModelInitialize(part, 5));
  for (PetscInt i = 0; i < (jhi - jlo) * cfg.n; i++) part->p.b[i] = full->p.b[jlo * cfg.n + i];

  CHECK(PetscCalloc3(full->nparams, &gfull, part->nparams, &gpart, full->nparams, &gathered));
  CHECK(TNModelAllgather(part, part->params, gathered));
  for (PetscInt i = 0; i < full->nparams; i++) err = PetscMax(err, PetscAbsScalar(gathered[i] - full->params[i]));
  assert_true(TestAll(err == 0));
  /* the whole network on the first rank alone (the writer's): every entry from its owner */
  CHECK(PetscArrayzero(gathered, full->nparams));
  CHECK(TNModelGather(part, part->params, rank ? NULL : gathered));
  for (PetscInt i = 0; !rank && i < full->nparams; i++)
    err = PetscMax(err, PetscAbsScalar(gathered[i] - full->params[i]));
  assert_true(TestAll(err == 0));

  CHECK(TNModelRegularizer(full, 0.3, 0.7, &Rfull, gfull));
  CHECK(TNModelRegularizer(part, 0.3, 0.7, &Rpart, gpart));
  CHECK(MPI_Allreduce(MPI_IN_PLACE, &Rpart, 1, MPIU_REAL, MPI_SUM, PETSC_COMM_WORLD));
  CHECK(TNModelAllgather(part, gpart, gathered));
  for (PetscInt i = 0; i < full->nparams; i++) err = PetscMax(err, PetscAbsScalar(gathered[i] - gfull[i]));
  print_message("%d ranks: R %.15g (split) vs %.15g, gradient difference %.1e\n", size, (double)Rpart, (double)Rfull,
                (double)err);
  assert_true(PetscAbsReal(Rpart - Rfull) <= 1e-13 * Rfull);
  assert_true(err <= 1e-13);

  CHECK(PetscFree3(gfull, gpart, gathered));
  CHECK(TNModelDestroy(&part));
  CHECK(TNModelDestroy(&full));
}

/* A theta = 0.5 network across the ranks: each further MGRIT iteration of the forward solve
   leaves a smaller C-point residual. */
static void test_mgrit_residual(void **state)
{
  TNModelConfig cfg = {
      .d = 2, .n = 6, .L = 32, .m = 2, .theta = 0.5, .T = 2.0, .act = TN_ACT_TANH, .task = TN_TASK_CLASSIFICATION};
  const PetscInt B = 9;
  PetscReal X[18], out[18], prev = PETSC_MAX_REAL;
  PetscMPIInt size;

  (void)state;
  CHECK(MPI_Comm_size(PETSC_COMM_WORLD, &size));
  for (PetscInt i = 0; i < B * cfg.d; i++) X[i] = 2 * TNUniform(3, 4, (uint64_t)i) - 1;
  CHECK(PetscOptionsSetValue(NULL, "-mgrit_tol", "0"));
  CHECK(PetscOptionsSetValue(NULL, "-mgrit_rtol", "0"));
  CHECK(PetscOptionsSetValue(NULL, "-block_atol", "1e-12"));
  for (int its = 1; its <= 5; its++) {
    char v[8];
    TNModel M;
    TNNetwork net;
    PetscInt jlo, jhi;
    TNNetworkCounts counts;
    PetscInt64 n;
    PetscReal res;
    PetscBool ok;
    snprintf(v, sizeof v, "%d", its);
    CHECK(PetscOptionsSetValue(NULL, "-mgrit_max_it", v));
    CHECK(TNNetworkDepthOwnership(PETSC_COMM_WORLD, cfg.L, &jlo, &jhi));
    CHECK(TNModelCreateLocal(&cfg, size > 1 ? PETSC_COMM_WORLD : MPI_COMM_NULL, jlo, jhi, &M));
    CHECK(TNModelInitialize(M, 2));
    for (PetscInt i = 0; i < (jhi - jlo) * cfg.n * cfg.n; i++)
      M->p.W[i] *= 3; /* a stiff network: h theta |A| of order one */
    CHECK(TNNetworkCreate(M, B, &net));
    CHECK(TNNetworkSetFromOptions(net));
    CHECK(TNNetworkSetDepthSolver(net, TN_DEPTH_MGRIT));
    CHECK(TNNetworkForward(net, B, X, out, &ok));
    assert_true(TestAll(ok));
    CHECK(TNNetworkGetCounts(net, &counts));
    n   = counts.mgrit_its;
    res = counts.mgrit_res;
    print_message("%d ranks, %d MGRIT iterations: C-point residual %.3e\n", size, its, (double)res);
    assert_int_equal(n, its);
    assert_true(res < prev);
    prev = res;
    CHECK(TNNetworkDestroy(&net));
    CHECK(TNModelDestroy(&M));
  }
  CHECK(PetscOptionsClearValue(NULL, "-mgrit_max_it"));
  CHECK(PetscOptionsClearValue(NULL, "-mgrit_tol"));
  CHECK(PetscOptionsClearValue(NULL, "-mgrit_rtol"));
}

/* Inexact MGRIT (one or two iterations, with and without the nested start): the block
   gradients the adjoint solve takes from its final sweep are those of the returned states
   and adjoints, recomputed block by block. */
static void test_mgrit_gradient(void **state)
{
  const PetscInt B = 7;
  PetscReal X[14], out[14], dout[14];
  PetscMPIInt size;
  const char *runs[][2] = {{"1", "true"}, {"2", "true"}, {"1", "false"}, {"2", "false"}};

  (void)state;
  CHECK(MPI_Comm_size(PETSC_COMM_WORLD, &size));
  for (PetscInt i = 0; i < B * 2; i++) {
    X[i]    = 2 * TNUniform(3, 4, (uint64_t)i) - 1;
    dout[i] = 2 * TNUniform(3, 5, (uint64_t)i) - 1;
  }
  CHECK(PetscOptionsSetValue(NULL, "-mgrit_tol", "0"));
  CHECK(PetscOptionsSetValue(NULL, "-mgrit_rtol", "0"));
  for (int theta = 0; theta <= 2; theta++) {
    TNModelConfig cfg = {.d     = 2,
                         .n     = 5,
                         .L     = 29,
                         .m     = 2,
                         .theta = 0.5 * theta,
                         .T     = 3.0,
                         .act   = TN_ACT_TANH,
                         .task  = TN_TASK_CLASSIFICATION};
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
      TNModel M;
      TNNetwork net;
      PetscInt jlo, jhi;
      PetscScalar *grad, *ref;
      TNParams g, e;
      PetscReal err = 0, scale = 0;
      PetscBool ok;
      CHECK(PetscOptionsSetValue(NULL, "-mgrit_max_it", runs[r][0]));
      CHECK(PetscOptionsSetValue(NULL, "-mgrit_skip", runs[r][1]));
      CHECK(TNNetworkDepthOwnership(PETSC_COMM_WORLD, cfg.L, &jlo, &jhi));
      CHECK(TNModelCreateLocal(&cfg, size > 1 ? PETSC_COMM_WORLD : MPI_COMM_NULL, jlo, jhi, &M));
      CHECK(TNModelInitialize(M, 3));
      CHECK(TNNetworkCreate(M, B, &net));
      CHECK(TNNetworkSetFromOptions(net));
      CHECK(TNNetworkSetDepthSolver(net, TN_DEPTH_MGRIT));
      CHECK(PetscCalloc2(M->nparams, &grad, M->nparams, &ref));
      CHECK(TNNetworkForward(net, B, X, out, &ok));
      assert_true(TestAll(ok));
      CHECK(TNNetworkBackward(net, B, X, dout, grad, &ok));
      assert_true(TestAll(ok));
      CHECK(TNNetworkMGRITBlockGradients(net, B, ref));
      TNModelParams(M, grad, &g);
      TNModelParams(M, ref, &e);
      for (PetscInt i = 0; i < (jhi - jlo) * cfg.n * cfg.n; i++) {
        err   = PetscMax(err, PetscAbsScalar(g.W[i] - e.W[i]));
        scale = PetscMax(scale, PetscAbsScalar(e.W[i]));
      }
      for (PetscInt i = 0; i < (jhi - jlo) * cfg.n; i++) err = PetscMax(err, PetscAbsScalar(g.b[i] - e.b[i]));
      CHECK(MPI_Allreduce(MPI_IN_PLACE, &err, 1, MPIU_REAL, MPI_MAX, PETSC_COMM_WORLD));
      CHECK(MPI_Allreduce(MPI_IN_PLACE, &scale, 1, MPIU_REAL, MPI_MAX, PETSC_COMM_WORLD));
      print_message("%d ranks, theta %.1f, max_it %s, nested start %s: block gradients against the recomputed ones "
                    "%.1e (largest %.1e)\n",
                    size, (double)cfg.theta, runs[r][0], runs[r][1], (double)err, (double)scale);
      assert_true(scale > 0);
      assert_true(err <= 1e-13 * scale);
      CHECK(PetscFree2(grad, ref));
      CHECK(TNNetworkDestroy(&net));
      CHECK(TNModelDestroy(&M));
    }
  }
  CHECK(PetscOptionsClearValue(NULL, "-mgrit_max_it"));
  CHECK(PetscOptionsClearValue(NULL, "-mgrit_skip"));
  CHECK(PetscOptionsClearValue(NULL, "-mgrit_tol"));
  CHECK(PetscOptionsClearValue(NULL, "-mgrit_rtol"));
}

/* A block solve that fails on the last depth rank only, in the first chunk of a data set: every
   rank stops (none waits for the next chunk), with the failing rank's words, whatever the
   sequence of chunks on the others. */
static void test_failure_agreed(void **state)
{
  const TNModelConfig cfg = {
      .d = 2, .n = 64, .L = 6, .m = 2, .theta = 0.5, .T = 1.0, .act = TN_ACT_TANH, .task = TN_TASK_CLASSIFICATION};
  const PetscInt N = 2048, chunk = 512; /* chunks of 256 KB: a send of one waits for its receive */
  PetscMPIInt size, rank;
  TNGrid grid;
  TNModel M;
  TNNetwork net;
  TNDataset D;
  PetscReal *X, loss, acc;
  PetscInt *labels, jlo, jhi;
  PetscErrorCode ierr;
  const char *message = NULL;

  (void)state;
  CHECK(MPI_Comm_size(PETSC_COMM_WORLD, &size));
  CHECK(MPI_Comm_rank(PETSC_COMM_WORLD, &rank));
  CHECK(TNGridCreate(PETSC_COMM_WORLD, size, cfg.L, &grid));
  CHECK(TNNetworkDepthOwnership(grid.depth, cfg.L, &jlo, &jhi));
  CHECK(TNModelCreateLocal(&cfg, size > 1 ? grid.depth : MPI_COMM_NULL, jlo, jhi, &M));
  CHECK(TNModelInitialize(M, 4));
  /* the last rank's last block cannot be solved: its weights are not numbers */
  if (rank == size - 1)
    for (PetscInt i = 0; i < cfg.n * cfg.n; i++) M->p.W[(jhi - jlo - 1) * cfg.n * cfg.n + i] = NAN;
  CHECK(TNDatasetCreate(N, cfg.d, cfg.m, cfg.task, "toy", &D));
  CHECK(TNDatasetGetArrays(D, &X, &labels, NULL));
  TestFill(X, N * cfg.d, 1.0, 5, 1);
  for (PetscInt i = 0; i < N; i++) labels[i] = i % 2;
  CHECK(TNNetworkCreate(M, chunk, &net));
  CHECK(PetscPushErrorHandler(PetscReturnErrorHandler, NULL));
  ierr = TNEvaluateDataset(net, &grid, D, chunk, "failing", &loss, &acc, NULL, NULL);
  CHECK(PetscPopErrorHandler());
  CHECK(PetscErrorMessage(ierr, NULL, (char **)&message));
  print_message("%d ranks: error %d: %s\n", size, (int)ierr, message ? message : "(none)");
  assert_true(TestAll(ierr == TN_ERR_RUNTIME));
  assert_true(TestAll(message && strstr(message, "failing: block 5 forward solve did not converge") != NULL));
  CHECK(TNNetworkDestroy(&net));
  CHECK(TNDatasetDestroy(&D));
  CHECK(TNModelDestroy(&M));
  CHECK(TNGridDestroy(&grid));
}

/* The MGRIT callbacks' self-test passes for theta 0, 0.5, 1, dense and antisymmetric blocks, with
   tight solves to the dot-product test's rounding; a wrong coarse step makes it fail. */
static void test_mgrit_selftest(void **state)
{
  const PetscInt B = 9;
  PetscReal X[18];
  PetscMPIInt size;

  (void)state;
  CHECK(MPI_Comm_size(PETSC_COMM_WORLD, &size));
  for (PetscInt i = 0; i < B * 2; i++) X[i] = 2 * TNUniform(5, 4, (uint64_t)i) - 1;
  CHECK(PetscOptionsSetValue(NULL, "-block_atol", "1e-14"));
  CHECK(PetscOptionsSetValue(NULL, "-adjoint_ksp_rtol", "1e-14"));
  for (int theta = 0; theta <= 2; theta++)
    for (int anti = 0; anti <= 1; anti++)
      for (int broken = 0; broken <= 1; broken++) {
        TNModelConfig cfg = {.d             = 2,
                             .n             = 6,
                             .L             = 30,
                             .m             = 2,
                             .theta         = 0.5 * theta,
                             .T             = 3.0,
                             .act           = TN_ACT_TANH,
                             .task          = TN_TASK_CLASSIFICATION,
                             .antisymmetric = anti ? PETSC_TRUE : PETSC_FALSE,
                             .gamma         = anti ? 0.1 : 0};
        TNModel M;
        TNNetwork net;
        TNMGRITTestResult r;
        PetscInt jlo, jhi;
        PetscBool passed;
        CHECK(TNNetworkDepthOwnership(PETSC_COMM_WORLD, cfg.L, &jlo, &jhi));
        CHECK(TNModelCreateLocal(&cfg, size > 1 ? PETSC_COMM_WORLD : MPI_COMM_NULL, jlo, jhi, &M));
        CHECK(TNModelInitialize(M, 6));
        CHECK(TNNetworkCreate(M, B, &net));
        CHECK(TNNetworkSetFromOptions(net));
        CHECK(TNNetworkSetDepthSolver(net, TN_DEPTH_MGRIT));
        CHECK(TNNetworkMGRITBreakCoarseStep(net, broken ? PETSC_TRUE : PETSC_FALSE));
        CHECK(TNNetworkMGRITSelfTest(net, B, X, &r, &passed));
        print_message("%d ranks, theta %.1f, %s%s: stride 1 %.1e (%d), pack %.1e (%d), transpose %.1e (%d): %s\n", size,
                      (double)cfg.theta, anti ? "antisymmetric" : "dense", broken ? ", wrong coarse step" : "",
                      (double)r.stride1, (int)r.nstride1, (double)r.pack, (int)r.npack, (double)r.transpose,
                      (int)r.ntranspose, passed ? "passed" : "failed");
        assert_int_equal(r.nstride1, cfg.L);
        assert_int_equal(r.ntranspose, cfg.L);
        assert_true(r.npack > 0);
        if (broken) {
          assert_false(passed);
          assert_true(r.stride1 > 1e-3);
        } else {
          assert_true(passed);
          assert_true(r.stride1 <= 1e-14 && r.pack <= 1e-14 && r.transpose <= 1e-10);
        }
        CHECK(TNNetworkDestroy(&net));
        CHECK(TNModelDestroy(&M));
      }
  CHECK(PetscOptionsClearValue(NULL, "-block_atol"));
  CHECK(PetscOptionsClearValue(NULL, "-adjoint_ksp_rtol"));
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_split_model), cmocka_unit_test(test_mgrit_residual),
                                     cmocka_unit_test(test_mgrit_gradient), cmocka_unit_test(test_failure_agreed),
                                     cmocka_unit_test(test_mgrit_selftest)};

  return TestRun(argc, argv, tests, sizeof tests / sizeof tests[0], NULL);
}
