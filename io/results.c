/* What a run leaves behind (DESIGN.md §4): tables (the per-epoch history), the results file of
   `train`, the file of `evaluate`/`predict`, and the check that an output path is writable before
   any work. */
#include <stdio.h>
#include <string.h>
#include "h5util.h"
#include "tnio.h"

PetscErrorCode TNH5TableWrite(hid_t loc, const char *group, const TNTable *t)
{
  const hsize_t n[] = {(hsize_t)t->nrows};
  PetscInt64 *ints;
  hid_t g;

  PetscFunctionBegin;
  PetscCall(TNH5GroupCreate(loc, group, &g));
  PetscCall(PetscMalloc1(t->nrows + 1, &ints));
  for (PetscInt k = 0; k < t->ncols; k++) {
    if (t->integer && t->integer[k]) {
      for (PetscInt i = 0; i < t->nrows; i++) ints[i] = (PetscInt64)t->columns[k][i];
      PetscCall(TNH5ArrayWrite(g, t->names[k], H5T_NATIVE_INT64, 1, n, ints));
    } else
      PetscCall(TNH5ArrayWrite(g, t->names[k], H5T_NATIVE_DOUBLE, 1, n, t->columns[k]));
  }
  PetscCall(PetscFree(ints));
  H5Gclose(g);
  PetscFunctionReturn(0);
}

PetscErrorCode TNH5TableRead(hid_t file, const char *path, const char *group, PetscInt required, TNTable *t)
{
  TNH5Array a;
  char name[PETSC_MAX_PATH_LEN];
  hsize_t n = 0;

  PetscFunctionBegin;
  t->nrows = 0;
  for (PetscInt k = 0; k < t->ncols; k++) {
    snprintf(name, sizeof name, "/%s/%s", group, t->names[k]);
    PetscCall(TNH5ArrayInfo(file, path, name, &a));
    if (!a.found && k >= required) continue;
    if (k == 0) n = a.found ? a.dims[0] : 0;
    PetscCheck(a.found && a.rank == 1 && a.dims[0] == n, PETSC_COMM_SELF, TN_ERR_USER,
               "%s: %s missing or not 1-D of length %llu", path, name, (unsigned long long)n);
  }
  for (PetscInt k = 0; k < t->ncols; k++) {
    snprintf(name, sizeof name, "/%s/%s", group, t->names[k]);
    PetscCall(PetscCalloc1(n + 1, &t->columns[k]));
    if (TNH5LinkExists(file, name)) PetscCall(TNH5ArrayRead(file, path, name, H5T_NATIVE_DOUBLE, t->columns[k]));
  }
  t->nrows = (PetscInt)n;
  PetscFunctionReturn(0);
}

PetscErrorCode TNTableFree(TNTable *t)
{
  PetscFunctionBegin;
  for (PetscInt k = 0; k < t->ncols; k++) PetscCall(PetscFree(t->columns[k]));
  t->nrows = 0;
  PetscFunctionReturn(0);
}

typedef struct {
  TNModel model;
  const PetscScalar *best;
  const TNTable *history;
  PetscInt nphases;
  const char *const *phases;
  const PetscReal *seconds; /* [P][nphases], gathered */
  PetscMPIInt size;
  PetscInt nconfig;
  const TNConfigEntry *config;
} Results;

static PetscErrorCode TimingWrite(hid_t file, const Results *r)
{
  const hsize_t P[] = {(hsize_t)r->size};
  PetscReal *column;
  hid_t g;

  PetscFunctionBegin;
  PetscCall(TNH5GroupCreate(file, "timing", &g));
  PetscCall(PetscMalloc1(r->size, &column));
  for (PetscInt k = 0; k < r->nphases; k++) {
    const char *name = r->phases[k];

    PetscCheck(name && name[0] && !strchr(name, '/') && strcmp(name, "."), PETSC_COMM_SELF, PETSC_ERR_ARG_WRONG,
               "timing phase %" PetscInt_FMT " has no usable name ('%s')", k, name ? name : "(null)");
    for (PetscMPIInt p = 0; p < r->size; p++) column[p] = r->seconds[p * r->nphases + k];
    PetscCall(TNH5ArrayWrite(g, name, H5T_NATIVE_DOUBLE, 1, P, column));
  }
  PetscCall(PetscFree(column));
  H5Gclose(g);
  PetscFunctionReturn(0);
}

/* Every option in force, "-key value" -> attribute key = "value". PetscOptionsGetAll joins them
   with blanks, so a value holding blanks is rebuilt from the words up to the next key. */
static PetscErrorCode OptionsWrite(hid_t config)
{
  char *all, **words, *value;
  int nwords;
  size_t len;

  PetscFunctionBegin;
  PetscCall(PetscOptionsGetAll(NULL, &all));
  PetscCall(PetscStrToArray(all, ' ', &nwords, &words));
  for (int i = 0, j; i < nwords; i = j) {
    PetscBool key;

    PetscCall(PetscOptionsValidKey(words[i], &key));
    j = i + 1;
    if (!key) continue;
    for (len = 1; j < nwords; j++) {
      PetscCall(PetscOptionsValidKey(words[j], &key));
      if (key) break;
      len += strlen(words[j]) + 1;
    }
    PetscCall(PetscCalloc1(len, &value));
    /* len counts every byte, so the plain concatenation cannot overrun */
    for (int k = i + 1; k < j; k++) {
      if (k > i + 1) PetscCall(PetscStrcat(value, " "));
      PetscCall(PetscStrcat(value, words[k]));
    }
    PetscCall(TNH5AttrWriteString(config, words[i] + 1, value));
    PetscCall(PetscFree(value));
  }
  PetscCall(PetscStrToArrayDestroy(nwords, words));
  PetscCall(PetscFree(all));
  PetscFunctionReturn(0);
}

/* The options as typed first, then the caller's entries (the settings as resolved, defaults
   included) over them, then what only the writer knows. */
static PetscErrorCode ConfigWrite(hid_t file, const Results *r)
{
  hid_t g;

  PetscFunctionBegin;
  PetscCall(TNH5GroupCreate(file, "config", &g));
  PetscCall(OptionsWrite(g));
  for (PetscInt i = 0; i < r->nconfig; i++) {
    PetscCheck(r->config[i].key && r->config[i].key[0], PETSC_COMM_SELF, PETSC_ERR_ARG_NULL,
               "config entry %" PetscInt_FMT " has no key", i);
    PetscCall(TNH5AttrWriteString(g, r->config[i].key, r->config[i].value ? r->config[i].value : ""));
  }
  PetscCall(TNH5AttrWriteString(g, "version", THETANET_VERSION));
  PetscCall(TNH5AttrWriteInt(g, "ranks", r->size));
  H5Gclose(g);
  PetscFunctionReturn(0);
}

static PetscErrorCode ResultsFill(hid_t file, void *ctx)
{
  const Results *r = (const Results *)ctx;
  PetscScalar *params;

  PetscFunctionBegin;
  PetscCall(TNModelGetParameters(r->model, NULL, &params));
  PetscCall(TNH5ModelWrite(file, "model", r->model, r->best ? r->best : params));
  if (r->best) PetscCall(TNH5ModelWrite(file, "model_last", r->model, params));
  PetscCall(TNH5TableWrite(file, "history", r->history));
  PetscCall(TimingWrite(file, r));
  PetscCall(ConfigWrite(file, r));
  PetscFunctionReturn(0);
}

PetscErrorCode TNResultsWrite(MPI_Comm comm, const char *path, TNModel model, const PetscScalar *best,
                              const TNTable *history, PetscInt nphases, const char *const phases[],
                              const PetscReal seconds[], PetscInt nconfig, const TNConfigEntry *config)
{
  PetscInt range[2] = {-nphases, nphases};
  PetscReal *all    = NULL;
  PetscMPIInt rank, size, n;
  Results r;
  PetscErrorCode ierr;

  PetscFunctionBegin;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCallMPI(MPI_Comm_size(comm, &size));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, range, 2, MPIU_INT, MPI_MAX, comm));
  PetscCheck(-range[0] == range[1], comm, PETSC_ERR_ARG_INCOMP,
             "ranks disagree on the number of timing phases (%" PetscInt_FMT " to %" PetscInt_FMT ")", -range[0],
             range[1]);
  PetscCall(PetscMPIIntCast(nphases, &n));
  if (!rank) PetscCall(PetscMalloc1((size_t)size * nphases + 1, &all));
  PetscCallMPI(MPI_Gather(seconds, n, MPIU_REAL, all, n, MPIU_REAL, 0, comm));
  r    = (Results){model, best, history, nphases, phases, all, size, nconfig, config};
  ierr = TNH5RootWrite(comm, path, ResultsFill, &r);
  PetscCall(PetscFree(all));
  PetscCall(ierr);
  PetscFunctionReturn(0);
}

typedef struct {
  TNModel model;
  PetscInt N, nattr;
  const PetscReal *predictions;
  const PetscScalar *gradient;
  const char *const *attr_names;
  const PetscReal *attr_values;
  const TNTable *robustness;
} Evaluation;

static PetscErrorCode EvaluationFill(hid_t file, void *ctx)
{
  const Evaluation *e = (const Evaluation *)ctx;
  const TNModelConfig *c;
  hsize_t dims[2];

  PetscFunctionBegin;
  PetscCall(TNModelGetConfig(e->model, &c));
  dims[0] = (hsize_t)e->N;
  dims[1] = (hsize_t)c->m;
  PetscCall(TNH5ArrayWrite(file, "predictions", H5T_NATIVE_DOUBLE, 2, dims, e->predictions));
  for (PetscInt i = 0; i < e->nattr && e->attr_names[i]; i++)
    PetscCall(TNH5AttrWriteReal(file, e->attr_names[i], e->attr_values[i]));
  if (e->gradient) PetscCall(TNH5ModelWrite(file, "gradient", e->model, e->gradient));
  if (e->robustness) PetscCall(TNH5TableWrite(file, "robustness", e->robustness));
  PetscFunctionReturn(0);
}

PetscErrorCode TNEvaluationWrite(MPI_Comm comm, const char *path, TNModel model, PetscInt N,
                                 const PetscReal *predictions, const PetscScalar *gradient, PetscInt nattr,
                                 const char *const attr_names[], const PetscReal attr_values[],
                                 const TNTable *robustness)
{
  Evaluation e = {model, N, nattr, predictions, gradient, attr_names, attr_values, robustness};

  PetscFunctionBegin;
  PetscCall(TNH5RootWrite(comm, path, EvaluationFill, &e));
  PetscFunctionReturn(0);
}

typedef struct {
  const char *option, *path;
} OutputPath;

static PetscErrorCode OutputPathJob(void *ctx)
{
  const OutputPath *o = (const OutputPath *)ctx;

  PetscFunctionBegin;
  PetscCall(TNH5OutputCheck(o->option, o->path));
  PetscFunctionReturn(0);
}

PetscErrorCode TNOutputPathCheck(MPI_Comm comm, const char *option, const char *path)
{
  OutputPath o = {option, path};

  PetscFunctionBegin;
  PetscCall(TNH5RootCall(comm, OutputPathJob, &o));
  PetscFunctionReturn(0);
}

typedef struct {
  PetscInt n;
  const char *const *keys;
  char (*values)[128];
} ConfigRead;

static PetscErrorCode ConfigReadAttrs(hid_t file, void *ctx)
{
  ConfigRead *r = (ConfigRead *)ctx;
  char path[PETSC_MAX_PATH_LEN];
  hid_t g;

  PetscFunctionBegin;
  H5Fget_name(file, path, sizeof path);
  for (PetscInt k = 0; k < r->n; k++) r->values[k][0] = 0;
  if (!TNH5LinkExists(file, "/config")) PetscFunctionReturn(0);
  g = H5Gopen2(file, "config", H5P_DEFAULT);
  PetscCheck(g >= 0, PETSC_COMM_SELF, TN_ERR_USER, "%s: cannot open /config", path);
  for (PetscInt k = 0; k < r->n; k++) {
    PetscBool found;
    PetscErrorCode ierr = TNH5AttrReadString(g, path, "/config", r->keys[k], r->values[k], sizeof r->values[k], &found);
    if (ierr) H5Gclose(g);
    PetscCall(ierr);
  }
  H5Gclose(g);
  PetscFunctionReturn(0);
}

PetscErrorCode TNResultsConfigRead(MPI_Comm comm, const char *path, PetscInt n, const char *const keys[],
                                   char values[][128])
{
  ConfigRead r = {n, keys, values};

  PetscFunctionBegin;
  PetscCall(TNH5RootRead(comm, path, ConfigReadAttrs, &r));
  PetscCallMPI(MPI_Bcast(values, (PetscMPIInt)(n * 128), MPI_CHAR, 0, comm));
  PetscFunctionReturn(0);
}
