/* Propagation of a local batch: y_0 = s0(K x + k), the theta-blocks, z = C y_L + c, forward and
   adjoint (DESIGN.md §1), in the memory modes store, reversible and checkpoint. Batches are
   row-major B x width, so every layer is one GEMM. */
#include "network.h"
#include "activation.h"
#include "events.h"
#include "mgrit.h"

const char *const TNMemoryModes[] = {"store", "reversible", "checkpoint", "TNMemoryMode", "TN_MEMORY_", NULL};
const char *const TNDepthSolvers[] = {"sequential", "mgrit", "TNDepthSolver", "TN_DEPTH_", NULL};
const char *const TNCoarseWeights[] = {"inject", "average", "TNCoarseWeights", "TN_COARSE_", NULL};

/* The blocks are taken in segments of `stride` blocks, segment k = blocks [k s, min((k+1) s, L)).
   The segment buffers hold one segment's states and layer values, exactly what the adjoint steps
   read. The forward pass leaves the last segment in them; the backward pass restores each
   earlier segment before its adjoint steps:
     store       s = L: one segment, nothing to restore;
     checkpoint  s: the first state of every segment but the last is kept, and the segment is
                 recomputed forward from it;
     reversible  s = 1: nothing is kept; y_j is rebuilt from y_{j+1} by the reverse solve. */
struct _n_TNNetwork {
  TNModel       model;
  PetscInt      Bmax;
  TNBlockSolver solver;
  TNMemoryMode  mode;
  PetscInt      stride; /* blocks per segment */
  PetscReal     tol;    /* reversible: a batch whose y_0 is rebuilt worse than this is logged (-info) */
  PetscReal     recon;  /* reversible: largest |rebuilt y_0 - y_0| since the last query */
  PetscScalar  *Y;      /* s+1 states of a segment, each Bmax x n, contiguous so y_j, y_{j+1} stack */
  PetscScalar  *FJ;     /* s values F_j(y_j) */
  PetscScalar  *FN;     /* s values F_j(y_{j+1}) (implicit blocks, and every block in reversible mode) */
  PetscScalar  *CK;     /* checkpoint mode: y_{ks} for the segments k before the last */
  PetscScalar  *A;      /* the local blocks' W_j - W_j^T - gamma I (antisymmetric models only) */
  PetscScalar  *msg;    /* a state passed between depth ranks, and a failure flag after it */
  PetscBool     forward_ok;
  /* -depth_solver mgrit: forward over the depth ranks, adjoint over them in reverse order */
  TNDepthSolver   depth_solver;
  TNCoarseWeight  coarse_weights;
  PetscInt        coarse_its; /* iterations a coarse step's solve may take */
  TNMGRIT         mg_fwd, mg_adj;
  MPI_Comm        reversed;
  PetscScalar    *LAM;    /* adjoints at this rank's points: LAM[q] = lambda_{jhi-q} */
  PetscScalar    *Ac, *bc; /* a coarse step's averaged operator and bias */
  PetscInt        mgB;    /* batch size of the MGRIT solve under way */
  PetscBool       mg_ok, mg_closing; /* mg_closing: fine steps now may be the last at their points */
  PetscScalar    *Gmg;    /* the adjoint solve's block gradients, from each block's last step */
  /* coarse intervals whose blocks lie on more than one depth rank: their operators are summed
     over the ranks before each forward solve, and the adjoint's owner of block j0 receives the
     state y_j1 at the interval's end, where the coarse adjoint step is linearised */
  PetscInt        nspan;
  PetscInt       *span;   /* span[2k], span[2k+1]: the first block and one past the last */
  PetscMPIInt    *span_to, *span_from; /* the rank holding y_j1 and the one holding block j0 */
  PetscScalar    *spanAb; /* n*n + n each: the coarse operator and bias */
  PetscScalar    *spanY;  /* Bmax*n each: y_j1, where block j0 is held here */
  MPI_Request    *span_req;
  PetscInt64      mg_its, mg_solves, mg_nfactor;
  PetscReal       mg_res, mg_logfactor; /* largest final residual; sum of log convergence factors, over mg_nfactor solves */
  PetscScalar  *lam, *mu, *U, *G, *D;
  PetscScalar  *rhs;
  char          failure[256];
};

static PetscErrorCode ForwardMGRIT(TNNetwork, PetscInt, const PetscReal *, PetscReal *, PetscBool *);
static PetscErrorCode BackwardMGRIT(TNNetwork, PetscInt, const PetscReal *, const PetscReal *, PetscScalar *, PetscBool *);

/* Blocks held here: all L, or a depth rank's share [jlo, jhi) of the model. */
static PetscInt LocalBlocks(TNNetwork net)
{
  return net->model->jhi - net->model->jlo;
}

static PetscInt SegmentCount(TNNetwork net)
{
  return (LocalBlocks(net) + net->stride - 1) / net->stride;
}

/* The segment buffers and checkpoints of the memory mode, for batches of up to Bmax samples. */
static PetscErrorCode NetworkAllocate(TNNetwork net)
{
  const TNModelConfig *c = &net->model->cfg;
  const PetscInt       S = net->Bmax * c->n, nseg = SegmentCount(net);

  PetscFunctionBegin;
  PetscCall(PetscMalloc1((net->stride + 1) * S, &net->Y));
  PetscCall(PetscMalloc1(net->stride * S, &net->FJ));
  /* an explicit block's reverse solve needs F_j(y_{j+1}) too: its right-hand side and predictor */
  if (c->theta > 0 || net->mode == TN_MEMORY_REVERSIBLE) PetscCall(PetscMalloc1(net->stride * S, &net->FN));
  if (net->mode == TN_MEMORY_CHECKPOINT && nseg > 1) PetscCall(PetscMalloc1((nseg - 1) * S, &net->CK));
  PetscFunctionReturn(0);
}

static PetscErrorCode NetworkFree(TNNetwork net)
{
  PetscFunctionBegin;
  PetscCall(PetscFree(net->Y));
  PetscCall(PetscFree(net->FJ));
  PetscCall(PetscFree(net->FN));
  PetscCall(PetscFree(net->CK));
  PetscFunctionReturn(0);
}

PetscErrorCode TNNetworkCreate(TNModel model, PetscInt max_batch, TNNetwork *out)
{
  TNNetwork            net;
  const TNModelConfig *c = &model->cfg;
  const PetscInt       S = max_batch * c->n;

  PetscFunctionBegin;
  PetscCheck(max_batch > 0, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE, "batch must be positive");
  PetscCall(TNEventsRegister());
  PetscCall(PetscNew(&net));
  net->model  = model;
  net->Bmax   = max_batch;
  net->mode   = TN_MEMORY_STORE;
  net->stride = LocalBlocks(net);
  PetscCall(TNBlockSolverCreate(c->n, &net->solver));
  if (c->antisymmetric) PetscCall(PetscMalloc1(LocalBlocks(net) * c->n * c->n, &net->A));
  PetscCall(PetscMalloc6(S, &net->lam, S, &net->mu, 2 * S, &net->U, c->n * c->n, &net->G, S, &net->D, S, &net->rhs));
  PetscCall(PetscMalloc1(S + 1, &net->msg));
  *out = net;
  PetscFunctionReturn(0);
}

PetscErrorCode TNNetworkSetFromOptions(TNNetwork net)
{
  PetscFunctionBegin;
  PetscCall(TNBlockSolverSetFromOptions(net->solver));
  PetscFunctionReturn(0);
}

PetscErrorCode TNNetworkDestroy(TNNetwork *net)
{
  PetscFunctionBegin;
  if (!*net) PetscFunctionReturn(0);
  PetscCall(TNBlockSolverDestroy(&(*net)->solver));
  PetscCall(NetworkFree(*net));
  PetscCall(PetscFree((*net)->A));
  PetscCall(PetscFree6((*net)->lam, (*net)->mu, (*net)->U, (*net)->G, (*net)->D, (*net)->rhs));
  PetscCall(PetscFree((*net)->msg));
  PetscCall(TNMGRITDestroy(&(*net)->mg_fwd));
  PetscCall(TNMGRITDestroy(&(*net)->mg_adj));
  PetscCall(PetscFree((*net)->LAM));
  PetscCall(PetscFree((*net)->Gmg));
  PetscCall(PetscFree3((*net)->span, (*net)->span_to, (*net)->span_from));
  PetscCall(PetscFree3((*net)->spanAb, (*net)->spanY, (*net)->span_req));
  PetscCall(PetscFree2((*net)->Ac, (*net)->bc));
  if ((*net)->reversed != MPI_COMM_NULL && (*net)->reversed) PetscCallMPI(MPI_Comm_free(&(*net)->reversed));
  PetscCall(PetscFree(*net));
  PetscFunctionReturn(0);
}

PetscErrorCode TNNetworkGetBlockSolver(TNNetwork net, TNBlockSolver *bs)
{
  PetscFunctionBegin;
  *bs = net->solver;
  PetscFunctionReturn(0);
}

PetscErrorCode TNNetworkSetMemory(TNNetwork net, TNMemoryMode mode, PetscInt stride, PetscReal tol)
{
  const PetscInt L = LocalBlocks(net);

  PetscFunctionBegin;
  PetscCheck(stride >= 0, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE, "memory stride must be non-negative, got %" PetscInt_FMT, stride);
  PetscCheck(tol > 0, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE, "reconstruction tolerance must be positive, got %g", (double)tol);
  PetscCall(NetworkFree(net));
  net->mode  = mode;
  net->tol   = tol;
  net->recon = 0;
  if (mode == TN_MEMORY_STORE) net->stride = L;
  else if (mode == TN_MEMORY_REVERSIBLE) net->stride = 1;
  else {
    /* about sqrt(L): the L/s checkpoints and the ~3s arrays of a segment are both O(sqrt(L)) */
    net->stride = stride ? PetscMin(stride, L) : PetscMax(1, (PetscInt)(PetscSqrtReal((PetscReal)L) + 0.5));
  }
  PetscCall(NetworkAllocate(net));
  PetscFunctionReturn(0);
}

PetscErrorCode TNNetworkGetReconstructionError(TNNetwork net, PetscReal *error)
{
  PetscFunctionBegin;
  *error     = net->recon;
  net->recon = 0;
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

static void BlockLayer(TNNetwork net, PetscInt j, TNBlockLayer *L)
{
  const TNModelConfig *c = &net->model->cfg;
  const PetscInt       k = j - net->model->jlo; /* held here as the k-th block */

  L->n     = c->n;
  L->A     = c->antisymmetric ? net->A + k * c->n * c->n : net->model->p.W + k * c->n * c->n;
  L->b     = net->model->p.b + k * c->n;
  L->act   = c->act;
  L->h     = c->T / c->L;
  L->theta = c->theta;
}

/* One theta-solve of block j with the step and theta of L: y_to = y_from + h[(1-theta) F(y_from) +
   theta F(y_to)], returning F_from = F(y_from) and, when theta > 0, F_to = F(y_to). With the
   block's own (h, theta) this is the forward step y_j -> y_{j+1}. With (-h, 1-theta) it is the
   same equation read backwards, y_j + h(1-theta) F_j(y_j) = y_{j+1} - h theta F_j(y_{j+1}): the
   reverse step y_{j+1} -> y_j, whose predictor is y_{j+1} - h F_j(y_{j+1}). */
static PetscErrorCode ThetaSolve(TNNetwork net, PetscInt j, const char *direction, const TNBlockLayer *L, PetscInt B,
                                 const PetscScalar *yfrom, PetscScalar *yto, PetscScalar *Ffrom, PetscScalar *Fto, PetscBool *ok)
{
  const PetscInt N = B * L->n;
  PetscReal      res;

  PetscFunctionBegin;
  TNRowsApply(B, L->n, L->n, yfrom, L->A, L->b, net->rhs);
  TNActivate(L->act, N, net->rhs, Ffrom);
  *ok = PETSC_TRUE;
  if (L->theta == 0) {
    for (PetscInt i = 0; i < N; i++) yto[i] = yfrom[i] + L->h * Ffrom[i];
    PetscFunctionReturn(0);
  }
  for (PetscInt i = 0; i < N; i++) {
    net->rhs[i] = yfrom[i] + L->h * (1 - L->theta) * Ffrom[i];
    yto[i]      = yfrom[i];
  }
  PetscCall(PetscLogEventBegin(TN_EVENT_BLOCK, 0, 0, 0, 0));
  PetscCall(TNBlockSolverSolve(net->solver, L, B, Ffrom, net->rhs, yto, Fto, ok, &res));
  PetscCall(PetscLogEventEnd(TN_EVENT_BLOCK, 0, 0, 0, 0));
  if (!*ok)
    PetscCall(PetscSNPrintf(net->failure, sizeof net->failure, "block %" PetscInt_FMT " %s solve did not converge: residual %.3e", j, direction,
                            (double)res));
  PetscFunctionReturn(0);
}

PetscErrorCode TNNetworkBlockStep(TNNetwork net, PetscInt j, PetscInt B, const PetscScalar *yj, PetscScalar *yj1,
                                  PetscScalar *Fj, PetscScalar *Fn, PetscBool *ok)
{
  TNBlockLayer L;

  PetscFunctionBegin;
  BlockLayer(net, j, &L);
  PetscCall(ThetaSolve(net, j, "forward", &L, B, yj, yj1, Fj, Fn, ok));
  PetscFunctionReturn(0);
}

/* y_j from y_{j+1} (reversible mode), with Fn = F_j(y_{j+1}) and, for theta < 1, Fj = F_j(y_j);
   for theta = 1 the reversal is explicit and Fj is not needed (the adjoint step has no
   (1-theta) term). */
static PetscErrorCode BlockReverseStep(TNNetwork net, PetscInt j, PetscInt B, const PetscScalar *yj1, PetscScalar *yj,
                                       PetscScalar *Fj, PetscScalar *Fn, PetscBool *ok)
{
  TNBlockLayer L;

  PetscFunctionBegin;
  BlockLayer(net, j, &L);
  L.h     = -L.h;
  L.theta = 1 - L.theta;
  PetscCall(ThetaSolve(net, j, "reverse", &L, B, yj1, yj, Fn, Fj, ok));
  PetscFunctionReturn(0);
}

/* The forward steps of segment k, from its first state in Y. */
static PetscErrorCode SegmentForward(TNNetwork net, PetscInt k, PetscInt B, PetscBool *ok)
{
  const PetscInt S = B * net->model->cfg.n, jlo = net->model->jlo, a = jlo + k * net->stride, e = PetscMin(a + net->stride, net->model->jhi);

  PetscFunctionBegin;
  for (PetscInt j = a; j < e && *ok; j++) {
    const PetscInt i = j - a;
    PetscCall(TNNetworkBlockStep(net, j, B, net->Y + i * S, net->Y + (i + 1) * S, net->FJ + i * S, net->FN ? net->FN + i * S : NULL, ok));
  }
  PetscFunctionReturn(0);
}

/* Fill the segment buffers with segment k (not the last) again. On entry Y holds the first state
   of segment k+1, which is the last state of segment k. */
static PetscErrorCode SegmentRestore(TNNetwork net, PetscInt k, PetscInt B, PetscBool *ok)
{
  const PetscInt S = B * net->model->cfg.n;

  PetscFunctionBegin;
  if (net->mode == TN_MEMORY_CHECKPOINT) {
    PetscCall(PetscArraycpy(net->Y, net->CK + k * S, S));
    PetscCall(SegmentForward(net, k, B, ok));
  } else {
    /* reversible: segment k is the k-th block held here alone */
    PetscCall(PetscArraycpy(net->Y + S, net->Y, S));
    PetscCall(BlockReverseStep(net, net->model->jlo + k, B, net->Y + S, net->Y, net->FJ, net->FN, ok));
  }
  PetscFunctionReturn(0);
}

/* Column sums of U (B x n) scaled and added into g. */
static void AddColumnSums(PetscInt B, PetscInt n, const PetscScalar *U, PetscScalar *g)
{
  for (PetscInt s = 0; s < B; s++)
    for (PetscInt i = 0; i < n; i++) g[i] += U[s * n + i];
}

/* mu = (I - h theta J_F(y_{j+1}))^{-T} lambda_{j+1}; lambda_j = mu + h(1-theta) J_F(y_j)^T mu;
   dA_j += U0^T y_j + U1^T y_{j+1} with U0 = h(1-theta) s'(z_j).mu, U1 = h theta s'(z_{j+1}).mu. */
PetscErrorCode TNNetworkBlockAdjointStep(TNNetwork net, PetscInt j, PetscInt B, const PetscScalar *yj,
                                         const PetscScalar *yj1, const PetscScalar *Fj, const PetscScalar *Fn,
                                         const PetscScalar *lambda_in, PetscScalar *lambda_out, PetscScalar *grad,
                                         PetscBool *ok)
{
  const TNModelConfig *c = &net->model->cfg;
  const PetscInt       n = c->n, N = B * n;
  TNBlockLayer         L;
  TNParams             g;
  PetscScalar         *mu = net->mu, *U0 = net->U, *U1 = net->U + N, *dA;
  const PetscReal      w0 = 1 - c->theta, w1 = c->theta;

  PetscFunctionBegin;
  BlockLayer(net, j, &L);
  if (grad) TNModelParams(net->model, grad, &g);
  *ok = PETSC_TRUE;
  if (w1 > 0) {
    PetscReal res;
    TNActivationDerivative(L.act, N, Fn, net->D);
    PetscCall(PetscLogEventBegin(TN_EVENT_ADJOINT, 0, 0, 0, 0));
    PetscCall(TNBlockSolverAdjoint(net->solver, &L, B, net->D, lambda_in, mu, ok, &res));
    PetscCall(PetscLogEventEnd(TN_EVENT_ADJOINT, 0, 0, 0, 0));
    if (!*ok) {
      PetscCall(PetscSNPrintf(net->failure, sizeof net->failure, "block %" PetscInt_FMT " adjoint solve did not converge: residual %.3e", j, (double)res));
      PetscFunctionReturn(0);
    }
    for (PetscInt i = 0; i < N; i++) U1[i] = L.h * w1 * net->D[i] * mu[i];
  } else mu = (PetscScalar *)lambda_in;
  if (w0 > 0) {
    TNActivationDerivative(L.act, N, Fj, U0);
    for (PetscInt i = 0; i < N; i++) U0[i] *= L.h * w0 * mu[i];
  }

  /* the weight gradient of block j, before lambda_out may overwrite lambda_in (skipped while
     MGRIT iterates on the adjoints alone) */
  if (!grad) goto adjoint;
  dA = c->antisymmetric ? net->G : g.W + (j - net->model->jlo) * n * n;
  if (c->antisymmetric) PetscCall(PetscArrayzero(dA, n * n));
  if (w0 > 0 && w1 > 0 && yj1 == yj + N) TNRowsOuterAdd(2 * B, n, n, 1.0, U0, yj, dA); /* one GEMM over [y_j; y_{j+1}] */
  else {
    if (w0 > 0) TNRowsOuterAdd(B, n, n, 1.0, U0, yj, dA);
    if (w1 > 0) TNRowsOuterAdd(B, n, n, 1.0, U1, yj1, dA);
  }
  if (c->antisymmetric)
    for (PetscInt i = 0; i < n; i++)
      for (PetscInt k = 0; k < n; k++) g.W[(j - net->model->jlo) * n * n + i * n + k] += dA[i * n + k] - dA[k * n + i];
  if (w0 > 0) AddColumnSums(B, n, U0, g.b + (j - net->model->jlo) * n);
  if (w1 > 0) AddColumnSums(B, n, U1, g.b + (j - net->model->jlo) * n);

adjoint:
  if (lambda_out != mu) PetscCall(PetscArraycpy(lambda_out, mu, N));
  if (w0 > 0) TNRowsApplyTranspose(B, n, n, 1.0, U0, L.A, 1.0, lambda_out);
  PetscFunctionReturn(0);
}

/* Between neighbouring depth ranks (direction +1: to the next, -1: from the previous) a state
   travels with a flag saying whether the sender failed; a rank that receives a failure passes
   it on without computing, so no rank waits for a message that never comes. */
static PetscErrorCode DepthSend(TNNetwork net, PetscInt S, const PetscScalar *y, int tag, int direction, PetscBool ok)
{
  PetscMPIInt rank;

  PetscFunctionBegin;
  PetscCallMPI(MPI_Comm_rank(net->model->depth, &rank));
  if (ok) PetscCall(PetscArraycpy(net->msg, y, S));
  net->msg[S] = ok ? 0 : 1;
  PetscCallMPI(MPI_Send(net->msg, (PetscMPIInt)(S + 1), MPIU_SCALAR, rank + direction, tag, net->model->depth));
  PetscFunctionReturn(0);
}

static PetscErrorCode DepthReceive(TNNetwork net, PetscInt S, PetscScalar *y, int tag, int direction, PetscBool *ok)
{
  PetscMPIInt rank;

  PetscFunctionBegin;
  PetscCallMPI(MPI_Comm_rank(net->model->depth, &rank));
  PetscCallMPI(MPI_Recv(net->msg, (PetscMPIInt)(S + 1), MPIU_SCALAR, rank + direction, tag, net->model->depth, MPI_STATUS_IGNORE));
  if (net->msg[S] != 0) *ok = PETSC_FALSE;
  else PetscCall(PetscArraycpy(y, net->msg, S));
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

PetscErrorCode TNNetworkForward(TNNetwork net, PetscInt B, const PetscReal *X, PetscReal *out, PetscBool *ok)
{
  TNModel              M = net->model;
  const TNModelConfig *c = &M->cfg;
  const PetscInt       S = B * c->n, s = net->stride, nseg = SegmentCount(net);

  PetscFunctionBegin;
  PetscCheck(B <= net->Bmax, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE, "batch %" PetscInt_FMT " exceeds %" PetscInt_FMT, B, net->Bmax);
  if (!net->Y) PetscCall(NetworkAllocate(net));
  PetscCall(PetscLogEventBegin(TN_EVENT_FORWARD, 0, 0, 0, 0));
  net->failure[0] = 0;
  *ok             = PETSC_TRUE;
  if (c->antisymmetric)
    for (PetscInt j = M->jlo; j < M->jhi; j++) TNModelBlockOperator(M, j, net->A + (j - M->jlo) * c->n * c->n);
  if (net->depth_solver == TN_DEPTH_MGRIT) {
    PetscCall(ForwardMGRIT(net, B, X, out, ok));
    net->forward_ok = *ok;
    PetscCall(PetscLogEventEnd(TN_EVENT_FORWARD, 0, 0, 0, 0));
    PetscFunctionReturn(0);
  }
  if (M->jlo == 0) {
    TNRowsApply(B, c->n, c->d, X, M->p.K, M->p.kb, net->Y);
    TNActivate(c->opening_act, S, net->Y, net->Y);
  } else PetscCall(DepthReceive(net, S, net->Y, 21, -1, ok));
  for (PetscInt k = 0; k < nseg && *ok; k++) {
    /* segment k starts where segment k-1 (always of full length) ended */
    if (k > 0) PetscCall(PetscArraycpy(net->Y, net->Y + s * S, S));
    if (net->CK && k < nseg - 1) PetscCall(PetscArraycpy(net->CK + k * S, net->Y, S));
    PetscCall(SegmentForward(net, k, B, ok));
  }
  /* y at the last block held here: the closing layer's input, or the next depth rank's */
  if (M->jhi == c->L) {
    if (*ok) TNRowsApply(B, c->m, c->n, net->Y + (LocalBlocks(net) - (nseg - 1) * s) * S, M->p.C, M->p.c, out);
  } else PetscCall(DepthSend(net, S, net->Y + (LocalBlocks(net) - (nseg - 1) * s) * S, 21, +1, *ok));
  net->forward_ok = *ok;
  PetscCall(PetscLogEventEnd(TN_EVENT_FORWARD, 0, 0, 0, 0));
  PetscFunctionReturn(0);
}

/* Largest |a - b| of two arrays; NaN wins, so a failed reversal cannot pass for a good one. */
static PetscReal MaxAbsDifference(PetscInt N, const PetscScalar *a, const PetscScalar *b)
{
  PetscReal err = 0;

  for (PetscInt i = 0; i < N; i++) {
    const PetscReal d = PetscAbsScalar(a[i] - b[i]);
    if (!(d <= err)) err = d;
  }
  return err;
}

PetscErrorCode TNNetworkBackward(TNNetwork net, PetscInt B, const PetscReal *X, const PetscReal *dout, PetscScalar *grad,
                                 PetscBool *ok)
{
  TNModel              M = net->model;
  const TNModelConfig *c = &M->cfg;
  const PetscInt       S = B * c->n, s = net->stride, nseg = SegmentCount(net);
  const PetscScalar   *y0 = net->Y;
  TNParams             g;

  PetscFunctionBegin;
  PetscCall(PetscLogEventBegin(TN_EVENT_BACKWARD, 0, 0, 0, 0));
  TNModelParams(M, grad, &g);
  /* across depth a failed forward pass still takes part, to pass the failure on */
  *ok = net->forward_ok;
  if (*ok) net->failure[0] = 0;
  if (net->depth_solver == TN_DEPTH_MGRIT) {
    /* the forward MGRIT solve agreed on failure across depth: nobody is left waiting */
    if (*ok) PetscCall(BackwardMGRIT(net, B, X, dout, grad, ok));
    PetscCall(PetscLogEventEnd(TN_EVENT_BACKWARD, 0, 0, 0, 0));
    PetscFunctionReturn(0);
  }
  if (M->jhi == c->L) {
    /* closing layer: dC += dout^T y_L, dc += sum dout, lambda_L = dout C */
    if (*ok) {
      TNRowsOuterAdd(B, c->m, c->n, 1.0, dout, net->Y + (LocalBlocks(net) - (nseg - 1) * s) * S, g.C);
      AddColumnSums(B, c->m, dout, g.c);
      TNRowsApplyTranspose(B, c->m, c->n, 1.0, dout, M->p.C, 0.0, net->lam);
    }
  } else {
    PetscBool sent_ok = PETSC_TRUE;
    PetscCall(DepthReceive(net, S, net->lam, 22, +1, &sent_ok));
    *ok = *ok && sent_ok ? PETSC_TRUE : PETSC_FALSE;
  }
  for (PetscInt k = nseg - 1; k >= 0 && *ok; k--) {
    const PetscInt a = M->jlo + k * s, e = PetscMin(a + s, M->jhi);
    if (k < nseg - 1) PetscCall(SegmentRestore(net, k, B, ok));
    for (PetscInt j = e - 1; j >= a && *ok; j--) {
      const PetscInt i = j - a;
      PetscCall(TNNetworkBlockAdjointStep(net, j, B, net->Y + i * S, net->Y + (i + 1) * S, net->FJ + i * S, net->FN ? net->FN + i * S : NULL,
                                          net->lam, net->lam, grad, ok));
    }
  }
  if (M->jlo > 0) {
    PetscCall(DepthSend(net, S, net->lam, 22, -1, *ok));
    PetscCall(PetscLogEventEnd(TN_EVENT_BACKWARD, 0, 0, 0, 0));
    PetscFunctionReturn(0);
  }
  if (!*ok) {
    PetscCall(PetscLogEventEnd(TN_EVENT_BACKWARD, 0, 0, 0, 0));
    PetscFunctionReturn(0);
  }
  if (net->mode == TN_MEMORY_REVERSIBLE && nseg > 1) {
    /* y_0 is recomputable from the input: how far the reversal drifted, and the exact y_0 for
       the opening layer's derivative (U is free once the blocks are done) */
    PetscScalar *exact = net->U;
    PetscReal    err;
    TNRowsApply(B, c->n, c->d, X, M->p.K, M->p.kb, exact);
    TNActivate(c->opening_act, S, exact, exact);
    err        = MaxAbsDifference(S, exact, net->Y);
    net->recon = PetscIsNanReal(err) || err > net->recon ? err : net->recon;
    if (!(err <= net->tol)) PetscCall(PetscInfo(NULL, "reconstruction error of y_0 %g exceeds %g\n", (double)err, (double)net->tol));
    y0 = exact;
  }
  /* opening layer: dz_0 = lambda_0 . s0'(K x + k) */
  TNActivationDerivative(c->opening_act, S, y0, net->D);
  for (PetscInt i = 0; i < S; i++) net->D[i] *= net->lam[i];
  TNRowsOuterAdd(B, c->n, c->d, 1.0, net->D, X, g.K);
  AddColumnSums(B, c->n, net->D, g.kb);
  PetscCall(PetscLogEventEnd(TN_EVENT_BACKWARD, 0, 0, 0, 0));
  PetscFunctionReturn(0);
}

void TNLossEvaluate(TNTask task, PetscInt B, PetscInt m, const PetscReal *out, const PetscInt *labels, const PetscReal *targets,
                    PetscReal scale, PetscReal *loss_sum, PetscInt *correct, PetscReal *dout)
{
  PetscReal loss = 0;
  PetscInt  right = 0;

  for (PetscInt s = 0; s < B; s++) {
    const PetscReal *z = out + s * m;
    if (task == TN_TASK_CLASSIFICATION) {
      /* softmax cross-entropy: log sum exp(z) - z_label, shifted by max z against overflow */
      PetscInt  arg = 0;
      PetscReal zmax = z[0], sum = 0;
      for (PetscInt k = 1; k < m; k++)
        if (z[k] > zmax) zmax = z[k], arg = k;
      for (PetscInt k = 0; k < m; k++) sum += PetscExpReal(z[k] - zmax);
      loss += PetscLogReal(sum) + zmax - z[labels[s]];
      right += arg == labels[s];
      if (dout)
        for (PetscInt k = 0; k < m; k++) dout[s * m + k] = scale * (PetscExpReal(z[k] - zmax) / sum - (k == labels[s]));
    } else {
      for (PetscInt k = 0; k < m; k++) {
        const PetscReal e = z[k] - targets[s * m + k];
        loss += e * e;
        if (dout) dout[s * m + k] = scale * 2 * e;
      }
    }
  }
  *loss_sum = loss;
  *correct  = right;
}

/* ---- MGRIT across depth ---- */

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
    BlockLayer(net, net->model->jlo, L);
    L->A = net->spanAb + k * (n * n + n);
    L->b = L->A + n * n;
    L->h *= (PetscReal)(j1 - j0);
    return;
  }
  BlockLayer(net, j0, L);
  L->h *= (PetscReal)(j1 - j0);
  if (net->coarse_weights == TN_COARSE_AVERAGE && j1 - j0 > 1) {
    TNBlockLayer Lj;
    for (PetscInt i = 0; i < n * n; i++) net->Ac[i] = 0;
    for (PetscInt i = 0; i < n; i++) net->bc[i] = 0;
    for (PetscInt j = j0; j < j1; j++) {
      BlockLayer(net, j, &Lj);
      for (PetscInt i = 0; i < n * n; i++) net->Ac[i] += Lj.A[i] / (j1 - j0);
      for (PetscInt i = 0; i < n; i++) net->bc[i] += Lj.b[i] / (j1 - j0);
    }
    L->A = net->Ac;
    L->b = net->bc;
  }
}


/* A fine step that fails is a failure of the run. A coarse step only steers the correction: a
   solve that stops short (a step of m^l h can leave Picard's and Newton's range) is used as it
   is, or, if it is not even finite, replaced by no step at all; the fine relaxation still
   drives MGRIT to the fine solution. */
static PetscErrorCode CoarseFailure(TNNetwork net, PetscInt from, PetscInt to, PetscInt S, const PetscScalar *u, PetscScalar *out)
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
  PetscCall(PetscInfo(NULL, "coarse step [%" PetscInt_FMT ", %" PetscInt_FMT ") did not converge; its last iterate is used\n", from, to));
  PetscFunctionReturn(0);
}

static PetscErrorCode MGRITClosing(void *ctx, PetscBool on)
{
  PetscFunctionBegin;
  ((TNNetwork)ctx)->mg_closing = on;
  PetscFunctionReturn(0);
}

/* Forward propagator between points from < to: block `from`, or the coarse step. A fine step
   of the closing sweep leaves F_j(y_j) and F_j(y_{j+1}) where the backward pass reads them. */
static PetscErrorCode MGRITForwardStep(void *ctx, PetscInt from, PetscInt to, const PetscScalar *u, PetscScalar *out)
{
  TNNetwork      net = (TNNetwork)ctx;
  const PetscInt S = net->mgB * net->model->cfg.n, i = from - net->model->jlo;
  const PetscBool keep = net->mg_closing && to == from + 1;
  TNBlockLayer   L;
  PetscBool      ok;

  PetscFunctionBegin;
  CoarseLayer(net, from, to, &L);
  if (to > from + 1) PetscCall(TNBlockSolverSetRough(net->solver, net->coarse_its));
  PetscCall(ThetaSolve(net, from, to == from + 1 ? "forward" : "coarse forward", &L, net->mgB, u, out, keep ? net->FJ + i * S : net->U,
                       keep && net->FN ? net->FN + i * S : net->U + S, &ok));
  PetscCall(TNBlockSolverSetRough(net->solver, 0));
  if (!ok) PetscCall(CoarseFailure(net, from, to, S, u, out));
  PetscFunctionReturn(0);
}

/* Adjoint propagator between mirrored points from < to (fine index L - p): block j = L - to, or
   the coarse adjoint step over blocks [L - to, L - from), linearised at the fine states at the
   interval's ends: mu = (I - H theta J(y_j1))^{-T} lambda, lambda_j0 = mu + H(1-theta) J(y_j0)^T mu. */
static PetscErrorCode MGRITAdjointStep(void *ctx, PetscInt from, PetscInt to, const PetscScalar *lam, PetscScalar *out)
{
  TNNetwork            net = (TNNetwork)ctx;
  TNModel              M   = net->model;
  const TNModelConfig *c   = &M->cfg;
  const PetscInt       B = net->mgB, n = c->n, N = B * n, S = N, j0 = c->L - to, j1 = c->L - from;
  const PetscScalar   *y0 = net->Y + (j0 - M->jlo) * S, *y1 = net->Y + (j1 - M->jlo) * S;
  TNBlockLayer         L;
  PetscBool            ok = PETSC_TRUE;
  PetscReal            res;

  PetscFunctionBegin;
  if (j1 > M->jhi) y1 = net->spanY + SpanIndex(net, j0, j1) * net->Bmax * n;
  if (j1 == j0 + 1) {
    /* in the closing sweep: block j0's weight gradient, from lambda_{j0+1} (its last step's) */
    if (net->mg_closing) {
      TNParams g;
      TNModelParams(M, net->Gmg, &g);
      PetscCall(PetscArrayzero(g.W + (j0 - M->jlo) * n * n, n * n));
      PetscCall(PetscArrayzero(g.b + (j0 - M->jlo) * n, n));
    }
    PetscCall(TNNetworkBlockAdjointStep(net, j0, B, y0, y1, net->FJ + (j0 - M->jlo) * S, net->FN ? net->FN + (j0 - M->jlo) * S : NULL, lam, out,
                                        net->mg_closing ? net->Gmg : NULL, &ok));
    if (!ok) net->mg_ok = PETSC_FALSE;
    PetscFunctionReturn(0);
  }
  CoarseLayer(net, j0, j1, &L);
  /* U holds s'(z) at both ends: U[0..N) at y_j0, U[N..2N) at y_j1 */
  TNRowsApply(B, n, n, y0, L.A, L.b, net->U);
  TNActivate(L.act, N, net->U, net->U);
  TNActivationDerivative(L.act, N, net->U, net->U);
  TNRowsApply(B, n, n, y1, L.A, L.b, net->U + N);
  TNActivate(L.act, N, net->U + N, net->U + N);
  TNActivationDerivative(L.act, N, net->U + N, net->U + N);
  if (L.theta > 0) {
    PetscCall(TNBlockSolverSetRough(net->solver, net->coarse_its));
    PetscCall(TNBlockSolverAdjoint(net->solver, &L, B, net->U + N, lam, net->mu, &ok, &res));
    PetscCall(TNBlockSolverSetRough(net->solver, 0));
    if (!ok) PetscCall(CoarseFailure(net, from, to, N, lam, net->mu));
  } else PetscCall(PetscArraycpy(net->mu, lam, N));
  PetscCall(PetscArraycpy(out, net->mu, N));
  if (L.theta < 1) {
    for (PetscInt i = 0; i < N; i++) net->D[i] = L.h * (1 - L.theta) * net->U[i] * net->mu[i];
    TNRowsApplyTranspose(B, n, n, 1.0, net->D, L.A, 1.0, out);
  }
  PetscFunctionReturn(0);
}

/* The coarse intervals of every level whose blocks lie on more than one depth rank. */
static PetscErrorCode SpanSetUp(TNNetwork net)
{
  TNModel        M = net->model;
  const PetscInt n = M->cfg.n;
  PetscInt       nlv, cap = 0;
  PetscMPIInt    size;

  PetscFunctionBegin;
  if (M->depth == MPI_COMM_NULL) PetscFunctionReturn(0);
  PetscCallMPI(MPI_Comm_size(M->depth, &size));
  PetscCall(TNMGRITGetLevels(net->mg_fwd, &nlv));
  for (PetscInt l = 1; l < nlv; l++) {
    PetscInt        np;
    const PetscInt *pos;
    PetscCall(TNMGRITGetLevelPoints(net->mg_fwd, l, &np, &pos));
    cap += np;
  }
  PetscCall(PetscMalloc3(2 * cap + 2, &net->span, cap + 1, &net->span_to, cap + 1, &net->span_from));
  for (PetscInt l = 1; l < nlv; l++) {
    PetscInt        np;
    const PetscInt *pos;
    PetscCall(TNMGRITGetLevelPoints(net->mg_fwd, l, &np, &pos));
    for (PetscInt P = 1; P <= np; P++) {
      const PetscInt j0 = pos[P - 1], j1 = pos[P];
      PetscMPIInt    r0 = 0, r1 = 0;
      PetscInt       lo, hi;
      /* r0 holds block j0, r1 block j1 - 1 (and so the point j1) */
      for (PetscMPIInt r = 0; r < size; r++) {
        TNGridSplit(M->cfg.L, size, r, &lo, &hi);
        if (lo <= j0 && j0 < hi) r0 = r;
        if (lo < j1 && j1 <= hi) r1 = r;
      }
      if (j1 - j0 < 2 || r0 == r1 || SpanIndex(net, j0, j1) >= 0) continue;
      net->span[2 * net->nspan]     = j0;
      net->span[2 * net->nspan + 1] = j1;
      net->span_from[net->nspan]    = r1;
      net->span_to[net->nspan]      = r0;
      net->nspan++;
    }
  }
  PetscCall(PetscMalloc3((net->nspan + 1) * (n * n + n), &net->spanAb, (net->nspan + 1) * net->Bmax * n, &net->spanY, 2 * net->nspan + 1, &net->span_req));
  PetscFunctionReturn(0);
}

/* The coarse operators of the intervals across ranks: each rank's share of the mean (average)
   or the first block's (inject), summed over the depth ranks. */
static PetscErrorCode SpanOperators(TNNetwork net)
{
  TNModel        M = net->model;
  const PetscInt n = M->cfg.n, w = n * n + n;

  PetscFunctionBegin;
  if (!net->nspan) PetscFunctionReturn(0);
  PetscCall(PetscArrayzero(net->spanAb, net->nspan * w));
  for (PetscInt k = 0; k < net->nspan; k++) {
    const PetscInt j0 = net->span[2 * k], j1 = net->span[2 * k + 1];
    const PetscInt a = PetscMax(j0, M->jlo), e = PetscMin(j1, M->jhi);
    for (PetscInt j = a; j < e; j++) {
      TNBlockLayer   Lj;
      const PetscReal wt = net->coarse_weights == TN_COARSE_AVERAGE ? 1.0 / (j1 - j0) : (j == j0 ? 1.0 : 0.0);
      if (wt == 0) continue;
      BlockLayer(net, j, &Lj);
      for (PetscInt i = 0; i < n * n; i++) net->spanAb[k * w + i] += wt * Lj.A[i];
      for (PetscInt i = 0; i < n; i++) net->spanAb[k * w + n * n + i] += wt * Lj.b[i];
    }
  }
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, net->spanAb, (PetscMPIInt)(net->nspan * w), MPIU_SCALAR, MPI_SUM, net->model->depth));
  PetscFunctionReturn(0);
}

/* After the forward solve: y_j1 of each interval across ranks to the rank holding block j0. */
static PetscErrorCode SpanStates(TNNetwork net, PetscInt B)
{
  TNModel        M = net->model;
  const PetscInt S = B * M->cfg.n;
  PetscMPIInt    rank, nreq = 0;
  MPI_Request   *req = net->span_req;

  PetscFunctionBegin;
  if (!net->nspan) PetscFunctionReturn(0);
  PetscCallMPI(MPI_Comm_rank(M->depth, &rank));
  for (PetscInt k = 0; k < net->nspan; k++) {
    const PetscInt j1 = net->span[2 * k + 1];
    if (net->span_to[k] == rank)
      PetscCallMPI(MPI_Irecv(net->spanY + k * net->Bmax * M->cfg.n, (PetscMPIInt)S, MPIU_SCALAR, net->span_from[k], 40, M->depth, &req[nreq++]));
    if (net->span_from[k] == rank)
      PetscCallMPI(MPI_Isend(net->Y + (j1 - M->jlo) * S, (PetscMPIInt)S, MPIU_SCALAR, net->span_to[k], 40, M->depth, &req[nreq++]));
  }
  PetscCallMPI(MPI_Waitall(nreq, req, MPI_STATUSES_IGNORE));
  PetscFunctionReturn(0);
}

PetscErrorCode TNNetworkDepthOwnershipFor(MPI_Comm depth, PetscInt L, TNDepthSolver solver, PetscInt *jlo, PetscInt *jhi)
{
  PetscFunctionBegin;
  if (solver == TN_DEPTH_SEQUENTIAL) PetscCall(TNNetworkDepthOwnership(depth, L, jlo, jhi));
  else {
    TNMGRIT    mg;
    TNMGRITApp none = {0, NULL, NULL, NULL};
    PetscCall(TNMGRITCreate(depth, L, PETSC_FALSE, &none, &mg));
    PetscCall(TNMGRITSetFromOptions(mg));
    PetscCall(TNMGRITGetOwnership(mg, jlo, jhi));
    PetscCall(TNMGRITDestroy(&mg));
  }
  PetscFunctionReturn(0);
}

PetscErrorCode TNNetworkMGRITOptions(TNCoarseWeight *weights, PetscInt *coarse_its, TNMGRIT mg)
{
  PetscFunctionBegin;
  PetscOptionsBegin(PETSC_COMM_WORLD, NULL, "MGRIT across depth", "thetanet");
  PetscCall(PetscOptionsEnum("-mgrit_coarse_weights", "Weights of a coarse step: its first block's (inject) or the mean of its blocks' (average)", "",
                             TNCoarseWeights, (PetscEnum)*weights, (PetscEnum *)weights, NULL));
  PetscCall(PetscOptionsInt("-mgrit_coarse_its", "Most iterations of a coarse step's block solve (it only steers the correction: no fallback)", "",
                            *coarse_its, coarse_its, NULL));
  PetscOptionsEnd();
  PetscCheck(*coarse_its >= 1, PETSC_COMM_WORLD, TN_ERR_USER, "-mgrit_coarse_its must be at least 1, got %" PetscInt_FMT, *coarse_its);
  if (mg) PetscCall(TNMGRITSetFromOptions(mg));
  PetscFunctionReturn(0);
}

PetscErrorCode TNNetworkSetDepthSolver(TNNetwork net, TNDepthSolver solver)
{
  TNModel        M = net->model;
  const PetscInt n = M->cfg.n, S = net->Bmax * n;
  TNMGRITApp     fwd = {S, net, MGRITForwardStep, MGRITClosing}, adj = {S, net, MGRITAdjointStep, MGRITClosing};
  PetscInt       lo, hi;
  PetscMPIInt    rank, size;

  PetscFunctionBegin;
  net->depth_solver = solver;
  if (solver == TN_DEPTH_SEQUENTIAL) PetscFunctionReturn(0);
  PetscCheck(net->mode == TN_MEMORY_STORE, PETSC_COMM_SELF, TN_ERR_USER, "-depth_solver mgrit keeps every state: use -memory store");
  net->coarse_its = TN_MGRIT_COARSE_ITS;
  PetscCall(TNNetworkMGRITOptions(&net->coarse_weights, &net->coarse_its, NULL));
  if (M->depth == MPI_COMM_NULL) {
    /* one rank: MGRIT still runs, serially (the same iterations, for studies and tests) */
    net->reversed = MPI_COMM_NULL;
    PetscCall(TNMGRITCreate(PETSC_COMM_SELF, M->cfg.L, PETSC_FALSE, &fwd, &net->mg_fwd));
    PetscCall(TNMGRITCreate(PETSC_COMM_SELF, M->cfg.L, PETSC_TRUE, &adj, &net->mg_adj));
  } else {
    PetscCallMPI(MPI_Comm_rank(M->depth, &rank));
    PetscCallMPI(MPI_Comm_size(M->depth, &size));
    PetscCallMPI(MPI_Comm_split(M->depth, 0, size - 1 - rank, &net->reversed));
    PetscCall(TNMGRITCreate(M->depth, M->cfg.L, PETSC_FALSE, &fwd, &net->mg_fwd));
    PetscCall(TNMGRITCreate(net->reversed, M->cfg.L, PETSC_TRUE, &adj, &net->mg_adj));
  }
  PetscCall(TNMGRITSetFromOptions(net->mg_fwd));
  PetscCall(TNMGRITSetFromOptions(net->mg_adj));
  PetscCall(TNMGRITSetUp(net->mg_fwd));
  PetscCall(TNMGRITSetUp(net->mg_adj));
  PetscCall(TNMGRITGetOwnership(net->mg_fwd, &lo, &hi));
  PetscCheck(lo == M->jlo && hi == M->jhi, PETSC_COMM_SELF, PETSC_ERR_PLIB, "model blocks [%" PetscInt_FMT ", %" PetscInt_FMT ") but MGRIT owns [%" PetscInt_FMT ", %" PetscInt_FMT ")",
             M->jlo, M->jhi, lo, hi);
  PetscCall(TNMGRITGetOwnership(net->mg_adj, &lo, &hi));
  PetscCheck(lo == M->cfg.L - M->jhi && hi == M->cfg.L - M->jlo, PETSC_COMM_SELF, PETSC_ERR_PLIB, "adjoint MGRIT does not mirror the forward ownership");
  PetscCall(PetscMalloc1((LocalBlocks(net) + 1) * S, &net->LAM));
  PetscCall(PetscCalloc1(M->nparams, &net->Gmg));
  PetscCall(PetscMalloc2(n * n, &net->Ac, n, &net->bc));
  PetscCall(SpanSetUp(net));
  PetscFunctionReturn(0);
}

PetscErrorCode TNNetworkGetMGRITCounts(TNNetwork net, PetscInt64 *its, PetscInt64 *solves, PetscReal *residual)
{
  PetscFunctionBegin;
  *its           = net->mg_its;
  *solves        = net->mg_solves;
  *residual      = net->mg_res;
  net->mg_res    = 0;
  net->mg_its    = 0;
  net->mg_solves = 0;
  PetscFunctionReturn(0);
}

PetscErrorCode TNNetworkGetMGRITFactor(TNNetwork net, PetscReal *logsum, PetscInt64 *n)
{
  PetscFunctionBegin;
  *logsum            = net->mg_logfactor;
  *n                 = net->mg_nfactor;
  net->mg_logfactor = 0;
  net->mg_nfactor   = 0;
  PetscFunctionReturn(0);
}

/* Every rank's points start from u0 of the first rank (y_0 forward, lambda_L backward), unless
   the nested start needs no start values. */
static PetscErrorCode MGRITSolve(TNNetwork net, TNMGRIT mg, MPI_Comm comm, PetscInt B, PetscScalar *u, PetscBool *ok)
{
  const PetscInt S = B * net->model->cfg.n, npts = LocalBlocks(net) + 1;
  TNMGRITApp     app;
  PetscInt       its;
  PetscReal      res;
  PetscBool      skip;

  PetscFunctionBegin;
  net->mgB   = B;
  net->mg_ok = PETSC_TRUE;
  PetscCall(TNMGRITGetSkip(mg, &skip));
  if (!skip) {
    if (comm != MPI_COMM_NULL) PetscCallMPI(MPI_Bcast(u, (PetscMPIInt)S, MPIU_SCALAR, 0, comm));
    for (PetscInt p = 1; p < npts; p++) PetscCall(PetscArraycpy(u + p * S, u, S));
  }
  app      = (TNMGRITApp){S, net, mg == net->mg_fwd ? MGRITForwardStep : MGRITAdjointStep, MGRITClosing};
  PetscCall(TNMGRITSetApp(mg, &app));
  PetscCall(TNMGRITSolve(mg, u, u, &its, &res));
  {
    /* the mean reduction of the residual per iteration: (r_last / r_first)^(1/(its-1)) */
    PetscInt         nh;
    const PetscReal *hist;
    PetscCall(TNMGRITGetResidualHistory(mg, &nh, &hist));
    if (nh >= 2 && hist[0] > 0 && hist[nh - 1] > 0) {
      net->mg_logfactor += PetscLogReal(hist[nh - 1] / hist[0]) / (nh - 1);
      net->mg_nfactor++;
    }
    PetscCall(PetscInfo(NULL, "MGRIT %s solve: %" PetscInt_FMT " iterations, C-point residual %.3e -> %.3e\n", mg == net->mg_fwd ? "forward" : "adjoint", its,
                        nh ? (double)hist[0] : 0.0, (double)res));
  }
  net->mg_its += its;
  net->mg_solves++;
  net->mg_res = PetscMax(net->mg_res, res);
  if (comm != MPI_COMM_NULL) PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &net->mg_ok, 1, MPIU_BOOL, MPI_LAND, comm));
  *ok = net->mg_ok;
  if (!*ok && !net->failure[0]) PetscCall(PetscSNPrintf(net->failure, sizeof net->failure, "a block solve within MGRIT did not converge"));
  PetscFunctionReturn(0);
}

/* F_j(y_j) and F_j(y_{j+1}) of local block i from the states. */
static void StepValues(TNNetwork net, PetscInt B, PetscInt i, PetscBool from, PetscBool to)
{
  const PetscInt S = B * net->model->cfg.n, n = net->model->cfg.n;
  TNBlockLayer   L;

  BlockLayer(net, net->model->jlo + i, &L);
  if (from) {
    TNRowsApply(B, n, n, net->Y + i * S, L.A, L.b, net->rhs);
    TNActivate(L.act, S, net->rhs, net->FJ + i * S);
  }
  if (to && net->FN) {
    TNRowsApply(B, n, n, net->Y + (i + 1) * S, L.A, L.b, net->rhs);
    TNActivate(L.act, S, net->rhs, net->FN + i * S);
  }
}

/* MGRIT forward: all states of this rank's points. The closing sweep left the F values the
   backward pass reads, but for the blocks into C-points: their last step went to the residual,
   and y_{j+1} is the C-point's value. */
static PetscErrorCode ForwardMGRIT(TNNetwork net, PetscInt B, const PetscReal *X, PetscReal *out, PetscBool *ok)
{
  TNModel              M = net->model;
  const TNModelConfig *c = &M->cfg;
  const PetscInt       S = B * c->n, nloc = LocalBlocks(net);

  PetscFunctionBegin;
  if (M->jlo == 0) {
    TNRowsApply(B, c->n, c->d, X, M->p.K, M->p.kb, net->Y);
    TNActivate(c->opening_act, S, net->Y, net->Y);
  }
  PetscCall(SpanOperators(net));
  PetscCall(MGRITSolve(net, net->mg_fwd, M->depth, B, net->Y, ok));
  if (!*ok) PetscFunctionReturn(0);
  PetscCall(SpanStates(net, B));
  for (PetscInt i = 0; i < nloc; i++) {
    PetscBool cpoint;
    PetscCall(TNMGRITIsCPoint(net->mg_fwd, M->jlo + i + 1, &cpoint));
    if (cpoint) StepValues(net, B, i, PETSC_FALSE, PETSC_TRUE);
  }
  if (M->jhi == c->L) TNRowsApply(B, c->m, c->n, net->Y + nloc * S, M->p.C, M->p.c, out);
  PetscFunctionReturn(0);
}

/* Adds the local blocks' weight gradients in src to grad. */
static void AddBlockGradients(TNNetwork net, PetscScalar *src, PetscScalar *grad)
{
  const PetscInt n = net->model->cfg.n, nloc = LocalBlocks(net);
  TNParams       s, g;

  TNModelParams(net->model, src, &s);
  TNModelParams(net->model, grad, &g);
  for (PetscInt i = 0; i < nloc * n * n; i++) g.W[i] += s.W[i];
  for (PetscInt i = 0; i < nloc * n; i++) g.b[i] += s.b[i];
}

/* MGRIT backward: the adjoints at this rank's points; each block's weight gradient came from its
   step in the closing sweep, from the final states and adjoints. */
static PetscErrorCode BackwardMGRIT(TNNetwork net, PetscInt B, const PetscReal *X, const PetscReal *dout, PetscScalar *grad, PetscBool *ok)
{
  TNModel              M = net->model;
  const TNModelConfig *c = &M->cfg;
  const PetscInt       S = B * c->n, nloc = LocalBlocks(net);
  TNParams             g;

  PetscFunctionBegin;
  TNModelParams(M, grad, &g);
  if (M->jhi == c->L) {
    TNRowsOuterAdd(B, c->m, c->n, 1.0, dout, net->Y + nloc * S, g.C);
    AddColumnSums(B, c->m, dout, g.c);
    TNRowsApplyTranspose(B, c->m, c->n, 1.0, dout, M->p.C, 0.0, net->LAM);
  }
  PetscCall(MGRITSolve(net, net->mg_adj, net->reversed, B, net->LAM, ok));
  if (*ok) AddBlockGradients(net, net->Gmg, grad);
  if (*ok && M->jlo == 0) {
    const PetscScalar *lam0 = net->LAM + nloc * S;
    TNActivationDerivative(c->opening_act, S, net->Y, net->D);
    for (PetscInt i = 0; i < S; i++) net->D[i] *= lam0[i];
    TNRowsOuterAdd(B, c->n, c->d, 1.0, net->D, X, g.K);
    AddColumnSums(B, c->n, net->D, g.kb);
  }
  PetscFunctionReturn(0);
}

PetscErrorCode TNNetworkMGRITBlockGradients(TNNetwork net, PetscInt B, PetscScalar *grad)
{
  TNModel        M = net->model;
  const PetscInt S = B * M->cfg.n, nloc = LocalBlocks(net);
  PetscBool      ok = PETSC_TRUE;

  PetscFunctionBegin;
  PetscCheck(net->depth_solver == TN_DEPTH_MGRIT, PETSC_COMM_SELF, PETSC_ERR_ARG_WRONGSTATE, "the network does not use -depth_solver mgrit");
  PetscCall(PetscArrayzero(net->Gmg, M->nparams));
  for (PetscInt i = 0; i < nloc && ok; i++) {
    StepValues(net, B, i, PETSC_TRUE, PETSC_TRUE);
    PetscCall(TNNetworkBlockAdjointStep(net, M->jlo + i, B, net->Y + i * S, net->Y + (i + 1) * S, net->FJ + i * S, net->FN ? net->FN + i * S : NULL,
                                        net->LAM + (nloc - i - 1) * S, net->lam, net->Gmg, &ok));
  }
  PetscCheck(ok, PETSC_COMM_SELF, TN_ERR_RUNTIME, "%s", net->failure);
  AddBlockGradients(net, net->Gmg, grad);
  PetscFunctionReturn(0);
}
