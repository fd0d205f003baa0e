/* SGD, heavy-ball momentum and Adam (Kingma & Ba, with bias correction). */
#include "optimizer.h"

const char *const TNOptimizerTypes[] = {"sgd", "momentum", "adam", "TNOptimizerType", "TN_OPT_", NULL};

PetscErrorCode TNOptimizerSetUp(TNOptimizer *opt, PetscInt nparams)
{
  PetscFunctionBegin;
  opt->n    = nparams;
  opt->step = 0;
  if (opt->type != TN_OPT_SGD) PetscCall(PetscCalloc1(nparams, &opt->m1));
  if (opt->type == TN_OPT_ADAM) PetscCall(PetscCalloc1(nparams, &opt->m2));
  PetscFunctionReturn(0);
}

PetscErrorCode TNOptimizerStep(TNOptimizer *opt, PetscScalar *restrict x, const PetscScalar *restrict g)
{
  const PetscReal    lr = opt->lr;
  const PetscInt     n  = opt->n;
  PetscScalar *restrict m1 = opt->m1, *restrict m2 = opt->m2;

  PetscFunctionBegin;
  opt->step++;
  switch (opt->type) {
  case TN_OPT_SGD:
    for (PetscInt i = 0; i < n; i++) x[i] -= lr * g[i];
    break;
  case TN_OPT_MOMENTUM: {
    const PetscReal mu = opt->momentum;
    for (PetscInt i = 0; i < n; i++) {
      m1[i] = mu * m1[i] + g[i];
      x[i] -= lr * m1[i];
    }
  } break;
  case TN_OPT_ADAM: {
    /* bias corrections folded into the step size and epsilon */
    const PetscReal b1 = opt->beta1, b2 = opt->beta2;
    const PetscReal c1 = 1 - PetscPowReal(b1, (PetscReal)opt->step), c2 = 1 - PetscPowReal(b2, (PetscReal)opt->step);
    const PetscReal step = lr / c1, sc2 = 1 / c2, eps = opt->eps;
    for (PetscInt i = 0; i < n; i++) {
      m1[i] = b1 * m1[i] + (1 - b1) * g[i];
      m2[i] = b2 * m2[i] + (1 - b2) * g[i] * g[i];
      x[i] -= step * m1[i] / (PetscSqrtReal(m2[i] * sc2) + eps);
    }
  } break;
  }
  PetscFunctionReturn(0);
}

PetscErrorCode TNOptimizerDestroy(TNOptimizer *opt)
{
  PetscFunctionBegin;
  PetscCall(PetscFree(opt->m1));
  PetscCall(PetscFree(opt->m2));
  PetscFunctionReturn(0);
}
