/* Bucketed in-place sums by recursive doubling. With P ranks and p2 the largest power of two not
   above P, a rank r >= p2 first hands its values to r - p2, which adds them; the first p2 ranks
   then exchange with partner r ^ 2^k in rounds k = 0, 1, ... and add; finally r < P - p2 sends
   the total to r + p2. Each element's sum is the same tree on every rank whatever the buckets.
   A bucket's values stay where they are in the buffer: its segments are sent and received in
   place through an MPI datatype, and only the partner's values are held apart to be added. */
#include "reducer.h"

typedef enum { OP_SEND, OP_RECV_ADD, OP_EXCHANGE_ADD, OP_RECV_COPY } OpType;

typedef struct {
  OpType type;
  PetscMPIInt peer, phase; /* phase: 0 the fold of ranks beyond p2, 1 + k round k, 63 the return */
} Op;

typedef struct {
  PetscBool active;
  PetscInt nseg, start[2], len[2], n, cap, op;
  PetscScalar *other;  /* the partner's values of the current operation */
  MPI_Datatype values; /* the segments, relative to the buffer; kept while they stay the same */
  MPI_Request req[2];
} Bucket;

struct _n_TNReducer {
  MPI_Comm comm;
  PetscScalar *buf;
  PetscInt nbuckets, nops;
  Bucket *bucket;
  Op ops[66];
};

#define TAG_BASE 100

PetscErrorCode TNReducerCreate(MPI_Comm comm, PetscScalar *buf, PetscInt nbuckets, TNReducer *out)
{
  TNReducer R;
  PetscMPIInt rank, size, p2 = 1, k = 0;

  PetscFunctionBegin;
  PetscCall(PetscNew(&R));
  PetscCallMPI(MPI_Comm_dup(comm, &R->comm));
  PetscCallMPI(MPI_Comm_set_name(R->comm, "thetanet reducer"));
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCallMPI(MPI_Comm_size(comm, &size));
  PetscCheck(nbuckets >= 1 && nbuckets <= (32767 - TAG_BASE) / 64, comm, PETSC_ERR_ARG_OUTOFRANGE,
             "%" PetscInt_FMT " buckets: 1 to %d", nbuckets, (32767 - TAG_BASE) / 64);
  R->buf      = buf;
  R->nbuckets = nbuckets;
  PetscCall(PetscCalloc1(nbuckets, &R->bucket));
  for (PetscInt k = 0; k < nbuckets; k++) R->bucket[k].values = MPI_DATATYPE_NULL;
  while (2 * p2 <= size) p2 *= 2;
  /* this rank's schedule */
  if (rank >= p2) {
    R->ops[R->nops++] = (Op){OP_SEND, rank - p2, 0};
    R->ops[R->nops++] = (Op){OP_RECV_COPY, rank - p2, 63};
  } else {
    if (rank < size - p2) R->ops[R->nops++] = (Op){OP_RECV_ADD, rank + p2, 0};
    for (PetscMPIInt d = 1; d < p2; d *= 2, k++) R->ops[R->nops++] = (Op){OP_EXCHANGE_ADD, rank ^ d, 1 + k};
    if (rank < size - p2) R->ops[R->nops++] = (Op){OP_SEND, rank + p2, 63};
  }
  *out = R;
  PetscFunctionReturn(0);
}

/* Post the messages of b's current operation. */
static PetscErrorCode Post(TNReducer R, PetscInt k, Bucket *b)
{
  const Op *o           = &R->ops[b->op];
  const PetscMPIInt tag = TAG_BASE + (PetscMPIInt)k * 64 + o->phase, n = (PetscMPIInt)b->n;

  PetscFunctionBegin;
  b->req[0] = b->req[1] = MPI_REQUEST_NULL;
  if (o->type == OP_SEND || o->type == OP_EXCHANGE_ADD)
    PetscCallMPI(MPI_Isend(R->buf, 1, b->values, o->peer, tag, R->comm, &b->req[0]));
  if (o->type == OP_RECV_COPY)
    PetscCallMPI(MPI_Irecv(R->buf, 1, b->values, o->peer, tag, R->comm, &b->req[1]));
  else if (o->type != OP_SEND)
    PetscCallMPI(MPI_Irecv(b->other, n, MPIU_SCALAR, o->peer, tag, R->comm, &b->req[1]));
  PetscFunctionReturn(0);
}

/* segments += the partner's values */
static void AddOther(TNReducer R, Bucket *b)
{
  const PetscScalar *other = b->other;

  for (PetscInt s = 0, off = 0; s < b->nseg; off += b->len[s], s++) {
    PetscScalar *seg   = R->buf + b->start[s];
    const PetscInt len = b->len[s];
#pragma omp simd
    for (PetscInt i = 0; i < len; i++) seg[i] += other[off + i];
  }
}

/* Move bucket k on as far as it goes without waiting (wait: block on each operation). */
static PetscErrorCode Advance(TNReducer R, PetscInt k, PetscBool wait)
{
  Bucket *b = &R->bucket[k];

  PetscFunctionBegin;
  while (b->active) {
    int done = 1;
    if (wait)
      PetscCallMPI(MPI_Waitall(2, b->req, MPI_STATUSES_IGNORE));
    else
      PetscCallMPI(MPI_Testall(2, b->req, &done, MPI_STATUSES_IGNORE));
    if (!done) break;
    if (b->op < R->nops) {
      const OpType type = R->ops[b->op].type;
      /* addition commutes exactly: both partners of an exchange compute the same bits */
      if (type == OP_RECV_ADD || type == OP_EXCHANGE_ADD) AddOther(R, b);
      b->op++;
    }
    if (b->op < R->nops)
      PetscCall(Post(R, k, b));
    else
      b->active = PETSC_FALSE;
  }
  PetscFunctionReturn(0);
}

PetscErrorCode TNReducerStart(TNReducer R, PetscInt k, PetscInt nseg, const PetscInt start[], const PetscInt len[])
{
  Bucket *b;
  PetscBool same;

  PetscFunctionBegin;
  PetscCheck(k >= 0 && k < R->nbuckets, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE, "bucket %" PetscInt_FMT, k);
  b = &R->bucket[k];
  PetscCheck(!b->active, PETSC_COMM_SELF, PETSC_ERR_ARG_WRONGSTATE, "bucket %" PetscInt_FMT " started twice", k);
  PetscCheck(nseg >= 1 && nseg <= 2, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE, "%" PetscInt_FMT " segments", nseg);
  /* the bucket's segments are the same from one step to the next: the datatype is made once */
  same = b->values != MPI_DATATYPE_NULL && b->nseg == nseg ? PETSC_TRUE : PETSC_FALSE;
  for (PetscInt s = 0; s < nseg; s++)
    if (b->start[s] != start[s] || b->len[s] != len[s]) same = PETSC_FALSE;
  if (!same) {
    PetscMPIInt lens[2];
    MPI_Aint displs[2];
    b->nseg = nseg;
    b->n    = 0;
    for (PetscInt s = 0; s < nseg; s++) {
      b->start[s] = start[s];
      b->len[s]   = len[s];
      b->n += len[s];
      lens[s]   = (PetscMPIInt)len[s];
      displs[s] = (MPI_Aint)(start[s] * (PetscInt)sizeof(PetscScalar));
    }
    PetscCheck(b->n <= PETSC_MPI_INT_MAX, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE, "bucket of %" PetscInt_FMT, b->n);
    if (b->values != MPI_DATATYPE_NULL) PetscCallMPI(MPI_Type_free(&b->values));
    PetscCallMPI(MPI_Type_create_hindexed((PetscMPIInt)nseg, lens, displs, MPIU_SCALAR, &b->values));
    PetscCallMPI(MPI_Type_commit(&b->values));
    if (b->n > b->cap) {
      PetscCall(PetscFree(b->other));
      PetscCall(PetscMalloc1(b->n, &b->other));
      b->cap = b->n;
    }
  }
  b->op     = 0;
  b->active = PETSC_TRUE;
  b->req[0] = b->req[1] = MPI_REQUEST_NULL;
  if (R->nops) PetscCall(Post(R, k, b));
  PetscCall(Advance(R, k, PETSC_FALSE));
  PetscFunctionReturn(0);
}

PetscErrorCode TNReducerSetBuffer(TNReducer R, PetscScalar *buf)
{
  PetscFunctionBegin;
  for (PetscInt k = 0; k < R->nbuckets; k++)
    PetscCheck(!R->bucket[k].active, PETSC_COMM_SELF, PETSC_ERR_ARG_WRONGSTATE, "a reduction is under way");
  R->buf = buf;
  PetscFunctionReturn(0);
}

PetscErrorCode TNReducerProgress(TNReducer R)
{
  PetscFunctionBegin;
  for (PetscInt k = 0; k < R->nbuckets; k++)
    if (R->bucket[k].active) PetscCall(Advance(R, k, PETSC_FALSE));
  PetscFunctionReturn(0);
}

PetscErrorCode TNReducerWait(TNReducer R)
{
  PetscFunctionBegin;
  for (PetscInt k = 0; k < R->nbuckets; k++)
    if (R->bucket[k].active) PetscCall(Advance(R, k, PETSC_TRUE));
  PetscFunctionReturn(0);
}

PetscErrorCode TNReducerDestroy(TNReducer *Rp)
{
  TNReducer R = *Rp;

  PetscFunctionBegin;
  if (!R) PetscFunctionReturn(0);
  for (PetscInt k = 0; k < R->nbuckets; k++) {
    if (R->bucket[k].values != MPI_DATATYPE_NULL) PetscCallMPI(MPI_Type_free(&R->bucket[k].values));
    PetscCall(PetscFree(R->bucket[k].other));
  }
  PetscCall(PetscFree(R->bucket));
  PetscCallMPI(MPI_Comm_free(&R->comm));
  PetscCall(PetscFree(R));
  *Rp = NULL;
  PetscFunctionReturn(0);
}
