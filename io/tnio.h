/* HDF5 files of thetanet (DESIGN.md §4): datasets, the /model group, results.
   Readers validate everything and fail with TN_ERR_USER naming the file; writers never leave a
   half-written file under the final name (they write a temporary file and rename it). */
#ifndef THETANET_IO_H
#define THETANET_IO_H

#include "thetanet.h"

/* Collective on comm: rank 0 reads and validates, the result (or the error) reaches every rank.
   Accepts /X [N,d] float32|float64, /Y [N] integer labels, or /Y [N]|[N,m] float targets, the
   optional root attributes `task` and `name`. Rejects: a missing or non-HDF5 file, missing /X or
   /Y, wrong ranks or shapes, N of X and Y differing, N = 0, negative labels, NaN or Inf. */
PETSC_EXTERN PetscErrorCode TNDatasetLoad(MPI_Comm comm, const char *path, TNDataset *ds);
/* Collective on comm, for data sets larger than a node: rank 0 checks the layout, then rank r
   of P reads only its contiguous block of rows (TNGridSplit) with a collective hyperslab read and
   checks its values; an error anywhere reaches every rank. D->N is the whole set's size, D->Nlocal
   and D->offset say which rows this rank holds. */
PETSC_EXTERN PetscErrorCode TNDatasetLoadSharded(MPI_Comm comm, const char *path, TNDataset *ds);
/* Rank 0 writes /X, /Y (int64 labels or float64 targets) and the `task`/`name` attributes. */
PETSC_EXTERN PetscErrorCode TNDatasetSave(MPI_Comm comm, const char *path, TNDataset ds);

/* Collective on comm: reads the /model group of a model, checkpoint or results file, checks the
   arrays against the attributes, and creates the model. */
PETSC_EXTERN PetscErrorCode TNModelLoad(MPI_Comm comm, const char *path, TNModel *model);

/* The per-epoch record of a training run, kept on every rank, written by rank 0. */
typedef struct {
  PetscInt   n, cap;
  PetscInt  *epoch;
  PetscReal *train_loss, *val_loss, *val_accuracy, *lr, *wall_time, *newton_its, *krylov_its, *mgrit_its, *mgrit_res;
} TNHistory;

PETSC_EXTERN PetscErrorCode TNHistoryAppend(TNHistory *, PetscInt epoch, PetscReal train_loss, PetscReal val_loss,
                                            PetscReal val_accuracy, PetscReal lr, PetscReal wall_time,
                                            PetscReal newton_its, PetscReal krylov_its, PetscReal mgrit_its, PetscReal mgrit_res);
PETSC_EXTERN PetscErrorCode TNHistoryDestroy(TNHistory *);

/* Per-phase seconds of this rank; names are shared by all ranks. */
#define TN_MAX_PHASES 16
typedef struct {
  PetscInt    nphases;
  const char *names[TN_MAX_PHASES];
  PetscReal   seconds[TN_MAX_PHASES];
} TNTiming;

/* One attribute of /config. */
typedef struct {
  const char *key;
  const char *value;
} TNConfigEntry;

/* Collective on comm, written by rank 0: /model (the model's parameters), /history, /timing
   (gathered: /timing/<phase> [P] seconds of each rank), /config attributes (the given entries,
   plus every PETSc option in force). */
PETSC_EXTERN PetscErrorCode TNResultsWrite(MPI_Comm comm, const char *path, TNModel model, const TNHistory *history,
                                           const TNTiming *timing, PetscInt nconfig, const TNConfigEntry *config);

/* Rank 0 writes a file with /predictions [N,m] and root attributes (NULL names end the list);
   when gradient is not NULL also /gradient in the /model layout of model. */
PETSC_EXTERN PetscErrorCode TNEvaluationWrite(MPI_Comm comm, const char *path, TNModel model, PetscInt N,
                                              const PetscReal *predictions, const PetscScalar *gradient,
                                              PetscInt nattr, const char *const attr_names[],
                                              const PetscReal attr_values[]);

/* Where a checkpoint stands in the run: epochs done, and batches of the next epoch already taken
   when it was written within an epoch (on a signal), with that epoch's loss sums so far. */
typedef struct {
  PetscInt  epoch, batch, seed;
  PetscReal loss_sum, correct, wall_time;
} TNCheckpointState;

struct TNOptimizerS;
/* Collective on comm: writes /model, /optimizer (attributes type, step and hyper-parameters; the
   moments m1, m2 in the model layout), /history and /state (attributes epoch, batch, seed,
   rng_epoch, rng_batch, loss_sum, correct, wall_time, and complete = 1 last) with MPI-IO to
   "<path>.tmp", then syncs and renames it over path. Ranks with writer unset take part without
   data (they hold replicas of what the writer writes). */
PETSC_EXTERN PetscErrorCode TNCheckpointWrite(MPI_Comm comm, const char *path, PetscBool writer, TNModel model,
                                              const struct TNOptimizerS *opt, const TNHistory *history,
                                              const TNCheckpointState *state);
/* Collective on comm: reads a checkpoint written by any number of ranks; refuses (TN_ERR_USER) a
   file that is missing, not HDF5, truncated, incomplete or inconsistent. opt->type must be unset
   (it comes from the file); opt is set up and filled, history appended to. */
PETSC_EXTERN PetscErrorCode TNCheckpointRead(MPI_Comm comm, const char *path, TNModel *model, struct TNOptimizerS *opt,
                                             TNHistory *history, TNCheckpointState *state);

/* Refuse (TN_ERR_USER) an output path whose directory does not exist or is not writable, before
   any work is done. */
PETSC_EXTERN PetscErrorCode TNOutputPathCheck(MPI_Comm comm, const char *option, const char *path);

#endif
