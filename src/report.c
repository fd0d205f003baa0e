/* What a training run tells its user and its tools (DESIGN.md §3, §4): the header, the progress
   line within an epoch, the epoch line, the summary line that scaling studies grep, and the
   results file with its /config. */
#include "trainerimpl.h"
#include "blas.h"
#include "events.h"
#include <stdarg.h>
#include <sys/resource.h>

const char *const TNTrainerPhases[PH_COUNT] = {"forward", "backward", "allreduce", "update", "validate", "io", "total"};

PetscErrorCode TNTrainerReportHeader(TNTrainer t)
{
  TNMemoryMode mode;

  PetscFunctionBegin;
  PetscCall(PetscPrintf(t->comm,
                        "thetanet train: %s, N %" PetscInt_FMT ", d %" PetscInt_FMT ", %s with %" PetscInt_FMT
                        " outputs; width %" PetscInt_FMT ", layers %" PetscInt_FMT ", theta %g, T %g, %" PetscInt_FMT
                        " parameters; %d ranks (depth %d x data %d)\n",
                        t->train_path, t->train_info.N, t->cfg.d, TNTasks[t->cfg.task], t->cfg.m, t->cfg.n, t->cfg.L,
                        (double)t->cfg.theta, (double)t->cfg.T, TNParamCount(&t->cfg), t->grid.size, t->grid.depth_size,
                        t->grid.data_size));
  if (t->auto_sharded)
    PetscCall(PetscPrintf(t->comm,
                          "data layout: sharded, as the replicated data sets would take %.3g GB of a node's %.3g GB "
                          "(give -data_layout replicated to keep them whole)\n",
                          t->replica_bytes / 1e9, t->node_bytes / 1e9));
  {
    TNBlasInfo b;
    char line[512];
    TNBlasGetInfo(&b);
    TNBlasDescribe(&b, line, sizeof line);
    PetscCall(PetscPrintf(t->comm, "BLAS: %s\n", line));
  }
  /* Only the trapezoidal step reversed is the same method backwards in depth; for other theta the
     reverse step amplifies what the forward solves leave behind. */
  PetscCall(TNNetworkGetMemory(t->net, &mode, NULL));
  if (mode == TN_MEMORY_REVERSIBLE && t->cfg.theta != 0.5)
    PetscCall(PetscFPrintf(t->comm, PETSC_STDERR,
                           "thetanet: warning: -memory reversible with -theta %g: the reversal is symmetric only for "
                           "theta 0.5, so the rebuilt states may drift (see recon on the epoch lines)\n",
                           (double)t->cfg.theta));
  PetscFunctionReturn(0);
}

PetscErrorCode TNTrainerReportProgress(TNTrainer t, PetscInt epoch, PetscInt batch, PetscInt nbatches, PetscReal loss)
{
  static PetscReal last = 0;

  PetscFunctionBegin;
  if (t->grid.rank || !t->progress || MPI_Wtime() - last <= 0.5) PetscFunctionReturn(0);
  last = MPI_Wtime();
  printf("\r  epoch %" PetscInt_FMT "/%" PetscInt_FMT " batch %" PetscInt_FMT "/%" PetscInt_FMT " loss %.4f", epoch,
         t->epochs, batch, nbatches, (double)loss);
  fflush(stdout);
  PetscFunctionReturn(0);
}

/* Nonlinear and linear iterations per block solve, MGRIT iterations per MGRIT solve and the
   largest final C-point residual norm of those solves, over all ranks. */
PetscErrorCode TNTrainerEpochCounts(TNTrainer t, TNEpochReport *r)
{
  TNNetworkCounts n;
  PetscInt64 c[5];
  TNMemoryMode mode;
  PetscReal tol;

  PetscFunctionBegin;
  PetscCall(TNNetworkGetCounts(t->net, &n));
  PetscCall(TNNetworkResetCounts(t->net));
  t->mgrit_logfactor += n.mgrit_logfactor;
  t->mgrit_nfactor += n.mgrit_nfactor;
  c[0] = n.newton;
  c[1] = n.krylov;
  c[2] = n.block_solves;
  c[3] = n.mgrit_its;
  c[4] = n.mgrit_solves;
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, c, 5, MPIU_INT64, MPI_SUM, t->grid.world));
  r->newton = c[2] ? (PetscReal)c[0] / c[2] : 0;
  r->krylov = c[2] ? (PetscReal)c[1] / c[2] : 0;
  r->mgrit  = c[4] ? (PetscReal)c[3] / c[4] : 0;
  PetscCallMPI(MPI_Allreduce(&n.mgrit_res, &r->mgrit_res, 1, MPIU_REAL, MPI_MAX, t->grid.world));
  t->newton_sum += r->newton;
  t->krylov_sum += r->krylov;
  t->mgrit_sum += r->mgrit;
  t->mgrit_res_max = PetscMax(t->mgrit_res_max, r->mgrit_res);
  r->recon         = NAN;
  PetscCall(TNNetworkGetMemory(t->net, &mode, &tol));
  if (mode == TN_MEMORY_REVERSIBLE) {
    PetscCallMPI(MPI_Allreduce(&n.recon, &r->recon, 1, MPIU_REAL, MPI_MAX, t->grid.data));
    if (!(r->recon <= tol))
      PetscCall(PetscFPrintf(t->comm, PETSC_STDERR,
                             "thetanet: warning: epoch %" PetscInt_FMT
                             ": reconstruction error of y_0 %.1e exceeds -memory_tol %g\n",
                             r->epoch, (double)r->recon, (double)tol));
  }
  PetscFunctionReturn(0);
}

static void FormatDuration(PetscReal s, char *buf, size_t len)
{
  long v = (long)(s + 0.5);
  if (v >= 3600)
    snprintf(buf, len, "%ldh%02ldm", v / 3600, (v / 60) % 60);
  else if (v >= 60)
    snprintf(buf, len, "%ldm%02lds", v / 60, v % 60);
  else
    snprintf(buf, len, "%lds", v);
}

PetscErrorCode TNTrainerReportEpoch(TNTrainer t, const TNEpochReport *r, PetscReal eta)
{
  char left[32];
  TNDepthSolver solver;
  PetscReal lr;

  PetscFunctionBegin;
  FormatDuration(eta, left, sizeof left);
  PetscCall(TNNetworkGetDepthSolver(t->net, &solver));
  PetscCall(TNOptimizerGetRate(t->opt, &lr));
  if (!t->grid.rank && t->progress) printf("\r\033[K");
  PetscCall(PetscPrintf(t->comm, "epoch %" PetscInt_FMT "/%" PetscInt_FMT " train_loss %.4f", r->epoch, t->epochs,
                        (double)r->train_loss));
  if (t->val) PetscCall(PetscPrintf(t->comm, " val_loss %.4f", (double)r->val_loss));
  if (t->val && t->cfg.task == TN_TASK_CLASSIFICATION)
    PetscCall(PetscPrintf(t->comm, " val_acc %.4f", (double)r->val_accuracy));
  PetscCall(PetscPrintf(t->comm, " lr %.1e newton %.1f krylov %.1f mgrit %.1f", (double)lr, (double)r->newton,
                        (double)r->krylov, (double)r->mgrit));
  if (solver == TN_DEPTH_MGRIT) PetscCall(PetscPrintf(t->comm, " mgrit_res %.1e", (double)r->mgrit_res));
  PetscCall(PetscPrintf(t->comm, " time %.3fs eta %s", (double)r->seconds, left));
  if (!PetscIsNanReal(r->recon)) PetscCall(PetscPrintf(t->comm, " recon %.1e", (double)r->recon));
  PetscCall(PetscPrintf(t->comm, "\n"));
  PetscFunctionReturn(0);
}

static PetscErrorCode PeakRSSMB(MPI_Comm comm, PetscReal *max)
{
  struct rusage ru;
  PetscReal mine;

  PetscFunctionBegin;
  PetscCheck(!getrusage(RUSAGE_SELF, &ru), PETSC_COMM_SELF, PETSC_ERR_SYS, "getrusage failed");
  mine = ru.ru_maxrss / 1024.0; /* Linux: kilobytes */
  PetscCallMPI(MPI_Allreduce(&mine, max, 1, MPIU_REAL, MPI_MAX, comm));
  PetscFunctionReturn(0);
}

PetscErrorCode TNTrainerReportSummary(TNTrainer t, const TNEpochReport *last)
{
  const PetscInt run   = PetscMax(1, last->epoch - t->resume.epoch); /* epochs trained by this run */
  const PetscReal wall = t->phase[PH_TOTAL], epoch_s = t->train_seconds / PetscMax(1, run > 1 ? run - 1 : 1);
  const PetscReal sps = t->train_seconds > 0 ? t->train_samples / t->train_seconds : 0;
  PetscReal rss;
  PetscReal lf[2] = {t->mgrit_logfactor, (PetscReal)t->mgrit_nfactor}, factor;

  PetscFunctionBegin;
  PetscCall(PeakRSSMB(t->comm, &rss));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, lf, 2, MPIU_REAL, MPI_SUM, t->comm));
  factor = lf[1] > 0 ? PetscExpReal(lf[0] / lf[1]) : 0;
  PetscCall(PetscPrintf(
      t->comm,
      "summary ranks %d depth_ranks %d data_ranks %d layers %" PetscInt_FMT " width %" PetscInt_FMT
      " theta %g epochs %" PetscInt_FMT
      " wall_s %.3f epoch_s %.4f samples_per_s %.1f train_loss %.6g val_loss %.6g val_accuracy %.6g newton_its %.3f "
      "krylov_its %.3f mgrit_its %.3f mgrit_factor %.3g mgrit_res %.3g peak_rss_mb %.1f best_epoch %" PetscInt_FMT
      " rejections %" PetscInt_FMT "\n",
      t->grid.size, t->grid.depth_size, t->grid.data_size, t->cfg.L, t->cfg.n, (double)t->cfg.theta, last->epoch,
      (double)wall, (double)epoch_s, (double)sps, (double)last->train_loss, (double)last->val_loss,
      (double)last->val_accuracy, (double)(t->newton_sum / run), (double)(t->krylov_sum / run),
      (double)(t->mgrit_sum / run), (double)factor, (double)t->mgrit_res_max, (double)rss, t->watch.best_epoch,
      t->watch.rejections));
  PetscFunctionReturn(0);
}

/* The entries of /config, each value formatted into its own buffer. */
#define TN_CONFIG_MAX 40
typedef struct {
  PetscInt n;
  TNConfigEntry entry[TN_CONFIG_MAX];
  char value[TN_CONFIG_MAX][64];
} Config;

static PetscErrorCode ConfigAdd(Config *c, const char *key, const char *format, ...)
{
  va_list ap;
  size_t len;

  PetscFunctionBegin;
  PetscCheck(c->n < TN_CONFIG_MAX, PETSC_COMM_SELF, PETSC_ERR_PLIB, "more than %d /config entries", TN_CONFIG_MAX);
  va_start(ap, format);
  PetscCall(PetscVSNPrintf(c->value[c->n], sizeof c->value[c->n], format, &len, ap));
  va_end(ap);
  c->entry[c->n] = (TNConfigEntry){key, c->value[c->n]};
  c->n++;
  PetscFunctionReturn(0);
}

/* /config: what a reader needs to reproduce or tabulate the run. */
PetscErrorCode TNTrainerWriteResults(TNTrainer t)
{
  Config c = {0};
  TNModel whole;
  TNOptimizerRecord rec;
  PetscScalar *best;
  PetscReal hyper[TN_OPTIMIZER_HYPER], lr;
  TNTable history;
  TNMemoryMode mode;
  TNDepthSolver solver;

  PetscFunctionBegin;
  PetscCall(PetscLogEventBegin(TN_EVENT_IO, 0, 0, 0, 0));
  PetscCall(TNTrainerWholeModel(t, &whole, &rec, hyper));
  PetscCall(TNTrainerWholeBest(t, &best));
  PetscCall(TNNetworkGetMemory(t->net, &mode, NULL));
  PetscCall(TNNetworkGetDepthSolver(t->net, &solver));
  PetscCall(TNOptimizerGetBaseRate(t->opt, &lr));
  PetscCall(ConfigAdd(&c, "grid", "%d x %d", t->grid.depth_size, t->grid.data_size));
  PetscCall(ConfigAdd(&c, "depth_ranks", "%d", t->grid.depth_size));
  PetscCall(ConfigAdd(&c, "data_ranks", "%d", t->grid.data_size));
  PetscCall(ConfigAdd(&c, "start_time", "%s", t->start_time));
  PetscCall(ConfigAdd(&c, "train", "%s", t->train_path));
  PetscCall(ConfigAdd(&c, "val", "%s", t->val ? t->val_path : ""));
  PetscCall(ConfigAdd(&c, "width", "%" PetscInt_FMT, t->cfg.n));
  PetscCall(ConfigAdd(&c, "layers", "%" PetscInt_FMT, t->cfg.L));
  PetscCall(ConfigAdd(&c, "theta", "%.17g", (double)t->cfg.theta));
  PetscCall(ConfigAdd(&c, "T", "%.17g", (double)t->cfg.T));
  PetscCall(ConfigAdd(&c, "epochs", "%" PetscInt_FMT, t->epochs));
  PetscCall(ConfigAdd(&c, "batch", "%" PetscInt_FMT, t->batch));
  PetscCall(ConfigAdd(&c, "lr", "%.17g", (double)lr));
  PetscCall(ConfigAdd(&c, "optimizer", "%s", TNOptimizerTypes[rec.type]));
  PetscCall(ConfigAdd(&c, "seed", "%" PetscInt_FMT, t->seed));
  PetscCall(ConfigAdd(&c, "memory", "%s", TNMemoryModes[mode]));
  PetscCall(ConfigAdd(&c, "depth_solver", "%s", TNDepthSolvers[solver]));
  PetscCall(ConfigAdd(&c, "data_layout", "%s", t->sharded ? "sharded" : "replicated"));
  /* how inputs were read: evaluate and predict read them the same way by default */
  PetscCall(ConfigAdd(&c, "scale_uint8", "%s", t->format.scale_uint8 ? "true" : "false"));
  if (solver == TN_DEPTH_MGRIT) {
    TNNetworkMGRITSettings m;
    PetscCall(TNNetworkGetMGRITSettings(t->net, &m));
    PetscCall(ConfigAdd(&c, "mgrit_cfactor", "%" PetscInt_FMT, m.cfactor));
    PetscCall(ConfigAdd(&c, "mgrit_levels", "%" PetscInt_FMT, m.levels));
    PetscCall(ConfigAdd(&c, "mgrit_max_it", "%" PetscInt_FMT, m.max_it));
    PetscCall(ConfigAdd(&c, "mgrit_tol", "%.17g", (double)m.tol));
    PetscCall(ConfigAdd(&c, "mgrit_rtol", "%.17g", (double)m.rtol));
    PetscCall(ConfigAdd(&c, "mgrit_skip", "%s", m.skip ? "true" : "false"));
    PetscCall(ConfigAdd(&c, "mgrit_coarse_weights", "%s", TNCoarseWeights[m.coarse_weights]));
    PetscCall(ConfigAdd(&c, "mgrit_coarse_its", "%" PetscInt_FMT, m.coarse_its));
    PetscCall(ConfigAdd(&c, "mgrit_exact_epochs", "%" PetscInt_FMT, t->exact_epochs));
  }
  PetscCall(ConfigAdd(&c, "validation", "%s", "exact (layer-serial forward propagation)"));
  PetscCall(ConfigAdd(&c, "lr_schedule", "%s", TNScheduleTypes[t->sched.type]));
  PetscCall(ConfigAdd(&c, "best_epoch", "%" PetscInt_FMT, t->watch.best_epoch));
  PetscCall(ConfigAdd(&c, "rejections", "%" PetscInt_FMT, t->watch.rejections));
  PetscCall(
      ConfigAdd(&c, "model", "%s",
                t->best && t->watch.best_epoch ? "best epoch (-keep_best; /model_last: last epoch)" : "last epoch"));
  TNHistoryTable(&t->history, &history);
  PetscCall(
      TNResultsWrite(t->comm, t->output, whole, best, &history, PH_COUNT, TNTrainerPhases, t->phase, c.n, c.entry));
  PetscCall(TNTrainerWholeBestDestroy(t, &best));
  PetscCall(TNTrainerWholeDestroy(t, &whole, &rec));
  PetscCall(PetscLogEventEnd(TN_EVENT_IO, 0, 0, 0, 0));
  PetscCall(PetscPrintf(t->comm, "results written to %s\n", t->output));
  PetscFunctionReturn(0);
}
