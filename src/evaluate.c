/* A whole data set through a network: each data rank takes a contiguous share of the rows,
   chunk by chunk; the loss statistics come from the last depth rank and a failure from any rank,
   all in one reduction. */
#include "evaluate.h"
#include "rng.h"
#include "errors.h"

PetscReal TNLossDivisor(TNTask task, PetscInt N, PetscInt m)
{
  return (PetscReal)N * (task == TN_TASK_REGRESSION ? m : 1);
}

/* The evaluation; a failure is agreed on by all ranks: raised (failed == NULL) or returned. */
static PetscErrorCode Evaluate(TNNetwork net, const TNGrid *grid, TNDataset D, PetscInt chunk, const char *where,
                               const TNInputNoise *noise, PetscReal *loss, PetscReal *accuracy, PetscScalar *grad,
                               PetscReal *predictions, PetscBool *failed, char *failure, size_t len)
{
  const TNModelConfig *c;
  TNModel M;
  TNDatasetInfo info;
  PetscInt start, end, m, nparams;
  PetscReal sums[3] = {0, 0, 0}, *X, *Y, *out, *dout, divisor;
  PetscInt *labels, *idx;
  PetscBool ok = PETSC_TRUE;
  char message[512];

  PetscFunctionBegin;
  PetscCall(TNNetworkGetModel(net, &M));
  PetscCall(TNModelGetConfig(M, &c));
  PetscCall(TNModelGetParameters(M, &nparams, NULL));
  PetscCall(TNDatasetGetInfo(D, &info));
  m       = c->m;
  divisor = TNLossDivisor(info.task, info.N, info.m);
  TNGridSplit(info.N, grid->data_size, grid->data_rank, &start, &end);
  PetscCall(
      PetscMalloc6(chunk * info.d, &X, chunk * m, &Y, chunk * m, &out, chunk * m, &dout, chunk, &labels, chunk, &idx));
  for (PetscInt s0 = start; s0 < end && ok; s0 += chunk) {
    const PetscInt B = PetscMin(chunk, end - s0);
    PetscReal l;
    PetscInt k;
    for (PetscInt s = 0; s < B; s++) idx[s] = s0 + s - info.offset;
    PetscCall(TNDatasetGetRows(D, B, idx, X, labels, Y));
    if (noise && noise->std > 0) {
      /* entry (row, k) of draw `draw`: a function of the global row, so the same on any ranks */
      const uint64_t stream = ((uint64_t)noise->draw << 8) | TN_STREAM_NOISE;
      for (PetscInt s = 0; s < B; s++)
        for (PetscInt k = 0; k < info.d; k++)
          X[s * info.d + k] += noise->std * TNNormal((uint64_t)noise->seed, stream, (uint64_t)(s0 + s) * info.d + k);
    }
    PetscCall(TNNetworkForward(net, B, X, out, &ok));
    /* the depth ranks of this slice take the next chunk together or stop together */
    if (grid->depth_size > 1) PetscCall(TNAllAgree(grid->depth, ok, &ok));
    if (!ok) break;
    if (info.has_targets && grid->depth_rank == grid->depth_size - 1) {
      TNLossEvaluate(info.task, B, m, out, labels, Y, 1.0 / divisor, &l, &k, grad ? dout : NULL);
      sums[0] += l;
      sums[1] += k;
    }
    if (predictions) PetscCall(PetscArraycpy(predictions + s0 * m, out, B * m));
    if (grad) PetscCall(TNNetworkBackward(net, B, X, dout, grad, &ok));
    if (grad && grid->depth_size > 1) PetscCall(TNAllAgree(grid->depth, ok, &ok));
  }
  PetscCall(PetscFree6(X, Y, out, dout, labels, idx));
  /* a failure anywhere stops every rank, with the first failing rank's words */
  PetscCall(PetscSNPrintf(message, sizeof message, "%s: %s", where, TNNetworkGetFailure(net)));
  if (!failed)
    PetscCall(TNFailureRaise(grid->world, ok ? PETSC_FALSE : PETSC_TRUE, TNNetworkGetFailure(net)[0] ? message : NULL,
                             TN_ERR_RUNTIME));
  else {
    PetscCall(TNFailureAgree(grid->world, ok ? PETSC_FALSE : PETSC_TRUE, TNNetworkGetFailure(net)[0] ? message : NULL,
                             failed, failure, len));
    if (*failed) {
      *loss = NAN;
      if (accuracy) *accuracy = NAN;
      PetscFunctionReturn(0);
    }
  }
  /* over every rank: the loss comes from the last depth ranks */
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, sums, 2, MPIU_REAL, MPI_SUM, grid->world));
  if (grad) PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, grad, (PetscMPIInt)nparams, MPIU_SCALAR, MPI_SUM, grid->data));
  if (predictions) {
    PetscMPIInt *counts, *displs;
    PetscCall(PetscMalloc2(grid->data_size, &counts, grid->data_size, &displs));
    for (PetscMPIInt r = 0; r < grid->data_size; r++) {
      PetscInt a, b;
      TNGridSplit(info.N, grid->data_size, r, &a, &b);
      counts[r] = (PetscMPIInt)((b - a) * m);
      displs[r] = (PetscMPIInt)(a * m);
    }
    PetscCallMPI(
        MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, predictions, counts, displs, MPIU_REAL, grid->data));
    PetscCall(PetscFree2(counts, displs));
  }
  *loss = info.has_targets ? sums[0] / divisor : NAN;
  if (accuracy) *accuracy = info.has_targets && info.task == TN_TASK_CLASSIFICATION ? sums[1] / info.N : NAN;
  PetscFunctionReturn(0);
}

PetscErrorCode TNEvaluateDataset(TNNetwork net, const TNGrid *grid, TNDataset D, PetscInt chunk, const char *where,
                                 PetscReal *loss, PetscReal *accuracy, PetscScalar *grad, PetscReal *predictions)
{
  PetscFunctionBegin;
  PetscCall(Evaluate(net, grid, D, chunk, where, NULL, loss, accuracy, grad, predictions, NULL, NULL, 0));
  PetscFunctionReturn(0);
}

PetscErrorCode TNEvaluateDatasetTry(TNNetwork net, const TNGrid *grid, TNDataset D, PetscInt chunk, const char *where,
                                    PetscReal *loss, PetscReal *accuracy, PetscBool *failed, char *failure, size_t len)
{
  PetscFunctionBegin;
  PetscCall(Evaluate(net, grid, D, chunk, where, NULL, loss, accuracy, NULL, NULL, failed, failure, len));
  PetscFunctionReturn(0);
}

PetscErrorCode TNEvaluateDatasetNoisy(TNNetwork net, const TNGrid *grid, TNDataset D, PetscInt chunk, const char *where,
                                      const TNInputNoise *noise, PetscReal *loss, PetscReal *accuracy)
{
  PetscFunctionBegin;
  PetscCall(Evaluate(net, grid, D, chunk, where, noise, loss, accuracy, NULL, NULL, NULL, NULL, 0));
  PetscFunctionReturn(0);
}
