/* The MGRIT application: the network presented to solvers/mgrit.c as a one-step recursion across
   depth (DESIGN.md §2). The forward recursion's step is the theta-step of a block (fine) or of an
   interval of blocks with step (j1-j0)h (coarse); the adjoint recursion runs backwards on the
   mirrored hierarchy, its coarse step linearised at the fine states of the interval's ends. The
   weight gradient and the F values the backward pass needs come from each block's step in the
   last sweep of the solves, from the final states and adjoints. */
#include "networkimpl.h"
#include "activation.h"
#include "rows.h"
#include "rng.h"

/* The coarse step over blocks [j0, j1): the theta-step of size (j1-j0)h with the weights of the
   interval's first block (inject) or the mean of its blocks' (average). */
static PetscInt SpanIndex(TNNetwork net, PetscInt j0, PetscInt j1)
{
  for (PetscInt k = 0; k < net->nspan; k++)
    if (net->span[2 * k] == j0 && net->span[2 * k + 1] == j1) return k;
  return -1;
}

static void CoarseLayer(TNNetwork net, PetscInt j0, PetscInt j1, TNBlockLayer *L)
{
  const PetscInt n = net->model->cfg.n, k = j1 - j0 > 1 ? SpanIndex(net, j0, j1) : -1;

  if (k >= 0) {
    /* an interval across ranks: its operator was gathered by SpanOperators */
    TNNetworkBlockLayer(net, net->model->jlo, L);
    L->A = net->span_op + k * (n * n + n);
    L->b = L->A + n * n;
    L->h *= (PetscReal)(j1 - j0);
    return;
  }
  TNNetworkBlockLayer(net, j0, L);
  L->h *= (PetscReal)(j1 - j0);
  if (net->mg_break_coarse) L->h += L->h / (PetscReal)(j1 - j0);
  if (net->coarse_weights == TN_COARSE_AVERAGE && j1 - j0 > 1) {
    TNBlockLayer Lj;
    for (PetscInt i = 0; i < n * n; i++) net->coarse_A[i] = 0;
    for (PetscInt i = 0; i < n; i++) net->coarse_b[i] = 0;
    for (PetscInt j = j0; j < j1; j++) {
      TNNetworkBlockLayer(net, j, &Lj);
      for (PetscInt i = 0; i < n * n; i++) net->coarse_A[i] += Lj.A[i] / (j1 - j0);
      for (PetscInt i = 0; i < n; i++) net->coarse_b[i] += Lj.b[i] / (j1 - j0);
    }
    L->A = net->coarse_A;
    L->b = net->coarse_b;
  }
}

/* A fine step that fails is a failure of the run. A coarse step only steers the correction: a
   solve that stops short (a step of m^l h can leave Picard's and Newton's range) is used as it
   is, or, if it is not even finite, replaced by no step at all; the fine relaxation still
   drives MGRIT to the fine solution. */
static PetscErrorCode CoarseFailure(TNNetwork net, PetscInt from, PetscInt to, PetscInt S, const PetscScalar *u,
                                    PetscScalar *out)
{
  PetscFunctionBegin;
  if (to == from + 1) {
    net->mg_ok = PETSC_FALSE;
    PetscFunctionReturn(0);
  }
  net->failure[0] = 0;
  for (PetscInt i = 0; i < S; i++)
    if (PetscIsInfOrNanScalar(out[i])) {
      PetscCall(PetscArraycpy(out, u, S));
      break;
    }
  PetscCall(PetscInfo(NULL,
                      "coarse step [%" PetscInt_FMT ", %" PetscInt_FMT ") did not converge; its last iterate is used\n",
                      from, to));
  PetscFunctionReturn(0);
}

static PetscErrorCode MGRITLastSweep(void *ctx, PetscBool on)
{
  PetscFunctionBegin;
  ((TNNetwork)ctx)->mg_last_sweep = on;
  PetscFunctionReturn(0);
}

/* The theta-step from point from to point to: the fine step of block `from` (fine), else the
   coarse step over [from, to) (a rough solve when rough). */
static PetscErrorCode Propagate(TNNetwork net, PetscInt from, PetscInt to, PetscBool fine, PetscBool rough,
                                const PetscScalar *u, PetscScalar *out, PetscBool *ok)
{
  const PetscInt S = net->mg_batch * net->model->cfg.n, i = from - net->model->jlo;
  const PetscBool keep = net->mg_last_sweep && fine;
  TNBlockLayer L;

  PetscFunctionBegin;
  if (fine)
    TNNetworkBlockLayer(net, from, &L);
  else
    CoarseLayer(net, from, to, &L);
  if (rough) PetscCall(TNBlockSolverSetRough(net->solver, net->coarse_its));
  PetscCall(TNNetworkThetaSolve(net, from, fine ? "forward" : "coarse forward", &L, net->mg_batch, u, out,
                                keep ? net->Fyj + i * S : net->scaled,
                                keep && net->Fyj1 ? net->Fyj1 + i * S : net->scaled + S, ok));
  PetscCall(TNBlockSolverSetRough(net->solver, 0));
  PetscFunctionReturn(0);
}

/* Forward propagator between points from < to: block `from`, or the coarse step. A fine step
   of the last sweep leaves F_j(y_j) and F_j(y_{j+1}) where the backward pass reads them. */
static PetscErrorCode MGRITForwardStep(void *ctx, PetscInt from, PetscInt to, const PetscScalar *u, PetscScalar *out)
{
  TNNetwork net        = (TNNetwork)ctx;
  const PetscInt S     = net->mg_batch * net->model->cfg.n;
  const PetscBool fine = to == from + 1 ? PETSC_TRUE : PETSC_FALSE;
  PetscBool ok;

  PetscFunctionBegin;
  PetscCall(Propagate(net, from, to, fine, fine ? PETSC_FALSE : PETSC_TRUE, u, out, &ok));
  if (!ok) PetscCall(CoarseFailure(net, from, to, S, u, out));
  PetscFunctionReturn(0);
}

/* Adjoint propagator between mirrored points from < to (fine index L - p): block j = L - to, or
   the coarse adjoint step over blocks [L - to, L - from), linearised at the fine states at the
   interval's ends: mu = (I - H theta J(y_j1))^{-T} lambda, lambda_j0 = mu + H(1-theta) J(y_j0)^T mu. */
static PetscErrorCode MGRITAdjointStep(void *ctx, PetscInt from, PetscInt to, const PetscScalar *lam, PetscScalar *out)
{
  TNNetwork net          = (TNNetwork)ctx;
  TNModel M              = net->model;
  const TNModelConfig *c = &M->cfg;
  const PetscInt B = net->mg_batch, n = c->n, N = B * n, S = N, j0 = c->L - to, j1 = c->L - from;
  const PetscScalar *y0 = net->states + (j0 - M->jlo) * S, *y1 = net->states + (j1 - M->jlo) * S;
  TNBlockLayer L;
  PetscBool ok = PETSC_TRUE;
  PetscReal res;

  PetscFunctionBegin;
  if (j1 > M->jhi) y1 = net->span_state + SpanIndex(net, j0, j1) * net->Bmax * n;
  if (j1 == j0 + 1) {
    /* in the last sweep: block j0's weight gradient, from lambda_{j0+1} (its last step's) */
    if (net->mg_last_sweep) {
      TNParams g;
      TNModelParams(M, net->block_grad, &g);
      PetscCall(PetscArrayzero(g.W + (j0 - M->jlo) * n * n, n * n));
      PetscCall(PetscArrayzero(g.b + (j0 - M->jlo) * n, n));
    }
    PetscCall(TNNetworkBlockAdjointStep(net, j0, B, y0, y1, net->Fyj + (j0 - M->jlo) * S,
                                        net->Fyj1 ? net->Fyj1 + (j0 - M->jlo) * S : NULL, lam, out,
                                        net->mg_last_sweep ? net->block_grad : NULL, &ok));
    if (!ok) net->mg_ok = PETSC_FALSE;
    PetscFunctionReturn(0);
  }
  CoarseLayer(net, j0, j1, &L);
  /* U holds s'(z) at both ends: U[0..N) at y_j0, U[N..2N) at y_j1 */
  TNRowsApply(B, n, n, y0, L.A, L.b, net->scaled);
  TNActivate(L.act, N, net->scaled, net->scaled);
  TNActivationDerivative(L.act, N, net->scaled, net->scaled);
  TNRowsApply(B, n, n, y1, L.A, L.b, net->scaled + N);
  TNActivate(L.act, N, net->scaled + N, net->scaled + N);
  TNActivationDerivative(L.act, N, net->scaled + N, net->scaled + N);
  if (L.theta > 0) {
    PetscCall(TNBlockSolverSetRough(net->solver, net->coarse_its));
    PetscCall(TNBlockSolverAdjoint(net->solver, &L, B, net->scaled + N, lam, net->mu, &ok, &res));
    PetscCall(TNBlockSolverSetRough(net->solver, 0));
    if (!ok) PetscCall(CoarseFailure(net, from, to, N, lam, net->mu));
  } else
    PetscCall(PetscArraycpy(net->mu, lam, N));
  PetscCall(PetscArraycpy(out, net->mu, N));
  if (L.theta < 1) {
    for (PetscInt i = 0; i < N; i++) net->deriv[i] = L.h * (1 - L.theta) * net->scaled[i] * net->mu[i];
    TNRowsApplyTranspose(B, n, n, 1.0, net->deriv, L.A, 1.0, out);
  }
  PetscFunctionReturn(0);
}

/* Room for the intervals across ranks: at most every coarse point of every level. */
static PetscErrorCode SpanSetUp(TNNetwork net)
{
  const PetscInt n = net->model->cfg.n;
  PetscInt nlv;

  PetscFunctionBegin;
  net->nspan = net->capspan = 0;
  PetscCall(TNMGRITGetLevels(net->mg_fwd, &nlv));
  for (PetscInt l = 1; l < nlv; l++) {
    PetscInt np;
    const PetscInt *pos;
    PetscCall(TNMGRITGetLevelPoints(net->mg_fwd, l, &np, &pos));
    net->capspan += np;
  }
  PetscCall(PetscMalloc3(2 * net->capspan + 2, &net->span, (net->capspan + 1) * (n * n + n), &net->span_op,
                         (net->capspan + 1) * net->Bmax * n, &net->span_state));
  PetscFunctionReturn(0);
}

/* The slot of blocks [j0, j1), made on first sight. */
static PetscErrorCode SpanSlot(TNNetwork net, PetscInt j0, PetscInt j1, PetscInt *k)
{
  PetscFunctionBegin;
  *k = SpanIndex(net, j0, j1);
  if (*k >= 0) PetscFunctionReturn(0);
  PetscCheck(net->nspan < net->capspan, PETSC_COMM_SELF, PETSC_ERR_PLIB,
             "more coarse intervals across ranks than points");
  *k                    = net->nspan++;
  net->span[2 * *k]     = j0;
  net->span[2 * *k + 1] = j1;
  PetscFunctionReturn(0);
}

/* This rank's share of the coarse operator of blocks [j0, j1): its blocks [a, e) of the mean
   (average) or the first block's weights (inject). */
static void SpanOperatorShare(TNNetwork net, PetscInt j0, PetscInt j1, PetscInt a, PetscInt e, PetscScalar *op)
{
  const PetscInt n = net->model->cfg.n;

  for (PetscInt j = a; j < e; j++) {
    TNBlockLayer Lj;
    const PetscReal wt = net->coarse_weights == TN_COARSE_AVERAGE ? 1.0 / (j1 - j0) : (j == j0 ? 1.0 : 0.0);
    if (wt == 0) continue;
    TNNetworkBlockLayer(net, j, &Lj);
    for (PetscInt i = 0; i < n * n; i++) op[i] += wt * Lj.A[i];
    for (PetscInt i = 0; i < n; i++) op[n * n + i] += wt * Lj.b[i];
  }
}

/* Forward: the points are the blocks' indices. */
static PetscErrorCode MGRITForwardPack(void *ctx, PetscInt from, PetscInt to, PetscInt lo, PetscInt hi,
                                       PetscScalar *buf)
{
  PetscFunctionBegin;
  SpanOperatorShare((TNNetwork)ctx, from, to, lo, hi, buf);
  PetscFunctionReturn(0);
}

static PetscErrorCode MGRITForwardUnpack(void *ctx, PetscInt from, PetscInt to, const PetscScalar *buf)
{
  TNNetwork net    = (TNNetwork)ctx;
  const PetscInt n = net->model->cfg.n;
  PetscInt k;

  PetscFunctionBegin;
  PetscCall(SpanSlot(net, from, to, &k));
  PetscCall(PetscArraycpy(net->span_op + k * (n * n + n), buf, n * n + n));
  PetscFunctionReturn(0);
}

/* Adjoint: mirrored points, blocks [L - to, L - from); the operator, then y_j1 from the rank
   holding block j1 - 1 (the adjoint's step `from`). */
static PetscErrorCode MGRITAdjointPack(void *ctx, PetscInt from, PetscInt to, PetscInt lo, PetscInt hi,
                                       PetscScalar *buf)
{
  TNNetwork net    = (TNNetwork)ctx;
  TNModel M        = net->model;
  const PetscInt n = M->cfg.n, L = M->cfg.L, j1 = L - from, S = net->mg_batch * n;

  PetscFunctionBegin;
  SpanOperatorShare(net, L - to, j1, L - hi, L - lo, buf);
  if (lo == from) PetscCall(PetscArraycpy(buf + n * n + n, net->states + (j1 - M->jlo) * S, S));
  PetscFunctionReturn(0);
}

static PetscErrorCode MGRITAdjointUnpack(void *ctx, PetscInt from, PetscInt to, const PetscScalar *buf)
{
  TNNetwork net    = (TNNetwork)ctx;
  const PetscInt n = net->model->cfg.n, L = net->model->cfg.L;
  PetscInt k;

  PetscFunctionBegin;
  PetscCall(SpanSlot(net, L - to, L - from, &k));
  PetscCall(PetscArraycpy(net->span_op + k * (n * n + n), buf, n * n + n));
  PetscCall(PetscArraycpy(net->span_state + k * net->Bmax * n, buf + n * n + n, net->mg_batch * n));
  PetscFunctionReturn(0);
}

static void MGRITApps(TNNetwork net, PetscInt B, TNMGRITApp *fwd, TNMGRITApp *adj)
{
  const PetscInt n = net->model->cfg.n;

  *fwd = (TNMGRITApp){B * n, net, MGRITForwardStep, MGRITLastSweep, n * n + n, MGRITForwardPack, MGRITForwardUnpack};
  *adj = (TNMGRITApp){
      B * n, net, MGRITAdjointStep, MGRITLastSweep, n * n + n + B * n, MGRITAdjointPack, MGRITAdjointUnpack};
}

PetscErrorCode TNNetworkMGRITSetUp(TNNetwork net)
{
  TNModel M        = net->model;
  const PetscInt n = M->cfg.n, S = net->Bmax * n;
  /* one rank: MGRIT still runs, serially (the same iterations, for studies and tests) */
  const MPI_Comm comm = M->depth == MPI_COMM_NULL ? PETSC_COMM_SELF : M->depth;
  TNMGRITApp fwd, adj;
  PetscInt lo, hi;

  PetscFunctionBegin;
  PetscCall(TNNetworkMGRITDestroy(net));
  MGRITApps(net, net->Bmax, &fwd, &adj);
  PetscCall(TNMGRITCreate(comm, M->cfg.L, PETSC_FALSE, &fwd, &net->mg_fwd));
  PetscCall(TNMGRITCreateReversed(comm, M->cfg.L, &adj, &net->mg_adj));
  PetscCall(TNMGRITSetStartGuess(net->mg_fwd, PETSC_TRUE));
  PetscCall(TNMGRITSetStartGuess(net->mg_adj, PETSC_TRUE));
  /* training needs the states to a relative accuracy, whatever their scale (README: depth) */
  PetscCall(TNMGRITSetRelativeTolerance(net->mg_fwd, TN_MGRIT_RTOL));
  PetscCall(TNMGRITSetRelativeTolerance(net->mg_adj, TN_MGRIT_RTOL));
  PetscCall(TNMGRITSetFromOptions(net->mg_fwd));
  PetscCall(TNMGRITSetFromOptions(net->mg_adj));
  PetscCall(TNMGRITSetUp(net->mg_fwd));
  PetscCall(TNMGRITSetUp(net->mg_adj));
  PetscCall(TNMGRITGetOwnership(net->mg_fwd, &lo, &hi));
  PetscCheck(lo == M->jlo && hi == M->jhi, PETSC_COMM_SELF, PETSC_ERR_PLIB,
             "model blocks [%" PetscInt_FMT ", %" PetscInt_FMT ") but MGRIT owns [%" PetscInt_FMT ", %" PetscInt_FMT
             ")",
             M->jlo, M->jhi, lo, hi);
  PetscCall(TNMGRITGetOwnership(net->mg_adj, &lo, &hi));
  PetscCheck(lo == M->cfg.L - M->jhi && hi == M->cfg.L - M->jlo, PETSC_COMM_SELF, PETSC_ERR_PLIB,
             "adjoint MGRIT does not mirror the forward ownership");
  PetscCall(PetscMalloc1((TNNetworkLocalBlocks(net) + 1) * S, &net->adjoints));
  PetscCall(PetscCalloc1(M->nparams, &net->block_grad));
  PetscCall(PetscMalloc2(n * n, &net->coarse_A, n, &net->coarse_b));
  PetscCall(SpanSetUp(net));
  PetscFunctionReturn(0);
}

PetscErrorCode TNNetworkMGRITDestroy(TNNetwork net)
{
  PetscFunctionBegin;
  PetscCall(TNMGRITDestroy(&net->mg_fwd));
  PetscCall(TNMGRITDestroy(&net->mg_adj));
  PetscCall(PetscFree(net->adjoints));
  PetscCall(PetscFree(net->block_grad));
  PetscCall(PetscFree3(net->span, net->span_op, net->span_state));
  PetscCall(PetscFree2(net->coarse_A, net->coarse_b));
  net->nspan = net->capspan = 0;
  PetscFunctionReturn(0);
}

/* Every rank's points start from u0 of the first rank (y_0 forward, lambda_L backward), unless
   the nested start needs no start values (TNMGRITSetStartGuess). */
static PetscErrorCode MGRITSolve(TNNetwork net, TNMGRIT mg, PetscInt B, PetscScalar *u, PetscBool *ok)
{
  TNMGRITApp fwd, adj;
  PetscInt its;
  PetscReal res;

  PetscFunctionBegin;
  net->mg_batch = B;
  net->mg_ok    = PETSC_TRUE;
  MGRITApps(net, B, &fwd, &adj);
  PetscCall(TNMGRITSetApp(mg, mg == net->mg_fwd ? &fwd : &adj));
  PetscCall(TNMGRITSolve(mg, u, u, &its, &res));
  {
    /* the mean reduction of the residual per iteration: (r_last / r_first)^(1/(its-1)) */
    PetscInt nh;
    const PetscReal *hist;
    PetscCall(TNMGRITGetResidualHistory(mg, &nh, &hist));
    if (nh >= 2 && hist[0] > 0 && hist[nh - 1] > 0) {
      net->mg_counts.mgrit_logfactor += PetscLogReal(hist[nh - 1] / hist[0]) / (nh - 1);
      net->mg_counts.mgrit_nfactor++;
    }
    PetscCall(PetscInfo(NULL, "MGRIT %s solve: %" PetscInt_FMT " iterations, C-point residual %.3e -> %.3e\n",
                        mg == net->mg_fwd ? "forward" : "adjoint", its, nh ? (double)hist[0] : 0.0, (double)res));
  }
  net->mg_counts.mgrit_its += its;
  net->mg_counts.mgrit_solves++;
  net->mg_counts.mgrit_res = PetscMax(net->mg_counts.mgrit_res, res);
  PetscCall(TNMGRITAgree(mg, &net->mg_ok));
  *ok = net->mg_ok;
  if (!*ok && !net->failure[0])
    PetscCall(PetscSNPrintf(net->failure, sizeof net->failure, "a block solve within MGRIT did not converge"));
  PetscFunctionReturn(0);
}

/* F_j(y_j) and F_j(y_{j+1}) of local block i from the states. */
static void StepValues(TNNetwork net, PetscInt B, PetscInt i, PetscBool from, PetscBool to)
{
  const PetscInt S = B * net->model->cfg.n, n = net->model->cfg.n;
  TNBlockLayer L;

  TNNetworkBlockLayer(net, net->model->jlo + i, &L);
  if (from) {
    TNRowsApply(B, n, n, net->states + i * S, L.A, L.b, net->z);
    TNActivate(L.act, S, net->z, net->Fyj + i * S);
  }
  if (to && net->Fyj1) {
    TNRowsApply(B, n, n, net->states + (i + 1) * S, L.A, L.b, net->z);
    TNActivate(L.act, S, net->z, net->Fyj1 + i * S);
  }
}

/* MGRIT forward: all states of this rank's points. The last sweep left the F values the
   backward pass reads, but for the blocks into C-points: their last step went to the residual,
   and y_{j+1} is the C-point's value. */
PetscErrorCode TNNetworkForwardMGRIT(TNNetwork net, PetscInt B, const PetscReal *X, PetscReal *out, PetscBool *ok)
{
  TNModel M              = net->model;
  const TNModelConfig *c = &M->cfg;
  const PetscInt S = B * c->n, nloc = TNNetworkLocalBlocks(net);

  PetscFunctionBegin;
  if (M->jlo == 0) TNNetworkOpening(net, B, X, net->states);
  PetscCall(MGRITSolve(net, net->mg_fwd, B, net->states, ok));
  if (!*ok) PetscFunctionReturn(0);
  for (PetscInt i = 0; i < nloc; i++) {
    PetscBool cpoint;
    PetscCall(TNMGRITIsCPoint(net->mg_fwd, M->jlo + i + 1, &cpoint));
    if (cpoint) StepValues(net, B, i, PETSC_FALSE, PETSC_TRUE);
  }
  if (M->jhi == c->L) TNRowsApply(B, c->m, c->n, net->states + nloc * S, M->p.C, M->p.c, out);
  PetscFunctionReturn(0);
}

/* Adds the local blocks' weight gradients in src to grad. */
static void AddBlockGradients(TNNetwork net, PetscScalar *src, PetscScalar *grad)
{
  const PetscInt n = net->model->cfg.n, nloc = TNNetworkLocalBlocks(net);
  TNParams s, g;

  TNModelParams(net->model, src, &s);
  TNModelParams(net->model, grad, &g);
  for (PetscInt i = 0; i < nloc * n * n; i++) g.W[i] += s.W[i];
  for (PetscInt i = 0; i < nloc * n; i++) g.b[i] += s.b[i];
}

/* MGRIT backward: the adjoints at this rank's points; each block's weight gradient came from its
   step in the last sweep, from the final states and adjoints. */
PetscErrorCode TNNetworkBackwardMGRIT(TNNetwork net, PetscInt B, const PetscReal *X, const PetscReal *dout,
                                      PetscScalar *grad, PetscBool *ok)
{
  TNModel M              = net->model;
  const TNModelConfig *c = &M->cfg;
  const PetscInt S = B * c->n, nloc = TNNetworkLocalBlocks(net);

  PetscFunctionBegin;
  if (M->jhi == c->L) TNNetworkClosingGradient(net, B, net->states + nloc * S, dout, grad, net->adjoints);
  PetscCall(MGRITSolve(net, net->mg_adj, B, net->adjoints, ok));
  if (*ok) AddBlockGradients(net, net->block_grad, grad);
  if (*ok && M->jlo == 0) TNNetworkOpeningGradient(net, B, X, net->states, net->adjoints + nloc * S, grad);
  PetscFunctionReturn(0);
}

PetscErrorCode TNNetworkMGRITBlockGradients(TNNetwork net, PetscInt B, PetscScalar *grad)
{
  TNModel M        = net->model;
  const PetscInt S = B * M->cfg.n, nloc = TNNetworkLocalBlocks(net);
  PetscBool ok = PETSC_TRUE;

  PetscFunctionBegin;
  PetscCheck(net->depth_solver == TN_DEPTH_MGRIT, PETSC_COMM_SELF, PETSC_ERR_ARG_WRONGSTATE,
             "the network does not use -depth_solver mgrit");
  PetscCall(PetscArrayzero(net->block_grad, M->nparams));
  for (PetscInt i = 0; i < nloc && ok; i++) {
    StepValues(net, B, i, PETSC_TRUE, PETSC_TRUE);
    PetscCall(TNNetworkBlockAdjointStep(net, M->jlo + i, B, net->states + i * S, net->states + (i + 1) * S,
                                        net->Fyj + i * S, net->Fyj1 ? net->Fyj1 + i * S : NULL,
                                        net->adjoints + (nloc - i - 1) * S, net->lambda, net->block_grad, &ok));
  }
  PetscCheck(ok, PETSC_COMM_SELF, TN_ERR_RUNTIME, "%s", net->failure);
  AddBlockGradients(net, net->block_grad, grad);
  PetscFunctionReturn(0);
}

PetscErrorCode TNNetworkMGRITBreakCoarseStep(TNNetwork net, PetscBool broken)
{
  PetscFunctionBegin;
  net->mg_break_coarse = broken;
  PetscFunctionReturn(0);
}

static PetscReal Dot(PetscInt N, const PetscScalar *a, const PetscScalar *b)
{
  PetscReal s = 0;
  for (PetscInt i = 0; i < N; i++) s += PetscRealPart(a[i] * PetscConj(b[i]));
  return s;
}

static PetscReal RelativeError(PetscInt N, const PetscScalar *a, const PetscScalar *ref)
{
  PetscReal d = 0, r = 0;
  for (PetscInt i = 0; i < N; i++) {
    d += PetscRealPart((a[i] - ref[i]) * PetscConj(a[i] - ref[i]));
    r += PetscRealPart(ref[i] * PetscConj(ref[i]));
  }
  return r > 0 ? PetscSqrtReal(d / r) : PetscSqrtReal(d);
}

/* w = J v, the theta-step of block j linearised at (y0, y1): (I - h theta D1 A) w = v + h(1-theta)
   D0 A v, D = s'(A y + b), by fixed-point iteration (a fine step's h theta |D1 A| < 1). */
static PetscErrorCode Tangent(TNNetwork net, PetscInt j, PetscInt B, const PetscScalar *y0, const PetscScalar *y1,
                              const PetscScalar *v, PetscScalar *w, PetscScalar *work, PetscBool *converged)
{
  const PetscInt n = net->model->cfg.n, N = B * n;
  PetscScalar *D0 = work, *D1 = work + N, *rhs = work + 2 * N, *Aw = work + 3 * N, *zero = work + 4 * N;
  TNBlockLayer L;

  PetscFunctionBegin;
  TNNetworkBlockLayer(net, j, &L);
  PetscCall(PetscArrayzero(zero, n));
  TNRowsApply(B, n, n, y0, L.A, L.b, D0);
  TNActivate(L.act, N, D0, D0);
  TNActivationDerivative(L.act, N, D0, D0);
  TNRowsApply(B, n, n, y1, L.A, L.b, D1);
  TNActivate(L.act, N, D1, D1);
  TNActivationDerivative(L.act, N, D1, D1);
  TNRowsApply(B, n, n, v, L.A, zero, Aw);
  for (PetscInt i = 0; i < N; i++) rhs[i] = v[i] + L.h * (1 - L.theta) * D0[i] * Aw[i];
  PetscCall(PetscArraycpy(w, rhs, N));
  *converged = L.theta == 0 ? PETSC_TRUE : PETSC_FALSE;
  for (PetscInt it = 0; it < 500 && !*converged; it++) {
    PetscReal change = 0, size = 0;
    TNRowsApply(B, n, n, w, L.A, zero, Aw);
    for (PetscInt i = 0; i < N; i++) {
      const PetscScalar next = rhs[i] + L.h * L.theta * D1[i] * Aw[i];
      change += PetscRealPart((next - w[i]) * PetscConj(next - w[i]));
      size += PetscRealPart(next * PetscConj(next));
      w[i] = next;
    }
    *converged = change <= 1e-30 * size ? PETSC_TRUE : PETSC_FALSE;
  }
  PetscFunctionReturn(0);
}

PetscErrorCode TNNetworkMGRITSelfTest(TNNetwork net, PetscInt B, const PetscReal *X, TNMGRITTestResult *r,
                                      PetscBool *passed)
{
  TNModel M              = net->model;
  const TNModelConfig *c = &M->cfg;
  const PetscInt n = c->n, S = B * n, nloc = TNNetworkLocalBlocks(net), w = n * n + n, L = c->L;
  const MPI_Comm comm = M->depth == MPI_COMM_NULL ? PETSC_COMM_SELF : M->depth;
  PetscScalar *a, *b, *v, *lam, *work, *buf, *out;
  PetscReal errs[3];
  PetscInt counts[3], nlv;
  PetscBool ok = PETSC_TRUE, exact = net->exact;

  PetscFunctionBegin;
  PetscCheck(net->depth_solver == TN_DEPTH_MGRIT, PETSC_COMM_SELF, PETSC_ERR_ARG_WRONGSTATE,
             "the network does not use -depth_solver mgrit");
  PetscCall(PetscMemzero(r, sizeof *r));
  /* the states of the network itself, layer-serially */
  PetscCall(PetscMalloc1(B * c->m, &out));
  net->exact = PETSC_TRUE;
  PetscCall(TNNetworkForward(net, B, X, out, &ok));
  net->exact = exact;
  PetscCall(PetscFree(out));
  PetscCall(TNMGRITAgree(net->mg_fwd, &ok));
  PetscCheck(ok, comm, TN_ERR_RUNTIME, "MGRIT self-test: the forward propagation failed: %s", net->failure);
  PetscCall(PetscMalloc6(S, &a, S, &b, S, &v, S, &lam, 5 * S, &work, w + S, &buf));
  net->mg_batch      = B;
  net->mg_last_sweep = PETSC_FALSE;
  for (PetscInt i = 0; i < S; i++) {
    v[i]   = 2 * TNUniform(77, 1, (uint64_t)i) - 1;
    lam[i] = 2 * TNUniform(77, 2, (uint64_t)i) - 1;
  }
  /* (1) the coarse step of stride 1 against the fine step */
  for (PetscInt i = 0; i < nloc; i++) {
    const PetscInt j = M->jlo + i;
    PetscBool okf, okc;
    PetscCall(Propagate(net, j, j + 1, PETSC_TRUE, PETSC_FALSE, net->states + i * S, a, &okf));
    PetscCall(Propagate(net, j, j + 1, PETSC_FALSE, PETSC_FALSE, net->states + i * S, b, &okc));
    r->stride1 = PetscMax(r->stride1, okf && okc ? RelativeError(S, b, a) : PETSC_INFINITY);
    r->nstride1++;
  }
  /* (2) pack and unpack of each coarse interval held here, against the coarse step's own data */
  PetscCall(TNMGRITGetLevels(net->mg_fwd, &nlv));
  for (PetscInt l = 1; l < nlv; l++) {
    PetscInt np;
    const PetscInt *pos;
    PetscCall(TNMGRITGetLevelPoints(net->mg_fwd, l, &np, &pos));
    for (PetscInt P = 1; P <= np; P++) {
      const PetscInt j0 = pos[P - 1], j1 = pos[P], before = net->nspan;
      TNBlockLayer direct, packed;
      PetscInt k;
      if (j1 - j0 < 2 || j0 < M->jlo || j1 > M->jhi || SpanIndex(net, j0, j1) >= 0) continue;
      CoarseLayer(net, j0, j1, &direct);
      PetscCall(PetscArraycpy(a, direct.A, n * n));
      PetscCall(PetscArraycpy(a + n * n, direct.b, n));
      PetscCall(PetscArrayzero(buf, w + S));
      PetscCall(MGRITAdjointPack(net, L - j1, L - j0, L - j1, L - j0, buf));
      PetscCall(MGRITAdjointUnpack(net, L - j1, L - j0, buf));
      k = SpanIndex(net, j0, j1);
      CoarseLayer(net, j0, j1, &packed);
      PetscCall(PetscArraycpy(b, packed.A, n * n));
      PetscCall(PetscArraycpy(b + n * n, packed.b, n));
      r->pack = PetscMax(r->pack, RelativeError(w, b, a));
      r->pack =
          PetscMax(r->pack, RelativeError(S, net->span_state + k * net->Bmax * n, net->states + (j1 - M->jlo) * S));
      r->pack = PetscMax(r->pack, PetscAbsReal(packed.h - direct.h) / direct.h);
      r->npack++;
      net->nspan = before; /* the slot was the test's */
    }
  }
  /* (3) each block's adjoint step against its linearised step: <lambda, J v> = <J^T lambda, v> */
  for (PetscInt i = 0; i < nloc; i++) {
    const PetscInt j = M->jlo + i;
    PetscBool conv;
    PetscReal lhs, rhs;
    PetscCall(Tangent(net, j, B, net->states + i * S, net->states + (i + 1) * S, v, a, work, &conv));
    net->mg_ok = PETSC_TRUE;
    PetscCall(MGRITAdjointStep(net, L - j - 1, L - j, lam, b));
    lhs = Dot(S, lam, a);
    rhs = Dot(S, b, v);
    r->transpose =
        PetscMax(r->transpose, conv && net->mg_ok ? PetscAbsReal(lhs - rhs) / PetscMax(PetscAbsReal(lhs), PETSC_SMALL)
                                                  : PETSC_INFINITY);
    r->ntranspose++;
  }
  PetscCall(PetscFree6(a, b, v, lam, work, buf));
  errs[0]   = r->stride1;
  errs[1]   = r->pack;
  errs[2]   = r->transpose;
  counts[0] = r->nstride1;
  counts[1] = r->npack;
  counts[2] = r->ntranspose;
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, errs, 3, MPIU_REAL, MPI_MAX, comm));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, counts, 3, MPIU_INT, MPI_SUM, comm));
  r->stride1    = errs[0];
  r->pack       = errs[1];
  r->transpose  = errs[2];
  r->nstride1   = counts[0];
  r->npack      = counts[1];
  r->ntranspose = counts[2];
  *passed = r->stride1 <= 1e-8 && r->pack <= 1e-8 && r->transpose <= 1e-4 && r->nstride1 == L && r->ntranspose == L
                ? PETSC_TRUE
                : PETSC_FALSE;
  PetscFunctionReturn(0);
}
