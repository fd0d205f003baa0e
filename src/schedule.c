/* Learning-rate schedules. Every rate is a function of the epoch and the schedule's state alone,
   so a restart that restores the state continues the schedule exactly. */
#include "schedule.h"

const char *const TNScheduleTypes[] = {"constant", "step", "cosine", "plateau", "TNScheduleType", "TN_SCHEDULE_", NULL};

PetscErrorCode TNScheduleSetFromOptions(MPI_Comm comm, PetscInt epochs, TNSchedule *s)
{
  PetscFunctionBegin;
  s->type     = TN_SCHEDULE_CONSTANT;
  s->gamma    = 0.1;
  s->min_lr   = 0;
  s->backoff  = 0.5;
  s->step     = 30;
  s->patience = 5;
  s->warmup   = 0;
  s->epochs   = epochs;
  s->state    = (TNScheduleState){PETSC_MAX_REAL, 1.0, 0, 0};
  PetscOptionsBegin(comm, NULL, "thetanet train: learning-rate schedule", "thetanet");
  PetscCall(TNOptionsEnum(
      "-lr_schedule",
      "Learning rate by epoch: constant, step (times -lr_gamma every -lr_step epochs), cosine (half a period from -lr "
      "down to -lr_min), plateau (times -lr_gamma when the validation loss, or the training loss without a validation "
      "set, has not improved for -lr_plateau epochs)",
      "", TNScheduleTypes, (PetscEnum)s->type, (PetscEnum *)&s->type, NULL));
  PetscCall(TNOptionsInt("-lr_step", "Epochs between the cuts of -lr_schedule step", "", s->step, &s->step, NULL));
  PetscCall(
      TNOptionsReal("-lr_gamma", "Factor of each cut of -lr_schedule step and plateau", "", s->gamma, &s->gamma, NULL));
  PetscCall(TNOptionsReal("-lr_min", "Rate -lr_schedule cosine tends to (reached after the last epoch)", "", s->min_lr,
                          &s->min_lr, NULL));
  PetscCall(TNOptionsInt("-lr_plateau", "Epochs without a better validation loss before -lr_schedule plateau cuts", "",
                         s->patience, &s->patience, NULL));
  PetscCall(TNOptionsInt("-lr_warmup", "Epochs of linear warm-up to -lr before the schedule (0: none)", "", s->warmup,
                         &s->warmup, NULL));
  PetscCall(TNOptionsReal("-lr_backoff",
                          "Factor of the learning rate after a rejected step (a block solve that failed)", "",
                          s->backoff, &s->backoff, NULL));
  PetscOptionsEnd();
  PetscCheck(s->step >= 1, comm, TN_ERR_USER, "-lr_step must be at least 1, got %" PetscInt_FMT, s->step);
  PetscCheck(s->gamma > 0 && s->gamma <= 1, comm, TN_ERR_USER, "-lr_gamma must lie in (0, 1], got %g",
             (double)s->gamma);
  PetscCheck(s->min_lr >= 0, comm, TN_ERR_USER, "-lr_min must be non-negative, got %g", (double)s->min_lr);
  PetscCheck(s->patience >= 1, comm, TN_ERR_USER, "-lr_plateau must be at least 1, got %" PetscInt_FMT, s->patience);
  PetscCheck(s->warmup >= 0, comm, TN_ERR_USER, "-lr_warmup must be non-negative, got %" PetscInt_FMT, s->warmup);
  PetscCheck(s->backoff > 0 && s->backoff < 1, comm, TN_ERR_USER, "-lr_backoff must lie in (0, 1), got %g",
             (double)s->backoff);
  PetscFunctionReturn(0);
}

PetscReal TNScheduleRate(const TNSchedule *s, PetscInt epoch, PetscReal lr0)
{
  PetscReal lr = lr0;

  /* warm-up: lr0 e / (W + 1) for the epochs e = 1..W, then the schedule counted from its end;
     the cosine's period depends on -epochs, so a restart with more epochs stretches it */
  if (epoch <= s->warmup) return s->state.scale * lr0 * epoch / (s->warmup + 1);
  epoch -= s->warmup;
  switch (s->type) {
  case TN_SCHEDULE_CONSTANT:
    break;
  case TN_SCHEDULE_STEP:
    lr = lr0 * PetscPowReal(s->gamma, (PetscReal)((epoch - 1) / s->step));
    break;
  case TN_SCHEDULE_COSINE: {
    /* half a cosine period over the epochs after the warm-up, reaching -lr_min after the last */
    const PetscInt span = PetscMax(1, s->epochs - s->warmup);
    lr                  = s->min_lr +
         0.5 * (lr0 - s->min_lr) * (1 + PetscCosReal(PETSC_PI * (PetscReal)PetscMin(epoch - 1, span) / span));
  } break;
  case TN_SCHEDULE_PLATEAU:
    lr = lr0 * PetscPowReal(s->gamma, (PetscReal)s->state.cuts);
    break;
  }
  return s->state.scale * lr;
}

void TNScheduleObserve(TNSchedule *s, PetscReal val_loss)
{
  if (s->type != TN_SCHEDULE_PLATEAU || PetscIsNanReal(val_loss)) return;
  if (val_loss < s->state.best) {
    s->state.best = val_loss;
    s->state.wait = 0;
  } else if (++s->state.wait >= s->patience) {
    s->state.cuts++;
    s->state.wait = 0;
  }
}

void TNScheduleBackOff(TNSchedule *s)
{
  s->state.scale *= s->backoff;
}
