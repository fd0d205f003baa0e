/* Data sets (DESIGN.md §4): /X [N,d] inputs, /Y class labels or regression targets. The object
   holds a set, or a rank's shard of it, in memory, the inputs in the type of the file (float64,
   float32 or uint8; other types as float64), converted row by row when a batch is taken. Rank 0
   reads and checks everything a user would need to fix in a file, then shares it; writes are
   atomic. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "h5util.h"

/* How the inputs are held: the file's type where it is one of these. */
typedef enum { X_DOUBLE, X_FLOAT, X_UINT8 } XKind;
static const size_t XBytes[] = {sizeof(double), sizeof(float), 1};

struct _n_TNDataset {
  PetscInt N, d, m;        /* m: classes (max label + 1) or targets */
  PetscInt Nlocal, offset; /* rows held here: offset..offset+Nlocal-1 (all N unless sharded) */
  TNTask task;
  PetscBool has_targets; /* a file without /Y read for predictions has none: labels are 0 */
  XKind xkind;
  PetscReal xscale; /* the inputs are X * xscale */
  void *X;          /* Nlocal x d of xkind */
  PetscInt *labels; /* classification: Nlocal labels in [0, m) */
  PetscReal *Y;     /* regression: Nlocal x m targets */
  char name[256];
};

static PetscErrorCode DatasetAllocate(PetscInt N, PetscInt d, PetscInt m, TNTask task, XKind kind, const char *name,
                                      TNDataset *ds)
{
  TNDataset D;

  PetscFunctionBegin;
  PetscCall(PetscNew(&D));
  D->N           = N;
  D->d           = d;
  D->m           = m;
  D->task        = task;
  D->Nlocal      = N;
  D->offset      = 0;
  D->has_targets = PETSC_TRUE;
  D->xkind       = kind;
  D->xscale      = 1;
  if (name) PetscCall(PetscStrncpy(D->name, name, sizeof D->name));
  PetscCall(PetscMalloc(XBytes[kind] * (size_t)(N * d) + 1, &D->X));
  if (task == TN_TASK_CLASSIFICATION)
    PetscCall(PetscCalloc1(N + 1, &D->labels));
  else
    PetscCall(PetscMalloc1(N * m + 1, &D->Y));
  *ds = D;
  PetscFunctionReturn(0);
}

PetscErrorCode TNDatasetCreate(PetscInt N, PetscInt d, PetscInt m, TNTask task, const char *name, TNDataset *ds)
{
  PetscFunctionBegin;
  PetscCall(DatasetAllocate(N, d, m, task, X_DOUBLE, name, ds));
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
  info->N           = D->N;
  info->d           = D->d;
  info->m           = D->m;
  info->Nlocal      = D->Nlocal;
  info->offset      = D->offset;
  info->task        = D->task;
  info->name        = D->name;
  info->has_targets = D->has_targets;
  info->bytes       = (PetscReal)XBytes[D->xkind] * D->Nlocal * D->d +
                (D->labels ? sizeof(PetscInt) * (PetscReal)D->Nlocal : 0) +
                (D->Y ? sizeof(PetscReal) * (PetscReal)D->Nlocal * D->m : 0);
  PetscFunctionReturn(0);
}

PetscErrorCode TNDatasetGetArrays(TNDataset D, PetscReal **X, PetscInt **labels, PetscReal **Y)
{
  PetscFunctionBegin;
  PetscCheck(!X || D->xkind == X_DOUBLE, PETSC_COMM_SELF, PETSC_ERR_ARG_WRONGSTATE,
             "the inputs of %s are not held as float64", D->name);
  if (X) *X = (PetscReal *)D->X;
  if (labels) *labels = D->labels;
  if (Y) *Y = D->Y;
  PetscFunctionReturn(0);
}

/* Row i of the inputs as float64, scaled. */
static void RowGet(TNDataset D, PetscInt i, PetscReal *x)
{
  const size_t o = (size_t)i * (size_t)D->d;

  switch (D->xkind) {
  case X_DOUBLE:
    for (PetscInt k = 0; k < D->d; k++) x[k] = D->xscale * ((const double *)D->X)[o + k];
    break;
  case X_FLOAT:
    for (PetscInt k = 0; k < D->d; k++) x[k] = D->xscale * ((const float *)D->X)[o + k];
    break;
  case X_UINT8:
    for (PetscInt k = 0; k < D->d; k++) x[k] = D->xscale * ((const unsigned char *)D->X)[o + k];
    break;
  }
}

PetscErrorCode TNDatasetGetRows(TNDataset D, PetscInt B, const PetscInt *idx, PetscReal *X, PetscInt *labels,
                                PetscReal *Y)
{
  PetscFunctionBegin;
  for (PetscInt s = 0; s < B; s++) {
    const PetscInt i = idx[s];
    RowGet(D, i, X + s * D->d);
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
  PetscReal *x;

  PetscFunctionBegin;
  PetscCall(PetscMalloc1(D->d, &x));
  for (PetscInt i = 0; i < D->Nlocal; i++) {
    const PetscInt64 row = D->offset + i;
    uint64_t h           = HashBytes(0xcbf29ce484222325ULL, &row, sizeof row);
    RowGet(D, i, x);
    h = HashBytes(h, x, sizeof(PetscReal) * D->d);
    if (D->labels)
      h = HashBytes(h, D->labels + i, sizeof(PetscInt));
    else
      h = HashBytes(h, D->Y + i * D->m, sizeof(PetscReal) * D->m);
    sum += h;
  }
  PetscCall(PetscFree(x));
  /* a sum of the rows' hashes: the same however the rows are split across ranks */
  if (D->Nlocal != D->N) PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &sum, 1, MPI_UINT64_T, MPI_SUM, comm));
  *checksum = (PetscInt64)(sum & (((uint64_t)1 << 52) - 1));
  PetscFunctionReturn(0);
}

PetscErrorCode TNDatasetShard(TNDataset D, MPI_Comm comm)
{
  PetscMPIInt size, rank;
  PetscInt start, end, w = D->task == TN_TASK_CLASSIFICATION ? 1 : D->m;
  const size_t xb = XBytes[D->xkind] * (size_t)D->d;

  PetscFunctionBegin;
  PetscCheck(D->Nlocal == D->N, PETSC_COMM_SELF, PETSC_ERR_ARG_WRONGSTATE, "data set is sharded already");
  PetscCallMPI(MPI_Comm_size(comm, &size));
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  TNGridSplit(D->N, size, rank, &start, &end);
  memmove(D->X, (char *)D->X + (size_t)start * xb, (size_t)(end - start) * xb);
  if (D->labels) PetscCall(PetscArraymove(D->labels, D->labels + start, end - start));
  if (D->Y) PetscCall(PetscArraymove(D->Y, D->Y + start * w, (end - start) * w));
  D->offset = start;
  D->Nlocal = end - start;
  PetscFunctionReturn(0);
}

/* ---- file formats ---- */

void TNDataFormatDefault(TNDataFormat *f)
{
  PetscMemzero(f, sizeof *f);
  snprintf(f->x_name, sizeof f->x_name, "/X");
  snprintf(f->y_name, sizeof f->y_name, "/Y");
}

PetscErrorCode TNDataFormatSetFromOptions(MPI_Comm comm, TNDataFormat *f)
{
  PetscFunctionBegin;
  PetscOptionsBegin(comm, NULL, "Data files", "thetanet");
  PetscCall(TNOptionsString("-x_name", "Path of the inputs [N,d] in the data files", "", f->x_name, f->x_name,
                            sizeof f->x_name, NULL));
  PetscCall(TNOptionsString("-y_name", "Path of the labels [N] or targets [N,m] in the data files", "", f->y_name,
                            f->y_name, sizeof f->y_name, NULL));
  PetscCall(PetscOptionsBool("-scale_uint8", "Read uint8 inputs (images) as x/255, in [0, 1]", "", f->scale_uint8,
                             &f->scale_uint8, NULL));
  PetscOptionsEnd();
  /* names are paths in the file, from its root */
  for (int k = 0; k < 2; k++) {
    char *name = k ? f->y_name : f->x_name, tmp[sizeof f->x_name];
    if (name[0] == '/') continue;
    PetscCall(PetscSNPrintf(tmp, sizeof tmp, "/%s", name));
    PetscCall(PetscStrncpy(name, tmp, sizeof f->x_name));
  }
  PetscFunctionReturn(0);
}

#define ROOT "the root group"

/* What a data file holds, checked before any value is read. */
typedef struct {
  PetscInt N, d, ycols;
  TNTask task;
  PetscBool task_given, has_targets;
  XKind xkind;
  PetscReal xscale;
  char name[256];
} DatasetShape;

/* The `task` attribute wins; without it integer /Y means labels and float /Y targets. */
static PetscErrorCode DatasetTask(hid_t file, const char *path, const TNDataFormat *f, const TNH5Array *Y,
                                  DatasetShape *shape)
{
  PetscInt index;
  char dims[96];

  PetscFunctionBegin;
  PetscCall(TNH5AttrReadChoice(file, path, ROOT, "task", TNTasks, &index, &shape->task_given));
  if (!Y->found) {
    shape->task = shape->task_given ? (TNTask)index : TN_TASK_CLASSIFICATION;
    PetscFunctionReturn(0);
  }
  shape->task =
      shape->task_given ? (TNTask)index : (Y->cls == H5T_INTEGER ? TN_TASK_CLASSIFICATION : TN_TASK_REGRESSION);
  TNH5ShapeString(Y->rank, Y->dims, dims, sizeof(dims));
  PetscCheck(shape->task == TN_TASK_REGRESSION || Y->rank == 1 || Y->dims[1] == 1, PETSC_COMM_SELF, TN_ERR_USER,
             "%s: class labels %s must be [N], it has shape %s%s", path, f->y_name, dims,
             shape->task_given ? "" : " (set the root attribute task = \"regression\" if these are targets)");
  PetscFunctionReturn(0);
}

/* The file's input type, as held in memory: float32 and uint8 stay what they are. */
static PetscErrorCode InputKind(hid_t file, const char *path, const char *name, XKind *kind)
{
  hid_t dset = H5Dopen2(file, name, H5P_DEFAULT), type = dset >= 0 ? H5Dget_type(dset) : H5I_INVALID_HID;

  PetscFunctionBegin;
  *kind = X_DOUBLE;
  if (type >= 0 && H5Tget_class(type) == H5T_FLOAT && H5Tget_size(type) == 4) *kind = X_FLOAT;
  if (type >= 0 && H5Tget_class(type) == H5T_INTEGER && H5Tget_size(type) == 1 && H5Tget_sign(type) == H5T_SGN_NONE)
    *kind = X_UINT8;
  if (type >= 0) H5Tclose(type);
  if (dset >= 0) H5Dclose(dset);
  PetscCheck(dset >= 0 && type >= 0, PETSC_COMM_SELF, TN_ERR_USER, "%s: cannot read the type of %s", path, name);
  PetscFunctionReturn(0);
}

static hid_t MemType(XKind kind)
{
  return kind == X_FLOAT ? H5T_NATIVE_FLOAT : kind == X_UINT8 ? H5T_NATIVE_UCHAR : H5T_NATIVE_DOUBLE;
}

/* "data/train.h5" is called "train" when the file has no `name`. */
static void DefaultName(const char *path, char *name, size_t len)
{
  const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
  const char *dot  = strrchr(base, '.');
  const int n      = dot && dot != base ? (int)(dot - base) : (int)strlen(base);

  snprintf(name, len, "%.*s", n, base);
}

static PetscErrorCode DatasetShapeRead(hid_t file, const char *path, const TNDataFormat *f, DatasetShape *shape)
{
  TNH5Array X, Y;
  PetscBool named;
  char xs[96], ys[96];

  PetscFunctionBegin;
  PetscCall(TNH5ArrayInfo(file, path, f->x_name, &X));
  PetscCall(TNH5ArrayInfo(file, path, f->y_name, &Y));
  PetscCheck(X.found, PETSC_COMM_SELF, TN_ERR_USER, "%s: no %s (the inputs, an [N,d] array)", path, f->x_name);
  PetscCheck(Y.found || f->targets_optional, PETSC_COMM_SELF, TN_ERR_USER,
             "%s: no %s (class labels [N] or targets [N,m])", path, f->y_name);
  TNH5ShapeString(X.rank, X.dims, xs, sizeof(xs));
  TNH5ShapeString(Y.rank, Y.dims, ys, sizeof(ys));
  PetscCheck(X.rank == 2, PETSC_COMM_SELF, TN_ERR_USER, "%s: %s must be 2-D [N,d], it has shape %s", path, f->x_name,
             xs);
  PetscCheck(X.cls == H5T_FLOAT || X.cls == H5T_INTEGER, PETSC_COMM_SELF, TN_ERR_USER,
             "%s: %s must hold integer or floating-point values", path, f->x_name);
  PetscCheck(X.dims[0] > 0, PETSC_COMM_SELF, TN_ERR_USER, "%s: %s has no rows (N = 0)", path, f->x_name);
  PetscCheck(X.dims[1] > 0, PETSC_COMM_SELF, TN_ERR_USER, "%s: %s has no columns (d = 0)", path, f->x_name);
  if (Y.found) {
    PetscCheck(Y.rank == 1 || Y.rank == 2, PETSC_COMM_SELF, TN_ERR_USER, "%s: %s must be [N] or [N,m], it has shape %s",
               path, f->y_name, ys);
    PetscCheck(Y.cls == H5T_INTEGER || Y.cls == H5T_FLOAT, PETSC_COMM_SELF, TN_ERR_USER,
               "%s: %s must hold integer class labels or floating-point targets", path, f->y_name);
    PetscCheck(Y.dims[0] == X.dims[0], PETSC_COMM_SELF, TN_ERR_USER, "%s: %s has %llu rows but %s has %llu", path,
               f->y_name, (unsigned long long)Y.dims[0], f->x_name, (unsigned long long)X.dims[0]);
    PetscCheck(Y.rank == 1 || Y.dims[1] > 0, PETSC_COMM_SELF, TN_ERR_USER, "%s: %s has no columns (m = 0)", path,
               f->y_name);
  }
  /* TNDataset indexes with PetscInt, which is 32-bit in this build */
  PetscCheck((double)X.dims[0] * (double)PetscMax(X.dims[1], Y.rank == 2 ? Y.dims[1] : 1) <= PETSC_MAX_INT,
             PETSC_COMM_SELF, TN_ERR_USER, "%s: %s %s and %s %s are too large for 32-bit PETSc indices", path,
             f->x_name, xs, f->y_name, ys);
  shape->N           = (PetscInt)X.dims[0];
  shape->d           = (PetscInt)X.dims[1];
  shape->has_targets = Y.found;
  shape->ycols       = Y.found && Y.rank == 2 ? (PetscInt)Y.dims[1] : 1;
  PetscCall(InputKind(file, path, f->x_name, &shape->xkind));
  shape->xscale = shape->xkind == X_UINT8 && f->scale_uint8 ? 1.0 / 255 : 1.0;
  PetscCall(DatasetTask(file, path, f, &Y, shape));
  PetscCall(TNH5AttrReadString(file, path, ROOT, "name", shape->name, sizeof(shape->name), &named));
  if (!named) DefaultName(path, shape->name, sizeof(shape->name));
  PetscFunctionReturn(0);
}

/* Labels may come as floats (task = classification): each must be a whole number >= 0. Rows
   count from 0, as in h5py. */
static PetscErrorCode LabelsCheck(const char *path, const char *name, PetscInt offset, PetscInt N, const PetscReal *y,
                                  PetscInt *m)
{
  PetscReal max = 0;

  PetscFunctionBegin;
  for (PetscInt i = 0; i < N; i++) {
    PetscCheck(!PetscIsInfOrNanReal(y[i]), PETSC_COMM_SELF, TN_ERR_USER, "%s: NaN or Inf in %s at row %" PetscInt_FMT,
               path, name, offset + i);
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

/* A float /Y of one-hot rows with no `task` would train a 10-output regression: refused, with
   what to do instead. */
static PetscErrorCode OneHotCheck(const char *path, const char *name, const DatasetShape *s, PetscInt N,
                                  const PetscReal *Y)
{
  PetscBool onehot = s->ycols > 1 && N > 0 ? PETSC_TRUE : PETSC_FALSE;

  PetscFunctionBegin;
  if (s->task_given || s->task != TN_TASK_REGRESSION) PetscFunctionReturn(0);
  for (PetscInt i = 0; i < N && onehot; i++) {
    PetscInt ones = 0;
    for (PetscInt k = 0; k < s->ycols && onehot; k++) {
      const PetscReal v = Y[i * s->ycols + k];
      if (v == 1)
        ones++;
      else if (v != 0)
        onehot = PETSC_FALSE;
    }
    if (ones != 1) onehot = PETSC_FALSE;
  }
  PetscCheck(
      !onehot, PETSC_COMM_SELF, TN_ERR_USER,
      "%s: %s holds one-hot rows of floats, which would be read as %" PetscInt_FMT
      " regression targets: store the class labels [N] as "
      "integers, or set the root attribute task (\"classification\" needs labels, \"regression\" keeps the targets)",
      path, name, s->ycols);
  PetscFunctionReturn(0);
}

/* The values held here, rows [offset, offset + Nlocal): inputs finite, labels or targets right. */
static PetscErrorCode ValuesCheck(const char *path, const TNDataFormat *f, const DatasetShape *s, TNDataset D,
                                  const PetscReal *labels, PetscInt *m)
{
  PetscReal *x;

  PetscFunctionBegin;
  if (D->xkind != X_UINT8) {
    PetscCall(PetscMalloc1(D->d, &x));
    for (PetscInt i = 0; i < D->Nlocal; i++) {
      RowGet(D, i, x);
      PetscCheck(TNH5FirstNonFinite(x, D->d) < 0, PETSC_COMM_SELF, TN_ERR_USER,
                 "%s: NaN or Inf in %s at row %" PetscInt_FMT, path, f->x_name, D->offset + i);
    }
    PetscCall(PetscFree(x));
  }
  *m = s->ycols;
  if (!s->has_targets) PetscFunctionReturn(0);
  if (D->task == TN_TASK_CLASSIFICATION) {
    PetscCall(LabelsCheck(path, f->y_name, D->offset, D->Nlocal, labels, m));
    for (PetscInt i = 0; i < D->Nlocal; i++) D->labels[i] = (PetscInt)labels[i];
  } else {
    const PetscInt64 bad = TNH5FirstNonFinite(D->Y, (PetscInt64)D->Nlocal * D->m);
    PetscCheck(bad < 0, PETSC_COMM_SELF, TN_ERR_USER, "%s: NaN or Inf in %s at row %" PetscInt64_FMT, path, f->y_name,
               D->offset + bad / D->m);
    PetscCall(OneHotCheck(path, f->y_name, s, D->Nlocal, D->Y));
  }
  PetscFunctionReturn(0);
}

static PetscErrorCode DatasetFromShape(const DatasetShape *s, PetscInt Nlocal, TNDataset *D)
{
  PetscFunctionBegin;
  PetscCall(DatasetAllocate(Nlocal, s->d, s->ycols, s->task, s->xkind, s->name, D));
  (*D)->N           = s->N;
  (*D)->xscale      = s->xscale;
  (*D)->has_targets = s->has_targets;
  PetscFunctionReturn(0);
}

typedef struct {
  const char *path;
  const TNDataFormat *format;
  DatasetShape shape;
  TNDataset ds;
  PetscReal *labels; /* classification: /Y as read, before the checks */
} DatasetLoad;

static PetscErrorCode DatasetReadValues(hid_t file, DatasetLoad *load)
{
  const char *path      = load->path;
  const TNDataFormat *f = load->format;
  PetscInt m;

  PetscFunctionBegin;
  PetscCall(DatasetShapeRead(file, path, f, &load->shape));
  PetscCall(DatasetFromShape(&load->shape, load->shape.N, &load->ds));
  PetscCall(TNH5ArrayRead(file, path, f->x_name, MemType(load->shape.xkind), load->ds->X));
  if (load->shape.has_targets) {
    if (load->shape.task == TN_TASK_CLASSIFICATION) {
      PetscCall(PetscMalloc1(load->shape.N, &load->labels));
      PetscCall(TNH5ArrayRead(file, path, f->y_name, H5T_NATIVE_DOUBLE, load->labels));
    } else
      PetscCall(TNH5ArrayRead(file, path, f->y_name, H5T_NATIVE_DOUBLE, load->ds->Y));
  }
  PetscCall(ValuesCheck(path, f, &load->shape, load->ds, load->labels, &m));
  load->ds->m = m;
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

/* A buffer of count elements of bytes each, broadcast from rank 0 in pieces that MPI counts hold. */
static PetscErrorCode BcastBytes(void *buf, size_t bytes, MPI_Comm comm)
{
  const size_t piece = (size_t)1 << 30;

  PetscFunctionBegin;
  for (size_t o = 0; o < bytes; o += piece)
    PetscCallMPI(MPI_Bcast((char *)buf + o, (int)PetscMin(piece, bytes - o), MPI_BYTE, 0, comm));
  PetscFunctionReturn(0);
}

PetscErrorCode TNDatasetLoad(MPI_Comm comm, const char *path, const TNDataFormat *format, TNDataset *ds)
{
  TNDataFormat fallback;
  DatasetLoad load = {path, format, {0}, NULL, NULL};
  PetscMPIInt rank;
  PetscInt m;
  TNDataset D;

  PetscFunctionBegin;
  if (!format) {
    TNDataFormatDefault(&fallback);
    load.format = &fallback;
  }
  PetscCall(TNH5RootRead(comm, path, DatasetRead, &load));
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  /* the shape is plain data of the same binary on every rank */
  PetscCallMPI(MPI_Bcast(&load.shape, sizeof load.shape, MPI_BYTE, 0, comm));
  m = rank ? 0 : load.ds->m;
  PetscCallMPI(MPI_Bcast(&m, 1, MPIU_INT, 0, comm));
  if (rank) PetscCall(DatasetFromShape(&load.shape, load.shape.N, &load.ds));
  D    = load.ds;
  D->m = m;
  PetscCall(BcastBytes(D->X, XBytes[D->xkind] * (size_t)D->N * (size_t)D->d, comm));
  if (D->task == TN_TASK_CLASSIFICATION)
    PetscCall(BcastBytes(D->labels, sizeof(PetscInt) * (size_t)D->N, comm));
  else
    PetscCall(BcastBytes(D->Y, sizeof(PetscReal) * (size_t)D->N * (size_t)D->m, comm));
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
  PetscCheck(ds->xscale == 1, PETSC_COMM_SELF, PETSC_ERR_SUP, "a data set read with -scale_uint8 is not written back");
  PetscCall(TNH5ArrayWrite(file, "X", MemType(ds->xkind), 2, xdims, ds->X));
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
  PetscCheck(ds->Nlocal == ds->N, comm, PETSC_ERR_SUP, "a sharded data set is not written");
  PetscCall(TNH5RootWrite(comm, path, DatasetFill, ds));
  PetscFunctionReturn(0);
}

/* ---- sharded loading ---- */

typedef struct {
  const char *path;
  const TNDataFormat *format;
  DatasetShape *shape;
} ShapeJob;

static PetscErrorCode ShapeRead(hid_t file, void *ctx)
{
  ShapeJob *job = (ShapeJob *)ctx;

  PetscFunctionBegin;
  PetscCall(DatasetShapeRead(file, job->path, job->format, job->shape));
  PetscFunctionReturn(0);
}

/* Rows [start, start+count) of a 1-D or 2-D array (cols columns), read collectively as memtype. */
static herr_t ReadRows(hid_t file, const char *name, hid_t memtype, hsize_t start, hsize_t count, hsize_t cols,
                       void *buf)
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
    status = H5Dread(dset, memtype, mspace, fspace, dxpl, buf);
  if (dxpl >= 0) H5Pclose(dxpl);
  if (mspace >= 0) H5Sclose(mspace);
  if (fspace >= 0) H5Sclose(fspace);
  H5Dclose(dset);
  return status;
}

typedef struct {
  const char *path;
  const TNDataFormat *format;
  const DatasetShape *shape;
  TNDataset D;
  PetscReal *labels;
  PetscInt m;
} ShardCheck;

static PetscErrorCode ShardValuesCheck(void *ctx)
{
  ShardCheck *c = (ShardCheck *)ctx;

  PetscFunctionBegin;
  PetscCall(ValuesCheck(c->path, c->format, c->shape, c->D, c->labels, &c->m));
  PetscFunctionReturn(0);
}

/* The shape of a data file (rank 0 reads and checks it, every rank gets it); format NULL: the
   default names. */
static PetscErrorCode ShapeProbe(MPI_Comm comm, const char *path, const TNDataFormat *format, DatasetShape *shape)
{
  TNDataFormat fallback;
  ShapeJob job;

  PetscFunctionBegin;
  if (!format) {
    TNDataFormatDefault(&fallback);
    format = &fallback;
  }
  job = (ShapeJob){path, format, shape};
  PetscCall(PetscMemzero(shape, sizeof *shape));
  PetscCall(TNH5RootRead(comm, path, ShapeRead, &job));
  PetscCallMPI(MPI_Bcast(shape, sizeof *shape, MPI_BYTE, 0, comm));
  PetscFunctionReturn(0);
}

PetscErrorCode TNDatasetMemory(MPI_Comm comm, const char *path, const TNDataFormat *format, PetscReal *bytes)
{
  DatasetShape shape;

  PetscFunctionBegin;
  PetscCall(ShapeProbe(comm, path, format, &shape));
  /* the inputs in their own type; labels as integers, targets as reals */
  *bytes =
      (PetscReal)shape.N * shape.d * XBytes[shape.xkind] +
      (PetscReal)shape.N * (shape.task == TN_TASK_CLASSIFICATION ? sizeof(PetscInt) : shape.ycols * sizeof(PetscReal));
  PetscFunctionReturn(0);
}

PetscErrorCode TNDatasetLoadSharded(MPI_Comm comm, const char *path, const TNDataFormat *format, TNDataset *ds)
{
  TNDataFormat fallback;
  DatasetShape shape;
  ShardCheck check;
  PetscMPIInt size, rank;
  PetscInt start, end;
  TNDataset D;
  hid_t fapl, file;
  herr_t status;
  PetscBool ok = PETSC_FALSE;

  PetscFunctionBegin;
  if (!format) {
    TNDataFormatDefault(&fallback);
    format = &fallback;
  }
  PetscCall(ShapeProbe(comm, path, format, &shape));
  PetscCallMPI(MPI_Comm_size(comm, &size));
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  TNGridSplit(shape.N, size, rank, &start, &end);
  PetscCall(DatasetFromShape(&shape, end - start, &D));
  D->Nlocal = end - start;
  D->offset = start;
  check     = (ShardCheck){path, format, &shape, D, NULL, 0};
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
  if (ok)
    status =
        ReadRows(file, format->x_name, MemType(shape.xkind), (hsize_t)start, (hsize_t)D->Nlocal, (hsize_t)D->d, D->X);
  PetscCall(TNAllAgree(comm, status >= 0 ? PETSC_TRUE : PETSC_FALSE, &ok));
  if (ok && shape.has_targets)
    status = ReadRows(file, format->y_name, H5T_NATIVE_DOUBLE, (hsize_t)start, (hsize_t)D->Nlocal, (hsize_t)shape.ycols,
                      shape.task == TN_TASK_CLASSIFICATION ? (void *)check.labels : (void *)D->Y);
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
  PetscCallMPI(MPI_Allreduce(&check.m, &D->m, 1, MPIU_INT, MPI_MAX, comm));
  *ds = D;
  PetscFunctionReturn(0);
}
