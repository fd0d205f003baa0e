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

PetscErrorCode TNOptimizerStep(TNOptimizer *opt, PetscScalar *x, const PetscScalar *g)
{
  const PetscReal lr = opt->lr;

  PetscFunctionBegin;
  opt->step++;
  switch (opt->type) {
  case TN_OPT_SGD:
    for (PetscInt i = 0; i < opt->n; i++) x[i] -= lr * g[i];
    break;
  case TN_OPT_MOMENTUM:
    for (PetscInt i = 0; i < opt->n; i++) {
      opt->m1[i] = opt->momentum * opt->m1[i] + g[i];
      x[i] -= lr * opt->m1[i];
    }
    break;
  case TN_OPT_ADAM: {
    const PetscReal c1 = 1 - PetscPowReal(opt->beta1, (PetscReal)opt->step);
    const PetscReal c2 = 1 - PetscPowReal(opt->beta2, (PetscReal)opt->step);
    for (PetscInt i = 0; i < opt->n; i++) {
      opt->m1[i] = opt->beta1 * opt->m1[i] + (1 - opt->beta1) * g[i];
      opt->m2[i] = opt->beta2 * opt->m2[i] + (1 - opt->beta2) * g[i] * g[i];
      x[i] -= lr * (opt->m1[i] / c1) / (PetscSqrtReal(opt->m2[i] / c2) + opt->eps);
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
