/* The network as a composition: y_0 = s0(K x + k), the theta-blocks, z = C y_L + c, forward and
   adjoint (DESIGN.md §1), and the layer-serial pipeline that passes states forward and adjoints
   backward between depth ranks. Batches are row-major B x width, so every layer is one GEMM. */
#include "networkimpl.h"
#include "activation.h"
#include "errors.h"
#include "events.h"
#include "rows.h"

const char *const TNDepthSolvers[]  = {"sequential", "mgrit", "TNDepthSolver", "TN_DEPTH_", NULL};
const char *const TNCoarseWeights[] = {"inject", "average", "TNCoarseWeights", "TN_COARSE_", NULL};

PetscErrorCode TNNetworkCreate(TNModel model, PetscInt max_batch, TNNetwork *out)
{
  TNNetwork net;
  const TNModelConfig *c = &model->cfg;
  const PetscInt S       = max_batch * c->n;

  PetscFunctionBegin;
  PetscCheck(max_batch > 0, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE, "batch must be positive");
  PetscCall(TNEventsRegister());
  PetscCall(PetscNew(&net));
  net->model          = model;
  net->Bmax           = max_batch;
  net->mode           = TN_MEMORY_STORE;
  net->recon_tol      = 1e-4;
  net->depth_solver   = TN_DEPTH_SEQUENTIAL;
  net->coarse_weights = TN_COARSE_INJECT;
  net->coarse_its     = TN_MGRIT_COARSE_ITS;
  PetscCall(TNBlockSolverCreate(c->n, &net->solver));
  if (c->antisymmetric) PetscCall(PetscMalloc1(TNNetworkLocalBlocks(net) * c->n * c->n, &net->antisym));
  PetscCall(PetscMalloc6(S, &net->lambda, S, &net->mu, 2 * S, &net->scaled, c->n * c->n, &net->dA, S, &net->deriv, S,
                         &net->z));
  PetscCall(PetscMalloc1(S + 1, &net->message));
  *out = net;
  PetscFunctionReturn(0);
}

PetscErrorCode TNNetworkSetFromOptions(TNNetwork net)
{
  TNMemoryMode mode    = net->mode;
  TNDepthSolver solver = net->depth_solver;
  PetscInt stride      = net->stride;
  PetscReal tol        = net->recon_tol;

  PetscFunctionBegin;
  TNErrorReadingOptions(PETSC_TRUE);
  PetscCall(TNBlockSolverSetFromOptions(net->solver));
  PetscOptionsBegin(PETSC_COMM_WORLD, NULL, "Network: memory and depth", "thetanet");
  PetscCall(TNOptionsEnum(
      "-memory",
      "What the forward pass keeps: store (every state), reversible (y_L only), checkpoint (every -memory_stride-th)",
      "", TNMemoryModes, (PetscEnum)mode, (PetscEnum *)&mode, NULL));
  PetscCall(TNOptionsInt("-memory_stride", "States between checkpoints of -memory checkpoint (0: about sqrt(layers))",
                         "", stride, &stride, NULL));
  PetscCall(TNOptionsReal("-memory_tol", "Reconstruction error of y_0 above which -memory reversible warns", "", tol,
                          &tol, NULL));
  PetscCall(TNOptionsEnum("-depth_solver", "Propagation across depth: sequential (layer-serial) or mgrit", "",
                          TNDepthSolvers, (PetscEnum)solver, (PetscEnum *)&solver, NULL));
  PetscCall(TNOptionsEnum("-mgrit_coarse_weights",
                          "Weights of a coarse step: its first block's (inject) or the mean of its blocks' (average)",
                          "", TNCoarseWeights, (PetscEnum)net->coarse_weights, (PetscEnum *)&net->coarse_weights,
                          NULL));
  PetscCall(TNOptionsInt("-mgrit_coarse_its",
                         "Most iterations of a coarse step's block solve (it only steers the correction: no fallback)",
                         "", net->coarse_its, &net->coarse_its, NULL));
  PetscCall(PetscOptionsName("-network_view", "Print the network's set-up: model, memory mode, depth solver",
                             "TNNetworkView", &net->view));
  PetscOptionsEnd();
  TNErrorReadingOptions(PETSC_FALSE);
  PetscCheck(stride >= 0, PETSC_COMM_WORLD, TN_ERR_USER, "-memory_stride must be non-negative, got %" PetscInt_FMT,
             stride);
  PetscCheck(tol > 0, PETSC_COMM_WORLD, TN_ERR_USER, "-memory_tol must be positive, got %g", (double)tol);
  PetscCheck(net->coarse_its >= 1, PETSC_COMM_WORLD, TN_ERR_USER,
             "-mgrit_coarse_its must be at least 1, got %" PetscInt_FMT, net->coarse_its);
  PetscCall(TNNetworkSetMemory(net, mode, stride, tol));
  PetscCall(TNNetworkSetDepthSolver(net, solver));
  PetscFunctionReturn(0);
}

PetscErrorCode TNNetworkSetDepthSolver(TNNetwork net, TNDepthSolver solver)
{
  PetscFunctionBegin;
  PetscCall(TNNetworkMGRITDestroy(net));
  net->depth_solver = solver;
  net->setup        = PETSC_FALSE;
  PetscFunctionReturn(0);
}

PetscErrorCode TNNetworkSetUp(TNNetwork net)
{
  PetscBool help;

  PetscFunctionBegin;
  if (net->setup) PetscFunctionReturn(0);
  PetscCheck(net->depth_solver != TN_DEPTH_MGRIT || net->mode == TN_MEMORY_STORE, PETSC_COMM_WORLD, TN_ERR_USER,
             "-depth_solver mgrit keeps every state: use -memory store");
  PetscCall(TNNetworkMemoryFree(net));
  PetscCall(TNNetworkMemoryAllocate(net));
  PetscCall(PetscOptionsHasHelp(NULL, &help));
  if (net->depth_solver == TN_DEPTH_MGRIT || help) PetscCall(TNNetworkMGRITSetUp(net));
  /* the solvers read their own options (-block_snes_*, -adjoint_ksp_*) as they are made */
  TNErrorReadingOptions(PETSC_TRUE);
  PetscCall(TNBlockSolverSetUp(net->solver, net->Bmax));
  TNErrorReadingOptions(PETSC_FALSE);
  net->setup = PETSC_TRUE;
  if (net->view) {
    PetscCall(TNNetworkView(net, PETSC_VIEWER_STDOUT_WORLD));
    net->view = PETSC_FALSE;
  }
  PetscFunctionReturn(0);
}

PetscErrorCode TNNetworkView(TNNetwork net, PetscViewer viewer)
{
  PetscFunctionBegin;
  PetscCall(TNModelView(net->model, viewer));
  PetscCall(PetscViewerASCIIPrintf(viewer,
                                   "TNNetwork: batches of up to %" PetscInt_FMT
                                   " samples, -memory %s (segments of %" PetscInt_FMT " blocks), -depth_solver %s\n",
                                   net->Bmax, TNMemoryModes[net->mode], net->seg, TNDepthSolvers[net->depth_solver]));
  if (net->depth_solver == TN_DEPTH_MGRIT)
    PetscCall(PetscViewerASCIIPrintf(
        viewer, "  MGRIT coarse steps: weights %s, block solves of at most %" PetscInt_FMT " iterations\n",
        TNCoarseWeights[net->coarse_weights], net->coarse_its));
  PetscCall(PetscViewerASCIIPushTab(viewer));
  PetscCall(TNBlockSolverView(net->solver, viewer));
  if (net->mg_fwd) PetscCall(TNMGRITView(net->mg_fwd, viewer));
  PetscCall(PetscViewerASCIIPopTab(viewer));
  PetscFunctionReturn(0);
}

PetscErrorCode TNNetworkMemoryEstimate(TNNetwork net, PetscReal *bytes)
{
  const TNModelConfig *c = &net->model->cfg;
  const PetscReal n = (PetscReal)c->n, S = (PetscReal)net->Bmax * n, L = (PetscReal)TNNetworkLocalBlocks(net);
  PetscReal seg = L, words;

  PetscFunctionBegin;
  if (net->mode == TN_MEMORY_REVERSIBLE)
    seg = 1;
  else if (net->mode == TN_MEMORY_CHECKPOINT)
    seg = net->stride ? PetscMin(net->stride, L) : PetscMax(1, PetscFloorReal(PetscSqrtReal(L) + 0.5));
  /* the memory mode's states and layer values, the checkpoints, the work arrays */
  words = (seg + 1) * S + 2 * seg * S + (L / seg) * S + 8 * S + n * n + (c->antisymmetric ? L * n * n : 0);
  /* the block solvers of two batch sizes: vectors, work arrays, Krylov bases (GMRES, Anderson) */
  words += 2 * (11 + 64) * S + 2 * (c->n <= 4 ? net->Bmax * n * n : 0);
  if (net->depth_solver == TN_DEPTH_MGRIT) {
    /* adjoints at every point, the block gradients, three arrays a coarse point (cfactor 2 at most) */
    words += (L + 1) * S + net->model->nparams + 3 * (L + 8) * S;
  }
  *bytes = words * sizeof(PetscScalar);
  PetscFunctionReturn(0);
}

PetscErrorCode TNNetworkDestroy(TNNetwork *net)
{
  PetscFunctionBegin;
  if (!*net) PetscFunctionReturn(0);
  PetscCall(TNBlockSolverDestroy(&(*net)->solver));
  PetscCall(TNNetworkMemoryFree(*net));
  PetscCall(TNNetworkMGRITDestroy(*net));
  PetscCall(PetscFree((*net)->antisym));
  PetscCall(PetscFree6((*net)->lambda, (*net)->mu, (*net)->scaled, (*net)->dA, (*net)->deriv, (*net)->z));
  PetscCall(PetscFree((*net)->message));
  PetscCall(PetscFree(*net));
  PetscFunctionReturn(0);
}

PetscErrorCode TNNetworkGetBlockSolver(TNNetwork net, TNBlockSolver *bs)
{
  PetscFunctionBegin;
  *bs = net->solver;
  PetscFunctionReturn(0);
}

PetscErrorCode TNNetworkGetMemory(TNNetwork net, TNMemoryMode *mode, PetscReal *tol)
{
  PetscFunctionBegin;
  if (mode) *mode = net->mode;
  if (tol) *tol = net->recon_tol;
  PetscFunctionReturn(0);
}

PetscErrorCode TNNetworkGetDepthSolver(TNNetwork net, TNDepthSolver *solver)
{
  PetscFunctionBegin;
  *solver = net->depth_solver;
  PetscFunctionReturn(0);
}

PetscErrorCode TNNetworkGetModel(TNNetwork net, TNModel *M)
{
  PetscFunctionBegin;
  *M = net->model;
  PetscFunctionReturn(0);
}

const char *TNNetworkGetFailure(TNNetwork net)
{
  return net->failure;
}

PetscErrorCode TNNetworkGetCounts(TNNetwork net, TNNetworkCounts *counts)
{
  PetscFunctionBegin;
  *counts = net->mg_counts;
  PetscCall(TNBlockSolverGetCounts(net->solver, &counts->newton, &counts->krylov, &counts->block_solves));
  counts->recon = net->recon;
  PetscFunctionReturn(0);
}

PetscErrorCode TNNetworkResetCounts(TNNetwork net)
{
  PetscFunctionBegin;
  PetscCall(PetscMemzero(&net->mg_counts, sizeof net->mg_counts));
  PetscCall(TNBlockSolverResetCounts(net->solver));
  net->recon = 0;
  PetscFunctionReturn(0);
}

PetscErrorCode TNNetworkDepthOwnership(MPI_Comm depth, PetscInt L, PetscInt *jlo, PetscInt *jhi)
{
  PetscMPIInt size, rank;

  PetscFunctionBegin;
  PetscCallMPI(MPI_Comm_size(depth, &size));
  PetscCallMPI(MPI_Comm_rank(depth, &rank));
  TNGridSplit(L, size, rank, jlo, jhi);
  PetscFunctionReturn(0);
}

void TNNetworkOpening(TNNetwork net, PetscInt B, const PetscReal *X, PetscScalar *y0)
{
  const TNModelConfig *c = &net->model->cfg;

  TNRowsApply(B, c->n, c->d, X, net->model->p.K, net->model->p.kb, y0);
  TNActivate(c->opening_act, B * c->n, y0, y0);
}

/* dz_0 = lambda_0 . s0'(K x + k): dK += dz_0^T x, dk += sum dz_0 */
void TNNetworkOpeningGradient(TNNetwork net, PetscInt B, const PetscReal *X, const PetscScalar *y0,
                              const PetscScalar *lambda0, PetscScalar *grad)
{
  const TNModelConfig *c = &net->model->cfg;
  const PetscInt S       = B * c->n;
  TNParams g;

  TNModelParams(net->model, grad, &g);
  TNActivationDerivative(c->opening_act, S, y0, net->deriv);
  for (PetscInt i = 0; i < S; i++) net->deriv[i] *= lambda0[i];
  TNRowsOuterAdd(B, c->n, c->d, 1.0, net->deriv, X, g.K);
  TNRowsColumnSums(B, c->n, net->deriv, g.kb);
}

/* dC += dout^T y_L, dc += sum dout, lambda_L = dout C */
void TNNetworkClosingGradient(TNNetwork net, PetscInt B, const PetscScalar *yL, const PetscReal *dout,
                              PetscScalar *grad, PetscScalar *lambdaL)
{
  const TNModelConfig *c = &net->model->cfg;
  TNParams g;

  TNModelParams(net->model, grad, &g);
  TNRowsOuterAdd(B, c->m, c->n, 1.0, dout, yL, g.C);
  TNRowsColumnSums(B, c->m, dout, g.c);
  TNRowsApplyTranspose(B, c->m, c->n, 1.0, dout, net->model->p.C, 0.0, lambdaL);
}

/* Between neighbouring depth ranks (direction +1: to the next, -1: from the previous) a state
   travels with a flag saying whether the sender failed; a rank that receives a failure passes
   it on without computing, so no rank waits for a message that never comes. */
static PetscErrorCode DepthSend(TNNetwork net, PetscInt S, const PetscScalar *y, int tag, int direction, PetscBool ok)
{
  PetscMPIInt rank;

  PetscFunctionBegin;
  PetscCallMPI(MPI_Comm_rank(net->model->depth, &rank));
  if (ok) PetscCall(PetscArraycpy(net->message, y, S));
  net->message[S] = ok ? 0 : 1;
  PetscCallMPI(MPI_Send(net->message, (PetscMPIInt)(S + 1), MPIU_SCALAR, rank + direction, tag, net->model->depth));
  PetscFunctionReturn(0);
}

static PetscErrorCode DepthReceive(TNNetwork net, PetscInt S, PetscScalar *y, int tag, int direction, PetscBool *ok)
{
  PetscMPIInt rank;

  PetscFunctionBegin;
  PetscCallMPI(MPI_Comm_rank(net->model->depth, &rank));
  PetscCallMPI(MPI_Recv(net->message, (PetscMPIInt)(S + 1), MPIU_SCALAR, rank + direction, tag, net->model->depth,
                        MPI_STATUS_IGNORE));
  if (net->message[S] != 0)
    *ok = PETSC_FALSE;
  else
    PetscCall(PetscArraycpy(y, net->message, S));
  PetscFunctionReturn(0);
}

/* The pipeline's message tags: a state forward, an adjoint backward. */
enum { TAG_STATE = 21, TAG_ADJOINT = 22 };

/* The last state held here, y_jhi: where the last segment's states end. */
static PetscScalar *LastState(TNNetwork net, PetscInt S)
{
  return net->states + (TNNetworkLocalBlocks(net) - (TNNetworkSegmentCount(net) - 1) * net->seg) * S;
}

PetscErrorCode TNNetworkForward(TNNetwork net, PetscInt B, const PetscReal *X, PetscReal *out, PetscBool *ok)
{
  TNModel M              = net->model;
  const TNModelConfig *c = &M->cfg;
  const PetscInt S       = B * c->n;
  PetscInt s, nseg;

  PetscFunctionBegin;
  PetscCheck(B <= net->Bmax, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
             "batch %" PetscInt_FMT " exceeds %" PetscInt_FMT, B, net->Bmax);
  PetscCall(TNNetworkSetUp(net));
  s    = net->seg;
  nseg = TNNetworkSegmentCount(net);
  PetscCall(PetscLogEventBegin(TN_EVENT_FORWARD, 0, 0, 0, 0));
  net->failure[0] = 0;
  *ok             = PETSC_TRUE;
  if (c->antisymmetric)
    for (PetscInt j = M->jlo; j < M->jhi; j++) TNModelBlockOperator(M, j, net->antisym + (j - M->jlo) * c->n * c->n);
  if (net->depth_solver == TN_DEPTH_MGRIT && !net->exact) {
    PetscCall(TNNetworkForwardMGRIT(net, B, X, out, ok));
    net->forward_ok = *ok;
    PetscCall(PetscLogEventEnd(TN_EVENT_FORWARD, 0, 0, 0, 0));
    PetscFunctionReturn(0);
  }
  if (M->jlo == 0)
    TNNetworkOpening(net, B, X, net->states);
  else
    PetscCall(DepthReceive(net, S, net->states, TAG_STATE, -1, ok));
  for (PetscInt k = 0; k < nseg && *ok; k++) {
    /* segment k starts where segment k-1 (always of full length) ended */
    if (k > 0) PetscCall(PetscArraycpy(net->states, net->states + s * S, S));
    if (net->checkpoints && k < nseg - 1) PetscCall(PetscArraycpy(net->checkpoints + k * S, net->states, S));
    PetscCall(TNNetworkSegmentForward(net, k, B, ok));
  }
  /* y at the last block held here: the closing layer's input, or the next depth rank's */
  if (M->jhi == c->L) {
    if (*ok) TNRowsApply(B, c->m, c->n, LastState(net, S), M->p.C, M->p.c, out);
  } else
    PetscCall(DepthSend(net, S, LastState(net, S), TAG_STATE, +1, *ok));
  net->forward_ok = *ok;
  PetscCall(PetscLogEventEnd(TN_EVENT_FORWARD, 0, 0, 0, 0));
  PetscFunctionReturn(0);
}

PetscErrorCode TNNetworkSetExactForward(TNNetwork net, PetscBool exact)
{
  PetscFunctionBegin;
  net->exact = exact;
  PetscFunctionReturn(0);
}

PetscErrorCode TNNetworkGetMGRITSettings(TNNetwork net, TNNetworkMGRITSettings *s)
{
  PetscFunctionBegin;
  PetscCall(PetscMemzero(s, sizeof *s));
  s->coarse_weights = net->coarse_weights;
  s->coarse_its     = net->coarse_its;
  if (net->mg_fwd) {
    PetscCall(TNMGRITGetParameters(net->mg_fwd, &s->cfactor, &s->levels, &s->max_it, &s->tol));
    PetscCall(TNMGRITGetRelativeTolerance(net->mg_fwd, &s->rtol));
    PetscCall(TNMGRITGetSkip(net->mg_fwd, &s->skip));
  }
  PetscFunctionReturn(0);
}

PetscErrorCode TNNetworkSetGradientReady(TNNetwork net, TNGradientReady ready, void *ctx)
{
  PetscFunctionBegin;
  net->ready     = ready;
  net->ready_ctx = ctx;
  PetscFunctionReturn(0);
}

PetscErrorCode TNNetworkBackward(TNNetwork net, PetscInt B, const PetscReal *X, const PetscReal *dout,
                                 PetscScalar *grad, PetscBool *ok)
{
  TNModel M              = net->model;
  const TNModelConfig *c = &M->cfg;
  const PetscInt S = B * c->n, s = net->seg, nseg = TNNetworkSegmentCount(net);
  const PetscScalar *y0 = net->states;

  PetscFunctionBegin;
  PetscCall(PetscLogEventBegin(TN_EVENT_BACKWARD, 0, 0, 0, 0));
  /* across depth a failed forward pass still takes part, to pass the failure on */
  *ok = net->forward_ok;
  if (*ok) net->failure[0] = 0;
  if (net->depth_solver == TN_DEPTH_MGRIT && !net->exact) {
    /* the forward MGRIT solve agreed on failure across depth: nobody is left waiting */
    if (*ok) PetscCall(TNNetworkBackwardMGRIT(net, B, X, dout, grad, ok));
    PetscCall(PetscLogEventEnd(TN_EVENT_BACKWARD, 0, 0, 0, 0));
    PetscFunctionReturn(0);
  }
  if (M->jhi == c->L) {
    if (*ok) TNNetworkClosingGradient(net, B, LastState(net, S), dout, grad, net->lambda);
    if (*ok && net->ready) PetscCall(net->ready(net->ready_ctx, c->L));
  } else {
    PetscBool sent_ok = PETSC_TRUE;
    PetscCall(DepthReceive(net, S, net->lambda, TAG_ADJOINT, +1, &sent_ok));
    *ok = *ok && sent_ok ? PETSC_TRUE : PETSC_FALSE;
  }
  for (PetscInt k = nseg - 1; k >= 0 && *ok; k--) {
    const PetscInt a = M->jlo + k * s, e = PetscMin(a + s, M->jhi);
    if (k < nseg - 1) PetscCall(TNNetworkSegmentRestore(net, k, B, ok));
    for (PetscInt j = e - 1; j >= a && *ok; j--) {
      const PetscInt i = j - a;
      PetscCall(TNNetworkBlockAdjointStep(net, j, B, net->states + i * S, net->states + (i + 1) * S, net->Fyj + i * S,
                                          net->Fyj1 ? net->Fyj1 + i * S : NULL, net->lambda, net->lambda, grad, ok));
      if (*ok && net->ready) PetscCall(net->ready(net->ready_ctx, j));
    }
  }
  if (M->jlo > 0)
    PetscCall(DepthSend(net, S, net->lambda, TAG_ADJOINT, -1, *ok));
  else if (*ok) {
    if (net->mode == TN_MEMORY_REVERSIBLE && nseg > 1) {
      /* y_0 is recomputable from the input: how far the reversal drifted, and the exact y_0 for
         the opening layer's derivative (scaled is free once the blocks are done) */
      TNNetworkOpening(net, B, X, net->scaled);
      PetscCall(TNNetworkReconstructionCheck(net, S, net->scaled));
      y0 = net->scaled;
    }
    TNNetworkOpeningGradient(net, B, X, y0, net->lambda, grad);
    if (net->ready) PetscCall(net->ready(net->ready_ctx, -1));
  }
  PetscCall(PetscLogEventEnd(TN_EVENT_BACKWARD, 0, 0, 0, 0));
  PetscFunctionReturn(0);
}
