/* The files of thetanet (DESIGN.md §4), HDF5 all: data sets, the /model group, results,
   evaluations and checkpoints. Readers validate everything and fail with TN_ERR_USER naming the
   file; writers never leave a half-written file under the final name. io/ knows the layouts, not
   the trainer: what a run records reaches it as the generic tables and records below. */
#ifndef THETANET_IO_H
#define THETANET_IO_H

#include "thetanet.h"

/* ---- data sets ---- */

/* A data set held in memory: X is N x d row-major double; classification keeps integer labels,
   regression N x m targets. A sharded set holds the rows [offset, offset + Nlocal) of N. */
typedef struct _n_TNDataset *TNDataset;

typedef struct {
  PetscInt N, d, m;        /* m: classes (max label + 1) or targets */
  PetscInt Nlocal, offset; /* the rows held here */
  TNTask task;
  PetscBool has_targets; /* PETSC_FALSE: a file without labels or targets, read for predictions */
  PetscReal bytes;       /* memory the rows held here take */
  const char *name;
} TNDatasetInfo;

PETSC_EXTERN PetscErrorCode TNDatasetCreate(PetscInt N, PetscInt d, PetscInt m, TNTask, const char *name, TNDataset *);
PETSC_EXTERN PetscErrorCode TNDatasetDestroy(TNDataset *);
PETSC_EXTERN PetscErrorCode TNDatasetGetInfo(TNDataset, TNDatasetInfo *);
/* The rows held here, to fill or read: X [Nlocal, d] (float64 inputs only), labels [Nlocal]
   (classification) or Y [Nlocal, m] (regression); the other is NULL. */
PETSC_EXTERN PetscErrorCode TNDatasetGetArrays(TNDataset, PetscReal **X, PetscInt **labels, PetscReal **Y);
/* Copies the local rows idx[0..B) into contiguous batch buffers, the inputs as float64 (scaled),
   labels or Y by the task. */
PETSC_EXTERN PetscErrorCode TNDatasetGetRows(TNDataset, PetscInt B, const PetscInt *idx, PetscReal *X, PetscInt *labels,
                                             PetscReal *Y);
/* A fingerprint of the whole set (rows, values, labels or targets) of 52 bits, the same on any
   number of ranks: collective on comm, the ranks holding the shards, for a sharded set. */
PETSC_EXTERN PetscErrorCode TNDatasetChecksum(TNDataset, MPI_Comm comm, PetscInt64 *checksum);
/* Keep only the rows rank r of comm holds in a sharded layout (TNGridSplit). */
PETSC_EXTERN PetscErrorCode TNDatasetShard(TNDataset, MPI_Comm);

/* Where a data file keeps its arrays and how to read them: -x_name, -y_name (default /X, /Y),
   -scale_uint8 (uint8 inputs, images, read as x/255); targets_optional (predict) lets a file
   without labels or targets be read for its inputs. */
typedef struct {
  char x_name[256], y_name[256];
  PetscBool scale_uint8, targets_optional;
} TNDataFormat;

PETSC_EXTERN void TNDataFormatDefault(TNDataFormat *);
PETSC_EXTERN PetscErrorCode TNDataFormatSetFromOptions(MPI_Comm, TNDataFormat *);

/* Collective on comm: rank 0 reads and validates, the result (or the error) reaches every rank.
   Accepts the inputs [N,d] of any integer or float type (held as float64, or as float32 and uint8
   when stored so), labels [N] of integers (or whole floats with task = "classification"), or
   targets [N]|[N,m] of floats, and the optional root attributes `task` (which decides the task)
   and `name`. Rejects: a missing or non-HDF5 file, missing arrays, wrong ranks or shapes, N of
   inputs and targets differing, N = 0, negative labels, NaN or Inf, and float one-hot rows
   without `task`. format NULL: /X, /Y, no scaling. */
PETSC_EXTERN PetscErrorCode TNDatasetLoad(MPI_Comm comm, const char *path, const TNDataFormat *format, TNDataset *ds);
/* Collective on comm, for data sets larger than a node: rank 0 checks the layout, then rank r
   of P reads only its contiguous block of rows (TNGridSplit) with a collective hyperslab read and
   checks its values; an error anywhere reaches every rank. */
/* Collective: the bytes a whole copy of the data file's set takes in memory (checked as a load
   checks its shape, nothing read but the shape). */
PETSC_EXTERN PetscErrorCode TNDatasetMemory(MPI_Comm comm, const char *path, const TNDataFormat *format,
                                            PetscReal *bytes);
PETSC_EXTERN PetscErrorCode TNDatasetLoadSharded(MPI_Comm comm, const char *path, const TNDataFormat *format,
                                                 TNDataset *ds);
/* Rank 0 writes /X, /Y (int64 labels or float64 targets) and the `task`/`name` attributes. */
PETSC_EXTERN PetscErrorCode TNDatasetSave(MPI_Comm comm, const char *path, TNDataset ds);

/* ---- models ---- */

/* Collective on comm: reads the /model group of a model, checkpoint or results file, checks the
   arrays against the attributes, and creates the model. */
PETSC_EXTERN PetscErrorCode TNModelLoad(MPI_Comm comm, const char *path, TNModel *model);

/* ---- what a run records ---- */

/* Named columns of equal length (the /history group); integer columns are stored as int64. */
typedef struct {
  PetscInt ncols, nrows;
  const char *const *names;
  const PetscBool *integer;
  PetscReal **columns; /* columns[k][0..nrows) */
} TNTable;

/* A named attribute of a group (the /state of a checkpoint): a real, an integer (stored as int64,
   read back exactly up to 2^53) or a string. An optional one may be missing from a file (found
   says whether it was there). */
typedef enum { TN_ATTR_REAL, TN_ATTR_INT, TN_ATTR_STRING } TNAttributeType;
typedef struct {
  const char *name;
  TNAttributeType type;
  PetscReal value;
  char text[256];
  PetscBool optional, found;
} TNAttribute;

/* The optimiser's part of a checkpoint (/optimizer): its type, one of types[] (a
   PetscOptionsEnum-style list), the step count, named scalar hyper-parameters, and up to two
   moment arrays in the model layout (NULL when the optimiser has none). */
#define TN_OPTIMIZER_MOMENTS 2
typedef struct {
  const char *const *types;
  PetscInt type;
  PetscInt64 step;
  PetscInt nhyper;
  const char *const *hyper_names;
  PetscReal *hyper;
  PetscScalar *moment[TN_OPTIMIZER_MOMENTS];
} TNOptimizerRecord;

/* One attribute of /config. */
typedef struct {
  const char *key;
  const char *value;
} TNConfigEntry;

/* Collective on comm, written by rank 0: /model (the model's parameters; or best, the best
   epoch's in the whole layout, when not NULL, and then /model_last the model's), /history, /timing
   (gathered: /timing/<phase> [P] seconds of each rank, phases named alike on every rank),
   /config attributes (the given entries, plus every PETSc option in force). */
PETSC_EXTERN PetscErrorCode TNResultsWrite(MPI_Comm comm, const char *path, TNModel model, const PetscScalar *best,
                                           const TNTable *history, PetscInt nphases, const char *const phases[],
                                           const PetscReal seconds[], PetscInt nconfig, const TNConfigEntry *config);

/* Collective: the /config attributes named by keys (strings) of a results file, "" where absent
   (or the file has no /config). */
PETSC_EXTERN PetscErrorCode TNResultsConfigRead(MPI_Comm comm, const char *path, PetscInt n, const char *const keys[],
                                                char values[][128]);
/* Rank 0 writes a file with /predictions [N,m] and root attributes (NULL names end the list);
   when gradient is not NULL also /gradient in the /model layout of model, when robustness is not
   NULL the table as /robustness. */
PETSC_EXTERN PetscErrorCode TNEvaluationWrite(MPI_Comm comm, const char *path, TNModel model, PetscInt N,
                                              const PetscReal *predictions, const PetscScalar *gradient, PetscInt nattr,
                                              const char *const attr_names[], const PetscReal attr_values[],
                                              const TNTable *robustness);

/* Collective on comm, written by rank 0 (whose arguments count): /model, /optimizer (attributes
   type, step and the hyper-parameters; moments m1, m2 in the model layout), /history and /state
   (the given attributes, version, and complete = 1 last), into a temporary file synced and
   renamed over path; best (whole layout, NULL: none) as /model_best, the best epoch's model. */
PETSC_EXTERN PetscErrorCode TNCheckpointWrite(MPI_Comm comm, const char *path, TNModel model,
                                              const TNOptimizerRecord *opt, const TNTable *history, PetscInt nstate,
                                              const TNAttribute state[], const PetscScalar *best);
/* Collective on comm: reads a checkpoint written by any number of ranks; refuses (TN_ERR_USER) a
   file that is missing, not HDF5, truncated, incomplete or inconsistent. opt->types and
   opt->hyper_names/nhyper say what to read; the moments found are allocated (free them with
   PetscFree). history->names/ncols/integer say which columns to read (names from index
   `required` on may be missing: read as 0); its columns are allocated (TNTableFree). The state
   attributes named in state[] are read into their values. /model_best, when present, is
   allocated into *best (else NULL; PetscFree). */
PETSC_EXTERN PetscErrorCode TNCheckpointRead(MPI_Comm comm, const char *path, TNModel *model, TNOptimizerRecord *opt,
                                             TNTable *history, PetscInt required, PetscInt nstate, TNAttribute state[],
                                             PetscScalar **best);
PETSC_EXTERN PetscErrorCode TNTableFree(TNTable *);

/* Refuse (TN_ERR_USER) an output that is an input (or another output) of the same command: the
   same file however it is named (links, ./, ..), so that writing it cannot destroy it. Empty
   names pass. */
PETSC_EXTERN PetscErrorCode TNOutputNotInput(MPI_Comm comm, const char *out_option, const char *out,
                                             const char *in_option, const char *in);

/* Closes what HDF5 still holds open (a file that a failed write could not close) while MPI is
   up: HDF5 would otherwise close it at exit, after MPI_Finalize. Call before PetscFinalize. */
PETSC_EXTERN PetscErrorCode TNIOFinalize(void);

/* Refuse (TN_ERR_USER) an output path whose directory does not exist or is not writable, before
   any work is done. */
PETSC_EXTERN PetscErrorCode TNOutputPathCheck(MPI_Comm comm, const char *option, const char *path);

#endif
