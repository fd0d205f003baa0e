/* thetanet: the public types of the trainer for implicit residual networks, read by every layer
   of the code (src/, solvers/, io/): error codes, the model's shape and parameter layout
   (DESIGN.md §1, §4), the model object, and small collective helpers. */
#ifndef THETANET_H
#define THETANET_H

#include <petscsys.h>
#include <petscviewer.h>
#include <errno.h>
#include <stdlib.h>

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
  PetscInt d;      /* input dimension */
  PetscInt n;      /* width */
  PetscInt L;      /* number of theta-blocks */
  PetscInt m;      /* outputs: classes or regression targets */
  PetscReal theta; /* 0 ResNet, 0.5 trapezoidal, 1 backward Euler */
  PetscReal T;     /* final time; h = T/L */
  PetscReal gamma; /* shift of the antisymmetric form A = W - W^T - gamma I */
  TNActivation act, opening_act;
  PetscBool antisymmetric;
  TNTask task;
} TNModelConfig;

/* Views into one contiguous parameter buffer (parameters, gradients and optimiser moments all
   share this layout, so one MPI_Allreduce moves a whole gradient):
   K [n,d] | kb [n] | W [L,n,n] | b [L,n] | C [m,n] | c [m], row-major. */
typedef struct {
  PetscScalar *K, *kb, *W, *b, *C, *c;
} TNParams;

PETSC_EXTERN PetscInt TNParamCount(const TNModelConfig *);
PETSC_EXTERN void TNParamsSet(const TNModelConfig *, PetscScalar *buf, TNParams *);
/* The same layout holding only nblocks of the L blocks (a depth rank's share). */
PETSC_EXTERN PetscInt TNParamCountBlocks(const TNModelConfig *, PetscInt nblocks);
PETSC_EXTERN void TNParamsSetBlocks(const TNModelConfig *, PetscInt nblocks, PetscScalar *buf, TNParams *);
/* Every field of a complete configuration in range (what: the file or option set it came from,
   for messages). */
PETSC_EXTERN PetscErrorCode TNModelConfigCheck(const TNModelConfig *, const char *what);
/* Reads the model options -width -layers -theta -T -act -opening_act -antisymmetric -gamma into
   cfg (its values are the defaults) and checks them. */
PETSC_EXTERN PetscErrorCode TNModelConfigSetFromOptions(MPI_Comm, TNModelConfig *cfg);

/* The parameters of a network, or of a depth rank's share of its blocks. */
typedef struct _n_TNModel *TNModel;

PETSC_EXTERN PetscErrorCode TNModelCreate(const TNModelConfig *, TNModel *);
/* A model holding blocks [jlo, jhi) on this rank of depth (the opening layer is meaningful on
   the rank with jlo = 0, the closing one on the rank with jhi = L). */
PETSC_EXTERN PetscErrorCode TNModelCreateLocal(const TNModelConfig *, MPI_Comm depth, PetscInt jlo, PetscInt jhi,
                                               TNModel *);
PETSC_EXTERN PetscErrorCode TNModelDestroy(TNModel *);
PETSC_EXTERN PetscErrorCode TNModelGetConfig(TNModel, const TNModelConfig **);
/* The parameters held here (either argument may be NULL): their number and the buffer. */
PETSC_EXTERN PetscErrorCode TNModelGetParameters(TNModel, PetscInt *n, PetscScalar **params);
/* Views of a buffer in this model's (local) layout: a gradient, an optimiser moment. */
PETSC_EXTERN void TNModelParams(TNModel, PetscScalar *buf, TNParams *);
/* Collective on the model's depth ranks: the whole-network buffer full (every rank) from each
   rank's local buffer, and the local share of a whole-network buffer. */
PETSC_EXTERN PetscErrorCode TNModelAllgather(TNModel, const PetscScalar *local, PetscScalar *full);
/* Collective on the model's depth ranks: the whole-network buffer full on the first depth rank
   alone (full is not used elsewhere and may be NULL), for a write that one rank makes. */
PETSC_EXTERN PetscErrorCode TNModelGather(TNModel, const PetscScalar *local, PetscScalar *full);
PETSC_EXTERN void TNModelExtract(TNModel, const PetscScalar *full, PetscScalar *local);
/* Exchange the parameter buffer with *other (of the same size): an update written elsewhere
   comes into force, and the old values stay in *other, without a copy. */
PETSC_EXTERN PetscErrorCode TNModelSwapParameters(TNModel, PetscScalar **other);
/* Collective on the depth ranks: the Euclidean norm of a whole-network vector held in this
   model's local layout (a gradient). */
PETSC_EXTERN PetscErrorCode TNModelNorm(TNModel, const PetscScalar *local, PetscReal *norm);
PETSC_EXTERN PetscErrorCode TNModelInitialize(TNModel, PetscInt64 seed);
/* A = W or W - W^T - gamma I for block j (held here), into an n x n buffer. */
PETSC_EXTERN void TNModelBlockOperator(TNModel, PetscInt j, PetscScalar *A);
PETSC_EXTERN PetscErrorCode TNModelView(TNModel, PetscViewer);

/* The objective's regulariser R of DESIGN.md §1: -weight_decay alpha, -smooth beta. */
typedef struct {
  PetscReal alpha, beta;
} TNRegularization;

PETSC_EXTERN PetscErrorCode TNRegularizationSetFromOptions(MPI_Comm, TNRegularization *);
/* R, and (when grad != NULL) dR/dparams added into grad. With the blocks split across depth
   ranks (collective on them) each rank returns its share of R: the decay of its layers and the
   smoothness terms ending in its blocks; summed over the ranks it is R. */
PETSC_EXTERN PetscErrorCode TNModelRegularizer(TNModel, PetscReal alpha, PetscReal beta, PetscReal *R,
                                               PetscScalar *grad);

/* [start, end) of the rows of N that rank r of P holds: contiguous, sizes differing by at most 1. */
static inline void TNGridSplit(PetscInt N, PetscMPIInt P, PetscMPIInt r, PetscInt *start, PetscInt *end)
{
  *start = (PetscInt)(((PetscInt64)N * r) / P);
  *end   = (PetscInt)(((PetscInt64)N * (r + 1)) / P);
}

/* Collective agreement: every rank learns whether any rank failed (ok = PETSC_FALSE there). */
static inline PetscErrorCode TNAllAgree(MPI_Comm comm, PetscBool ok, PetscBool *all_ok)
{
  int mine = ok ? 1 : 0, all = 0;

  PetscFunctionBegin;
  PetscCallMPI(MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, comm));
  *all_ok = all ? PETSC_TRUE : PETSC_FALSE;
  PetscFunctionReturn(0);
}

/* The PetscOptionsInt, PetscOptionsReal, PetscOptionsString and PetscOptionsEnum of thetanet's
   own options, used the same way inside PetscOptionsBegin/End. PETSc silently drops an option
   given without a value and wraps an integer beyond PetscInt; these refuse both as user errors
   naming the option. */
static inline PetscErrorCode TNOptionsValueCheck(PetscOptionItems *items, const char opt[], PetscBool integer)
{
  const char *value = NULL;
  PetscBool found;
  char *end;
  long long v;

  PetscFunctionBegin;
  PetscCall(PetscOptionsFindPair(items->options, items->prefix, opt, &value, &found));
  if (!found) PetscFunctionReturn(0);
  PetscCheck(value && value[0], items->comm, TN_ERR_USER, "%s needs a value", opt);
  if (!integer) PetscFunctionReturn(0);
  errno = 0;
  v     = strtoll(value, &end, 10);
  PetscCheck(end != value && !*end, items->comm, TN_ERR_USER, "%s %s: not a whole number", opt, value);
  PetscCheck(errno != ERANGE && v >= PETSC_MIN_INT && v <= PETSC_MAX_INT, items->comm, TN_ERR_USER,
             "%s %s: out of range (at most %d)", opt, value, PETSC_MAX_INT);
  PetscFunctionReturn(0);
}

static inline PetscErrorCode TNOptionsInt_Private(PetscOptionItems *PetscOptionsObject, const char opt[],
                                                  const char text[], const char man[], PetscInt current,
                                                  PetscInt *value, PetscBool *set)
{
  PetscFunctionBegin;
  PetscCall(TNOptionsValueCheck(PetscOptionsObject, opt, PETSC_TRUE));
  PetscCall(PetscOptionsInt(opt, text, man, current, value, set));
  PetscFunctionReturn(0);
}

static inline PetscErrorCode TNOptionsReal_Private(PetscOptionItems *PetscOptionsObject, const char opt[],
                                                   const char text[], const char man[], PetscReal current,
                                                   PetscReal *value, PetscBool *set)
{
  PetscFunctionBegin;
  PetscCall(TNOptionsValueCheck(PetscOptionsObject, opt, PETSC_FALSE));
  PetscCall(PetscOptionsReal(opt, text, man, current, value, set));
  PetscFunctionReturn(0);
}

static inline PetscErrorCode TNOptionsString_Private(PetscOptionItems *PetscOptionsObject, const char opt[],
                                                     const char text[], const char man[], const char current[],
                                                     char value[], size_t len, PetscBool *set)
{
  PetscFunctionBegin;
  PetscCall(TNOptionsValueCheck(PetscOptionsObject, opt, PETSC_FALSE));
  PetscCall(PetscOptionsString(opt, text, man, current, value, len, set));
  PetscFunctionReturn(0);
}

static inline PetscErrorCode TNOptionsEnum_Private(PetscOptionItems *PetscOptionsObject, const char opt[],
                                                   const char text[], const char man[], const char *const *list,
                                                   PetscEnum current, PetscEnum *value, PetscBool *set)
{
  PetscFunctionBegin;
  PetscCall(TNOptionsValueCheck(PetscOptionsObject, opt, PETSC_FALSE));
  PetscCall(PetscOptionsEnum(opt, text, man, list, current, value, set));
  PetscFunctionReturn(0);
}

#define TNOptionsInt(a, b, c, d, e, f) TNOptionsInt_Private(PetscOptionsObject, a, b, c, d, e, f)
#define TNOptionsReal(a, b, c, d, e, f) TNOptionsReal_Private(PetscOptionsObject, a, b, c, d, e, f)
#define TNOptionsString(a, b, c, d, e, f, g) TNOptionsString_Private(PetscOptionsObject, a, b, c, d, e, f, g)
#define TNOptionsEnum(a, b, c, d, e, f, g) TNOptionsEnum_Private(PetscOptionsObject, a, b, c, d, e, f, g)

#endif
