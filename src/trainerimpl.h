/* The trainer's fields and records, and the functions its files share: trainer.c (set-up and the
   epoch loop), report.c (header, epoch line, progress, summary, results file), history.c (the
   per-epoch record) and restart.c (checkpoints and restarts). */
#ifndef THETANET_TRAINERIMPL_H
#define THETANET_TRAINERIMPL_H

#include "trainer.h"
#include "modelimpl.h"
#include "evaluate.h"
#include "optimizer.h"
#include "problems.h"
#include "schedule.h"
#include "reducer.h"

/* The per-epoch record, kept on every rank, written by rank 0 as /history: one column per field
   of DESIGN.md §4 (names in history.c); columns from TN_HISTORY_REQUIRED on may be missing in
   files of earlier versions. */
enum {
  TN_HISTORY_EPOCH,
  TN_HISTORY_TRAIN_LOSS,
  TN_HISTORY_VAL_LOSS,
  TN_HISTORY_VAL_ACCURACY,
  TN_HISTORY_LR,
  TN_HISTORY_WALL_TIME,
  TN_HISTORY_NEWTON_ITS,
  TN_HISTORY_KRYLOV_ITS,
  TN_HISTORY_MGRIT_ITS,
  TN_HISTORY_MGRIT_RES,
  TN_HISTORY_COLUMNS
};
#define TN_HISTORY_REQUIRED TN_HISTORY_MGRIT_RES

typedef struct {
  PetscInt n, cap;
  PetscReal *column[TN_HISTORY_COLUMNS];
} TNHistory;

PETSC_INTERN PetscErrorCode TNHistoryAppend(TNHistory *, const PetscReal row[TN_HISTORY_COLUMNS]);
PETSC_INTERN PetscErrorCode TNHistoryDestroy(TNHistory *);
/* A table viewing the history (for the files), and an empty one naming its columns (to read). */
PETSC_INTERN void TNHistoryTable(const TNHistory *, TNTable *);
PETSC_INTERN void TNHistoryTableEmpty(TNTable *, PetscReal *columns[TN_HISTORY_COLUMNS]);
/* Appends the rows of a table read from a file. */
PETSC_INTERN PetscErrorCode TNHistoryAppendTable(TNHistory *, const TNTable *);

/* Where a run starts: after `epoch` epochs and `batch` batches of the next one, with that epoch's
   loss sums so far (a checkpoint's /state; zero for a fresh run). */
typedef struct {
  PetscInt epoch, batch, seed;
  PetscReal loss_sum, correct, wall_time;
} TNResume;

/* What the training controls carry from epoch to epoch (in checkpoints): the best validation
   loss and its epoch, the epochs since it, and the steps rejected so far. */
typedef struct {
  PetscReal best_val;
  PetscInt best_epoch, stall, rejections;
} TNWatch;

/* Per-phase seconds of this rank, written as /timing. */
enum { PH_FORWARD, PH_BACKWARD, PH_ALLREDUCE, PH_UPDATE, PH_VALIDATE, PH_IO, PH_TOTAL, PH_COUNT };
PETSC_INTERN const char *const TNTrainerPhases[PH_COUNT];

/* What an epoch reports, on every rank after the reductions. */
typedef struct {
  PetscInt epoch;
  PetscReal train_loss, val_loss, val_accuracy, seconds;
  PetscReal newton, krylov, mgrit, mgrit_res; /* per block solve, per MGRIT solve; largest residual */
  PetscReal recon;                            /* reversible memory: largest reconstruction error */
} TNEpochReport;

struct _n_TNTrainer {
  MPI_Comm comm;
  TNGrid grid;
  TNModelConfig cfg;
  TNRegularization reg;
  TNOptimizer opt;
  PetscInt epochs, batch, depth_ranks, seed;
  PetscInt exact_epochs;                    /* -mgrit_exact_epochs: the last epochs train layer-serially */
  PetscBool exact;                          /* whether this epoch does */
  PetscBool mgrit_test;                     /* -mgrit_test: the MGRIT self-test instead of training */
  char trace[PETSC_MAX_PATH_LEN];           /* -trace DIR: SimGrid traces of the run */
  PetscInt trace_epochs[64], ntrace_epochs; /* -trace_epochs: those recorded (none given: all) */
  PetscReal trace_speed;                    /* -trace_speed: flops per CPU second */
  PetscReal max_memory;                     /* GB a node may use; 0: what it has */
  char train_path[PETSC_MAX_PATH_LEN], val_path[PETSC_MAX_PATH_LEN], output[PETSC_MAX_PATH_LEN];
  char checkpoint[PETSC_MAX_PATH_LEN], restart[PETSC_MAX_PATH_LEN];
  PetscInt checkpoint_every;
  PetscBool have_restart, restart_new_data;
  TNResume resume;
  TNProblem problem;
  PetscBool have_train, have_val, progress, sharded;
  PetscBool layout_set, auto_sharded; /* -data_layout given; sharded because replicas would not fit */
  PetscReal replica_bytes, node_bytes;
  TNDataset train, val;
  TNDatasetInfo train_info;
  TNDataFormat format;
  TNModel model;
  TNNetwork net;
  TNHistory history;
  /* training controls: schedule, early stopping, best model, clipping, step rejection */
  TNSchedule sched;
  PetscInt patience, max_rejections;
  PetscReal clip_norm;
  PetscBool keep_best;
  TNWatch watch;
  PetscInt rejected;         /* consecutive rejections */
  PetscBool can_undo;        /* undo and gprev hold the last update's start and gradient */
  PetscScalar *undo, *gprev; /* parameters before the last update, and its gradient (a buffer of
                                the two below) */
  PetscScalar *best;         /* -keep_best: the best epoch's parameters (this rank's share) */
  char start_time[64];
  /* what the run reports */
  PetscReal phase[PH_COUNT];
  PetscReal train_seconds; /* training passes, epoch 1 excluded when there are more */
  PetscInt64 train_samples;
  PetscReal newton_sum, krylov_sum, mgrit_sum, mgrit_res_max; /* over the epochs of this run */
  PetscReal mgrit_logfactor;                                  /* this rank's MGRIT convergence factors (log, summed) */
  PetscInt64 mgrit_nfactor;
  /* the gradient's bucketed reduction over the data ranks */
  PetscInt bucket_kb, group, nbuckets; /* -allreduce_bucket_kb; blocks per bucket; buckets */
  TNReducerAlgorithm reduce_algorithm; /* -allreduce_algorithm */
  PetscBool *started;                  /* the buckets of this step started so far */
  struct _n_TNReducer *reducer;
  /* per-step buffers */
  PetscScalar *reduce; /* gradient | loss_sum | correct | failed | signalled: one of */
  PetscScalar *reduce_first, *reduce_spare;
  PetscReal *Xb, *Yb, *out, *dout;
  PetscInt *Lb, *perm;
};

/* report.c */
PETSC_INTERN PetscErrorCode TNTrainerReportHeader(TNTrainer);
PETSC_INTERN PetscErrorCode TNTrainerReportProgress(TNTrainer, PetscInt epoch, PetscInt batch, PetscInt nbatches,
                                                    PetscReal loss);
/* The epoch's solver counters over all ranks into r (and the run's sums), counters reset. */
PETSC_INTERN PetscErrorCode TNTrainerEpochCounts(TNTrainer, TNEpochReport *r);
PETSC_INTERN PetscErrorCode TNTrainerReportEpoch(TNTrainer, const TNEpochReport *r, PetscReal eta);
PETSC_INTERN PetscErrorCode TNTrainerReportSummary(TNTrainer, const TNEpochReport *last);
PETSC_INTERN PetscErrorCode TNTrainerWriteResults(TNTrainer);

/* restart.c */
PETSC_INTERN PetscErrorCode TNTrainerCheckpointWrite(TNTrainer, const TNResume *);
PETSC_INTERN PetscErrorCode TNTrainerRestartLoad(TNTrainer);
/* The whole network (every rank), gathered from the depth ranks' shares for a write, and its
   optimiser record; release with TNTrainerWholeDestroy. */
PETSC_INTERN PetscErrorCode TNTrainerWholeModel(TNTrainer, TNModel *whole, TNOptimizerRecord *opt, PetscReal hyper[]);
PETSC_INTERN PetscErrorCode TNTrainerWholeDestroy(TNTrainer, TNModel *whole, TNOptimizerRecord *opt);
/* The best epoch's parameters in the whole layout (NULL when there are none); free with
   TNTrainerWholeBestDestroy. */
PETSC_INTERN PetscErrorCode TNTrainerWholeBest(TNTrainer, PetscScalar **best);
PETSC_INTERN PetscErrorCode TNTrainerWholeBestDestroy(TNTrainer, PetscScalar **best);

#endif
