/* Layer and network derivatives: Jacobian against differences, transpose by dot products,
   block residuals of every solver, whole-network gradients against central differences, and
   the theta-step against PETSc's own TSTHETA. */
#include <petscts.h>
#include "testing.h"
#include "network.h"
#include "activation.h"
#include "rows.h"

static void RandomFill(PetscScalar *x, PetscInt len, PetscReal scale, uint64_t stream)
{
  TestFill(x, len, scale, 7, stream);
}

static TNModel MakeModel(PetscInt d, PetscInt n, PetscInt L, PetscInt m, PetscReal theta, PetscBool antisym,
                         TNTask task, TNActivation act)
{
  const TNModelConfig cfg = {d, n, L, m, theta, 1.5, 0.1, act, TN_ACT_TANH, antisym, task};

  return TestModel(&cfg, 3, 2.0, 7);
}

static void SetOption(const char *name, const char *value)
{
  CHECK(PetscOptionsSetValue(NULL, name, value));
}

/* J = mean loss + R over a fixed batch, and optionally its gradient */
typedef struct {
  TNModel M;
  TNNetwork net;
  PetscInt B;
  PetscReal *X, *out, *dout, *Y;
  PetscInt *labels;
  PetscReal alpha, beta;
} Objective;

static PetscReal ObjectiveEval(Objective *o, PetscScalar *grad)
{
  const TNModelConfig *c = &o->M->cfg;
  const PetscReal scale  = 1.0 / (o->B * (c->task == TN_TASK_REGRESSION ? c->m : 1));
  PetscReal loss, R;
  PetscInt correct;
  PetscBool ok;

  CHECK(TNNetworkForward(o->net, o->B, o->X, o->out, &ok));
  assert_true(ok);
  TNLossEvaluate(c->task, o->B, c->m, o->out, o->labels, o->Y, scale, &loss, &correct, o->dout);
  if (grad) {
    CHECK(PetscArrayzero(grad, o->M->nparams));
    CHECK(TNNetworkBackward(o->net, o->B, o->X, o->dout, grad, &ok));
    assert_true(ok);
  }
  CHECK(TNModelRegularizer(o->M, o->alpha, o->beta, &R, grad));
  return loss * scale + R;
}

static void ObjectiveSetUp(Objective *o, TNModel M, PetscInt B)
{
  const TNModelConfig *c = &M->cfg;

  o->M     = M;
  o->B     = B;
  o->alpha = 1e-2;
  o->beta  = 3e-2;
  CHECK(TNNetworkCreate(M, B, &o->net));
  CHECK(TNNetworkSetFromOptions(o->net));
  CHECK(PetscMalloc5(B * c->d, &o->X, B * c->m, &o->out, B * c->m, &o->dout, B * c->m, &o->Y, B, &o->labels));
  RandomFill(o->X, B * c->d, 1.0, 21);
  RandomFill(o->Y, B * c->m, 1.0, 22);
  for (PetscInt s = 0; s < B; s++) o->labels[s] = s % c->m;
}

static void ObjectiveDestroy(Objective *o)
{
  CHECK(TNNetworkDestroy(&o->net));
  CHECK(PetscFree5(o->X, o->out, o->dout, o->Y, o->labels));
  CHECK(TNModelDestroy(&o->M));
}

/* Relative 2-norm error of the adjoint gradient against central differences. */
static PetscReal GradientError(TNModel M)
{
  Objective o;
  PetscScalar *g;
  PetscReal num = 0, den = 0;
  const PetscReal eps = 1e-6;

  ObjectiveSetUp(&o, M, 5);
  CHECK(PetscMalloc1(M->nparams, &g));
  (void)ObjectiveEval(&o, g);
  for (PetscInt i = 0; i < M->nparams; i++) {
    const PetscScalar save = M->params[i];
    PetscReal fp, fm, fd;
    M->params[i] = save + eps;
    fp           = ObjectiveEval(&o, NULL);
    M->params[i] = save - eps;
    fm           = ObjectiveEval(&o, NULL);
    M->params[i] = save;
    fd           = (fp - fm) / (2 * eps);
    num += (g[i] - fd) * (g[i] - fd);
    den += fd * fd;
  }
  CHECK(PetscFree(g));
  ObjectiveDestroy(&o);
  return PetscSqrtReal(num / den);
}

static void test_gradient(void **state)
{
  const PetscReal thetas[] = {0.0, 0.5, 1.0};
  (void)state;
  for (int t = 0; t < 3; t++)
    for (int anti = 0; anti < 2; anti++)
      for (int task = 0; task < 2; task++) {
        TNModel M =
            MakeModel(3, 4, 3, task ? 2 : 3, thetas[t], anti ? PETSC_TRUE : PETSC_FALSE, (TNTask)task, TN_ACT_TANH);
        PetscReal err = GradientError(M);
        print_message("theta %.2f %s %s: gradient error %.2e\n", thetas[t], anti ? "antisymmetric" : "dense",
                      task ? "regression" : "classification", (double)err);
        assert_true(err < 1e-6);
      }
}

static void test_gradient_activations(void **state)
{
  const TNActivation acts[] = {TN_ACT_RELU, TN_ACT_SOFTPLUS, TN_ACT_SIGMOID};
  (void)state;
  for (int a = 0; a < 3; a++) {
    TNModel M     = MakeModel(2, 5, 4, 3, 0.5, PETSC_FALSE, TN_TASK_CLASSIFICATION, acts[a]);
    PetscReal err = GradientError(M);
    print_message("%s: gradient error %.2e\n", TNActivations[acts[a]], (double)err);
    assert_true(err < 1e-6);
  }
}

static void test_jacobian_transpose(void **state)
{
  const TNActivation acts[] = {TN_ACT_TANH, TN_ACT_RELU, TN_ACT_SOFTPLUS, TN_ACT_SIGMOID};
  const PetscInt n = 6, B = 4;
  PetscScalar A[36], b[6], y[24];
  (void)state;
  RandomFill(A, n * n, 1.0, 31);
  RandomFill(b, n, 0.5, 32);
  RandomFill(y, B * n, 1.0, 33);
  for (int a = 0; a < 4; a++) {
    TNBlockLayer L = {.n = n, .A = A, .b = b, .act = acts[a], .h = 0.3, .theta = 0.5};
    TNBlockSolver bs;
    PetscReal jerr, terr;
    CHECK(TNBlockSolverCreate(n, &bs));
    CHECK(TNBlockSolverSetFromOptions(bs));
    CHECK(TNBlockSolverSelfTest(bs, &L, B, y, &jerr, &terr));
    print_message("%s: jacobian error %.2e transpose error %.2e\n", TNActivations[acts[a]], (double)jerr, (double)terr);
    assert_true(jerr < 1e-7);
    assert_true(terr < 1e-13);
    CHECK(TNBlockSolverDestroy(&bs));
  }
}

/* Every method solves y1 = y0 + h[(1-theta)F(y0) + theta F(y1)] to -block_atol per sample,
   checked here with the layer evaluated independently of the solver, in both precisions. F1 is
   F(y1) to rounding in double; in mixed precision to the bound the solver allows its
   single-precision increments, TN_MIXED_SHARE (0.1) of atol over h theta Lip(tanh) per sample. */
static void test_block_residual(void **state)
{
  const PetscReal thetas[]    = {0.25, 0.5, 1.0};
  const char *const methods[] = {"newton", "newton_assembled", "anderson", "picard"};
  const PetscInt n = 5, B = 7, N = B * n;
  const PetscReal h = 0.4, atol = 1e-11;
  PetscScalar A[25], b[5], y0[35], F0[35], r[35], y1[35], F1[35], z[35];
  (void)state;
  RandomFill(A, n * n, 1.0, 41);
  RandomFill(b, n, 0.5, 42);
  RandomFill(y0, N, 1.0, 43);
  SetOption("-block_atol", "1e-11");
  for (int p = 0; p < 2; p++)
    for (int t = 0; t < 3; t++)
      for (int k = 0; k < 4; k++) {
        TNBlockLayer L       = {.n = n, .A = A, .b = b, .act = TN_ACT_TANH, .h = h, .theta = thetas[t]};
        const PetscReal Ftol = p ? 1e-14 : 0.1 * atol / (h * thetas[t]);
        TNBlockSolver bs;
        PetscBool ok;
        PetscReal res, worst = 0, Fworst = 0;
        SetOption("-block_method", methods[k]);
        SetOption("-block_precision", TNBlockPrecisions[p]);
        CHECK(TNBlockSolverCreate(n, &bs));
        CHECK(TNBlockSolverSetFromOptions(bs));
        TNRowsApply(B, n, n, y0, A, b, z);
        TNActivate(TN_ACT_TANH, N, z, F0);
        for (PetscInt i = 0; i < N; i++) {
          r[i]  = y0[i] + h * (1 - thetas[t]) * F0[i];
          y1[i] = y0[i];
        }
        CHECK(TNBlockSolverSolve(bs, &L, B, F0, r, y1, F1, &ok, &res));
        assert_true(ok);
        TNRowsApply(B, n, n, y1, A, b, z);
        TNActivate(TN_ACT_TANH, N, z, z);
        for (PetscInt s = 0; s < B; s++) {
          PetscReal ss = 0, ff = 0;
          for (PetscInt i = s * n; i < (s + 1) * n; i++) {
            const PetscReal g = y1[i] - r[i] - h * thetas[t] * z[i];
            ss += g * g;
            ff += (F1[i] - z[i]) * (F1[i] - z[i]);
          }
          worst  = PetscMax(worst, PetscSqrtReal(ss));
          Fworst = PetscMax(Fworst, PetscSqrtReal(ff));
        }
        print_message("%-6s theta %.2f %-16s residual %.2e, F(y1) off by %.2e\n", TNBlockPrecisions[p],
                      (double)thetas[t], methods[k], (double)worst, (double)Fworst);
        assert_true(worst <= atol);
        assert_true(Fworst <= Ftol);
        CHECK(TNBlockSolverDestroy(&bs));
      }
  CHECK(PetscOptionsClearValue(NULL, "-block_method"));
  CHECK(PetscOptionsClearValue(NULL, "-block_precision"));
  SetOption("-block_atol", "1e-13");
}

/* Mixed precision at the default tolerances on a layer of training size: the forward solve
   meets atol in double arithmetic with single-precision products in it, and lands within the
   tolerances of the double-precision solve; the adjoint solve's true residual meets its rtol,
   at the default and at 1e-13 (the Richardson iteration refines what the single-precision
   preconditioner gives). */
static void test_mixed_precision(void **state)
{
  const PetscInt n = 48, B = 40, N = B * n;
  const PetscReal h = 1.0 / 16, theta = 0.5, atol = 1e-6, glorot = PetscSqrtReal(6.0 / (2 * n));
  PetscScalar *A, *b, *y0, *F0, *r, *y1[2], *F1, *z, *D, *lam, *mu;
  PetscInt64 single, dbl;
  (void)state;
  CHECK(PetscMalloc6(n * n, &A, n, &b, N, &y0, N, &F0, N, &r, N, &z));
  CHECK(PetscMalloc6(N, &y1[0], N, &y1[1], N, &F1, N, &D, N, &lam, N, &mu));
  RandomFill(A, n * n, glorot, 51);
  RandomFill(b, n, 0.1, 52);
  RandomFill(y0, N, 1.0, 53);
  RandomFill(lam, N, 1.0, 54);
  CHECK(PetscOptionsClearValue(NULL, "-block_atol"));
  TNBlockLayer L = {.n = n, .A = A, .b = b, .act = TN_ACT_TANH, .h = h, .theta = theta};
  TNRowsApply(B, n, n, y0, A, b, z);
  TNActivate(TN_ACT_TANH, N, z, F0);
  for (PetscInt i = 0; i < N; i++) r[i] = y0[i] + h * (1 - theta) * F0[i];
  for (int p = 0; p < 2; p++) {
    TNBlockSolver bs;
    PetscBool ok;
    PetscReal res, worst = 0;
    SetOption("-block_precision", TNBlockPrecisions[p]);
    CHECK(TNBlockSolverCreate(n, &bs));
    CHECK(TNBlockSolverSetFromOptions(bs));
    CHECK(PetscArraycpy(y1[p], y0, N));
    CHECK(TNBlockSolverSolve(bs, &L, B, F0, r, y1[p], F1, &ok, &res));
    assert_true(ok);
    CHECK(TNBlockSolverGetProducts(bs, &single, &dbl));
    TNRowsApply(B, n, n, y1[p], A, b, z);
    TNActivate(TN_ACT_TANH, N, z, z);
    for (PetscInt s = 0; s < B; s++) {
      PetscReal ss = 0;
      for (PetscInt i = s * n; i < (s + 1) * n; i++) ss += PetscSqr(y1[p][i] - r[i] - h * theta * z[i]);
      worst = PetscMax(worst, PetscSqrtReal(ss));
    }
    print_message("%-6s forward: residual %.2e, products %lld single %lld double\n", TNBlockPrecisions[p],
                  (double)worst, (long long)single, (long long)dbl);
    assert_true(worst <= atol);
    assert_true(p == 0 ? single > 0 : single == 0);
    if (p == 1) /* two points within atol of the solution of a contraction (h theta |A| < 1/2) */
      for (PetscInt i = 0; i < N; i++) assert_true(PetscAbsReal(y1[0][i] - y1[1][i]) <= 4 * atol);

    /* adjoint at y1: (I - h theta A^T diag(D)) mu = lambda, residual computed here in double */
    TNActivationDerivative(TN_ACT_TANH, N, z, D);
    for (int k = 0; k < 2; k++) {
      const PetscReal rtol = k ? 1e-13 : 1e-6;
      PetscReal rr = 0, ll = 0;
      SetOption("-adjoint_ksp_rtol", k ? "1e-13" : "1e-6");
      CHECK(TNBlockSolverSetFromOptions(bs));
      CHECK(TNBlockSolverResetCounts(bs));
      CHECK(TNBlockSolverAdjoint(bs, &L, B, D, lam, mu, &ok, &res));
      assert_true(ok);
      CHECK(TNBlockSolverGetProducts(bs, &single, &dbl));
      for (PetscInt i = 0; i < N; i++) z[i] = D[i] * mu[i];
      CHECK(PetscArraycpy(F1, mu, N));
      TNRowsApplyTranspose(B, n, n, -h * theta, z, A, 1.0, F1);
      for (PetscInt i = 0; i < N; i++) {
        rr += PetscSqr(lam[i] - F1[i]);
        ll += PetscSqr(lam[i]);
      }
      print_message("%-6s adjoint rtol %.0e: relative residual %.2e, products %lld single %lld double\n",
                    TNBlockPrecisions[p], (double)rtol, (double)PetscSqrtReal(rr / ll), (long long)single,
                    (long long)dbl);
      assert_true(PetscSqrtReal(rr / ll) <= rtol);
      assert_true(p == 0 ? single > 0 : single == 0);
      /* y1 is needed again for the next adjoint's derivative */
      TNRowsApply(B, n, n, y1[p], A, b, z);
      TNActivate(TN_ACT_TANH, N, z, z);
      TNActivationDerivative(TN_ACT_TANH, N, z, D);
    }
    CHECK(TNBlockSolverDestroy(&bs));
  }
  CHECK(PetscOptionsClearValue(NULL, "-block_precision"));
  SetOption("-block_atol", "1e-13");
  SetOption("-adjoint_ksp_rtol", "1e-14");
  CHECK(PetscFree6(A, b, y0, F0, r, z));
  CHECK(PetscFree6(y1[0], y1[1], F1, D, lam, mu));
}

/* The tanh step by the addition theorem against tanh at the moved point, and its refusals. */
static void test_activation_step(void **state)
{
  const PetscInt N = 4096;
  PetscScalar z[4096], F[4096], G[4096];
  float dz[4096];
  PetscReal worst = 0;
  (void)state;
  RandomFill(z, N, 4.0, 61);
  RandomFill(G, N, 0x1p-8, 62);
  for (PetscInt i = 0; i < N; i++) dz[i] = (float)G[i];
  TNActivate(TN_ACT_TANH, N, z, F);
  assert_true(TNActivateStep(TN_ACT_TANH, N, dz, F));
  for (PetscInt i = 0; i < N; i++) G[i] = z[i] + (PetscScalar)dz[i];
  TNActivate(TN_ACT_TANH, N, G, G);
  for (PetscInt i = 0; i < N; i++) worst = PetscMax(worst, PetscAbsReal(F[i] - G[i]));
  print_message("tanh step: largest difference %.2e\n", (double)worst);
  assert_true(worst <= 8 * PETSC_MACHINE_EPSILON);
  dz[17] = 0x1p-7f; /* a step too long for the series: nothing written */
  CHECK(PetscArraycpy(G, F, N));
  assert_false(TNActivateStep(TN_ACT_TANH, N, dz, F));
  assert_false(TNActivateStep(TN_ACT_SIGMOID, 1, dz, F));
  for (PetscInt i = 0; i < N; i++) assert_true(F[i] == G[i]);
}

/* y' = tanh(A y + b): one TSTHETA step (endpoint form) equals one theta-block. */
typedef struct {
  const PetscScalar *A, *b;
  PetscInt n;
} ODE;

static PetscErrorCode ODERHS(TS ts, PetscReal t, Vec y, Vec f, void *ctx)
{
  ODE *o = (ODE *)ctx;
  const PetscScalar *ya;
  PetscScalar *fa;

  PetscFunctionBegin;
  (void)ts;
  (void)t;
  PetscCall(VecGetArrayRead(y, &ya));
  PetscCall(VecGetArrayWrite(f, &fa));
  TNRowsApply(1, o->n, o->n, ya, o->A, o->b, fa);
  TNActivate(TN_ACT_TANH, o->n, fa, fa);
  PetscCall(VecRestoreArrayWrite(f, &fa));
  PetscCall(VecRestoreArrayRead(y, &ya));
  PetscFunctionReturn(0);
}

static PetscErrorCode ODEJacobian(TS ts, PetscReal t, Vec y, Mat J, Mat P, void *ctx)
{
  ODE *o = (ODE *)ctx;
  const PetscScalar *ya;
  PetscScalar z[16];

  PetscFunctionBegin;
  (void)ts;
  (void)t;
  (void)P;
  PetscCall(VecGetArrayRead(y, &ya));
  TNRowsApply(1, o->n, o->n, ya, o->A, o->b, z);
  TNActivate(TN_ACT_TANH, o->n, z, z);
  TNActivationDerivative(TN_ACT_TANH, o->n, z, z);
  for (PetscInt i = 0; i < o->n; i++)
    for (PetscInt k = 0; k < o->n; k++) PetscCall(MatSetValue(J, i, k, z[i] * o->A[i * o->n + k], INSERT_VALUES));
  PetscCall(VecRestoreArrayRead(y, &ya));
  PetscCall(MatAssemblyBegin(J, MAT_FINAL_ASSEMBLY));
  PetscCall(MatAssemblyEnd(J, MAT_FINAL_ASSEMBLY));
  PetscFunctionReturn(0);
}

static void test_tstheta(void **state)
{
  const PetscReal thetas[] = {0.25, 0.5, 1.0};
  const PetscInt d = 3, n = 4, L = 1;
  (void)state;
  for (int t = 0; t < 3; t++) {
    TNModel M = MakeModel(d, n, L, 2, thetas[t], PETSC_FALSE, TN_TASK_CLASSIFICATION, TN_ACT_TANH);
    TNNetwork net;
    PetscScalar y0[4], y1[4], Fj[4], Fn[4];
    const PetscScalar *ts_y;
    ODE ode = {.A = M->p.W, .b = M->p.b, .n = n};
    TS ts;
    Vec y;
    PetscBool ok;
    PetscReal err = 0;
    SNES snes;
    Mat Jm;

    RandomFill(y0, n, 1.0, 51);
    CHECK(TNNetworkCreate(M, 1, &net));
    CHECK(TNNetworkSetFromOptions(net));
    CHECK(TNNetworkBlockStep(net, 0, 1, y0, y1, Fj, Fn, &ok));
    assert_true(ok);

    CHECK(VecCreateSeq(PETSC_COMM_SELF, n, &y));
    {
      PetscScalar *ya;
      CHECK(VecGetArrayWrite(y, &ya));
      for (PetscInt i = 0; i < n; i++) ya[i] = y0[i];
      CHECK(VecRestoreArrayWrite(y, &ya));
    }
    CHECK(TSCreate(PETSC_COMM_SELF, &ts));
    CHECK(TSSetType(ts, TSTHETA));
    CHECK(TSThetaSetTheta(ts, thetas[t]));
    CHECK(TSThetaSetEndpoint(ts, PETSC_TRUE));
    CHECK(TSSetRHSFunction(ts, NULL, ODERHS, &ode));
    CHECK(TSSetTimeStep(ts, M->cfg.T / L));
    CHECK(TSSetMaxSteps(ts, 1));
    CHECK(TSSetExactFinalTime(ts, TS_EXACTFINALTIME_MATCHSTEP));
    CHECK(TSGetSNES(ts, &snes));
    CHECK(SNESSetTolerances(snes, 1e-14, 1e-14, 0, 100, 10000));
    CHECK(SNESSetType(snes, SNESNEWTONLS));
    {
      KSP ksp;
      PC pc;
      CHECK(SNESGetKSP(snes, &ksp));
      CHECK(KSPGetPC(ksp, &pc));
      CHECK(KSPSetType(ksp, KSPPREONLY));
      CHECK(PCSetType(pc, PCLU));
    }
    CHECK(MatCreateSeqDense(PETSC_COMM_SELF, n, n, NULL, &Jm));
    CHECK(TSSetRHSJacobian(ts, Jm, Jm, ODEJacobian, &ode));
    CHECK(TSSolve(ts, y));
    CHECK(VecGetArrayRead(y, &ts_y));
    for (PetscInt i = 0; i < n; i++) err = PetscMax(err, PetscAbsReal(ts_y[i] - y1[i]));
    CHECK(VecRestoreArrayRead(y, &ts_y));
    print_message("theta %.2f: |thetanet - TSTHETA| = %.2e\n", (double)thetas[t], (double)err);
    assert_true(err < 1e-9);
    CHECK(TSDestroy(&ts));
    CHECK(MatDestroy(&Jm));
    CHECK(VecDestroy(&y));
    CHECK(TNNetworkDestroy(&net));
    CHECK(TNModelDestroy(&M));
  }
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_jacobian_transpose),
      cmocka_unit_test(test_block_residual),
      cmocka_unit_test(test_mixed_precision),
      cmocka_unit_test(test_activation_step),
      cmocka_unit_test(test_gradient),
      cmocka_unit_test(test_gradient_activations),
      cmocka_unit_test(test_tstheta),
  };
  /* tight solves: the differences below resolve the gradient to ~1e-9 */
  const char *const options[] = {"-block_atol", "1e-13", "-adjoint_ksp_rtol", "1e-14", NULL};

  return TestRun(argc, argv, tests, sizeof tests / sizeof tests[0], options);
}
