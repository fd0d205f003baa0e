/* The trainer's per-epoch record and its view as the /history table of results files and
   checkpoints. */
#include "trainerimpl.h"

static const char *const HistoryNames[TN_HISTORY_COLUMNS] = {"epoch",     "train_loss", "val_loss",   "val_accuracy",
                                                             "lr",        "wall_time",  "newton_its", "krylov_its",
                                                             "mgrit_its", "mgrit_res"};
static const PetscBool HistoryInteger[TN_HISTORY_COLUMNS] = {PETSC_TRUE};

PetscErrorCode TNHistoryAppend(TNHistory *h, const PetscReal row[TN_HISTORY_COLUMNS])
{
  PetscFunctionBegin;
  if (h->n == h->cap) {
    const PetscInt cap = h->cap ? 2 * h->cap : 64;
    for (int k = 0; k < TN_HISTORY_COLUMNS; k++) PetscCall(PetscRealloc(sizeof(PetscReal) * cap, &h->column[k]));
    h->cap = cap;
  }
  for (int k = 0; k < TN_HISTORY_COLUMNS; k++) h->column[k][h->n] = row[k];
  h->n++;
  PetscFunctionReturn(0);
}

PetscErrorCode TNHistoryDestroy(TNHistory *h)
{
  PetscFunctionBegin;
  for (int k = 0; k < TN_HISTORY_COLUMNS; k++) PetscCall(PetscFree(h->column[k]));
  h->n = h->cap = 0;
  PetscFunctionReturn(0);
}

void TNHistoryTable(const TNHistory *h, TNTable *t)
{
  t->ncols   = TN_HISTORY_COLUMNS;
  t->nrows   = h->n;
  t->names   = HistoryNames;
  t->integer = HistoryInteger;
  t->columns = (PetscReal **)h->column;
}

void TNHistoryTableEmpty(TNTable *t, PetscReal *columns[TN_HISTORY_COLUMNS])
{
  t->ncols   = TN_HISTORY_COLUMNS;
  t->nrows   = 0;
  t->names   = HistoryNames;
  t->integer = HistoryInteger;
  t->columns = columns;
  for (int k = 0; k < TN_HISTORY_COLUMNS; k++) columns[k] = NULL;
}

PetscErrorCode TNHistoryAppendTable(TNHistory *h, const TNTable *t)
{
  PetscReal row[TN_HISTORY_COLUMNS];

  PetscFunctionBegin;
  PetscCheck(t->ncols == TN_HISTORY_COLUMNS, PETSC_COMM_SELF, PETSC_ERR_ARG_SIZ,
             "history table of %" PetscInt_FMT " columns", t->ncols);
  for (PetscInt i = 0; i < t->nrows; i++) {
    for (int k = 0; k < TN_HISTORY_COLUMNS; k++) row[k] = t->columns[k][i];
    PetscCall(TNHistoryAppend(h, row));
  }
  PetscFunctionReturn(0);
}
