/* What a run leaves behind (DESIGN.md §4): the per-epoch history, the results file of `train`, the
   file of `evaluate`/`predict`, and the check that an output path is writable before any work. */
#include <stddef.h>
#include <string.h>
#include "h5util.h"
#include "tnio.h"

/* The real-valued columns of TNHistory, in the order of TNHistoryAppend's arguments; the names
   are those of /history in the results file. */
static const struct {
  const char *name;
  size_t      offset;
} HistoryColumns[] = {
  {"train_loss", offsetof(TNHistory, train_loss)},
  {"val_loss", offsetof(TNHistory, val_loss)},
  {"val_accuracy", offsetof(TNHistory, val_accuracy)},
  {"lr", offsetof(TNHistory, lr)},
  {"wall_time", offsetof(TNHistory, wall_time)},
  {"newton_its", offsetof(TNHistory, newton_its)},
  {"krylov_its", offsetof(TNHistory, krylov_its)},
  {"mgrit_its", offsetof(TNHistory, mgrit_its)},
  {"mgrit_res", offsetof(TNHistory, mgrit_res)}, /* not in files of earlier versions: read as 0 */
};
#define TN_HISTORY_OPTIONAL "mgrit_res"
#define TN_HISTORY_COLUMNS ((int)(sizeof(HistoryColumns) / sizeof(HistoryColumns[0])))

static PetscReal **HistoryColumn(const TNHistory *h, int k)
{
  return (PetscReal **)((char *)h + HistoryColumns[k].offset);
}

PetscErrorCode TNHistoryAppend(TNHistory *h, PetscInt epoch, PetscReal train_loss, PetscReal val_loss, PetscReal val_accuracy, PetscReal lr,
                               PetscReal wall_time, PetscReal newton_its, PetscReal krylov_its, PetscReal mgrit_its, PetscReal mgrit_res)
{
  const PetscReal v[] = {train_loss, val_loss, val_accuracy, lr, wall_time, newton_its, krylov_its, mgrit_its, mgrit_res};

  PetscFunctionBegin;
  if (h->n == h->cap) {
    const PetscInt cap = h->cap ? 2 * h->cap : 64;

    PetscCall(PetscRealloc(sizeof(PetscInt) * cap, &h->epoch));
    for (int k = 0; k < TN_HISTORY_COLUMNS; k++) PetscCall(PetscRealloc(sizeof(PetscReal) * cap, HistoryColumn(h, k)));
    h->cap = cap;
  }
  h->epoch[h->n] = epoch;
  for (int k = 0; k < TN_HISTORY_COLUMNS; k++) (*HistoryColumn(h, k))[h->n] = v[k];
  h->n++;
  PetscFunctionReturn(0);
}

PetscErrorCode TNHistoryDestroy(TNHistory *h)
{
  PetscFunctionBegin;
  PetscCall(PetscFree(h->epoch));
  for (int k = 0; k < TN_HISTORY_COLUMNS; k++) PetscCall(PetscFree(*HistoryColumn(h, k)));
  h->n = h->cap = 0;
  PetscFunctionReturn(0);
}

PetscErrorCode TNH5HistoryWrite(hid_t file, const TNHistory *h)
{
  const hsize_t n[] = {h ? (hsize_t)h->n : 0};
  PetscInt64   *epoch;
  hid_t         g;

  PetscFunctionBegin;
  PetscCall(TNH5GroupCreate(file, "history", &g));
  PetscCall(PetscMalloc1(n[0], &epoch));
  for (hsize_t i = 0; i < n[0]; i++) epoch[i] = h->epoch[i];
  PetscCall(TNH5ArrayWrite(g, "epoch", H5T_NATIVE_INT64, 1, n, epoch));
  PetscCall(PetscFree(epoch));
  for (int k = 0; k < TN_HISTORY_COLUMNS; k++)
    PetscCall(TNH5ArrayWrite(g, HistoryColumns[k].name, H5T_NATIVE_DOUBLE, 1, n, h ? *HistoryColumn(h, k) : NULL));
  H5Gclose(g);
  PetscFunctionReturn(0);
}

PetscErrorCode TNH5HistoryRead(hid_t file, const char *path, TNHistory *h)
{
  TNH5Array  a;
  PetscInt64 *epoch;
  PetscReal  *col[TN_HISTORY_COLUMNS];
  PetscBool  present[TN_HISTORY_COLUMNS];
  hsize_t    n;

  PetscFunctionBegin;
  PetscCall(TNH5ArrayInfo(file, path, "/history/epoch", &a));
  PetscCheck(a.found && a.rank == 1, PETSC_COMM_SELF, TN_ERR_USER, "%s: /history/epoch missing or not 1-D", path);
  n = a.dims[0];
  for (int k = 0; k < TN_HISTORY_COLUMNS; k++) {
    char name[64];
    snprintf(name, sizeof name, "/history/%s", HistoryColumns[k].name);
    PetscCall(TNH5ArrayInfo(file, path, name, &a));
    present[k] = a.found;
    if (!a.found && !strcmp(HistoryColumns[k].name, TN_HISTORY_OPTIONAL)) continue;
    PetscCheck(a.found && a.rank == 1 && a.dims[0] == n, PETSC_COMM_SELF, TN_ERR_USER, "%s: %s missing or not of length %d", path, name, (int)n);
  }
  PetscCall(PetscMalloc1(n + 1, &epoch));
  for (int k = 0; k < TN_HISTORY_COLUMNS; k++) PetscCall(PetscCalloc1(n + 1, &col[k]));
  PetscCall(TNH5ArrayRead(file, path, "/history/epoch", H5T_NATIVE_INT64, epoch));
  for (int k = 0; k < TN_HISTORY_COLUMNS; k++) {
    char name[64];
    if (!present[k]) continue;
    snprintf(name, sizeof name, "/history/%s", HistoryColumns[k].name);
    PetscCall(TNH5ArrayRead(file, path, name, H5T_NATIVE_DOUBLE, col[k]));
  }
  for (hsize_t i = 0; i < n; i++)
    PetscCall(TNHistoryAppend(h, (PetscInt)epoch[i], col[0][i], col[1][i], col[2][i], col[3][i], col[4][i], col[5][i], col[6][i], col[7][i], col[8][i]));
  PetscCall(PetscFree(epoch));
  for (int k = 0; k < TN_HISTORY_COLUMNS; k++) PetscCall(PetscFree(col[k]));
  PetscFunctionReturn(0);
}

typedef struct {
  TNModel              model;
  const TNHistory     *history;
  const TNTiming      *timing;  /* rank 0's: the phase names */
  const PetscReal     *seconds; /* [P][TN_MAX_PHASES], gathered */
  PetscMPIInt          size;
  PetscInt             nconfig;
  const TNConfigEntry *config;
} Results;

static PetscErrorCode TimingWrite(hid_t file, const Results *r)
{
  const hsize_t P[] = {(hsize_t)r->size};
  PetscReal    *column;
  hid_t         g;

  PetscFunctionBegin;
  PetscCall(TNH5GroupCreate(file, "timing", &g));
  PetscCall(PetscMalloc1(r->size, &column));
  for (PetscInt k = 0; r->timing && k < r->timing->nphases; k++) {
    const char *name = r->timing->names[k];

    PetscCheck(name && name[0] && !strchr(name, '/') && strcmp(name, "."), PETSC_COMM_SELF, PETSC_ERR_ARG_WRONG,
               "timing phase %" PetscInt_FMT " has no usable name ('%s')", k, name ? name : "(null)");
    for (PetscMPIInt p = 0; p < r->size; p++) column[p] = r->seconds[p * TN_MAX_PHASES + k];
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
  char  *all, **words, *value;
  int    nwords;
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
    PetscCheck(r->config[i].key && r->config[i].key[0], PETSC_COMM_SELF, PETSC_ERR_ARG_NULL, "config entry %" PetscInt_FMT " has no key",
               i);
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

  PetscFunctionBegin;
  PetscCall(TNH5ModelWrite(file, "model", r->model, r->model->theta_buf));
  PetscCall(TNH5HistoryWrite(file, r->history));
  PetscCall(TimingWrite(file, r));
  PetscCall(ConfigWrite(file, r));
  PetscFunctionReturn(0);
}

PetscErrorCode TNResultsWrite(MPI_Comm comm, const char *path, TNModel model, const TNHistory *history, const TNTiming *timing,
                              PetscInt nconfig, const TNConfigEntry *config)
{
  const PetscInt nphases = timing ? timing->nphases : 0;
  PetscReal      mine[TN_MAX_PHASES] = {0}, *all = NULL;
  PetscInt       range[2]            = {-nphases, nphases};
  PetscMPIInt    rank, size;
  Results        r;
  PetscErrorCode ierr;

  PetscFunctionBegin;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCallMPI(MPI_Comm_size(comm, &size));
  PetscCall(MPIU_Allreduce(MPI_IN_PLACE, range, 2, MPIU_INT, MPI_MAX, comm));
  PetscCheck(-range[0] == range[1], comm, PETSC_ERR_ARG_INCOMP,
             "ranks disagree on the number of timing phases (%" PetscInt_FMT " to %" PetscInt_FMT ")", -range[0], range[1]);
  PetscCheck(nphases >= 0 && nphases <= TN_MAX_PHASES, comm, PETSC_ERR_ARG_OUTOFRANGE, "%" PetscInt_FMT " timing phases, at most %d",
             nphases, TN_MAX_PHASES);
  for (PetscInt k = 0; k < nphases; k++) mine[k] = timing->seconds[k];
  if (!rank) PetscCall(PetscMalloc1((size_t)size * TN_MAX_PHASES, &all));
  PetscCallMPI(MPI_Gather(mine, TN_MAX_PHASES, MPIU_REAL, all, TN_MAX_PHASES, MPIU_REAL, 0, comm));
  r    = (Results){model, history, timing, all, size, nconfig, config};
  ierr = TNH5RootWrite(comm, path, ResultsFill, &r);
  PetscCall(PetscFree(all));
  PetscCall(ierr);
  PetscFunctionReturn(0);
}

typedef struct {
  TNModel            model;
  PetscInt           N, nattr;
  const PetscReal   *predictions;
  const PetscScalar *gradient;
  const char *const *attr_names;
  const PetscReal   *attr_values;
} Evaluation;

static PetscErrorCode EvaluationFill(hid_t file, void *ctx)
{
  const Evaluation *e      = (const Evaluation *)ctx;
  const hsize_t     dims[] = {(hsize_t)e->N, (hsize_t)e->model->cfg.m};

  PetscFunctionBegin;
  PetscCall(TNH5ArrayWrite(file, "predictions", H5T_NATIVE_DOUBLE, 2, dims, e->predictions));
  for (PetscInt i = 0; i < e->nattr && e->attr_names[i]; i++) PetscCall(TNH5AttrWriteReal(file, e->attr_names[i], e->attr_values[i]));
  if (e->gradient) PetscCall(TNH5ModelWrite(file, "gradient", e->model, e->gradient));
  PetscFunctionReturn(0);
}

PetscErrorCode TNEvaluationWrite(MPI_Comm comm, const char *path, TNModel model, PetscInt N, const PetscReal *predictions,
                                 const PetscScalar *gradient, PetscInt nattr, const char *const attr_names[], const PetscReal attr_values[])
{
  Evaluation e = {model, N, nattr, predictions, gradient, attr_names, attr_values};

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
