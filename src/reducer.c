/* Bucketed in-place sums over a fixed tree. With P ranks and p2 the largest power of two not
   above P, a rank r >= p2 first hands its values to r - p2, which adds them; the first p2 ranks
   then combine with partner r ^ 2^k in rounds k = 0, 1, ...; finally r < P - p2 sends the total
   to r + p2. Each element's sum is the same tree on every rank whatever the buckets and however
   the rounds share the work (addition commutes exactly, so which partner adds does not matter):
   - small buckets, recursive doubling: each round exchanges the whole bucket and both add;
   - large buckets, recursive halving then doubling (reduce-scatter, allgather): each round of
     the first half exchanges half of what the rank holds and adds only its own half; the rounds
     of the second half exchange the sums back, in reverse. A rank moves 2(1 - 1/p2) of the
     bucket and adds (1 - 1/p2) of it, against log2(p2) and log2(p2) by doubling.
   A bucket's values stay where they are in the buffer: they are sent and received in place
   (through an MPI datatype of its segments, or piece by piece), and only the partner's values
   are held apart to be added. */
#include "reducer.h"

typedef enum { OP_SEND, OP_RECV_ADD, OP_EXCHANGE_ADD, OP_RECV_COPY, OP_HALVE_ADD, OP_GATHER } OpType;

typedef struct {
  OpType type;
  PetscMPIInt peer, phase; /* phase: 0 the fold of ranks beyond p2, 1 + k round k (doubling, halving),
                              32 + k round k of the gather, 63 the return */
  PetscInt round;          /* OP_HALVE_ADD, OP_GATHER: k */
} Op;

/* Halving pays for its extra messages from this many elements per rank of the p2 on */
#define TN_HALVING_MIN_PER_RANK 1024

typedef struct {
  PetscBool active;
  PetscInt nseg, start[2], len[2], n, cap, op;
  const Op *ops; /* the schedule this bucket follows, nops operations */
  PetscInt nops;
  PetscScalar *other;  /* the partner's values of the current operation */
  MPI_Datatype values; /* the segments, relative to the buffer; kept while they stay the same */
  MPI_Request req[4];
} Bucket;

struct _n_TNReducer {
  MPI_Comm comm;
  PetscScalar *buf;
  PetscMPIInt rank, p2;
  PetscInt nbuckets;
  TNReducerAlgorithm algorithm;
  Bucket *bucket;
  Op ops[64], halving[96]; /* the schedules of recursive doubling and of halving */
  PetscInt nops, nhalving;
};

const char *const TNReducerAlgorithms[] = {"auto", "doubling", "halving", "TNReducerAlgorithm", "TN_REDUCE_", NULL};

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
  R->rank      = rank;
  R->p2        = p2;
  R->algorithm = TN_REDUCE_AUTO;
  /* this rank's schedules */
  if (rank >= p2) {
    R->ops[R->nops++]         = (Op){OP_SEND, rank - p2, 0, 0};
    R->ops[R->nops++]         = (Op){OP_RECV_COPY, rank - p2, 63, 0};
    R->halving[R->nhalving++] = R->ops[0];
    R->halving[R->nhalving++] = R->ops[1];
  } else {
    if (rank < size - p2) {
      R->ops[R->nops++]         = (Op){OP_RECV_ADD, rank + p2, 0, 0};
      R->halving[R->nhalving++] = R->ops[0];
    }
    for (PetscMPIInt d = 1; d < p2; d *= 2, k++) {
      R->ops[R->nops++]         = (Op){OP_EXCHANGE_ADD, rank ^ d, 1 + k, k};
      R->halving[R->nhalving++] = (Op){OP_HALVE_ADD, rank ^ d, 1 + k, k};
    }
    for (PetscMPIInt j = k - 1; j >= 0; j--) R->halving[R->nhalving++] = (Op){OP_GATHER, rank ^ (1 << j), 32 + j, j};
    if (rank < size - p2) {
      R->ops[R->nops++]         = (Op){OP_SEND, rank + p2, 63, 0};
      R->halving[R->nhalving++] = R->ops[R->nops - 1];
    }
  }
  *out = R;
  PetscFunctionReturn(0);
}

/* The part of the bucket's values (indices 0 .. n-1 over its segments) that rank r of the p2
   holds after `rounds` rounds of halving: the lower half of a round's part when bit k of r is 0. */
static void HalvingRange(PetscInt n, PetscMPIInt r, PetscInt rounds, PetscInt *lo, PetscInt *hi)
{
  *lo = 0;
  *hi = n;
  for (PetscInt k = 0; k < rounds; k++) {
    const PetscInt mid = *lo + (*hi - *lo) / 2;
    if ((r >> k) & 1)
      *lo = mid;
    else
      *hi = mid;
  }
}

/* The values lo .. hi-1 of bucket b as at most two pieces of the buffer, at off[i], len[i]. */
static PetscInt Pieces(const Bucket *b, PetscInt lo, PetscInt hi, PetscInt off[2], PetscInt len[2])
{
  PetscInt np = 0;

  for (PetscInt s = 0, first = 0; s < b->nseg; first += b->len[s], s++) {
    const PetscInt a = PetscMax(lo, first), e = PetscMin(hi, first + b->len[s]);
    if (a < e) {
      off[np] = b->start[s] + a - first;
      len[np] = e - a;
      np++;
    }
  }
  return np;
}

/* Post the messages of b's current operation. */
static PetscErrorCode Post(TNReducer R, PetscInt k, Bucket *b)
{
  const Op *o           = &b->ops[b->op];
  const PetscMPIInt tag = TAG_BASE + (PetscMPIInt)k * 64 + o->phase, n = (PetscMPIInt)b->n;

  PetscFunctionBegin;
  for (PetscInt i = 0; i < 4; i++) b->req[i] = MPI_REQUEST_NULL;
  if (o->type == OP_HALVE_ADD || o->type == OP_GATHER) {
    /* halving: send the partner's half of this round's part, receive the partner's values of
       ours to add; gather: send the part this rank holds, receive the partner's in place */
    const PetscBool halve = o->type == OP_HALVE_ADD ? PETSC_TRUE : PETSC_FALSE;
    const PetscInt rounds = o->round + 1;
    PetscInt slo, shi, rlo, rhi, off[2], len[2], np;
    HalvingRange(b->n, halve ? o->peer : R->rank, rounds, &slo, &shi);
    HalvingRange(b->n, halve ? R->rank : o->peer, rounds, &rlo, &rhi);
    np = Pieces(b, slo, shi, off, len);
    for (PetscInt i = 0; i < np; i++)
      PetscCallMPI(MPI_Isend(R->buf + off[i], (PetscMPIInt)len[i], MPIU_SCALAR, o->peer, tag, R->comm, &b->req[i]));
    np = Pieces(b, rlo, rhi, off, len);
    for (PetscInt i = 0, at = 0; i < np; at += len[i], i++)
      PetscCallMPI(MPI_Irecv(halve ? b->other + at : R->buf + off[i], (PetscMPIInt)len[i], MPIU_SCALAR, o->peer, tag,
                             R->comm, &b->req[2 + i]));
    PetscFunctionReturn(0);
  }
  if (o->type == OP_SEND || o->type == OP_EXCHANGE_ADD)
    PetscCallMPI(MPI_Isend(R->buf, 1, b->values, o->peer, tag, R->comm, &b->req[0]));
  if (o->type == OP_RECV_COPY)
    PetscCallMPI(MPI_Irecv(R->buf, 1, b->values, o->peer, tag, R->comm, &b->req[1]));
  else if (o->type != OP_SEND)
    PetscCallMPI(MPI_Irecv(b->other, n, MPIU_SCALAR, o->peer, tag, R->comm, &b->req[1]));
  PetscFunctionReturn(0);
}

/* values lo .. hi-1 of the bucket += the partner's values, held from other[0] on */
static void AddOther(TNReducer R, Bucket *b, PetscInt lo, PetscInt hi)
{
  const PetscScalar *other = b->other;
  PetscInt off[2], len[2];
  const PetscInt np = Pieces(b, lo, hi, off, len);

  for (PetscInt p = 0, at = 0; p < np; at += len[p], p++) {
    PetscScalar *seg = R->buf + off[p];
    const PetscInt l = len[p];
#pragma omp simd
    for (PetscInt i = 0; i < l; i++) seg[i] += other[at + i];
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
      PetscCallMPI(MPI_Waitall(4, b->req, MPI_STATUSES_IGNORE));
    else
      PetscCallMPI(MPI_Testall(4, b->req, &done, MPI_STATUSES_IGNORE));
    if (!done) break;
    if (b->op < b->nops) {
      const Op *o = &b->ops[b->op];
      /* addition commutes exactly: both partners of an exchange compute the same bits */
      if (o->type == OP_RECV_ADD || o->type == OP_EXCHANGE_ADD) AddOther(R, b, 0, b->n);
      if (o->type == OP_HALVE_ADD) {
        PetscInt lo, hi;
        HalvingRange(b->n, R->rank, o->round + 1, &lo, &hi);
        AddOther(R, b, lo, hi);
      }
      b->op++;
    }
    if (b->op < b->nops)
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
  /* halving for the large buckets: its extra messages cost less than the values it does not move */
  if (R->algorithm == TN_REDUCE_HALVING ||
      (R->algorithm == TN_REDUCE_AUTO && R->p2 > 1 && b->n >= TN_HALVING_MIN_PER_RANK * R->p2)) {
    b->ops  = R->halving;
    b->nops = R->nhalving;
  } else {
    b->ops  = R->ops;
    b->nops = R->nops;
  }
  b->op     = 0;
  b->active = PETSC_TRUE;
  for (PetscInt i = 0; i < 4; i++) b->req[i] = MPI_REQUEST_NULL;
  if (b->nops) PetscCall(Post(R, k, b));
  PetscCall(Advance(R, k, PETSC_FALSE));
  PetscFunctionReturn(0);
}

PetscErrorCode TNReducerSetAlgorithm(TNReducer R, TNReducerAlgorithm algorithm)
{
  PetscFunctionBegin;
  for (PetscInt k = 0; k < R->nbuckets; k++)
    PetscCheck(!R->bucket[k].active, PETSC_COMM_SELF, PETSC_ERR_ARG_WRONGSTATE, "a reduction is under way");
  R->algorithm = algorithm;
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
