/* The HDF5 building blocks that every reader and writer of io/ shares (io/h5util.h): rank-0 work
   whose errors reach every rank, validated reads, attributes, atomic writes. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "h5util.h"

/* The files hold float64 and parameters are read straight into PetscScalar buffers. */
#if defined(PETSC_USE_COMPLEX) || !defined(PETSC_USE_REAL_DOUBLE)
#error "thetanet needs a real, double precision PETSc"
#endif

/* -------- errors of rank-0 work -------- */

PetscErrorCode TNH5RootCall(MPI_Comm comm, PetscErrorCode (*fn)(void *), void *ctx)
{
  PetscMPIInt rank;
  int code       = 0;
  char msg[1024] = "";

  PetscFunctionBegin;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  if (!rank) {
    char *specific = NULL;

    /* Silent here: the error is raised again below on comm, where the handler prints it once. */
    PetscCall(PetscPushErrorHandler(PetscReturnErrorHandler, NULL));
    code = fn(ctx);
    PetscCall(PetscPopErrorHandler());
    if (code) PetscCall(PetscErrorMessage(code, NULL, &specific));
    if (specific) PetscCall(PetscStrncpy(msg, specific, sizeof(msg)));
  }
  PetscCallMPI(MPI_Bcast(&code, 1, MPI_INT, 0, comm));
  if (code) PetscCallMPI(MPI_Bcast(msg, (int)sizeof(msg), MPI_CHAR, 0, comm));
  PetscCheck(!code, comm, code, "%s", msg);
  PetscFunctionReturn(0);
}

PetscErrorCode TNH5AllCall(MPI_Comm comm, PetscErrorCode (*fn)(void *), void *ctx)
{
  PetscMPIInt rank, size, first;
  int code       = 0;
  char msg[1024] = "", *specific = NULL;

  PetscFunctionBegin;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCallMPI(MPI_Comm_size(comm, &size));
  PetscCall(PetscPushErrorHandler(PetscReturnErrorHandler, NULL));
  code = fn(ctx);
  PetscCall(PetscPopErrorHandler());
  if (code) PetscCall(PetscErrorMessage(code, NULL, &specific));
  if (specific) PetscCall(PetscStrncpy(msg, specific, sizeof(msg)));
  /* the lowest failing rank speaks: with contiguous shards, the first bad row */
  first = code ? rank : size;
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &first, 1, MPI_INT, MPI_MIN, comm));
  if (first == size) PetscFunctionReturn(0);
  PetscCallMPI(MPI_Bcast(&code, 1, MPI_INT, first, comm));
  PetscCallMPI(MPI_Bcast(msg, (int)sizeof(msg), MPI_CHAR, first, comm));
  SETERRQ(comm, code, "%s", msg);
}

/* -------- reading -------- */

/* The library's own error stack would print HDF5 traces next to our one-line messages. */
static void H5Quiet(void)
{
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

/* Objects still open close with the file, so an error path cannot keep a file open; locking is
   used where the file system has it and skipped where it has not (some Lustre and NFS mounts). */
static hid_t FileAccess(void)
{
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);

  if (fapl >= 0 && (H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0 || H5Pset_file_locking(fapl, 1, 1) < 0)) {
    H5Pclose(fapl);
    fapl = H5I_INVALID_HID;
  }
  return fapl;
}

PetscErrorCode TNH5FileOpen(const char *path, hid_t *file)
{
  struct stat st;
  hid_t fapl;
  int fd;

  PetscFunctionBegin;
  H5Quiet();
  PetscCheck(path && path[0], PETSC_COMM_SELF, TN_ERR_USER, "no input file name given");
  PetscCheck(!stat(path, &st), PETSC_COMM_SELF, TN_ERR_USER, "%s: %s", path,
             errno == ENOENT ? "no such file" : strerror(errno));
  PetscCheck(!S_ISDIR(st.st_mode), PETSC_COMM_SELF, TN_ERR_USER, "%s: is a directory, not an HDF5 file", path);
  PetscCheck(S_ISREG(st.st_mode), PETSC_COMM_SELF, TN_ERR_USER, "%s: not a regular file", path);
  fd = open(path, O_RDONLY);
  PetscCheck(fd >= 0, PETSC_COMM_SELF, TN_ERR_USER, "%s: cannot read: %s", path, strerror(errno));
  close(fd);
  PetscCheck(H5Fis_hdf5(path) > 0, PETSC_COMM_SELF, TN_ERR_USER, "%s: not an HDF5 file", path);
  fapl  = FileAccess();
  *file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
  H5Pclose(fapl);
  PetscCheck(*file >= 0, PETSC_COMM_SELF, TN_ERR_USER, "%s: truncated or damaged HDF5 file (HDF5 cannot open it)",
             path);
  PetscFunctionReturn(0);
}

/* Writing a file: HDF5 builds it in memory (the core driver, no backing store), and its image is
   written with plain POSIX calls to a temporary file of this run's own next to path (two jobs
   writing one path never share it; the rename stays within one file system), synced, and
   renamed over path. A write that fails (disk full, quota, file size limit) is then an error of
   ours, never one inside HDF5, which cannot recover from a failed flush. */
typedef struct {
  hid_t file;
  char path[PETSC_MAX_PATH_LEN], tmp[PETSC_MAX_PATH_LEN + 96];
} Temp;

static PetscErrorCode TempCreate(const char *path, Temp *t)
{
  static int serial = 0;
  char host[64]     = "host";
  hid_t fapl;

  PetscFunctionBegin;
  H5Quiet();
  PetscCall(PetscStrncpy(t->path, path, sizeof t->path));
  PetscCall(TNH5OutputCheck(NULL, path));
  gethostname(host, sizeof host - 1);
  host[sizeof host - 1] = 0;
  PetscCheck(snprintf(t->tmp, sizeof t->tmp, "%s.%s-%d-%d.tmp", path, host, (int)getpid(), serial++) <
                 (int)sizeof t->tmp,
             PETSC_COMM_SELF, TN_ERR_USER, "%s: path too long", path);
  fapl    = H5Pcreate(H5P_FILE_ACCESS);
  t->file = fapl >= 0 && H5Pset_fapl_core(fapl, 1 << 20, 0) >= 0 ? H5Fcreate(t->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl)
                                                                 : H5I_INVALID_HID;
  if (fapl >= 0) H5Pclose(fapl);
  PetscCheck(t->file >= 0, PETSC_COMM_SELF, PETSC_ERR_LIB, "HDF5 cannot make a file in memory for %s", path);
  PetscFunctionReturn(0);
}

/* Writes len bytes, retrying short writes; 0 or the errno. */
static int WriteAll(int fd, const char *buf, size_t len)
{
  while (len > 0) {
    const ssize_t n = write(fd, buf, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return n < 0 ? errno : EIO;
    buf += n;
    len -= (size_t)n;
  }
  return 0;
}

/* With commit, the image goes to the temporary file, which is synced (the data must be on disk
   before the rename makes it the file: otherwise a crash could leave the new name pointing at a
   file whose blocks were never written) and renamed over path; any failure removes it. */
static PetscErrorCode TempClose(Temp *t, PetscBool commit)
{
  ssize_t size = commit && H5Fflush(t->file, H5F_SCOPE_GLOBAL) >= 0 ? H5Fget_file_image(t->file, NULL, 0) : -1;
  char *image  = NULL;
  int fd = -1, err = 0;

  PetscFunctionBegin;
  if (size > 0) PetscCall(PetscMalloc1(size, &image));
  if (image && H5Fget_file_image(t->file, image, (size_t)size) != size) size = -1;
  H5Fclose(t->file);
  t->file = H5I_INVALID_HID;
  if (!commit) {
    PetscCall(PetscFree(image));
    PetscFunctionReturn(0);
  }
  if (size <= 0) err = EIO;
  if (!err && (fd = open(t->tmp, O_WRONLY | O_CREAT | O_EXCL, 0644)) < 0) err = errno;
  if (!err) err = WriteAll(fd, image, (size_t)size);
  if (!err && fsync(fd)) err = errno;
  if (fd >= 0 && close(fd) && !err) err = errno;
  if (!err && rename(t->tmp, t->path)) err = errno;
  if (err && fd >= 0) unlink(t->tmp);
  PetscCall(PetscFree(image));
  PetscCheck(!err, PETSC_COMM_SELF, PETSC_ERR_FILE_WRITE, "cannot write %s: %s", t->path,
             err == ENOSPC || err == EFBIG || err == EDQUOT
                 ? "the disk is full (or a quota or file size limit is reached)"
                 : strerror(err));
  PetscFunctionReturn(0);
}

/* A file that rank 0 alone reads (opened as it is) or writes (a temporary file, committed only
   when fn succeeds), with fn(file, ctx) doing the work. */
typedef struct {
  const char *path;
  PetscBool write;
  PetscErrorCode (*fn)(hid_t, void *);
  void *ctx;
} FileJob;

static PetscErrorCode FileJobRun(void *j)
{
  FileJob *job = (FileJob *)j;
  Temp temp;
  hid_t file;
  PetscErrorCode ierr;

  PetscFunctionBegin;
  if (job->write) {
    PetscCall(TempCreate(job->path, &temp));
    file = temp.file;
  } else
    PetscCall(TNH5FileOpen(job->path, &file));
  ierr = job->fn(file, job->ctx);
  if (job->write)
    PetscCall(TempClose(&temp, ierr ? PETSC_FALSE : PETSC_TRUE));
  else
    H5Fclose(file);
  PetscCall(ierr);
  PetscFunctionReturn(0);
}

PetscErrorCode TNH5RootRead(MPI_Comm comm, const char *path, PetscErrorCode (*read)(hid_t, void *), void *ctx)
{
  FileJob job = {path, PETSC_FALSE, read, ctx};

  PetscFunctionBegin;
  PetscCall(TNH5RootCall(comm, FileJobRun, &job));
  PetscFunctionReturn(0);
}
/* H5Lexists looks only at the last component of a path and fails when a group above it is
   missing; walk the path so that anything missing reads as "not there". */
PetscBool TNH5LinkExists(hid_t loc, const char *name)
{
  char buf[PETSC_MAX_PATH_LEN];

  if (snprintf(buf, sizeof(buf), "%s", name) >= (int)sizeof(buf)) return PETSC_FALSE;
  for (size_t i = 1;; i++) {
    const char c = buf[i];

    if (c != '/' && c) continue;
    buf[i] = 0;
    if (H5Lexists(loc, buf, H5P_DEFAULT) <= 0) return PETSC_FALSE;
    if (!c) return PETSC_TRUE;
    buf[i] = c;
  }
}

PetscErrorCode TNH5ArrayInfo(hid_t file, const char *path, const char *name, TNH5Array *a)
{
  hid_t dset, space, type;

  PetscFunctionBegin;
  PetscCall(PetscMemzero(a, sizeof(*a)));
  if (!TNH5LinkExists(file, name)) PetscFunctionReturn(0);
  dset = H5Dopen2(file, name, H5P_DEFAULT);
  PetscCheck(dset >= 0, PETSC_COMM_SELF, TN_ERR_USER, "%s: %s is not an array (HDF5 dataset)", path, name);
  space   = H5Dget_space(dset);
  type    = H5Dget_type(dset);
  a->rank = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
  if (a->rank > 0 && H5Sget_simple_extent_dims(space, a->dims, NULL) < 0) a->rank = -1;
  a->cls = type >= 0 ? H5Tget_class(type) : H5T_NO_CLASS;
  if (type >= 0) H5Tclose(type);
  if (space >= 0) H5Sclose(space);
  H5Dclose(dset);
  PetscCheck(a->rank >= 0 && a->cls != H5T_NO_CLASS, PETSC_COMM_SELF, TN_ERR_USER,
             "%s: cannot read the shape and type of %s", path, name);
  a->found = PETSC_TRUE;
  PetscFunctionReturn(0);
}

PetscErrorCode TNH5ArrayRead(hid_t file, const char *path, const char *name, hid_t memtype, void *buf)
{
  hid_t dset    = H5Dopen2(file, name, H5P_DEFAULT);
  herr_t status = dset >= 0 ? H5Dread(dset, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) : -1;

  PetscFunctionBegin;
  if (dset >= 0) H5Dclose(dset);
  PetscCheck(status >= 0, PETSC_COMM_SELF, TN_ERR_USER, "%s: cannot read %s (damaged file?)", path, name);
  PetscFunctionReturn(0);
}

void TNH5ShapeString(int rank, const hsize_t dims[], char *buf, size_t len)
{
  size_t used = (size_t)snprintf(buf, len, "[");

  for (int i = 0; i < rank && used < len; i++)
    used += (size_t)snprintf(buf + used, len - used, "%s%llu", i ? "," : "", (unsigned long long)dims[i]);
  if (used < len) snprintf(buf + used, len - used, "]");
}

PetscInt64 TNH5FirstNonFinite(const PetscReal *x, PetscInt64 len)
{
  for (PetscInt64 i = 0; i < len; i++)
    if (PetscIsInfOrNanReal(x[i])) return i;
  return -1;
}

/* Opens the attribute `name` of obj, which must hold one value; *attr < 0 when it is missing
   (an error unless found is given). */
static PetscErrorCode AttrOpen(hid_t obj, const char *path, const char *where, const char *name, PetscBool *found,
                               hid_t *attr, H5T_class_t *cls)
{
  hid_t space, type;
  hssize_t npoints;

  PetscFunctionBegin;
  *attr = H5I_INVALID_HID;
  if (found) *found = PETSC_FALSE;
  if (H5Aexists(obj, name) <= 0) {
    PetscCheck(found, PETSC_COMM_SELF, TN_ERR_USER, "%s: %s has no attribute '%s'", path, where, name);
    PetscFunctionReturn(0);
  }
  *attr   = H5Aopen(obj, name, H5P_DEFAULT);
  space   = *attr >= 0 ? H5Aget_space(*attr) : H5I_INVALID_HID;
  type    = *attr >= 0 ? H5Aget_type(*attr) : H5I_INVALID_HID;
  npoints = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
  *cls    = type >= 0 ? H5Tget_class(type) : H5T_NO_CLASS;
  if (type >= 0) H5Tclose(type);
  if (space >= 0) H5Sclose(space);
  if (npoints != 1 && *attr >= 0) H5Aclose(*attr);
  PetscCheck(*attr >= 0 && *cls != H5T_NO_CLASS, PETSC_COMM_SELF, TN_ERR_USER, "%s: cannot read attribute '%s' of %s",
             path, name, where);
  PetscCheck(npoints == 1, PETSC_COMM_SELF, TN_ERR_USER, "%s: attribute '%s' of %s must hold a single value", path,
             name, where);
  if (found) *found = PETSC_TRUE;
  PetscFunctionReturn(0);
}

PetscErrorCode TNH5AttrReadString(hid_t obj, const char *path, const char *where, const char *name, char *value,
                                  size_t len, PetscBool *found)
{
  hid_t attr, ftype, mtype;
  H5T_class_t cls;
  herr_t status = -1;
  char *s       = NULL;

  PetscFunctionBegin;
  PetscCall(AttrOpen(obj, path, where, name, found, &attr, &cls));
  if (attr < 0) PetscFunctionReturn(0);
  if (cls != H5T_STRING) H5Aclose(attr);
  PetscCheck(cls == H5T_STRING, PETSC_COMM_SELF, TN_ERR_USER, "%s: attribute '%s' of %s must be a string", path, name,
             where);
  ftype = H5Aget_type(attr);
  /* Read in the file's character set (HDF5 converts none); a fixed-length string gets one byte
     more in memory, so that the conversion terminates it without dropping its last character. */
  mtype = H5Tcopy(H5T_C_S1);
  H5Tset_cset(mtype, H5Tget_cset(ftype));
  if (H5Tis_variable_str(ftype) > 0) {
    H5Tset_size(mtype, H5T_VARIABLE);
    status = H5Aread(attr, mtype, &s);
    if (status >= 0) PetscCall(PetscStrncpy(value, s ? s : "", len));
    H5free_memory(s);
  } else {
    const size_t size = H5Tget_size(ftype);

    H5Tset_size(mtype, size + 1);
    PetscCall(PetscCalloc1(size + 1, &s));
    status = H5Aread(attr, mtype, s);
    /* Fortran writers pad with spaces */
    for (size_t i = strlen(s); i > 0 && s[i - 1] == ' '; i--) s[i - 1] = 0;
    if (status >= 0) PetscCall(PetscStrncpy(value, s, len));
    PetscCall(PetscFree(s));
  }
  H5Tclose(mtype);
  H5Tclose(ftype);
  H5Aclose(attr);
  PetscCheck(status >= 0, PETSC_COMM_SELF, TN_ERR_USER, "%s: cannot read attribute '%s' of %s", path, name, where);
  PetscFunctionReturn(0);
}

/* One reader for both numeric kinds: integers accept integer types only, reals also floats. */
static PetscErrorCode AttrReadNumber(hid_t obj, const char *path, const char *where, const char *name,
                                     PetscBool integer, hid_t memtype, void *value, PetscBool *found)
{
  hid_t attr;
  H5T_class_t cls;
  PetscBool ok;
  herr_t status = -1;

  PetscFunctionBegin;
  PetscCall(AttrOpen(obj, path, where, name, found, &attr, &cls));
  if (attr < 0) PetscFunctionReturn(0);
  ok = (cls == H5T_INTEGER || (!integer && cls == H5T_FLOAT)) ? PETSC_TRUE : PETSC_FALSE;
  if (ok) status = H5Aread(attr, memtype, value);
  H5Aclose(attr);
  PetscCheck(ok, PETSC_COMM_SELF, TN_ERR_USER, "%s: attribute '%s' of %s must be %s", path, name, where,
             integer ? "an integer" : "a number");
  PetscCheck(status >= 0, PETSC_COMM_SELF, TN_ERR_USER, "%s: cannot read attribute '%s' of %s", path, name, where);
  PetscFunctionReturn(0);
}

PetscErrorCode TNH5AttrReadInt(hid_t obj, const char *path, const char *where, const char *name, PetscInt64 *value,
                               PetscBool *found)
{
  PetscFunctionBegin;
  PetscCall(AttrReadNumber(obj, path, where, name, PETSC_TRUE, H5T_NATIVE_INT64, value, found));
  PetscFunctionReturn(0);
}

PetscErrorCode TNH5AttrReadReal(hid_t obj, const char *path, const char *where, const char *name, PetscReal *value,
                                PetscBool *found)
{
  PetscFunctionBegin;
  PetscCall(AttrReadNumber(obj, path, where, name, PETSC_FALSE, H5T_NATIVE_DOUBLE, value, found));
  PetscFunctionReturn(0);
}

PetscErrorCode TNH5AttrReadChoice(hid_t obj, const char *path, const char *where, const char *name,
                                  const char *const *list, PetscInt *index, PetscBool *found)
{
  char value[256], choices[256] = "";
  PetscBool match;
  PetscEnum e;

  PetscFunctionBegin;
  PetscCall(TNH5AttrReadString(obj, path, where, name, value, sizeof(value), found));
  if (found && !*found) PetscFunctionReturn(0);
  PetscCall(PetscEnumFind(list, value, &e, &match));
  /* a PetscOptionsEnum list ends with the type name, the prefix and NULL */
  for (size_t i = 0, used = 0; !match && list[i + 2] && used < sizeof(choices); i++)
    used += (size_t)snprintf(choices + used, sizeof(choices) - used, "%s%s", i ? ", " : "", list[i]);
  PetscCheck(match, PETSC_COMM_SELF, TN_ERR_USER, "%s: attribute '%s' of %s is '%s', expected one of %s", path, name,
             where, value, choices);
  *index = (PetscInt)e;
  PetscFunctionReturn(0);
}

/* -------- writing -------- */

/* A failed write is a run-time failure (disk full, quota), not a user mistake. */
static PetscErrorCode WriteCheck(herr_t status, hid_t loc, const char *what, const char *name)
{
  char file[PETSC_MAX_PATH_LEN] = "?";

  PetscFunctionBegin;
  if (status < 0) H5Fget_name(loc, file, sizeof(file));
  PetscCheck(status >= 0, PETSC_COMM_SELF, PETSC_ERR_FILE_WRITE, "%s: cannot write %s '%s' (disk full?)", file, what,
             name);
  PetscFunctionReturn(0);
}

PetscErrorCode TNH5GroupCreate(hid_t loc, const char *name, hid_t *group)
{
  PetscFunctionBegin;
  *group = H5Gcreate2(loc, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  PetscCall(WriteCheck(*group >= 0 ? 0 : -1, loc, "group", name));
  PetscFunctionReturn(0);
}

static PetscErrorCode AttrWrite(hid_t obj, const char *name, hid_t type, const void *value)
{
  hid_t space, attr = H5I_INVALID_HID;
  herr_t status = -1;

  PetscFunctionBegin;
  if (H5Aexists(obj, name) > 0) H5Adelete(obj, name);
  space = H5Screate(H5S_SCALAR);
  if (space >= 0) attr = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  if (attr >= 0) {
    status = H5Awrite(attr, type, value);
    H5Aclose(attr);
  }
  if (space >= 0) H5Sclose(space);
  PetscCall(WriteCheck(status, obj, "attribute", name));
  PetscFunctionReturn(0);
}

PetscErrorCode TNH5AttrWriteString(hid_t obj, const char *name, const char *value)
{
  hid_t type = H5Tcopy(H5T_C_S1);
  PetscErrorCode ierr;

  PetscFunctionBegin;
  H5Tset_size(type, H5T_VARIABLE);
  H5Tset_cset(type, H5T_CSET_UTF8);
  ierr = AttrWrite(obj, name, type, &value);
  H5Tclose(type);
  PetscCall(ierr);
  PetscFunctionReturn(0);
}

PetscErrorCode TNH5AttrWriteInt(hid_t obj, const char *name, PetscInt64 value)
{
  PetscFunctionBegin;
  PetscCall(AttrWrite(obj, name, H5T_NATIVE_INT64, &value));
  PetscFunctionReturn(0);
}

PetscErrorCode TNH5AttrWriteReal(hid_t obj, const char *name, PetscReal value)
{
  PetscFunctionBegin;
  PetscCall(AttrWrite(obj, name, H5T_NATIVE_DOUBLE, &value));
  PetscFunctionReturn(0);
}

PetscErrorCode TNH5ArrayWrite(hid_t loc, const char *name, hid_t memtype, int rank, const hsize_t dims[],
                              const void *buf)
{
  hid_t space, dset = H5I_INVALID_HID;
  herr_t status = -1;
  hsize_t count = 1;

  PetscFunctionBegin;
  for (int i = 0; i < rank; i++) count *= dims[i];
  space = H5Screate_simple(rank, dims, NULL);
  if (space >= 0) dset = H5Dcreate2(loc, name, memtype, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  /* HDF5 refuses a NULL buffer even for nothing to write */
  if (dset >= 0) status = count ? H5Dwrite(dset, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) : 0;
  if (dset >= 0) H5Dclose(dset);
  if (space >= 0) H5Sclose(space);
  PetscCall(WriteCheck(status, loc, "array", name));
  PetscFunctionReturn(0);
}

PetscErrorCode TNH5OutputCheck(const char *option, const char *path)
{
  char dir[PETSC_MAX_PATH_LEN], pre[256] = "";
  const char *slash;
  struct stat st;

  PetscFunctionBegin;
  if (option) snprintf(pre, sizeof(pre), "%s: ", option);
  PetscCheck(path && path[0], PETSC_COMM_SELF, TN_ERR_USER, "%sno output file name given", pre);
  slash = strrchr(path, '/');
  PetscCheck(!slash || slash[1], PETSC_COMM_SELF, TN_ERR_USER, "%scannot write %s: it names a directory, not a file",
             pre, path);
  if (!slash)
    snprintf(dir, sizeof(dir), ".");
  else if (slash == path)
    snprintf(dir, sizeof(dir), "/");
  else
    snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
  if (stat(dir, &st)) {
    const int err = errno;

    PetscCheck(err != ENOENT && err != ENOTDIR, PETSC_COMM_SELF, TN_ERR_USER,
               "%scannot write %s: directory '%s' does not exist", pre, path, dir);
    SETERRQ(PETSC_COMM_SELF, TN_ERR_USER, "%scannot write %s: directory '%s': %s", pre, path, dir, strerror(err));
  }
  PetscCheck(S_ISDIR(st.st_mode), PETSC_COMM_SELF, TN_ERR_USER, "%scannot write %s: '%s' is not a directory", pre, path,
             dir);
  PetscCheck(!access(dir, W_OK | X_OK), PETSC_COMM_SELF, TN_ERR_USER,
             "%scannot write %s: directory '%s' is not writable", pre, path, dir);
  PetscCheck(stat(path, &st) || !S_ISDIR(st.st_mode), PETSC_COMM_SELF, TN_ERR_USER,
             "%scannot write %s: it is a directory", pre, path);
  PetscFunctionReturn(0);
}

PetscErrorCode TNH5RootWrite(MPI_Comm comm, const char *path, PetscErrorCode (*fill)(hid_t, void *), void *ctx)
{
  FileJob job = {path, PETSC_TRUE, fill, ctx};

  PetscFunctionBegin;
  PetscCall(TNH5RootCall(comm, FileJobRun, &job));
  PetscFunctionReturn(0);
}

/* The file a path names: its device and inode when it exists, else the real path of its
   directory joined with its name (two names of a file not yet written compare equal too). */
typedef struct {
  PetscBool exists;
  dev_t dev;
  ino_t ino;
  char where[2 * PETSC_MAX_PATH_LEN];
} FileIdentity;

static void Identify(const char *path, FileIdentity *id)
{
  struct stat st;
  char dir[PETSC_MAX_PATH_LEN], real[PETSC_MAX_PATH_LEN];
  const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;

  id->exists = stat(path, &st) == 0 ? PETSC_TRUE : PETSC_FALSE;
  id->dev    = id->exists ? st.st_dev : 0;
  id->ino    = id->exists ? st.st_ino : 0;
  if (!slash)
    snprintf(dir, sizeof dir, ".");
  else if (slash == path)
    snprintf(dir, sizeof dir, "/");
  else
    snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
  if (realpath(dir, real))
    snprintf(id->where, sizeof id->where, "%s/%s", real, base);
  else
    snprintf(id->where, sizeof id->where, "%s", path);
}

typedef struct {
  const char *out_option, *out, *in_option, *in;
} SameFile;

static PetscErrorCode SameFileJob(void *ctx)
{
  SameFile *c = (SameFile *)ctx;
  FileIdentity a, b;

  PetscFunctionBegin;
  Identify(c->out, &a);
  Identify(c->in, &b);
  PetscCheck(!(a.exists && b.exists ? a.dev == b.dev && a.ino == b.ino : !strcmp(a.where, b.where)), PETSC_COMM_SELF,
             TN_ERR_USER, "%s %s is the file %s %s names: writing it would destroy it (choose another name)",
             c->out_option, c->out, c->in_option, c->in);
  PetscFunctionReturn(0);
}

PetscErrorCode TNOutputNotInput(MPI_Comm comm, const char *out_option, const char *out, const char *in_option,
                                const char *in)
{
  SameFile c = {out_option, out, in_option, in};

  PetscFunctionBegin;
  if (!out || !out[0] || !in || !in[0]) PetscFunctionReturn(0);
  PetscCall(TNH5RootCall(comm, SameFileJob, &c));
  PetscFunctionReturn(0);
}

PetscErrorCode TNIOFinalize(void)
{
  PetscFunctionBegin;
  H5close();
  PetscFunctionReturn(0);
}
