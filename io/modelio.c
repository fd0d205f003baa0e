/* The /model group of model, checkpoint and results files (DESIGN.md §4): the six arrays of the
   parameter layout and the attributes that fix their shapes. */
#include <stdio.h>
#include "h5util.h"

/* -------- the model layout -------- */

/* The six arrays of DESIGN.md §4 as views into a TNParams-layout buffer, with their shapes and
   the attributes that fix each shape (for messages). */
typedef struct {
  const char *name;
  int rank;
  hsize_t dims[3];
  PetscScalar *data;
  char says[128];
} ModelArray;

#define TN_MODEL_ARRAYS 6

static void ModelArrays(const TNModelConfig *c, PetscScalar *params, ModelArray a[TN_MODEL_ARRAYS])
{
  const hsize_t d = (hsize_t)c->d, n = (hsize_t)c->n, L = (hsize_t)c->L, m = (hsize_t)c->m;
  TNParams p;

  TNParamsSet(c, params, &p);
  a[0] = (ModelArray){"opening/K", 2, {n, d}, p.K, ""};
  a[1] = (ModelArray){"opening/b", 1, {n}, p.kb, ""};
  a[2] = (ModelArray){"blocks/W", 3, {L, n, n}, p.W, ""};
  a[3] = (ModelArray){"blocks/b", 2, {L, n}, p.b, ""};
  a[4] = (ModelArray){"closing/C", 2, {m, n}, p.C, ""};
  a[5] = (ModelArray){"closing/b", 1, {m}, p.c, ""};
  snprintf(a[0].says, sizeof(a[0].says), "input_dim=%" PetscInt_FMT " width=%" PetscInt_FMT, c->d, c->n);
  snprintf(a[1].says, sizeof(a[1].says), "width=%" PetscInt_FMT, c->n);
  snprintf(a[2].says, sizeof(a[2].says), "layers=%" PetscInt_FMT " width=%" PetscInt_FMT, c->L, c->n);
  snprintf(a[3].says, sizeof(a[3].says), "layers=%" PetscInt_FMT " width=%" PetscInt_FMT, c->L, c->n);
  snprintf(a[4].says, sizeof(a[4].says), "outputs=%" PetscInt_FMT " width=%" PetscInt_FMT, c->m, c->n);
  snprintf(a[5].says, sizeof(a[5].says), "outputs=%" PetscInt_FMT, c->m);
}

PetscErrorCode TNH5ModelWrite(hid_t loc, const char *group, TNModel model, const PetscScalar *params)
{
  const TNModelConfig *c;
  const char *const subgroups[] = {"opening", "blocks", "closing"};
  ModelArray a[TN_MODEL_ARRAYS];
  hid_t g, sub;

  PetscFunctionBegin;
  PetscCall(TNModelGetConfig(model, &c));
  PetscCall(TNH5GroupCreate(loc, group, &g));
  for (int i = 0; i < 3; i++) {
    PetscCall(TNH5GroupCreate(g, subgroups[i], &sub));
    H5Gclose(sub);
  }
  /* the views are only read from here */
  ModelArrays(c, (PetscScalar *)params, a);
  for (int i = 0; i < TN_MODEL_ARRAYS; i++)
    PetscCall(TNH5ArrayWrite(g, a[i].name, H5T_NATIVE_DOUBLE, a[i].rank, a[i].dims, a[i].data));
  PetscCall(TNH5AttrWriteInt(g, "input_dim", c->d));
  PetscCall(TNH5AttrWriteInt(g, "width", c->n));
  PetscCall(TNH5AttrWriteInt(g, "layers", c->L));
  PetscCall(TNH5AttrWriteInt(g, "outputs", c->m));
  PetscCall(TNH5AttrWriteReal(g, "theta", c->theta));
  PetscCall(TNH5AttrWriteReal(g, "T", c->T));
  PetscCall(TNH5AttrWriteString(g, "activation", TNActivations[c->act]));
  PetscCall(TNH5AttrWriteString(g, "opening_activation", TNActivations[c->opening_act]));
  PetscCall(TNH5AttrWriteInt(g, "antisymmetric", c->antisymmetric ? 1 : 0));
  PetscCall(TNH5AttrWriteReal(g, "gamma", c->gamma));
  PetscCall(TNH5AttrWriteString(g, "task", TNTasks[c->task]));
  H5Gclose(g);
  PetscFunctionReturn(0);
}

PetscErrorCode TNH5ModelArraysRead(hid_t file, const char *path, const char *group, const TNModelConfig *cfg,
                                   PetscScalar *params)
{
  ModelArray a[TN_MODEL_ARRAYS];

  PetscFunctionBegin;
  ModelArrays(cfg, params, a);
  for (int i = 0; i < TN_MODEL_ARRAYS; i++) {
    char name[PETSC_MAX_PATH_LEN], shape[96];
    TNH5Array info;
    PetscBool same;
    PetscInt64 count = 1, bad;

    snprintf(name, sizeof(name), "%s/%s", group, a[i].name);
    PetscCall(TNH5ArrayInfo(file, path, name, &info));
    PetscCheck(info.found, PETSC_COMM_SELF, TN_ERR_USER, "%s: %s is missing", path, name);
    PetscCheck(info.cls == H5T_FLOAT, PETSC_COMM_SELF, TN_ERR_USER, "%s: %s must hold floating-point values", path,
               name);
    same = info.rank == a[i].rank ? PETSC_TRUE : PETSC_FALSE;
    for (int k = 0; same && k < a[i].rank; k++) same = info.dims[k] == a[i].dims[k] ? PETSC_TRUE : PETSC_FALSE;
    TNH5ShapeString(info.rank, info.dims, shape, sizeof(shape));
    PetscCheck(same, PETSC_COMM_SELF, TN_ERR_USER, "%s: %s has shape %s but attributes say %s", path, name, shape,
               a[i].says);
    PetscCall(TNH5ArrayRead(file, path, name, H5T_NATIVE_DOUBLE, a[i].data));
    for (int k = 0; k < a[i].rank; k++) count *= (PetscInt64)a[i].dims[k];
    bad = TNH5FirstNonFinite(a[i].data, count);
    PetscCheck(bad < 0, PETSC_COMM_SELF, TN_ERR_USER,
               "%s: NaN or Inf in %s (entry %" PetscInt64_FMT " in row-major order)", path, name, bad);
  }
  PetscFunctionReturn(0);
}

/* A count attribute must fit PetscInt before TNModelConfigCheck judges its value. */
static PetscErrorCode CountRead(hid_t g, const char *path, const char *name, PetscInt *value)
{
  PetscInt64 v;

  PetscFunctionBegin;
  PetscCall(TNH5AttrReadInt(g, path, "/model", name, &v, NULL));
  PetscCheck(v >= PETSC_MIN_INT && v <= PETSC_MAX_INT, PETSC_COMM_SELF, TN_ERR_USER,
             "%s: attribute '%s' of /model is out of range: %" PetscInt64_FMT, path, name, v);
  *value = (PetscInt)v;
  PetscFunctionReturn(0);
}

static PetscErrorCode ModelConfigRead(hid_t file, const char *path, TNModelConfig *c)
{
  hid_t g;
  PetscInt act, opening_act, task;
  PetscInt64 antisymmetric;
  double count;

  PetscFunctionBegin;
  PetscCheck(TNH5LinkExists(file, "/model"), PETSC_COMM_SELF, TN_ERR_USER,
             "%s: no /model group (not a thetanet model, checkpoint or results file)", path);
  g = H5Gopen2(file, "/model", H5P_DEFAULT);
  PetscCheck(g >= 0, PETSC_COMM_SELF, TN_ERR_USER, "%s: /model is not a group", path);
  PetscCall(CountRead(g, path, "input_dim", &c->d));
  PetscCall(CountRead(g, path, "width", &c->n));
  PetscCall(CountRead(g, path, "layers", &c->L));
  PetscCall(CountRead(g, path, "outputs", &c->m));
  PetscCall(TNH5AttrReadReal(g, path, "/model", "theta", &c->theta, NULL));
  PetscCall(TNH5AttrReadReal(g, path, "/model", "T", &c->T, NULL));
  PetscCall(TNH5AttrReadReal(g, path, "/model", "gamma", &c->gamma, NULL));
  PetscCall(TNH5AttrReadChoice(g, path, "/model", "activation", TNActivations, &act, NULL));
  PetscCall(TNH5AttrReadChoice(g, path, "/model", "opening_activation", TNActivations, &opening_act, NULL));
  PetscCall(TNH5AttrReadChoice(g, path, "/model", "task", TNTasks, &task, NULL));
  PetscCall(TNH5AttrReadInt(g, path, "/model", "antisymmetric", &antisymmetric, NULL));
  H5Gclose(g);
  PetscCheck(antisymmetric == 0 || antisymmetric == 1, PETSC_COMM_SELF, TN_ERR_USER,
             "%s: attribute 'antisymmetric' of /model must be 0 or 1, got %" PetscInt64_FMT, path, antisymmetric);
  c->act           = (TNActivation)act;
  c->opening_act   = (TNActivation)opening_act;
  c->task          = (TNTask)task;
  c->antisymmetric = antisymmetric ? PETSC_TRUE : PETSC_FALSE;
  PetscCall(TNModelConfigCheck(c, path));
  count = (double)c->n * c->d + c->n + (double)c->L * c->n * c->n + (double)c->L * c->n + (double)c->m * c->n + c->m;
  PetscCheck(count <= PETSC_MAX_INT, PETSC_COMM_SELF, TN_ERR_USER,
             "%s: the attributes of /model give %.0f parameters, more than 32-bit PETSc indices can hold", path, count);
  PetscFunctionReturn(0);
}

typedef struct {
  const char *path;
  TNModel model;
} ModelLoad;

static PetscErrorCode ModelRead(hid_t file, void *ctx)
{
  ModelLoad *load = (ModelLoad *)ctx;
  TNModelConfig cfg;
  PetscScalar *params;
  PetscErrorCode ierr;

  PetscFunctionBegin;
  PetscCall(ModelConfigRead(file, load->path, &cfg));
  PetscCall(TNModelCreate(&cfg, &load->model));
  PetscCall(TNModelGetParameters(load->model, NULL, &params));
  ierr = TNH5ModelArraysRead(file, load->path, "/model", &cfg, params);
  if (ierr) PetscCall(TNModelDestroy(&load->model));
  PetscCall(ierr);
  PetscFunctionReturn(0);
}

PetscErrorCode TNModelLoad(MPI_Comm comm, const char *path, TNModel *model)
{
  ModelLoad load = {path, NULL};
  TNModelConfig cfg;
  const TNModelConfig *c;
  PetscMPIInt rank, count;
  PetscInt n;
  PetscScalar *params;

  PetscFunctionBegin;
  PetscCall(TNH5RootRead(comm, path, ModelRead, &load));
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  if (!rank) {
    PetscCall(TNModelGetConfig(load.model, &c));
    cfg = *c;
  }
  /* every rank runs the same binary, so the struct travels as bytes */
  PetscCallMPI(MPI_Bcast(&cfg, (int)sizeof(cfg), MPI_BYTE, 0, comm));
  if (rank) PetscCall(TNModelCreate(&cfg, &load.model));
  PetscCall(TNModelGetParameters(load.model, &n, &params));
  PetscCall(PetscMPIIntCast(n, &count));
  PetscCallMPI(MPI_Bcast(params, count, MPIU_SCALAR, 0, comm));
  *model = load.model;
  PetscFunctionReturn(0);
}
