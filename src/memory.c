/* The memory modes of DESIGN.md §1: what the forward pass of a batch keeps for its backward pass
   (store, checkpoint, reversible) and how the backward pass gets back the states it did not keep
   (networkimpl.h describes the segments). */
#include "networkimpl.h"

const char *const TNMemoryModes[] = {"store", "reversible", "checkpoint", "TNMemoryMode", "TN_MEMORY_", NULL};

PetscErrorCode TNNetworkSetMemory(TNNetwork net, TNMemoryMode mode, PetscInt stride, PetscReal tol)
{
  PetscFunctionBegin;
  PetscCheck(stride >= 0, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
             "memory stride must be non-negative, got %" PetscInt_FMT, stride);
  PetscCheck(tol > 0, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE, "reconstruction tolerance must be positive, got %g",
             (double)tol);
  PetscCall(TNNetworkMemoryFree(net));
  net->mode      = mode;
  net->stride    = stride;
  net->recon_tol = tol;
  net->recon     = 0;
  net->setup     = PETSC_FALSE;
  PetscFunctionReturn(0);
}

PetscInt TNNetworkSegmentCount(TNNetwork net)
{
  return (TNNetworkLocalBlocks(net) + net->seg - 1) / net->seg;
}

/* The segment buffers and checkpoints of the memory mode, for batches of up to Bmax samples. */
PetscErrorCode TNNetworkMemoryAllocate(TNNetwork net)
{
  const TNModelConfig *c = &net->model->cfg;
  const PetscInt L = TNNetworkLocalBlocks(net), S = net->Bmax * c->n;
  PetscInt nseg;

  PetscFunctionBegin;
  if (net->mode == TN_MEMORY_STORE)
    net->seg = L;
  else if (net->mode == TN_MEMORY_REVERSIBLE)
    net->seg = 1;
  else {
    /* about sqrt(L): the L/s checkpoints and the ~3s arrays of a segment are both O(sqrt(L)) */
    net->seg = net->stride ? PetscMin(net->stride, L) : PetscMax(1, (PetscInt)(PetscSqrtReal((PetscReal)L) + 0.5));
  }
  nseg = TNNetworkSegmentCount(net);
  PetscCall(PetscMalloc1((net->seg + 1) * S, &net->states));
  PetscCall(PetscMalloc1(net->seg * S, &net->Fyj));
  /* an explicit block's reverse solve needs F_j(y_{j+1}) too: its right-hand side and predictor */
  if (c->theta > 0 || net->mode == TN_MEMORY_REVERSIBLE) PetscCall(PetscMalloc1(net->seg * S, &net->Fyj1));
  if (net->mode == TN_MEMORY_CHECKPOINT && nseg > 1) PetscCall(PetscMalloc1((nseg - 1) * S, &net->checkpoints));
  PetscFunctionReturn(0);
}

PetscErrorCode TNNetworkMemoryFree(TNNetwork net)
{
  PetscFunctionBegin;
  PetscCall(PetscFree(net->states));
  PetscCall(PetscFree(net->Fyj));
  PetscCall(PetscFree(net->Fyj1));
  PetscCall(PetscFree(net->checkpoints));
  PetscFunctionReturn(0);
}

PetscErrorCode TNNetworkSegmentForward(TNNetwork net, PetscInt k, PetscInt B, PetscBool *ok)
{
  const PetscInt S = B * net->model->cfg.n, jlo = net->model->jlo, a = jlo + k * net->seg,
                 e = PetscMin(a + net->seg, net->model->jhi);

  PetscFunctionBegin;
  for (PetscInt j = a; j < e && *ok; j++) {
    const PetscInt i = j - a;
    PetscCall(TNNetworkBlockStep(net, j, B, net->states + i * S, net->states + (i + 1) * S, net->Fyj + i * S,
                                 net->Fyj1 ? net->Fyj1 + i * S : NULL, ok));
  }
  PetscFunctionReturn(0);
}

/* On entry the states hold the first state of segment k+1, which is the last of segment k. */
PetscErrorCode TNNetworkSegmentRestore(TNNetwork net, PetscInt k, PetscInt B, PetscBool *ok)
{
  const PetscInt S = B * net->model->cfg.n;

  PetscFunctionBegin;
  if (net->mode == TN_MEMORY_CHECKPOINT) {
    PetscCall(PetscArraycpy(net->states, net->checkpoints + k * S, S));
    PetscCall(TNNetworkSegmentForward(net, k, B, ok));
  } else {
    /* reversible: segment k is the k-th block held here alone */
    PetscCall(PetscArraycpy(net->states + S, net->states, S));
    PetscCall(
        TNNetworkBlockReverseStep(net, net->model->jlo + k, B, net->states + S, net->states, net->Fyj, net->Fyj1, ok));
  }
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

PetscErrorCode TNNetworkReconstructionCheck(TNNetwork net, PetscInt S, const PetscScalar *exact)
{
  const PetscReal err = MaxAbsDifference(S, exact, net->states);

  PetscFunctionBegin;
  net->recon = PetscIsNanReal(err) || err > net->recon ? err : net->recon;
  if (!(err <= net->recon_tol))
    PetscCall(PetscInfo(NULL, "reconstruction error of y_0 %g exceeds %g\n", (double)err, (double)net->recon_tol));
  PetscFunctionReturn(0);
}
