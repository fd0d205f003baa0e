/* Embedded data sets. Each is a grid of points split alternately into training and validation
   points, so the validation set interleaves the training set. */
#include "problems.h"

const char *const TNProblems[] = {"spirals", "sine", "peaks", "TNProblem", "TN_PROBLEM_", NULL};

/* angle = linspace(0, 4 pi, 513), radius = linspace(0, 1, 513); arm 0 at radius r, arm 1 at
   r + 0.2; odd points train, even points validate. */
static PetscErrorCode Spirals(TNDataset *train, TNDataset *val)
{
  const PetscInt P = 513, Ntr = 2 * (P / 2), Nva = 2 * (P - P / 2);
  PetscInt itr = 0, iva = 0;
  PetscReal *X[2];
  PetscInt *labels[2];

  PetscFunctionBegin;
  PetscCall(TNDatasetCreate(Ntr, 2, 2, TN_TASK_CLASSIFICATION, "spirals", train));
  PetscCall(TNDatasetCreate(Nva, 2, 2, TN_TASK_CLASSIFICATION, "spirals", val));
  PetscCall(TNDatasetGetArrays(*train, &X[1], &labels[1], NULL));
  PetscCall(TNDatasetGetArrays(*val, &X[0], &labels[0], NULL));
  for (PetscInt arm = 0; arm < 2; arm++)
    for (PetscInt i = 0; i < P; i++) {
      const PetscReal a = 4 * PETSC_PI * i / (P - 1), r = (PetscReal)i / (P - 1) + 0.2 * arm;
      const PetscInt o = i % 2;
      PetscInt *k      = o ? &itr : &iva;
      X[o][2 * *k]     = r * PetscCosReal(a);
      X[o][2 * *k + 1] = r * PetscSinReal(a);
      labels[o][*k]    = arm;
      (*k)++;
    }
  PetscFunctionReturn(0);
}

/* sin(2 pi x) exp(-x^2/2) on 513 points of [-1, 1] */
static PetscErrorCode Sine(TNDataset *train, TNDataset *val)
{
  const PetscInt P = 513;
  PetscInt itr = 0, iva = 0;

  PetscReal *X[2], *Y[2];

  PetscFunctionBegin;
  PetscCall(TNDatasetCreate(P / 2, 1, 1, TN_TASK_REGRESSION, "sine", train));
  PetscCall(TNDatasetCreate(P - P / 2, 1, 1, TN_TASK_REGRESSION, "sine", val));
  PetscCall(TNDatasetGetArrays(*train, &X[1], NULL, &Y[1]));
  PetscCall(TNDatasetGetArrays(*val, &X[0], NULL, &Y[0]));
  for (PetscInt i = 0; i < P; i++) {
    const PetscReal x = -1 + 2.0 * i / (P - 1);
    const PetscInt o  = i % 2;
    PetscInt *k       = o ? &itr : &iva;
    X[o][*k]          = x;
    Y[o][*k]          = PetscSinReal(2 * PETSC_PI * x) * PetscExpReal(-x * x / 2);
    (*k)++;
  }
  PetscFunctionReturn(0);
}

static PetscReal Peaks(PetscReal x, PetscReal y)
{
  return 3 * (1 - x) * (1 - x) * PetscExpReal(-x * x - (y + 1) * (y + 1)) -
         10 * (x / 5 - x * x * x - PetscPowReal(y, 5)) * PetscExpReal(-x * x - y * y) -
         PetscExpReal(-(x + 1) * (x + 1) - y * y) / 3;
}

/* peaks on a 65 x 65 grid of [-3,3]^2, five classes by equal bins of its value; points with
   i+j odd train, even validate */
static PetscErrorCode PeaksClasses(TNDataset *train, TNDataset *val)
{
  const PetscInt G = 65, classes = 5;
  PetscReal vmin = PETSC_MAX_REAL, vmax = PETSC_MIN_REAL, *X[2];
  PetscInt itr = 0, iva = 0, *labels[2];

  PetscFunctionBegin;
  for (PetscInt i = 0; i < G; i++)
    for (PetscInt j = 0; j < G; j++) {
      const PetscReal v = Peaks(-3 + 6.0 * i / (G - 1), -3 + 6.0 * j / (G - 1));
      vmin              = PetscMin(vmin, v);
      vmax              = PetscMax(vmax, v);
    }
  PetscCall(TNDatasetCreate(G * G / 2, 2, classes, TN_TASK_CLASSIFICATION, "peaks", train));
  PetscCall(TNDatasetCreate(G * G - G * G / 2, 2, classes, TN_TASK_CLASSIFICATION, "peaks", val));
  PetscCall(TNDatasetGetArrays(*train, &X[1], &labels[1], NULL));
  PetscCall(TNDatasetGetArrays(*val, &X[0], &labels[0], NULL));
  for (PetscInt i = 0; i < G; i++)
    for (PetscInt j = 0; j < G; j++) {
      const PetscReal x = -3 + 6.0 * i / (G - 1), y = -3 + 6.0 * j / (G - 1);
      const PetscInt c = PetscMin(classes - 1, (PetscInt)((Peaks(x, y) - vmin) / (vmax - vmin) * classes));
      const PetscInt o = (i + j) % 2;
      PetscInt *k      = o ? &itr : &iva;
      X[o][2 * *k]     = x;
      X[o][2 * *k + 1] = y;
      labels[o][*k]    = c;
      (*k)++;
    }
  PetscFunctionReturn(0);
}

PetscErrorCode TNProblemCreate(TNProblem p, TNDataset *train, TNDataset *val)
{
  PetscFunctionBegin;
  switch (p) {
  case TN_PROBLEM_SPIRALS:
    PetscCall(Spirals(train, val));
    break;
  case TN_PROBLEM_SINE:
    PetscCall(Sine(train, val));
    break;
  case TN_PROBLEM_PEAKS:
    PetscCall(PeaksClasses(train, val));
    break;
  }
  PetscFunctionReturn(0);
}
