/* SGD, heavy-ball momentum and Adam (Kingma & Ba, with bias correction). */
#include "optimizer.h"

/* The updates are elementwise: element i is read and written by iteration i alone, whether the
   new arrays are the old ones (in place) or others, so the loops vectorise (8 square roots and
   divisions at a time with AVX-512, where the compiler alone must assume they overlap). */
#define TN_ELEMENTWISE _Pragma("omp simd")

const char *const TNOptimizerTypes[] = {"sgd", "momentum", "adam", "TNOptimizerType", "TN_OPT_", NULL};

/* The hyper-parameters, by their names in a checkpoint's /optimizer. */
enum { H_LR, H_MOMENTUM, H_BETA1, H_BETA2, H_EPS };
static const char *const HyperNames[TN_OPTIMIZER_HYPER] = {"lr", "momentum", "beta1", "beta2", "eps"};

struct _n_TNOptimizer {
  MPI_Comm comm;
  TNOptimizerType type;
  PetscReal hyper[TN_OPTIMIZER_HYPER];
  PetscInt64 step;        /* updates taken */
  PetscReal rate;         /* the learning rate in force: -lr, as the schedule sets it */
  PetscInt n;             /* parameters */
  PetscScalar *m1, *m2;   /* velocity / first moment, second moment (Adam): the current ones */
  PetscScalar *m1b, *m2b; /* with TNOptimizerKeepPrevious: the ones before the last step */
  PetscBool keep, can_revert;
  PetscBool view;
};

PetscErrorCode TNOptimizerCreate(MPI_Comm comm, TNOptimizer *out)
{
  TNOptimizer opt;

  PetscFunctionBegin;
  PetscCall(PetscNew(&opt));
  opt->comm              = comm;
  opt->type              = TN_OPT_ADAM;
  opt->hyper[H_LR]       = 1e-2;
  opt->hyper[H_MOMENTUM] = 0.9;
  opt->hyper[H_BETA1]    = 0.9;
  opt->hyper[H_BETA2]    = 0.999;
  opt->hyper[H_EPS]      = 1e-8;
  *out                   = opt;
  PetscFunctionReturn(0);
}

PetscErrorCode TNOptimizerSetFromOptions(TNOptimizer opt)
{
  PetscReal *h = opt->hyper;

  PetscFunctionBegin;
  PetscOptionsBegin(opt->comm, NULL, "thetanet train: optimiser", "thetanet");
  PetscCall(TNOptionsEnum("-optimizer", "Optimiser", "", TNOptimizerTypes, (PetscEnum)opt->type,
                          (PetscEnum *)&opt->type, NULL));
  PetscCall(TNOptionsReal("-lr", "Learning rate", "", h[H_LR], &h[H_LR], NULL));
  PetscCall(TNOptionsReal("-momentum", "Momentum of -optimizer momentum", "", h[H_MOMENTUM], &h[H_MOMENTUM], NULL));
  PetscCall(TNOptionsReal("-adam_beta1", "Adam first-moment decay", "", h[H_BETA1], &h[H_BETA1], NULL));
  PetscCall(TNOptionsReal("-adam_beta2", "Adam second-moment decay", "", h[H_BETA2], &h[H_BETA2], NULL));
  PetscCall(TNOptionsReal("-adam_eps", "Adam epsilon", "", h[H_EPS], &h[H_EPS], NULL));
  PetscCall(PetscOptionsName("-optimizer_view", "Print the optimiser once set up", "TNOptimizerView", &opt->view));
  PetscOptionsEnd();
  PetscCheck(h[H_LR] > 0 && PetscIsNormalReal(h[H_LR]), opt->comm, TN_ERR_USER, "-lr must be positive, got %g",
             (double)h[H_LR]);
  PetscCheck(h[H_MOMENTUM] >= 0 && h[H_MOMENTUM] < 1, opt->comm, TN_ERR_USER, "-momentum must lie in [0, 1), got %g",
             (double)h[H_MOMENTUM]);
  PetscCheck(h[H_BETA1] >= 0 && h[H_BETA1] < 1 && h[H_BETA2] >= 0 && h[H_BETA2] < 1, opt->comm, TN_ERR_USER,
             "-adam_beta1 and -adam_beta2 must lie in [0, 1)");
  PetscCheck(h[H_EPS] > 0, opt->comm, TN_ERR_USER, "-adam_eps must be positive, got %g", (double)h[H_EPS]);
  PetscFunctionReturn(0);
}

PetscErrorCode TNOptimizerSetUp(TNOptimizer opt, PetscInt nparams)
{
  PetscFunctionBegin;
  PetscCall(PetscFree(opt->m1));
  PetscCall(PetscFree(opt->m2));
  PetscCall(PetscFree(opt->m1b));
  PetscCall(PetscFree(opt->m2b));
  opt->n    = nparams;
  opt->step = 0;
  opt->rate = opt->hyper[H_LR];
  if (opt->type != TN_OPT_SGD) PetscCall(PetscCalloc1(nparams, &opt->m1));
  if (opt->type == TN_OPT_ADAM) PetscCall(PetscCalloc1(nparams, &opt->m2));
  if (opt->keep && opt->m1) PetscCall(PetscCalloc1(nparams, &opt->m1b));
  if (opt->keep && opt->m2) PetscCall(PetscCalloc1(nparams, &opt->m2b));
  opt->can_revert = PETSC_FALSE;
  if (opt->view) {
    PetscCall(TNOptimizerView(opt, PETSC_VIEWER_STDOUT_(opt->comm)));
    opt->view = PETSC_FALSE;
  }
  PetscFunctionReturn(0);
}

/* The current moments and those of before the last step change places. */
static void MomentsSwap(TNOptimizer opt)
{
  PetscScalar *t;

  t        = opt->m1;
  opt->m1  = opt->m1b;
  opt->m1b = t;
  t        = opt->m2;
  opt->m2  = opt->m2b;
  opt->m2b = t;
}

PetscErrorCode TNOptimizerStep(TNOptimizer opt, const PetscScalar *x, PetscScalar *xnew, const PetscScalar *restrict g)
{
  const PetscReal lr = opt->rate;
  const PetscInt n   = opt->n;
  /* moments read from m, written to mnew: the same arrays, or (keeping the previous ones) the
     other pair, which then becomes the current one */
  const PetscScalar *m1 = opt->m1, *m2 = opt->m2;
  PetscScalar *m1new = opt->keep ? opt->m1b : opt->m1, *m2new = opt->keep ? opt->m2b : opt->m2;

  PetscFunctionBegin;
  opt->step++;
  switch (opt->type) {
  case TN_OPT_SGD:
    TN_ELEMENTWISE
    for (PetscInt i = 0; i < n; i++) xnew[i] = x[i] - lr * g[i];
    break;
  case TN_OPT_MOMENTUM: {
    const PetscReal mu = opt->hyper[H_MOMENTUM];
    TN_ELEMENTWISE
    for (PetscInt i = 0; i < n; i++) {
      const PetscScalar v = mu * m1[i] + g[i];
      m1new[i]            = v;
      xnew[i]             = x[i] - lr * v;
    }
  } break;
  case TN_OPT_ADAM: {
    /* bias corrections folded into the step size and epsilon */
    const PetscReal b1 = opt->hyper[H_BETA1], b2 = opt->hyper[H_BETA2];
    const PetscReal c1 = 1 - PetscPowReal(b1, (PetscReal)opt->step), c2 = 1 - PetscPowReal(b2, (PetscReal)opt->step);
    const PetscReal step = lr / c1, sc2 = 1 / c2, eps = opt->hyper[H_EPS];
    TN_ELEMENTWISE
    for (PetscInt i = 0; i < n; i++) {
      const PetscScalar a = b1 * m1[i] + (1 - b1) * g[i], b = b2 * m2[i] + (1 - b2) * g[i] * g[i];
      m1new[i] = a;
      m2new[i] = b;
      xnew[i]  = x[i] - step * a / (PetscSqrtReal(b * sc2) + eps);
    }
  } break;
  }
  if (opt->keep) MomentsSwap(opt);
  opt->can_revert = opt->keep;
  PetscFunctionReturn(0);
}

PetscErrorCode TNOptimizerGetBaseRate(TNOptimizer opt, PetscReal *lr)
{
  PetscFunctionBegin;
  *lr = opt->hyper[H_LR];
  PetscFunctionReturn(0);
}

PetscErrorCode TNOptimizerGetRate(TNOptimizer opt, PetscReal *lr)
{
  PetscFunctionBegin;
  *lr = opt->rate;
  PetscFunctionReturn(0);
}

PetscErrorCode TNOptimizerSetRate(TNOptimizer opt, PetscReal lr)
{
  PetscFunctionBegin;
  opt->rate = lr;
  PetscFunctionReturn(0);
}

PetscErrorCode TNOptimizerKeepPrevious(TNOptimizer opt, PetscBool keep)
{
  PetscFunctionBegin;
  PetscCheck(!opt->n, opt->comm, PETSC_ERR_ARG_WRONGSTATE, "TNOptimizerKeepPrevious after TNOptimizerSetUp");
  opt->keep = keep;
  PetscFunctionReturn(0);
}

PetscErrorCode TNOptimizerRevert(TNOptimizer opt)
{
  PetscFunctionBegin;
  PetscCheck(opt->can_revert, opt->comm, PETSC_ERR_ARG_WRONGSTATE, "no optimiser step to revert");
  MomentsSwap(opt);
  opt->step--;
  opt->can_revert = PETSC_FALSE;
  PetscFunctionReturn(0);
}

void TNOptimizerRecordInit(TNOptimizerRecord *rec, PetscReal hyper[])
{
  rec->types       = TNOptimizerTypes;
  rec->type        = 0;
  rec->step        = 0;
  rec->nhyper      = TN_OPTIMIZER_HYPER;
  rec->hyper_names = HyperNames;
  rec->hyper       = hyper;
  rec->moment[0] = rec->moment[1] = NULL;
}

PetscErrorCode TNOptimizerGetRecord(TNOptimizer opt, TNOptimizerRecord *rec)
{
  PetscFunctionBegin;
  TNOptimizerRecordInit(rec, opt->hyper);
  rec->type      = (PetscInt)opt->type;
  rec->step      = opt->step;
  rec->moment[0] = opt->m1;
  rec->moment[1] = opt->m2;
  PetscFunctionReturn(0);
}

PetscErrorCode TNOptimizerRestore(TNOptimizer opt, const TNOptimizerRecord *rec, PetscBool keep_lr)
{
  const PetscReal lr = opt->hyper[H_LR];

  PetscFunctionBegin;
  PetscCheck(rec->nhyper == TN_OPTIMIZER_HYPER, opt->comm, PETSC_ERR_ARG_SIZ,
             "optimiser record with %" PetscInt_FMT " hyper-parameters", rec->nhyper);
  opt->type = (TNOptimizerType)rec->type;
  for (PetscInt k = 0; k < TN_OPTIMIZER_HYPER; k++) opt->hyper[k] = rec->hyper[k];
  if (keep_lr) opt->hyper[H_LR] = lr;
  opt->rate = opt->hyper[H_LR];
  PetscCall(TNOptimizerSetUp(opt, opt->n));
  opt->step = rec->step;
  PetscFunctionReturn(0);
}

PetscErrorCode TNOptimizerView(TNOptimizer opt, PetscViewer viewer)
{
  const PetscReal *h = opt->hyper;
  char detail[128]   = "";

  PetscFunctionBegin;
  if (opt->type == TN_OPT_MOMENTUM)
    PetscCall(PetscSNPrintf(detail, sizeof detail, ", momentum %g", (double)h[H_MOMENTUM]));
  if (opt->type == TN_OPT_ADAM)
    PetscCall(PetscSNPrintf(detail, sizeof detail, ", beta1 %g, beta2 %g, eps %g", (double)h[H_BETA1],
                            (double)h[H_BETA2], (double)h[H_EPS]));
  PetscCall(PetscViewerASCIIPrintf(viewer,
                                   "TNOptimizer: %s, lr %g%s; %" PetscInt_FMT " parameters, step %" PetscInt64_FMT "\n",
                                   TNOptimizerTypes[opt->type], (double)h[H_LR], detail, opt->n, opt->step));
  PetscFunctionReturn(0);
}

PetscErrorCode TNOptimizerDestroy(TNOptimizer *opt)
{
  PetscFunctionBegin;
  if (!*opt) PetscFunctionReturn(0);
  PetscCall(PetscFree((*opt)->m1));
  PetscCall(PetscFree((*opt)->m2));
  PetscCall(PetscFree((*opt)->m1b));
  PetscCall(PetscFree((*opt)->m2b));
  PetscCall(PetscFree(*opt));
  PetscFunctionReturn(0);
}
