/* Private HDF5 building blocks of io/ (h5util.c): root-only work whose errors reach every rank,
   validated reads, atomic writes, attributes, tables; and the /model group layout (modelio.c). */
#ifndef THETANET_H5UTIL_H
#define THETANET_H5UTIL_H

#include <hdf5.h>
#include "thetanet.h"
#include "tnio.h"

/* Runs fn(ctx) on rank 0 of comm alone, quietly; its error code and message are then raised on
   every rank of comm (printed once, by rank 0), so a bad file never leaves the others waiting. */
PETSC_INTERN PetscErrorCode TNH5RootCall(MPI_Comm comm, PetscErrorCode (*fn)(void *), void *ctx);

/* Runs fn(ctx) on every rank of comm, quietly; if it failed anywhere, the error of the lowest
   failing rank is raised on every rank (printed once, by rank 0). */
PETSC_INTERN PetscErrorCode TNH5AllCall(MPI_Comm comm, PetscErrorCode (*fn)(void *), void *ctx);
/* The usual reader: rank 0 of comm opens path (TNH5FileOpen) and runs read(file, ctx); any error
   reaches every rank of comm. read frees what it made before failing. */
PETSC_INTERN PetscErrorCode TNH5RootRead(MPI_Comm comm, const char *path, PetscErrorCode (*read)(hid_t, void *),
                                         void *ctx);

/* Opens an existing file read-only; TN_ERR_USER naming path when it is missing, not a regular
   file, unreadable, not HDF5, or truncated. Objects left open close with the file. */
PETSC_INTERN PetscErrorCode TNH5FileOpen(const char *path, hid_t *file);

/* Whether the object `name` (a path, every group on it included) exists under loc. */
PETSC_INTERN PetscBool TNH5LinkExists(hid_t loc, const char *name);

/* What an array in a file is: found is PETSC_FALSE when there is nothing under that name. */
typedef struct {
  PetscBool found;
  int rank;
  hsize_t dims[H5S_MAX_RANK];
  H5T_class_t cls;
} TNH5Array;

/* name is an absolute path in the file ("/X", "/model/blocks/W"); messages start with path. */
PETSC_INTERN PetscErrorCode TNH5ArrayInfo(hid_t file, const char *path, const char *name, TNH5Array *a);
/* Reads the whole array converted to memtype (H5T_NATIVE_DOUBLE, H5T_NATIVE_INT64, ...). */
PETSC_INTERN PetscErrorCode TNH5ArrayRead(hid_t file, const char *path, const char *name, hid_t memtype, void *buf);
/* "[3,4,4]", for messages. */
PETSC_INTERN void TNH5ShapeString(int rank, const hsize_t dims[], char *buf, size_t len);
/* Index of the first NaN or Inf of x[0..len), or -1. */
PETSC_INTERN PetscInt64 TNH5FirstNonFinite(const PetscReal *x, PetscInt64 len);

/* Scalar attributes of the object obj, called `where` in messages ("the root group", "/model"). A missing
   attribute is an error when found is NULL, else *found says whether it was there. Strings may
   be fixed- or variable-length; integers any integer type; reals any integer or float type. */
PETSC_INTERN PetscErrorCode TNH5AttrReadString(hid_t obj, const char *path, const char *where, const char *name,
                                               char *value, size_t len, PetscBool *found);
PETSC_INTERN PetscErrorCode TNH5AttrReadInt(hid_t obj, const char *path, const char *where, const char *name,
                                            PetscInt64 *value, PetscBool *found);
PETSC_INTERN PetscErrorCode TNH5AttrReadReal(hid_t obj, const char *path, const char *where, const char *name,
                                             PetscReal *value, PetscBool *found);
/* A string attribute that must name an entry of a PetscOptionsEnum-style list (TNTasks,
   TNActivations), matched without regard to case. */
PETSC_INTERN PetscErrorCode TNH5AttrReadChoice(hid_t obj, const char *path, const char *where, const char *name,
                                               const char *const *list, PetscInt *index, PetscBool *found);

/* Attribute writers create or replace; strings are variable-length UTF-8, which h5py reads as str. */
PETSC_INTERN PetscErrorCode TNH5AttrWriteString(hid_t obj, const char *name, const char *value);
PETSC_INTERN PetscErrorCode TNH5AttrWriteInt(hid_t obj, const char *name, PetscInt64 value);
PETSC_INTERN PetscErrorCode TNH5AttrWriteReal(hid_t obj, const char *name, PetscReal value);
/* Writers of groups and arrays: a failure is PETSC_ERR_FILE_WRITE (disk full), not a user error. */
PETSC_INTERN PetscErrorCode TNH5GroupCreate(hid_t loc, const char *name, hid_t *group);
/* A contiguous array of memtype (also its type in the file) under loc; buf may be NULL when empty. */
PETSC_INTERN PetscErrorCode TNH5ArrayWrite(hid_t loc, const char *name, hid_t memtype, int rank, const hsize_t dims[],
                                           const void *buf);

/* TN_ERR_USER unless a file could be created at path: its directory exists and is writable and
   path is not a directory. option (may be NULL) starts the message: "-output: cannot write ...". */
PETSC_INTERN PetscErrorCode TNH5OutputCheck(const char *option, const char *path);
/* The writer: rank 0 of comm runs fill(file, ctx) on a file built in memory, then writes it to a
   temporary file of this run's own, "<path>.<host>-<pid>-<n>.tmp", syncs it and renames it over
   path, so a crash at any moment leaves the old file whole and two jobs writing one path never
   mix their data; any error (disk full included) reaches every rank of comm as one error and
   leaves path untouched. */
PETSC_INTERN PetscErrorCode TNH5RootWrite(MPI_Comm comm, const char *path, PetscErrorCode (*fill)(hid_t, void *),
                                          void *ctx);

/* The model layout of DESIGN.md §4 under the new group `group` of loc: the six arrays of params
   (in the TNParams layout of model: its theta_buf for /model, a gradient for /gradient, a moment
   for an optimiser) and the model's attributes. */
PETSC_INTERN PetscErrorCode TNH5ModelWrite(hid_t loc, const char *group, TNModel model, const PetscScalar *params);
/* Reads the six arrays of the model-layout group `group` ("/model") into params, checking each
   shape against cfg and every value for NaN/Inf. */
PETSC_INTERN PetscErrorCode TNH5ModelArraysRead(hid_t file, const char *path, const char *group,
                                                const TNModelConfig *cfg, PetscScalar *params);

/* A table as the group `group` of loc holding one 1-D array per column; and its reader, which
   allocates the columns named in t (those from index required on may be missing: zeros). */
PETSC_INTERN PetscErrorCode TNH5TableWrite(hid_t loc, const char *group, const TNTable *t);
PETSC_INTERN PetscErrorCode TNH5TableRead(hid_t file, const char *path, const char *group, PetscInt required,
                                          TNTable *t);
#endif
