/* Data sets (DESIGN.md §4): /X [N,d] inputs, /Y class labels or regression targets. The object
   holds a set, or a rank's shard of it, in memory. Rank 0 reads and checks everything a user
   would need to fix in a file, then shares it; writes are atomic. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "h5util.h"

struct _n_TNDataset {
  PetscInt N, d, m;        /* m: classes (max label + 1) or targets */
  PetscInt Nlocal, offset; /* rows held here: offset..offset+Nlocal-1 (all N unless sharded) */
  TNTask task;
  PetscReal *X;
  PetscInt *labels; /* classification: Nlocal labels in [0, m) */
  PetscReal *Y;     /* regression: Nlocal x m targets */
  char name[256];
};

PetscErrorCode TNDatasetCreate(PetscInt N, PetscInt d, PetscInt m, TNTask task, const char *name, TNDataset *ds)
{
  TNDataset D;

  PetscFunctionBegin;
  PetscCall(PetscNew(&D));
  D->N      = N;
  D->d      = d;
  D->m      = m;
  D->task   = task;
  D->Nlocal = N;
  D->offset = 0;
  if (name) PetscCall(PetscStrncpy(D->name, name, sizeof D->name));
  PetscCall(PetscMalloc1(N * d, &D->X));
  if (task == TN_TASK_CLASSIFICATION)
    PetscCall(PetscMalloc1(N, &D->labels));
  else
    PetscCall(PetscMalloc1(N * m, &D->Y));
  *ds = D;
  PetscFunctionReturn(0);
}

PetscErrorCode TNDatasetDestroy(TNDataset *ds)
{
  PetscFunctionBegin;
  if (!*ds) PetscFunctionReturn(0);
  PetscCall(PetscFree((*ds)->X));
  PetscCall(PetscFree((*ds)->labels));
  PetscCall(PetscFree((*ds)->Y));
  PetscCall(PetscFree(*ds));
  PetscFunctionReturn(0);
}

PetscErrorCode TNDatasetGetInfo(TNDataset D, TNDatasetInfo *info)
{
  PetscFunctionBegin;
  info->N      = D->N;
  info->d      = D->d;
  info->m      = D->m;
  info->Nlocal = D->Nlocal;
  info->offset = D->offset;
  info->task   = D->task;
  info->name   = D->name;
  PetscFunctionReturn(0);
}

PetscErrorCode TNDatasetGetArrays(TNDataset D, PetscReal **X, PetscInt **labels, PetscReal **Y)
{
  PetscFunctionBegin;
  if (X) *X = D->X;
  if (labels) *labels = D->labels;
  if (Y) *Y = D->Y;
  PetscFunctionReturn(0);
}

PetscErrorCode TNDatasetGetRows(TNDataset D, PetscInt B, const PetscInt *idx, PetscReal *X, PetscInt *labels,
                                PetscReal *Y)
{
  PetscFunctionBegin;
  for (PetscInt s = 0; s < B; s++) {
    const PetscInt i = idx[s];
    PetscCall(PetscArraycpy(X + s * D->d, D->X + i * D->d, D->d));
    if (D->task == TN_TASK_CLASSIFICATION)
      labels[s] = D->labels[i];
    else
      PetscCall(PetscArraycpy(Y + s * D->m, D->Y + i * D->m, D->m));
  }
  PetscFunctionReturn(0);
}

/* FNV-1a over bytes, then a finaliser that spreads every bit (splitmix64's). */
static uint64_t HashBytes(uint64_t h, const void *bytes, size_t len)
{
  const unsigned char *b = (const unsigned char *)bytes;

  for (size_t i = 0; i < len; i++) h = (h ^ b[i]) * 0x100000001b3ULL;
  h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
  h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
  return h ^ (h >> 31);
}

PetscErrorCode TNDatasetChecksum(TNDataset D, MPI_Comm comm, PetscInt64 *checksum)
{
  uint64_t sum = 0;

  PetscFunctionBegin;
  for (PetscInt i = 0; i < D->Nlocal; i++) {
    const PetscInt64 row = D->offset + i;
    uint64_t h           = HashBytes(0xcbf29ce484222325ULL, &row, sizeof row);
    h                    = HashBytes(h, D->X + i * D->d, sizeof(PetscReal) * D->d);
    if (D->labels)
      h = HashBytes(h, D->labels + i, sizeof(PetscInt));
    else
      h = HashBytes(h, D->Y + i * D->m, sizeof(PetscReal) * D->m);
    sum += h;
  }
  /* a sum of the rows' hashes: the same however the rows are split across ranks */
  if (D->Nlocal != D->N) PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &sum, 1, MPI_UINT64_T, MPI_SUM, comm));
  *checksum = (PetscInt64)(sum & (((uint64_t)1 << 52) - 1));
  PetscFunctionReturn(0);
}

PetscErrorCode TNDatasetShard(TNDataset D, MPI_Comm comm)
{
  PetscMPIInt size, rank;
  PetscInt start, end, w = D->task == TN_TASK_CLASSIFICATION ? 1 : D->m;

  PetscFunctionBegin;
  PetscCheck(D->Nlocal == D->N, PETSC_COMM_SELF, PETSC_ERR_ARG_WRONGSTATE, "data set is sharded already");
  PetscCallMPI(MPI_Comm_size(comm, &size));
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  TNGridSplit(D->N, size, rank, &start, &end);
  PetscCall(PetscArraymove(D->X, D->X + start * D->d, (end - start) * D->d));
  if (D->labels) PetscCall(PetscArraymove(D->labels, D->labels + start, end - start));
  if (D->Y) PetscCall(PetscArraymove(D->Y, D->Y + start * w, (end - start) * w));
  D->offset = start;
  D->Nlocal = end - start;
  PetscFunctionReturn(0);
}

#define ROOT "the root group"

typedef struct {
  const char *path;
  TNDataset ds;
  PetscReal *labels; /* classification: /Y as read, before the checks */
} DatasetLoad;

/* The `task` attribute wins; without it integer /Y means labels and float /Y targets. */
static PetscErrorCode DatasetTask(hid_t file, const char *path, const TNH5Array *Y, TNTask *task)
{
  PetscInt index;
  PetscBool given;
  char shape[96];

  PetscFunctionBegin;
  PetscCall(TNH5AttrReadChoice(file, path, ROOT, "task", TNTasks, &index, &given));
  *task = given ? (TNTask)index : (Y->cls == H5T_INTEGER ? TN_TASK_CLASSIFICATION : TN_TASK_REGRESSION);
  TNH5ShapeString(Y->rank, Y->dims, shape, sizeof(shape));
  PetscCheck(*task == TN_TASK_REGRESSION || Y->rank == 1 || Y->dims[1] == 1, PETSC_COMM_SELF, TN_ERR_USER,
             "%s: class labels /Y must be [N], it has shape %s%s", path, shape,
             given ? "" : " (set the root attribute task = \"regression\" if these are targets)");
  PetscFunctionReturn(0);
}

/* Labels may come as floats (task = classification): each must be a whole number >= 0. Rows
   count from 0, as in h5py. */
static PetscErrorCode LabelsCheck(const char *path, PetscInt offset, PetscInt N, const PetscReal *y, PetscInt *m)
{
  PetscReal max = 0;

  PetscFunctionBegin;
  for (PetscInt i = 0; i < N; i++) {
    PetscCheck(!PetscIsInfOrNanReal(y[i]), PETSC_COMM_SELF, TN_ERR_USER, "%s: NaN or Inf in /Y at row %" PetscInt_FMT,
               path, offset + i);
    PetscCheck(y[i] == PetscFloorReal(y[i]), PETSC_COMM_SELF, TN_ERR_USER,
               "%s: label %g at row %" PetscInt_FMT " is not a whole number", path, (double)y[i], offset + i);
    /* %.0f: PETSc prints a whole number under %g as "-1." */
    PetscCheck(y[i] >= 0, PETSC_COMM_SELF, TN_ERR_USER, "%s: label %.0f at row %" PetscInt_FMT " (labels must be >= 0)",
               path, (double)y[i], offset + i);
    PetscCheck(y[i] < PETSC_MAX_INT, PETSC_COMM_SELF, TN_ERR_USER,
               "%s: label %.0f at row %" PetscInt_FMT " is too large", path, (double)y[i], offset + i);
    max = PetscMax(max, y[i]);
  }
  *m = (PetscInt)max + 1;
  PetscFunctionReturn(0);
}

static PetscErrorCode FiniteCheck(const char *path, const char *name, PetscInt offset, const PetscReal *x,
                                  PetscInt rows, PetscInt cols)
{
  const PetscInt64 bad = TNH5FirstNonFinite(x, (PetscInt64)rows * cols);

  PetscFunctionBegin;
  PetscCheck(bad < 0, PETSC_COMM_SELF, TN_ERR_USER, "%s: NaN or Inf in %s at row %" PetscInt64_FMT, path, name,
             offset + bad / cols);
  PetscFunctionReturn(0);
}

/* "data/train.h5" is called "train" when the file has no `name`. */
static void DefaultName(const char *path, char *name, size_t len)
{
  const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
  const char *dot  = strrchr(base, '.');
  const int n      = dot && dot != base ? (int)(dot - base) : (int)strlen(base);

  snprintf(name, len, "%.*s", n, base);
}

/* What a data file holds, checked before any value is read. */
typedef struct {
  PetscInt N, d, ycols;
  TNTask task;
  char name[256];
} DatasetShape;

static PetscErrorCode DatasetShapeRead(hid_t file, const char *path, DatasetShape *shape)
{
  TNH5Array X, Y;
  PetscBool named;
  char xs[96], ys[96];

  PetscFunctionBegin;
  PetscCall(TNH5ArrayInfo(file, path, "/X", &X));
  PetscCall(TNH5ArrayInfo(file, path, "/Y", &Y));
  PetscCheck(X.found, PETSC_COMM_SELF, TN_ERR_USER, "%s: no /X (the inputs, an [N,d] array)", path);
  PetscCheck(Y.found, PETSC_COMM_SELF, TN_ERR_USER, "%s: no /Y (class labels [N] or targets [N,m])", path);
  TNH5ShapeString(X.rank, X.dims, xs, sizeof(xs));
  TNH5ShapeString(Y.rank, Y.dims, ys, sizeof(ys));
  PetscCheck(X.rank == 2, PETSC_COMM_SELF, TN_ERR_USER, "%s: /X must be 2-D [N,d], it has shape %s", path, xs);
  PetscCheck(X.cls == H5T_FLOAT, PETSC_COMM_SELF, TN_ERR_USER, "%s: /X must hold float32 or float64 values", path);
  PetscCheck(Y.rank == 1 || Y.rank == 2, PETSC_COMM_SELF, TN_ERR_USER, "%s: /Y must be [N] or [N,m], it has shape %s",
             path, ys);
  PetscCheck(Y.cls == H5T_INTEGER || Y.cls == H5T_FLOAT, PETSC_COMM_SELF, TN_ERR_USER,
             "%s: /Y must hold integer class labels or floating-point targets", path);
  PetscCheck(Y.dims[0] == X.dims[0], PETSC_COMM_SELF, TN_ERR_USER, "%s: /Y has %llu rows but /X has %llu", path,
             (unsigned long long)Y.dims[0], (unsigned long long)X.dims[0]);
  PetscCheck(X.dims[0] > 0, PETSC_COMM_SELF, TN_ERR_USER, "%s: /X and /Y have no rows (N = 0)", path);
  PetscCheck(X.dims[1] > 0, PETSC_COMM_SELF, TN_ERR_USER, "%s: /X has no columns (d = 0)", path);
  PetscCheck(Y.rank == 1 || Y.dims[1] > 0, PETSC_COMM_SELF, TN_ERR_USER, "%s: /Y has no columns (m = 0)", path);
  /* TNDataset indexes with PetscInt, which is 32-bit in this build */
  PetscCheck((double)X.dims[0] * (double)PetscMax(X.dims[1], Y.rank == 2 ? Y.dims[1] : 1) <= PETSC_MAX_INT,
             PETSC_COMM_SELF, TN_ERR_USER, "%s: /X %s and /Y %s are too large for 32-bit PETSc indices", path, xs, ys);
  shape->N     = (PetscInt)X.dims[0];
  shape->d     = (PetscInt)X.dims[1];
  shape->ycols = Y.rank == 2 ? (PetscInt)Y.dims[1] : 1;
  PetscCall(DatasetTask(file, path, &Y, &shape->task));
  PetscCall(TNH5AttrReadString(file, path, ROOT, "name", shape->name, sizeof(shape->name), &named));
  if (!named) DefaultName(path, shape->name, sizeof(shape->name));
  PetscFunctionReturn(0);
}

static PetscErrorCode DatasetReadValues(hid_t file, DatasetLoad *load)
{
  const char *path = load->path;
  DatasetShape shape;
  TNTask task;
  PetscInt N, d, m;

  PetscFunctionBegin;
  PetscCall(DatasetShapeRead(file, path, &shape));
  N    = shape.N;
  d    = shape.d;
  task = shape.task;
  m    = shape.ycols;
  if (task == TN_TASK_CLASSIFICATION) {
    PetscCall(PetscMalloc1(N, &load->labels));
    PetscCall(TNH5ArrayRead(file, path, "/Y", H5T_NATIVE_DOUBLE, load->labels));
    PetscCall(LabelsCheck(path, 0, N, load->labels, &m));
  }
  PetscCall(TNDatasetCreate(N, d, m, task, shape.name, &load->ds));
  PetscCall(TNH5ArrayRead(file, path, "/X", H5T_NATIVE_DOUBLE, load->ds->X));
  PetscCall(FiniteCheck(path, "/X", 0, load->ds->X, N, d));
  if (task == TN_TASK_CLASSIFICATION) {
    for (PetscInt i = 0; i < N; i++) load->ds->labels[i] = (PetscInt)load->labels[i];
  } else {
    PetscCall(TNH5ArrayRead(file, path, "/Y", H5T_NATIVE_DOUBLE, load->ds->Y));
    PetscCall(FiniteCheck(path, "/Y", 0, load->ds->Y, N, m));
  }
  PetscFunctionReturn(0);
}

static PetscErrorCode DatasetRead(hid_t file, void *ctx)
{
  DatasetLoad *load = (DatasetLoad *)ctx;
  PetscErrorCode ierr;

  PetscFunctionBegin;
  /* a failed read frees what it made here, in one place */
  ierr = DatasetReadValues(file, load);
  PetscCall(PetscFree(load->labels));
  if (ierr) PetscCall(TNDatasetDestroy(&load->ds));
  PetscCall(ierr);
  PetscFunctionReturn(0);
}

PetscErrorCode TNDatasetLoad(MPI_Comm comm, const char *path, TNDataset *ds)
{
  DatasetLoad load = {path, NULL, NULL};
  PetscMPIInt rank, nx, ny;
  PetscInt shape[4] = {0, 0, 0, 0};
  TNDataset D;

  PetscFunctionBegin;
  PetscCall(TNH5RootRead(comm, path, DatasetRead, &load));
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  D = load.ds;
  if (!rank) {
    shape[0] = D->N;
    shape[1] = D->d;
    shape[2] = D->m;
    shape[3] = (PetscInt)D->task;
  }
  PetscCallMPI(MPI_Bcast(shape, 4, MPIU_INT, 0, comm));
  if (rank) PetscCall(TNDatasetCreate(shape[0], shape[1], shape[2], (TNTask)shape[3], NULL, &D));
  PetscCall(PetscMPIIntCast(D->N * D->d, &nx));
  PetscCallMPI(MPI_Bcast(D->X, nx, MPIU_REAL, 0, comm));
  if (D->task == TN_TASK_CLASSIFICATION) {
    PetscCall(PetscMPIIntCast(D->N, &ny));
    PetscCallMPI(MPI_Bcast(D->labels, ny, MPIU_INT, 0, comm));
  } else {
    PetscCall(PetscMPIIntCast(D->N * D->m, &ny));
    PetscCallMPI(MPI_Bcast(D->Y, ny, MPIU_REAL, 0, comm));
  }
  PetscCallMPI(MPI_Bcast(D->name, (int)sizeof(D->name), MPI_CHAR, 0, comm));
  *ds = D;
  PetscFunctionReturn(0);
}

static PetscErrorCode DatasetFill(hid_t file, void *ctx)
{
  TNDataset ds          = (TNDataset)ctx;
  const hsize_t xdims[] = {(hsize_t)ds->N, (hsize_t)ds->d}, ydims[] = {(hsize_t)ds->N, (hsize_t)ds->m};
  PetscInt64 *labels;
  PetscErrorCode ierr;

  PetscFunctionBegin;
  PetscCall(TNH5ArrayWrite(file, "X", H5T_NATIVE_DOUBLE, 2, xdims, ds->X));
  if (ds->task == TN_TASK_CLASSIFICATION) {
    PetscCall(PetscMalloc1(ds->N, &labels));
    for (PetscInt i = 0; i < ds->N; i++) labels[i] = ds->labels[i];
    ierr = TNH5ArrayWrite(file, "Y", H5T_NATIVE_INT64, 1, ydims, labels);
    PetscCall(PetscFree(labels));
    PetscCall(ierr);
  } else
    PetscCall(TNH5ArrayWrite(file, "Y", H5T_NATIVE_DOUBLE, 2, ydims, ds->Y));
  PetscCall(TNH5AttrWriteString(file, "task", TNTasks[ds->task]));
  PetscCall(TNH5AttrWriteString(file, "name", ds->name));
  PetscFunctionReturn(0);
}

PetscErrorCode TNDatasetSave(MPI_Comm comm, const char *path, TNDataset ds)
{
  PetscFunctionBegin;
  PetscCall(TNH5RootWrite(comm, path, DatasetFill, ds));
  PetscFunctionReturn(0);
}

/* ---- sharded loading ---- */

typedef struct {
  const char *path;
  DatasetShape *shape;
} ShapeJob;

static PetscErrorCode ShapeRead(hid_t file, void *ctx)
{
  ShapeJob *job = (ShapeJob *)ctx;

  PetscFunctionBegin;
  PetscCall(DatasetShapeRead(file, job->path, job->shape));
  PetscFunctionReturn(0);
}

/* Rows [start, start+count) of a 1-D or 2-D array (cols columns), read collectively as doubles. */
static herr_t ReadRows(hid_t file, const char *name, hsize_t start, hsize_t count, hsize_t cols, PetscReal *buf)
{
  const hsize_t off[2] = {start, 0}, cnt[2] = {count, cols};
  hid_t dset = H5Dopen2(file, name, H5P_DEFAULT), fspace = H5I_INVALID_HID, mspace = H5I_INVALID_HID,
        dxpl    = H5I_INVALID_HID;
  herr_t status = -1;
  int rank      = -1;

  if (dset < 0) return -1;
  /* every step may fail on a damaged file; the collective read is still entered by every rank,
     reading nothing where a step failed, so that no rank waits for another */
  fspace = H5Dget_space(dset);
  if (fspace >= 0) rank = H5Sget_simple_extent_ndims(fspace);
  if (rank > 0) mspace = H5Screate_simple(rank, cnt, NULL);
  dxpl = H5Pcreate(H5P_DATASET_XFER);
  if (dxpl >= 0 && H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE) >= 0 && mspace >= 0 &&
      H5Sselect_hyperslab(fspace, H5S_SELECT_SET, off, NULL, cnt, NULL) >= 0)
    status = H5Dread(dset, H5T_NATIVE_DOUBLE, mspace, fspace, dxpl, buf);
  if (dxpl >= 0) H5Pclose(dxpl);
  if (mspace >= 0) H5Sclose(mspace);
  if (fspace >= 0) H5Sclose(fspace);
  H5Dclose(dset);
  return status;
}

typedef struct {
  const char *path;
  TNDataset D;
  PetscReal *labels;
  PetscInt m;
} ShardCheck;

static PetscErrorCode ShardValuesCheck(void *ctx)
{
  ShardCheck *c = (ShardCheck *)ctx;
  TNDataset D   = c->D;

  PetscFunctionBegin;
  PetscCall(FiniteCheck(c->path, "/X", D->offset, D->X, D->Nlocal, D->d));
  if (D->task == TN_TASK_CLASSIFICATION) {
    PetscCall(LabelsCheck(c->path, D->offset, D->Nlocal, c->labels, &c->m));
    for (PetscInt i = 0; i < D->Nlocal; i++) D->labels[i] = (PetscInt)c->labels[i];
  } else
    PetscCall(FiniteCheck(c->path, "/Y", D->offset, D->Y, D->Nlocal, D->m));
  PetscFunctionReturn(0);
}

PetscErrorCode TNDatasetLoadSharded(MPI_Comm comm, const char *path, TNDataset *ds)
{
  DatasetShape shape;
  ShapeJob job = {path, &shape};
  ShardCheck check;
  PetscMPIInt size, rank;
  PetscInt start, end;
  TNDataset D;
  hid_t fapl, file;
  herr_t status;
  PetscBool ok = PETSC_FALSE;

  PetscFunctionBegin;
  PetscCall(PetscMemzero(&shape, sizeof shape));
  PetscCall(TNH5RootRead(comm, path, ShapeRead, &job));
  PetscCallMPI(MPI_Bcast(&shape, sizeof shape, MPI_BYTE, 0, comm));
  PetscCallMPI(MPI_Comm_size(comm, &size));
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  TNGridSplit(shape.N, size, rank, &start, &end);
  PetscCall(TNDatasetCreate(end - start, shape.d, shape.ycols, shape.task, shape.name, &D));
  D->N      = shape.N;
  D->offset = start;
  check     = (ShardCheck){path, D, NULL, 0};
  if (shape.task == TN_TASK_CLASSIFICATION) PetscCall(PetscMalloc1(D->Nlocal + 1, &check.labels));

  /* the open and the reads are collective: every step is agreed on before the next */
  fapl = H5Pcreate(H5P_FILE_ACCESS);
  if (fapl >= 0 && H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL) < 0) {
    H5Pclose(fapl);
    fapl = H5I_INVALID_HID;
  }
  PetscCall(TNAllAgree(comm, fapl >= 0 ? PETSC_TRUE : PETSC_FALSE, &ok));
  file = ok ? H5Fopen(path, H5F_ACC_RDONLY, fapl) : H5I_INVALID_HID;
  if (fapl >= 0) H5Pclose(fapl);
  status = file >= 0 ? 0 : -1;
  PetscCall(TNAllAgree(comm, status >= 0 ? PETSC_TRUE : PETSC_FALSE, &ok));
  if (ok) status = ReadRows(file, "/X", (hsize_t)start, (hsize_t)D->Nlocal, (hsize_t)D->d, D->X);
  PetscCall(TNAllAgree(comm, status >= 0 ? PETSC_TRUE : PETSC_FALSE, &ok));
  if (ok)
    status = ReadRows(file, "/Y", (hsize_t)start, (hsize_t)D->Nlocal, (hsize_t)shape.ycols,
                      shape.task == TN_TASK_CLASSIFICATION ? check.labels : D->Y);
  if (file >= 0) H5Fclose(file);
  PetscCall(TNAllAgree(comm, status >= 0 ? PETSC_TRUE : PETSC_FALSE, &ok));
  if (ok) {
    PetscErrorCode ierr = TNH5AllCall(comm, ShardValuesCheck, &check);
    if (ierr) {
      PetscCall(PetscFree(check.labels));
      PetscCall(TNDatasetDestroy(&D));
    }
    PetscCall(ierr);
  }
  PetscCall(PetscFree(check.labels));
  if (!ok) PetscCall(TNDatasetDestroy(&D));
  PetscCheck(ok, comm, TN_ERR_USER, "%s: reading its rows with MPI-IO failed", path);
  if (shape.task == TN_TASK_CLASSIFICATION) PetscCallMPI(MPI_Allreduce(&check.m, &D->m, 1, MPIU_INT, MPI_MAX, comm));
  *ds = D;
  PetscFunctionReturn(0);
}
