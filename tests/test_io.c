/* Tests of io/: models, results and datasets survive a round trip exactly, and every kind of bad
   input file fails with TN_ERR_USER and a message naming it, on every rank. Run on 1 and 2 ranks. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <hdf5.h>
#include "tnio.h"
#include "modelimpl.h"

static char dir[PETSC_MAX_PATH_LEN]; /* unique to this run, made by rank 0 */
static PetscMPIInt rank, size;

static void PathOf(const char *name, char path[PETSC_MAX_PATH_LEN])
{
  assert_true(snprintf(path, PETSC_MAX_PATH_LEN, "%s/%.200s", dir, name) < PETSC_MAX_PATH_LEN);
}

/* The error must be TN_ERR_USER on every rank, with one message that names the file and says
   what is wrong (the same text reaches every rank). */
static void ExpectUserError(PetscErrorCode ierr, const char *path, const char *needle)
{
  char *msg = NULL;

  assert_int_equal(ierr, TN_ERR_USER);
  PetscErrorMessage(ierr, NULL, &msg);
  assert_non_null(msg);
  if (path && strncmp(msg, path, strlen(path))) fail_msg("message does not start with %s: %s", path, msg);
  if (!strstr(msg, needle)) fail_msg("message lacks \"%s\": %s", needle, msg);
}

/* -------- files written with the HDF5 C API, as an outside tool would -------- */

/* Element types in the file (HDF5's type ids exist only at run time). */
typedef enum { F64, F32, I64, I32 } FileType;

static hid_t FileTypeId(FileType t)
{
  const hid_t ids[] = {H5T_IEEE_F64LE, H5T_IEEE_F32LE, H5T_STD_I64LE, H5T_STD_I32LE};
  return ids[t];
}

/* X and Y; rank 0 = leave the array out. Values: floats 0.25 i + 0.125 (exact in float32),
   integers i % 3; *_bad_at (flat index + 1) replaces one value with *_bad. */
typedef struct {
  const char *name, *needle;
  int xrank, yrank;
  hsize_t xdims[3], ydims[3];
  FileType xtype, ytype;
  const char *task;
  hsize_t x_bad_at, y_bad_at;
  double x_bad, y_bad;
} DatasetSpec;

static void StringAttrWrite(hid_t obj, const char *name, const char *value)
{
  hid_t type = H5Tcopy(H5T_C_S1), space = H5Screate(H5S_SCALAR), attr;

  H5Tset_size(type, H5T_VARIABLE);
  attr = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(attr, type, &value);
  H5Aclose(attr);
  H5Sclose(space);
  H5Tclose(type);
}

static void ValuesWrite(hid_t file, const char *name, FileType ftype, int r, const hsize_t *dims, hsize_t bad_at,
                        double bad)
{
  const PetscBool labels = ftype == I64 || ftype == I32 ? PETSC_TRUE : PETSC_FALSE;
  hsize_t n              = 1;
  double *v;
  hid_t space, dset;

  for (int i = 0; i < r; i++) n *= dims[i];
  v = calloc(n + 1, sizeof(double));
  for (hsize_t i = 0; i < n; i++) v[i] = labels ? (double)(i % 3) : 0.25 * i + 0.125;
  if (bad_at) v[bad_at - 1] = bad;
  space = H5Screate_simple(r, dims, NULL);
  dset  = H5Dcreate2(file, name, FileTypeId(ftype), space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (n) H5Dwrite(dset, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
  H5Dclose(dset);
  H5Sclose(space);
  free(v);
}

static void DatasetMake(const char *path, const DatasetSpec *s)
{
  if (!rank) {
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);

    if (s->xrank) ValuesWrite(file, "X", s->xtype, s->xrank, s->xdims, s->x_bad_at, s->x_bad);
    if (s->yrank) ValuesWrite(file, "Y", s->ytype, s->yrank, s->ydims, s->y_bad_at, s->y_bad);
    if (s->task) StringAttrWrite(file, "task", s->task);
    H5Fclose(file);
  }
  MPI_Barrier(PETSC_COMM_WORLD);
}

/* -------- datasets -------- */

/* A data set's shape and arrays, for the checks below. */
typedef struct {
  TNDatasetInfo info;
  PetscReal *X, *Y;
  PetscInt *labels;
} DatasetView;

static DatasetView View(TNDataset ds)
{
  DatasetView v;

  assert_int_equal(TNDatasetGetInfo(ds, &v.info), 0);
  assert_int_equal(TNDatasetGetArrays(ds, NULL, &v.labels, &v.Y), 0);
  /* inputs held as float32 or uint8 have no float64 array to show */
  if (TNDatasetGetArrays(ds, &v.X, NULL, NULL)) v.X = NULL;
  return v;
}

static void DatasetsEqual(TNDataset da, TNDataset db)
{
  const DatasetView a = View(da), b = View(db);

  assert_int_equal(a.info.N, b.info.N);
  assert_int_equal(a.info.d, b.info.d);
  assert_int_equal(a.info.m, b.info.m);
  assert_int_equal(a.info.task, b.info.task);
  assert_string_equal(a.info.name, b.info.name);
  for (PetscInt i = 0; i < a.info.N * a.info.d; i++) assert_true(a.X[i] == b.X[i]);
  if (a.info.task == TN_TASK_CLASSIFICATION)
    for (PetscInt i = 0; i < a.info.N; i++) assert_int_equal(a.labels[i], b.labels[i]);
  else
    for (PetscInt i = 0; i < a.info.N * a.info.m; i++) assert_true(a.Y[i] == b.Y[i]);
}

static void DatasetRoundTrip(TNTask task, PetscInt m, const char *file)
{
  TNDataset ds, back = NULL;
  DatasetView v;
  char path[PETSC_MAX_PATH_LEN], name[64];
  PetscInt N = 37, d = 3;

  PathOf(file, path);
  snprintf(name, sizeof(name), "toy %s", TNTasks[task]);
  assert_int_equal(TNDatasetCreate(N, d, m, task, name, &ds), 0);
  v = View(ds);
  for (PetscInt i = 0; i < N * d; i++) v.X[i] = sin(1.0 + i) / 3.0;
  if (task == TN_TASK_CLASSIFICATION)
    for (PetscInt i = 0; i < N; i++) v.labels[i] = (i * 7) % m;
  else
    for (PetscInt i = 0; i < N * m; i++) v.Y[i] = cos(0.5 * i) * 1e3;
  assert_int_equal(TNDatasetSave(PETSC_COMM_WORLD, path, ds), 0);
  assert_int_equal(TNDatasetLoad(PETSC_COMM_WORLD, path, NULL, &back), 0);
  DatasetsEqual(ds, back);
  assert_int_equal(TNDatasetDestroy(&ds), 0);
  assert_int_equal(TNDatasetDestroy(&back), 0);
}

static void test_dataset_roundtrip_classification(void **state)
{
  (void)state;
  DatasetRoundTrip(TN_TASK_CLASSIFICATION, 4, "class.h5");
}

static void test_dataset_roundtrip_regression(void **state)
{
  (void)state;
  DatasetRoundTrip(TN_TASK_REGRESSION, 2, "regress.h5");
}

/* What outside tools write: float32 X, int32 labels, a name; float labels by task attribute. */
static void test_dataset_accepts(void **state)
{
  const DatasetSpec f32 = {"f32", NULL, 2, 1, {10, 2}, {10}, F32, I32, NULL, 0, 0, 0, 0};
  const DatasetSpec flt = {"fltlabels", NULL, 2, 2, {10, 2}, {10, 1}, F64, F64, "classification", 0, 0, 0, 0};
  char path[PETSC_MAX_PATH_LEN];
  TNDataset ds = NULL;
  DatasetView v;

  (void)state;
  PathOf("f32.h5", path);
  DatasetMake(path, &f32);
  assert_int_equal(TNDatasetLoad(PETSC_COMM_WORLD, path, NULL, &ds), 0);
  v = View(ds);
  assert_int_equal(v.info.task, TN_TASK_CLASSIFICATION);
  assert_int_equal(v.info.m, 3);
  assert_string_equal(v.info.name, "f32");
  assert_null(v.X); /* float32 inputs stay float32 */
  {
    const PetscInt rows[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    PetscReal X[20];
    PetscInt labels[10];
    assert_int_equal(TNDatasetGetRows(ds, 10, rows, X, labels, NULL), 0);
    for (PetscInt i = 0; i < 20; i++) assert_true(X[i] == 0.25 * i + 0.125);
    for (PetscInt i = 0; i < 10; i++) assert_int_equal(labels[i], i % 3);
  }
  assert_int_equal(TNDatasetDestroy(&ds), 0);

  /* [N,1] float values 0.125 + 0.25 i are not whole numbers */
  PathOf("fltlabels.h5", path);
  DatasetMake(path, &flt);
  ExpectUserError(TNDatasetLoad(PETSC_COMM_WORLD, path, NULL, &ds), path, "label 0.125 at row 0 is not a whole number");
  assert_null(ds);
}

static const DatasetSpec BadDatasets[] = {
    {"no_x", "no /X", 0, 1, {0}, {10}, F64, I64, NULL, 0, 0, 0, 0},
    {"no_y", "no /Y", 2, 0, {10, 2}, {0}, F64, F64, NULL, 0, 0, 0, 0},
    {"x_1d", "/X must be 2-D [N,d], it has shape [10]", 1, 1, {10}, {10}, F64, I64, NULL, 0, 0, 0, 0},
    {"y_3d", "/Y must be [N] or [N,m], it has shape [10,2,2]", 2, 3, {10, 2}, {10, 2, 2}, F64, F64, NULL, 0, 0, 0, 0},
    {"n_mismatch", "/Y has 9 rows but /X has 10", 2, 1, {10, 2}, {9}, F64, I64, NULL, 0, 0, 0, 0},
    {"empty", "no rows (N = 0)", 2, 1, {0, 2}, {0}, F64, I64, NULL, 0, 0, 0, 0},
    {"no_columns", "/X has no columns (d = 0)", 2, 1, {10, 0}, {10}, F64, I64, NULL, 0, 0, 0, 0},
    {"negative_label", "label -1 at row 7 (labels must be >= 0)", 2, 1, {10, 2}, {10}, F64, I64, NULL, 0, 8, 0, -1},
    {"nan_x", "NaN or Inf in /X at row 3", 2, 1, {10, 2}, {10}, F64, I64, NULL, 7, 0, NAN, 0},
    {"inf_y", "NaN or Inf in /Y at row 2", 2, 2, {10, 2}, {10, 2}, F64, F64, NULL, 0, 6, 0, INFINITY},
    {"unknown_task",
     "attribute 'task' of the root group is 'clustering'",
     2,
     1,
     {10, 2},
     {10},
     F64,
     I64,
     "clustering",
     0,
     0,
     0,
     0},
    {"int_y_2d",
     "class labels /Y must be [N], it has shape [10,2]",
     2,
     2,
     {10, 2},
     {10, 2},
     F64,
     I64,
     NULL,
     0,
     0,
     0,
     0},
};
#define N_BAD_DATASETS (sizeof(BadDatasets) / sizeof(BadDatasets[0]))

static void test_dataset_rejects(void **state)
{
  const DatasetSpec *s = (const DatasetSpec *)*state;
  char path[PETSC_MAX_PATH_LEN], file[256];
  TNDataset ds = NULL;

  snprintf(file, sizeof(file), "%s.h5", s->name);
  PathOf(file, path);
  DatasetMake(path, s);
  ExpectUserError(TNDatasetLoad(PETSC_COMM_WORLD, path, NULL, &ds), path, s->needle);
  assert_null(ds);
}

static void test_dataset_missing_file(void **state)
{
  char path[PETSC_MAX_PATH_LEN];
  TNDataset ds = NULL;

  (void)state;
  PathOf("nothing_here.h5", path);
  ExpectUserError(TNDatasetLoad(PETSC_COMM_WORLD, path, NULL, &ds), path, "no such file");
  assert_null(ds);
}

/* A CSV file under an .h5 name */
static void TextFileMake(const char *path)
{
  if (!rank) {
    FILE *f = fopen(path, "w");

    fputs("x1,x2,y\n0.5,0.25,1\n", f);
    fclose(f);
  }
  MPI_Barrier(PETSC_COMM_WORLD);
}

static void test_dataset_not_hdf5(void **state)
{
  char path[PETSC_MAX_PATH_LEN];
  TNDataset ds = NULL;

  (void)state;
  PathOf("text.h5", path);
  TextFileMake(path);
  ExpectUserError(TNDatasetLoad(PETSC_COMM_WORLD, path, NULL, &ds), path, "not an HDF5 file");
  assert_null(ds);
}

static void test_dataset_truncated(void **state)
{
  char path[PETSC_MAX_PATH_LEN];
  TNDataset ds = NULL;

  (void)state;
  PathOf("truncated.h5", path);
  DatasetView v;

  assert_int_equal(TNDatasetCreate(100, 4, 2, TN_TASK_CLASSIFICATION, NULL, &ds), 0);
  v = View(ds);
  for (PetscInt i = 0; i < 400; i++) v.X[i] = i;
  for (PetscInt i = 0; i < 100; i++) v.labels[i] = i % 2;
  assert_int_equal(TNDatasetSave(PETSC_COMM_WORLD, path, ds), 0);
  assert_int_equal(TNDatasetDestroy(&ds), 0);
  if (!rank) {
    struct stat st;

    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(truncate(path, st.st_size / 2), 0);
  }
  MPI_Barrier(PETSC_COMM_WORLD);
  ExpectUserError(TNDatasetLoad(PETSC_COMM_WORLD, path, NULL, &ds), path, "truncated");
  assert_null(ds);
}

/* -------- models and results -------- */

static void ModelMake(TNModel *model)
{
  const TNModelConfig cfg = {.d             = 3,
                             .n             = 4,
                             .L             = 5,
                             .m             = 2,
                             .theta         = 0.5,
                             .T             = 2.5,
                             .gamma         = 0.01,
                             .act           = TN_ACT_SOFTPLUS,
                             .opening_act   = TN_ACT_RELU,
                             .antisymmetric = PETSC_TRUE,
                             .task          = TN_TASK_REGRESSION};

  assert_int_equal(TNModelCreate(&cfg, model), 0);
  /* distinct values that are not short binary fractions, so any rounding would show */
  for (PetscInt i = 0; i < (*model)->nparams; i++) (*model)->params[i] = (i + 1) / 7.0 - (i % 3) * PETSC_PI;
}

/* A results file with a 3-epoch history, two timed phases (rank r: r + 1 and 10 r + 0.5
   seconds), two config entries and options of each shape: with blanks, without value, a long
   word, a negative number. */
static void ResultsMake(const char *path, TNModel *model)
{
  const TNConfigEntry config[] = {{"grid", "1x2"}, {"layers", "5"}};
  const char *const names[]    = {"epoch",     "train_loss", "val_loss",   "val_accuracy", "lr",
                                  "wall_time", "newton_its", "krylov_its", "mgrit_its",    "mgrit_res"};
  const PetscBool integer[10]  = {PETSC_TRUE};
  const char *const phases[]   = {"forward", "backward"};
  const PetscReal seconds[]    = {rank + 1.0, 10.0 * rank + 0.5};
  PetscReal col[10][3], *cols[10];
  TNTable h = {10, 3, names, integer, cols};

  ModelMake(model);
  for (PetscInt e = 1; e <= 3; e++) {
    const PetscReal row[10] = {e, 1.0 / e, 2.0 / e, 0.5 + 0.1 * e, 1e-3, e * 0.25, 2.0, 3.0, 0.0, 1e-3 / e};
    for (int k = 0; k < 10; k++) col[k][e - 1] = row[k];
  }
  for (int k = 0; k < 10; k++) cols[k] = col[k];
  assert_int_equal(PetscOptionsSetValue(NULL, "-test_io_words", "two words"), 0);
  assert_int_equal(PetscOptionsSetValue(NULL, "-test_io_flag", NULL), 0);
  assert_int_equal(PetscOptionsSetValue(NULL, "-test_io_long", "a_single_rather_long_value"), 0);
  assert_int_equal(PetscOptionsSetValue(NULL, "-test_io_shift", "-1e-3"), 0);
  assert_int_equal(TNResultsWrite(PETSC_COMM_WORLD, path, *model, NULL, &h, 2, phases, seconds, 2, config), 0);
}

static void test_model_roundtrip(void **state)
{
  char path[PETSC_MAX_PATH_LEN];
  TNModel M, R = NULL;

  (void)state;
  PathOf("results.h5", path);
  ResultsMake(path, &M);
  assert_int_equal(TNModelLoad(PETSC_COMM_WORLD, path, &R), 0);
  assert_int_equal(R->cfg.d, M->cfg.d);
  assert_int_equal(R->cfg.n, M->cfg.n);
  assert_int_equal(R->cfg.L, M->cfg.L);
  assert_int_equal(R->cfg.m, M->cfg.m);
  assert_true(R->cfg.theta == M->cfg.theta);
  assert_true(R->cfg.T == M->cfg.T);
  assert_true(R->cfg.gamma == M->cfg.gamma);
  assert_int_equal(R->cfg.act, M->cfg.act);
  assert_int_equal(R->cfg.opening_act, M->cfg.opening_act);
  assert_int_equal(R->cfg.antisymmetric, M->cfg.antisymmetric);
  assert_int_equal(R->cfg.task, M->cfg.task);
  assert_int_equal(R->nparams, M->nparams);
  for (PetscInt i = 0; i < M->nparams; i++) assert_true(R->params[i] == M->params[i]);
  assert_int_equal(TNModelDestroy(&M), 0);
  assert_int_equal(TNModelDestroy(&R), 0);
}

static void StringAttrCheck(hid_t obj, const char *name, const char *expect)
{
  hid_t attr = H5Aopen(obj, name, H5P_DEFAULT), type = H5Aget_type(attr), mem = H5Tcopy(H5T_C_S1);
  char *s = NULL;

  assert_true(attr >= 0);
  /* variable-length: h5py gives str, not bytes */
  assert_true(H5Tis_variable_str(type) > 0);
  H5Tset_size(mem, H5T_VARIABLE);
  H5Tset_cset(mem, H5Tget_cset(type));
  assert_true(H5Aread(attr, mem, &s) >= 0);
  assert_string_equal(s, expect);
  H5free_memory(s);
  H5Tclose(mem);
  H5Tclose(type);
  H5Aclose(attr);
}

static void ArrayCheck(hid_t file, const char *name, int r, const hsize_t *dims, hid_t cls, double *values)
{
  hid_t dset = H5Dopen2(file, name, H5P_DEFAULT), space, type;
  hsize_t got[3];

  if (dset < 0) fail_msg("no %s", name);
  space = H5Dget_space(dset);
  type  = H5Dget_type(dset);
  assert_int_equal(H5Sget_simple_extent_ndims(space), r);
  H5Sget_simple_extent_dims(space, got, NULL);
  for (int i = 0; i < r; i++) assert_int_equal(got[i], dims[i]);
  assert_int_equal(H5Tget_class(type), cls);
  assert_int_equal(H5Tget_size(type), 8);
  if (values) assert_true(H5Dread(dset, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, values) >= 0);
  H5Tclose(type);
  H5Sclose(space);
  H5Dclose(dset);
}

/* The layout an outside reader (h5py) relies on, checked with the plain HDF5 API. */
static void test_results_layout(void **state)
{
  char path[PETSC_MAX_PATH_LEN], tmp[PETSC_MAX_PATH_LEN + 8];
  TNModel M;

  (void)state;
  PathOf("layout.h5", path);
  ResultsMake(path, &M);
  if (!rank) {
    const char *const columns[] = {"val_loss",   "val_accuracy", "lr",        "wall_time", "newton_its",
                                   "krylov_its", "mgrit_its",    "mgrit_res", NULL};
    const hsize_t three[] = {3}, P[] = {(hsize_t)size}, W[] = {5, 4, 4};
    double v[64];
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), g, attr;
    int64_t value;

    assert_true(file >= 0);
    ArrayCheck(file, "/history/epoch", 1, three, H5T_INTEGER, v);
    for (int e = 0; e < 3; e++) assert_true(v[e] == e + 1);
    ArrayCheck(file, "/history/train_loss", 1, three, H5T_FLOAT, v);
    assert_true(v[1] == 0.5);
    ArrayCheck(file, "/history/mgrit_res", 1, three, H5T_FLOAT, v);
    assert_true(v[1] == 1e-3 / 2);
    for (int k = 0; columns[k]; k++) {
      char name[64];

      snprintf(name, sizeof(name), "/history/%s", columns[k]);
      ArrayCheck(file, name, 1, three, H5T_FLOAT, NULL);
    }
    ArrayCheck(file, "/timing/forward", 1, P, H5T_FLOAT, v);
    for (int p = 0; p < size; p++) assert_true(v[p] == p + 1.0);
    ArrayCheck(file, "/timing/backward", 1, P, H5T_FLOAT, v);
    for (int p = 0; p < size; p++) assert_true(v[p] == 10.0 * p + 0.5);
    ArrayCheck(file, "/model/blocks/W", 3, W, H5T_FLOAT, NULL);

    g = H5Oopen(file, "/config", H5P_DEFAULT);
    assert_int_equal(H5Iget_type(g), H5I_GROUP);
    StringAttrCheck(g, "version", THETANET_VERSION);
    StringAttrCheck(g, "grid", "1x2");
    StringAttrCheck(g, "layers", "5");
    StringAttrCheck(g, "test_io_words", "two words");
    StringAttrCheck(g, "test_io_flag", "");
    StringAttrCheck(g, "test_io_long", "a_single_rather_long_value");
    StringAttrCheck(g, "test_io_shift", "-1e-3");
    attr = H5Aopen(g, "ranks", H5P_DEFAULT);
    assert_true(H5Aread(attr, H5T_NATIVE_INT64, &value) >= 0);
    assert_int_equal(value, size);
    H5Aclose(attr);
    H5Oclose(g);

    g = H5Gopen2(file, "/model", H5P_DEFAULT);
    StringAttrCheck(g, "activation", "softplus");
    StringAttrCheck(g, "opening_activation", "relu");
    StringAttrCheck(g, "task", "regression");
    attr = H5Aopen(g, "width", H5P_DEFAULT);
    assert_true(H5Aread(attr, H5T_NATIVE_INT64, &value) >= 0);
    assert_int_equal(value, 4);
    H5Aclose(attr);
    H5Gclose(g);
    H5Fclose(file);

    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    assert_int_not_equal(access(tmp, F_OK), 0);
  }
  assert_int_equal(TNModelDestroy(&M), 0);
}

static void test_evaluation_layout(void **state)
{
  const char *const names[] = {"loss", "accuracy", NULL};
  const PetscReal values[]  = {0.25, 0.875};
  char path[PETSC_MAX_PATH_LEN];
  PetscReal pred[10];
  PetscScalar *grad;
  TNModel M;

  (void)state;
  PathOf("eval.h5", path);
  ModelMake(&M);
  assert_int_equal(PetscMalloc1(M->nparams, &grad), 0);
  for (PetscInt i = 0; i < M->nparams; i++) grad[i] = -1.0 / (i + 3);
  for (int i = 0; i < 10; i++) pred[i] = i - 4.5;
  assert_int_equal(TNEvaluationWrite(PETSC_COMM_WORLD, path, M, 5, pred, grad, 2, names, values, NULL), 0);
  if (!rank) {
    const hsize_t P[] = {5, 2}, W[] = {5, 4, 4}, C[] = {2, 4};
    double v[128], x;
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), attr;
    TNParams g;

    TNParamsSet(&M->cfg, grad, &g);
    ArrayCheck(file, "/predictions", 2, P, H5T_FLOAT, v);
    for (int i = 0; i < 10; i++) assert_true(v[i] == pred[i]);
    ArrayCheck(file, "/gradient/blocks/W", 3, W, H5T_FLOAT, v);
    for (int i = 0; i < 80; i++) assert_true(v[i] == g.W[i]);
    ArrayCheck(file, "/gradient/closing/C", 2, C, H5T_FLOAT, v);
    for (int i = 0; i < 8; i++) assert_true(v[i] == g.C[i]);
    attr = H5Aopen(file, "accuracy", H5P_DEFAULT);
    assert_true(H5Aread(attr, H5T_NATIVE_DOUBLE, &x) >= 0);
    assert_true(x == 0.875);
    H5Aclose(attr);
    assert_true(H5Aexists_by_name(file, "/gradient", "layers", H5P_DEFAULT) > 0);
    H5Fclose(file);
  }
  assert_int_equal(PetscFree(grad), 0);
  assert_int_equal(TNModelDestroy(&M), 0);
}

/* A write that fails part-way leaves the old file as it was and no temporary behind. */
static void test_failed_write_keeps_old_file(void **state)
{
  const char *const names[] = {"", NULL};
  const PetscReal values[]  = {1.0};
  char path[PETSC_MAX_PATH_LEN], tmp[PETSC_MAX_PATH_LEN + 8];
  PetscReal pred[2] = {0, 0};
  TNModel M, R = NULL;

  (void)state;
  PathOf("keep.h5", path);
  ResultsMake(path, &M);
  /* HDF5 refuses an attribute without a name */
  assert_int_equal(TNEvaluationWrite(PETSC_COMM_WORLD, path, M, 1, pred, NULL, 1, names, values, NULL),
                   PETSC_ERR_FILE_WRITE);
  assert_int_equal(TNModelLoad(PETSC_COMM_WORLD, path, &R), 0);
  for (PetscInt i = 0; i < M->nparams; i++) assert_true(R->params[i] == M->params[i]);
  snprintf(tmp, sizeof(tmp), "%s.tmp", path);
  assert_int_not_equal(access(tmp, F_OK), 0);
  assert_int_equal(TNModelDestroy(&M), 0);
  assert_int_equal(TNModelDestroy(&R), 0);
}

/* Writes a results file, then lets edit() break its /model with the HDF5 API (on rank 0). */
static void BrokenModelExpect(const char *file, void (*edit)(hid_t model), const char *needle)
{
  char path[PETSC_MAX_PATH_LEN];
  TNModel M, R = NULL;

  PathOf(file, path);
  ResultsMake(path, &M);
  if (!rank) {
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT), g = H5Gopen2(f, "/model", H5P_DEFAULT);

    edit(g);
    H5Gclose(g);
    H5Fclose(f);
  }
  MPI_Barrier(PETSC_COMM_WORLD);
  ExpectUserError(TNModelLoad(PETSC_COMM_WORLD, path, &R), path, needle);
  assert_null(R);
  assert_int_equal(TNModelDestroy(&M), 0);
}

static void WExtraLayer(hid_t g)
{
  const hsize_t dims[] = {6, 4, 4};

  H5Ldelete(g, "blocks/W", H5P_DEFAULT);
  ValuesWrite(g, "blocks/W", F64, 3, dims, 0, 0);
}

static void ThetaDelete(hid_t g)
{
  H5Adelete(g, "theta");
}

static void ActivationUnknown(hid_t g)
{
  H5Adelete(g, "activation");
  StringAttrWrite(g, "activation", "swish");
}

static void TaskUnknown(hid_t g)
{
  H5Adelete(g, "task");
  StringAttrWrite(g, "task", "ranking");
}

static void ClosingBiasNaN(hid_t g)
{
  const hsize_t dims[] = {2};

  H5Ldelete(g, "closing/b", H5P_DEFAULT);
  ValuesWrite(g, "closing/b", F64, 1, dims, 2, NAN);
}

static void test_model_rejects_shape(void **state)
{
  (void)state;
  BrokenModelExpect("bad_shape.h5", WExtraLayer,
                    "/model/blocks/W has shape [6,4,4] but attributes say layers=5 width=4");
}

static void test_model_rejects_missing_attribute(void **state)
{
  (void)state;
  BrokenModelExpect("no_theta.h5", ThetaDelete, "/model has no attribute 'theta'");
}

static void test_model_rejects_activation(void **state)
{
  (void)state;
  /* every allowed value is listed, the last one too */
  BrokenModelExpect("swish.h5", ActivationUnknown,
                    "attribute 'activation' of /model is 'swish', expected one of none, tanh, relu, softplus, sigmoid");
  BrokenModelExpect("ranking.h5", TaskUnknown,
                    "attribute 'task' of /model is 'ranking', expected one of classification, regression");
}

static void test_model_rejects_nan(void **state)
{
  (void)state;
  BrokenModelExpect("nan_bias.h5", ClosingBiasNaN, "NaN or Inf in /model/closing/b");
}

static void test_model_rejects_other_files(void **state)
{
  const DatasetSpec data = {"data", NULL, 2, 1, {10, 2}, {10}, F64, I64, NULL, 0, 0, 0, 0};
  char path[PETSC_MAX_PATH_LEN];
  TNModel R = NULL;

  (void)state;
  PathOf("data.h5", path); /* HDF5, but no /model */
  DatasetMake(path, &data);
  ExpectUserError(TNModelLoad(PETSC_COMM_WORLD, path, &R), path, "no /model group");
  PathOf("model_text.h5", path);
  TextFileMake(path);
  ExpectUserError(TNModelLoad(PETSC_COMM_WORLD, path, &R), path, "not an HDF5 file");
  PathOf("absent.h5", path);
  ExpectUserError(TNModelLoad(PETSC_COMM_WORLD, path, &R), path, "no such file");
  assert_null(R);
}

static void test_output_path(void **state)
{
  char path[PETSC_MAX_PATH_LEN], expect[3 * PETSC_MAX_PATH_LEN];
  TNModel M;

  (void)state;
  PathOf("results.h5", path);
  assert_int_equal(TNOutputPathCheck(PETSC_COMM_WORLD, "-output", path), 0);
  PathOf("missing_dir/results.h5", path);
  snprintf(expect, sizeof(expect), "-output: cannot write %s: directory '%s/missing_dir' does not exist", path, dir);
  ExpectUserError(TNOutputPathCheck(PETSC_COMM_WORLD, "-output", path), NULL, expect);
  ExpectUserError(TNOutputPathCheck(PETSC_COMM_WORLD, "-output", dir), NULL, "is a directory");
  ModelMake(&M);
  {
    TNTable empty = {0, 0, NULL, NULL, NULL};
    ExpectUserError(TNResultsWrite(PETSC_COMM_WORLD, path, M, NULL, &empty, 0, NULL, NULL, 0, NULL), NULL,
                    "does not exist");
  }
  assert_int_equal(TNModelDestroy(&M), 0);
}

/* -------- driver -------- */

static void DirectoryRemove(void)
{
  DIR *d = opendir(dir);
  struct dirent *e;
  char path[PETSC_MAX_PATH_LEN];

  if (!d) return;
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
      PathOf(e->d_name, path);
      unlink(path);
    }
  closedir(d);
  rmdir(dir);
}

static const struct CMUnitTest FixedTests[] = {
    cmocka_unit_test(test_dataset_roundtrip_classification),
    cmocka_unit_test(test_dataset_roundtrip_regression),
    cmocka_unit_test(test_dataset_accepts),
    cmocka_unit_test(test_dataset_missing_file),
    cmocka_unit_test(test_dataset_not_hdf5),
    cmocka_unit_test(test_dataset_truncated),
    cmocka_unit_test(test_model_roundtrip),
    cmocka_unit_test(test_results_layout),
    cmocka_unit_test(test_evaluation_layout),
    cmocka_unit_test(test_failed_write_keeps_old_file),
    cmocka_unit_test(test_model_rejects_shape),
    cmocka_unit_test(test_model_rejects_missing_attribute),
    cmocka_unit_test(test_model_rejects_activation),
    cmocka_unit_test(test_model_rejects_nan),
    cmocka_unit_test(test_model_rejects_other_files),
    cmocka_unit_test(test_output_path),
};
#define N_FIXED_TESTS (sizeof(FixedTests) / sizeof(FixedTests[0]))

int main(int argc, char **argv)
{
  struct CMUnitTest tests[N_FIXED_TESTS + N_BAD_DATASETS];
  int failed, any_failed;
  int pid;

  if (PetscInitialize(&argc, &argv, NULL, NULL)) return 1;
  /* the failures provoked here would otherwise print PETSc tracebacks */
  PetscPushErrorHandler(PetscReturnErrorHandler, NULL);
  MPI_Comm_rank(PETSC_COMM_WORLD, &rank);
  MPI_Comm_size(PETSC_COMM_WORLD, &size);
  /* each bad dataset is a test of its own, named after it */
  memcpy(tests, FixedTests, sizeof(FixedTests));
  for (size_t i = 0; i < N_BAD_DATASETS; i++)
    tests[N_FIXED_TESTS + i] =
        (struct CMUnitTest){BadDatasets[i].name, test_dataset_rejects, NULL, NULL, (void *)&BadDatasets[i]};
  /* one report, from rank 0; failures on other ranks still reach stderr */
  if (rank && !freopen("/dev/null", "w", stdout)) MPI_Abort(PETSC_COMM_WORLD, 1);
  pid = (int)getpid();
  if (MPI_Bcast(&pid, 1, MPI_INT, 0, PETSC_COMM_WORLD)) MPI_Abort(PETSC_COMM_WORLD, 1);
  snprintf(dir, sizeof(dir), "/tmp/thetanet_test_io_%d", pid);
  if (!rank && mkdir(dir, 0700)) {
    perror(dir);
    MPI_Abort(PETSC_COMM_WORLD, 1);
  }
  MPI_Barrier(PETSC_COMM_WORLD);

  failed = cmocka_run_group_tests(tests, NULL, NULL);

  MPI_Barrier(PETSC_COMM_WORLD);
  if (!rank) DirectoryRemove();
  MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, PETSC_COMM_WORLD);
  PetscPopErrorHandler();
  PetscFinalize();
  return any_failed ? 1 : 0;
}
