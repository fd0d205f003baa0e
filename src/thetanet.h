/* thetanet: public types of the trainer for implicit residual networks.
   The model, its parameter layout (DESIGN.md §4), datasets and user-error reporting. */
#ifndef THETANET_H
#define THETANET_H

#include <petscsys.h>

#define THETANET_VERSION "0.1.0"

/* Error code of every user mistake (bad option, bad file): main turns it into exit status 2
   and prints the message as one line, without a traceback. */
#define TN_ERR_USER PETSC_ERR_USER_INPUT
/* A failure of the run itself (a block solve that misses its tolerance, a NaN loss): one line
   naming where, exit status 1. */
#define TN_ERR_RUNTIME PETSC_ERR_NOT_CONVERGED

typedef enum { TN_ACT_NONE, TN_ACT_TANH, TN_ACT_RELU, TN_ACT_SOFTPLUS, TN_ACT_SIGMOID } TNActivation;
/* Names as on the command line and in the /model attributes, in PetscOptionsEnum form. */
PETSC_EXTERN const char *const TNActivations[];

typedef enum { TN_TASK_CLASSIFICATION, TN_TASK_REGRESSION } TNTask;
PETSC_EXTERN const char *const TNTasks[];

/* The shape and the fixed hyper-parameters of a network. */
typedef struct {
  PetscInt     d;     /* input dimension */
  PetscInt     n;     /* width */
  PetscInt     L;     /* number of theta-blocks */
  PetscInt     m;     /* outputs: classes or regression targets */
  PetscReal    theta; /* 0 ResNet, 0.5 trapezoidal, 1 backward Euler */
  PetscReal    T;     /* final time; h = T/L */
  PetscReal    gamma; /* shift of the antisymmetric form A = W - W^T - gamma I */
  TNActivation act, opening_act;
  PetscBool    antisymmetric;
  TNTask       task;
} TNModelConfig;

/* Views into one contiguous parameter buffer (parameters, gradients and optimiser moments all
   share this layout, so one MPI_Allreduce moves a whole gradient):
   K [n,d] | kb [n] | W [L,n,n] | b [L,n] | C [m,n] | c [m], row-major. */
typedef struct {
  PetscScalar *K, *kb, *W, *b, *C, *c;
} TNParams;

PETSC_EXTERN PetscInt       TNParamCount(const TNModelConfig *);
PETSC_EXTERN void           TNParamsSet(const TNModelConfig *, PetscScalar *buf, TNParams *);
PETSC_EXTERN PetscErrorCode TNModelConfigCheck(const TNModelConfig *, const char *what);

typedef struct _n_TNModel *TNModel;
struct _n_TNModel {
  TNModelConfig cfg;
  PetscInt      nparams;
  PetscScalar  *theta_buf; /* the nparams parameters */
  TNParams      p;         /* views into theta_buf */
};

PETSC_EXTERN PetscErrorCode TNModelCreate(const TNModelConfig *, TNModel *);
PETSC_EXTERN PetscErrorCode TNModelInitialize(TNModel, PetscInt64 seed);
PETSC_EXTERN PetscErrorCode TNModelDestroy(TNModel *);
/* A = W or W - W^T - gamma I for block j, into an n x n buffer. */
PETSC_EXTERN void TNModelBlockOperator(TNModel, PetscInt j, PetscScalar *A);
/* R of DESIGN.md §1, and (when grad != NULL) dR/dparams added into grad. */
PETSC_EXTERN PetscErrorCode TNModelRegularizer(TNModel, PetscReal alpha, PetscReal beta, PetscReal *R, PetscScalar *grad);

/* A dataset held in memory: X is N x d row-major double; classification keeps integer labels,
   regression N x m targets. */
typedef struct _n_TNDataset *TNDataset;
struct _n_TNDataset {
  PetscInt   N, d, m;        /* m: classes (max label + 1) or targets */
  PetscInt   Nlocal, offset; /* rows held here: offset..offset+Nlocal-1 (all N unless sharded) */
  TNTask     task;
  PetscReal *X;
  PetscInt  *labels; /* classification: N labels in [0, m) */
  PetscReal *Y;      /* regression: N x m targets */
  char       name[256];
};

/* [start, end) of the rows of N that rank r of P holds: contiguous, sizes differing by at most 1. */
PETSC_EXTERN void TNGridSplit(PetscInt N, PetscMPIInt P, PetscMPIInt r, PetscInt *start, PetscInt *end);

PETSC_EXTERN PetscErrorCode TNDatasetCreate(PetscInt N, PetscInt d, PetscInt m, TNTask, TNDataset *);
PETSC_EXTERN PetscErrorCode TNDatasetDestroy(TNDataset *);
/* Keep only the rows rank r of comm holds in a sharded layout (TNGridSplit). */
PETSC_EXTERN PetscErrorCode TNDatasetShard(TNDataset, MPI_Comm);

#endif
