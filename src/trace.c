/* Time-independent traces of a run for SimGrid's SMPI replay (README: scaling by simulation).
   The MPI functions thetanet, PETSc and HDF5 call are interposed here (the profiling interface:
   each wrapper calls its PMPI_ twin); while a trace records, every call on a communicator of
   more than one rank writes one line "RANK ACTION ARGS" with world ranks, and the thread CPU time
   since the previous call becomes a compute burst of that many seconds times the reference speed.
   Collectives on communicators other than the world are written as the point-to-point exchanges
   of the algorithm (recursive doubling, a binomial tree, linear gathers), which the replayer
   knows only on the world. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "trace.h"

typedef struct {
  MPI_Request req;
  int src, dst, tag; /* world ranks and the trace tag */
} Pending;

static struct {
  FILE *f;
  int open, recording;
  int rank;
  double speed;   /* flops per CPU second */
  double last;    /* thread CPU time at the end of the last call */
  double pending; /* compute seconds not yet written */
  int keyval;
  MPI_Group world;
  Pending *req; /* requests started while recording, not yet waited for */
  int nreq, capreq;
  long lines;
  double own;      /* CPU seconds spent in the tracer's own code (the PMPI calls excluded) */
  double mark;     /* CPU time at which the current stretch of it began */
  double recorded; /* CPU seconds of the thread while recording */
  double since;    /* CPU time at which recording last began */
} T = {.keyval = MPI_KEYVAL_INVALID};

typedef struct {
  int size, rank, kind;
  int *world;    /* world rank of each rank of the communicator */
  int congruent; /* the world itself (same ranks, same order) */
} CommInfo;

static double CPUTime(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int DeleteInfo(MPI_Comm comm, int keyval, void *value, void *extra)
{
  CommInfo *c = (CommInfo *)value;
  (void)comm;
  (void)keyval;
  (void)extra;
  free(c->world);
  free(c);
  return MPI_SUCCESS;
}

/* Tags of thetanet's communicators are kept apart in the trace (the replayer matches messages
   by source and tag alone): 100000 times the kind the communicator's name gives. */
static int CommKind(MPI_Comm comm)
{
  static const char *const names[] = {"thetanet depth", "thetanet data", "thetanet mgrit", "thetanet mgrit adjoint",
                                      "thetanet reducer"};
  char name[MPI_MAX_OBJECT_NAME];
  int len = 0;
  PMPI_Comm_get_name(comm, name, &len);
  for (int k = 0; k < (int)(sizeof names / sizeof names[0]); k++)
    if (!strcmp(name, names[k])) return k + 1;
  return 0;
}

static CommInfo *Info(MPI_Comm comm)
{
  CommInfo *c;
  int found = 0, inter = 0;
  MPI_Group g;

  if (comm == MPI_COMM_NULL) return NULL;
  PMPI_Comm_test_inter(comm, &inter);
  if (inter) return NULL;
  PMPI_Comm_get_attr(comm, T.keyval, &c, &found);
  if (found) return c;
  c = (CommInfo *)calloc(1, sizeof *c);
  PMPI_Comm_size(comm, &c->size);
  PMPI_Comm_rank(comm, &c->rank);
  c->kind  = CommKind(comm);
  c->world = (int *)malloc(sizeof(int) * (size_t)c->size);
  {
    int *ranks = (int *)malloc(sizeof(int) * (size_t)c->size), wsize;
    for (int i = 0; i < c->size; i++) ranks[i] = i;
    PMPI_Comm_group(comm, &g);
    PMPI_Group_translate_ranks(g, c->size, ranks, T.world, c->world);
    PMPI_Group_free(&g);
    free(ranks);
    PMPI_Comm_size(MPI_COMM_WORLD, &wsize);
    c->congruent = c->size == wsize;
    for (int i = 0; i < c->size && c->congruent; i++) c->congruent = c->world[i] == i;
    /* THETANET_TRACE_P2P=1 writes every collective as point-to-point exchanges, to validate that
       form against runs whose collectives the replayer also knows (jobs/bench/replay.sh) */
    if (getenv("THETANET_TRACE_P2P") && atoi(getenv("THETANET_TRACE_P2P"))) c->congruent = 0;
  }
  PMPI_Comm_set_attr(comm, T.keyval, c);
  return c;
}

static long Bytes(int count, MPI_Datatype type)
{
  int size = 0;
  if (type != MPI_DATATYPE_NULL) PMPI_Type_size(type, &size);
  return (long)count * size;
}

static int Tag(const CommInfo *c, int tag)
{
  return 100000 * c->kind + (tag < 0 ? 99999 : tag % 100000);
}

/* The tracer's cost is timed as it runs, in thread CPU time (a process waiting for a core, as
   oversubscribed ranks do, is not charged for the wait): each wrapper marks when its own work
   starts (Mark) and adds the time since the mark when it hands over to the PMPI call or returns
   (Own). */
static void Mark(void)
{
  T.mark = CPUTime();
}

static void Own(void)
{
  T.own += CPUTime() - T.mark;
}

/* Entering a traced call, just after its Mark: the compute burst since the last one, which
   ended at the mark. */
static void Enter(void)
{
  const double now = T.mark;
  T.pending += now - T.last;
  T.last = now;
  if (T.pending * T.speed >= 1) {
    fprintf(T.f, "%d compute %.0f\n", T.rank, T.pending * T.speed);
    T.lines++;
    T.pending = 0;
  }
}

/* Leaving it: the compute burst starts, the tracer's stretch ends. */
static void Leave(void)
{
  T.last = CPUTime();
  T.own += T.last - T.mark;
}

/* A call worth a line: recording, on a communicator of more than one rank. */
static CommInfo *Traced(MPI_Comm comm)
{
  CommInfo *c;
  if (!T.recording) return NULL;
  Mark();
  c = Info(comm);
  return c && c->size > 1 ? c : NULL;
}

static void Line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void Line(const char *fmt, ...)
{
  va_list ap;
  fprintf(T.f, "%d ", T.rank);
  va_start(ap, fmt);
  vfprintf(T.f, fmt, ap);
  va_end(ap);
  fputc('\n', T.f);
  T.lines++;
}

static void Remember(MPI_Request req, int src, int dst, int tag)
{
  if (T.nreq == T.capreq) {
    T.capreq = T.capreq ? 2 * T.capreq : 256;
    T.req    = (Pending *)realloc(T.req, sizeof(Pending) * (size_t)T.capreq);
  }
  T.req[T.nreq++] = (Pending){req, src, dst, tag};
}

/* The wait line of a request this trace started (none for others). */
static void Forget(MPI_Request req)
{
  for (int i = 0; i < T.nreq; i++)
    if (T.req[i].req == req) {
      Line("wait %d %d %d", T.req[i].src, T.req[i].dst, T.req[i].tag);
      T.req[i] = T.req[--T.nreq];
      return;
    }
}

/* The point-to-point exchanges of a collective on a communicator that is not the world. */
static void Exchange(const CommInfo *c, int peer, long bytes, int tag)
{
  const int w = c->world[peer];
  Line("isend %d %d %ld", w, tag, bytes);
  Line("recv %d %d %ld", w, tag, bytes);
  Line("wait %d %d %d", T.rank, w, tag);
}

/* Recursive doubling, with the ranks beyond the largest power of two folded in first. */
static void AllreduceP2P(const CommInfo *c, long bytes, int tag)
{
  int pof2 = 1, rem, r = c->rank, newrank;
  while (pof2 * 2 <= c->size) pof2 *= 2;
  rem = c->size - pof2;
  if (r < 2 * rem) {
    if (r % 2 == 0) {
      Line("send %d %d %ld", c->world[r + 1], tag, bytes);
      newrank = -1;
    } else {
      Line("recv %d %d %ld", c->world[r - 1], tag, bytes);
      newrank = r / 2;
    }
  } else
    newrank = r - rem;
  if (newrank >= 0)
    for (int mask = 1; mask < pof2; mask <<= 1) {
      const int np = newrank ^ mask, peer = np < rem ? np * 2 + 1 : np + rem;
      Exchange(c, peer, bytes, tag);
    }
  if (r < 2 * rem) {
    if (r % 2 == 0)
      Line("recv %d %d %ld", c->world[r + 1], tag, bytes);
    else
      Line("send %d %d %ld", c->world[r - 1], tag, bytes);
  }
}

/* Binomial tree from root. */
static void BcastP2P(const CommInfo *c, long bytes, int root, int tag)
{
  const int rel = (c->rank - root + c->size) % c->size;
  int mask      = 1;
  while (mask < c->size) {
    if (rel & mask) {
      Line("recv %d %d %ld", c->world[(rel - mask + root) % c->size], tag, bytes);
      break;
    }
    mask <<= 1;
  }
  mask >>= 1;
  for (; mask > 0; mask >>= 1)
    if (rel + mask < c->size) Line("send %d %d %ld", c->world[(rel + mask + root) % c->size], tag, bytes);
}

#define COLLECTIVE_TAG(c) (100000 * (c)->kind + 99990)

int TNTraceOpen(const char *dir, double speed)
{
  char path[4096];
  int size;

  PMPI_Comm_rank(MPI_COMM_WORLD, &T.rank);
  PMPI_Comm_size(MPI_COMM_WORLD, &size);
  snprintf(path, sizeof path, "%s/rank%d.trace", dir, T.rank);
  T.f = fopen(path, "w");
  if (!T.f) return 1;
  if (T.keyval == MPI_KEYVAL_INVALID) PMPI_Comm_create_keyval(MPI_COMM_NULL_COPY_FN, DeleteInfo, &T.keyval, NULL);
  PMPI_Comm_group(MPI_COMM_WORLD, &T.world);
  T.speed    = speed;
  T.open     = 1;
  T.pending  = 0;
  T.nreq     = 0;
  T.lines    = 0;
  T.own      = 0;
  T.recorded = 0;
  Line("init");
  if (T.rank == 0) {
    FILE *list;
    snprintf(path, sizeof path, "%s/ranks.list", dir);
    list = fopen(path, "w");
    if (!list) return 1;
    for (int r = 0; r < size; r++) fprintf(list, "%s/rank%d.trace\n", dir, r);
    if (fclose(list)) return 1;
  }
  return 0;
}

void TNTraceRecord(int on)
{
  if (!T.open || on == T.recording) return;
  if (on) {
    T.last  = CPUTime();
    T.since = T.last;
  } else {
    Mark();
    Enter();
    T.recorded += T.last - T.since;
  }
  T.recording = on;
}

int TNTraceClose(long *lines, double *own, double *recorded)
{
  int err;
  if (!T.open) return 0;
  TNTraceRecord(0);
  Line("finalize");
  *lines    = T.lines;
  *own      = T.own;
  *recorded = T.recorded;
  err       = fclose(T.f) != 0;
  T.f       = NULL;
  T.open    = 0;
  free(T.req);
  T.req    = NULL;
  T.capreq = 0;
  PMPI_Group_free(&T.world);
  return err;
}

/* The interposed functions. */
int MPI_Send(const void *buf, int count, MPI_Datatype type, int dest, int tag, MPI_Comm comm)
{
  CommInfo *c = Traced(comm);
  int rc;
  if (!c || dest == MPI_PROC_NULL) return PMPI_Send(buf, count, type, dest, tag, comm);
  Enter();
  Line("send %d %d %ld", c->world[dest], Tag(c, tag), Bytes(count, type));
  Own();
  rc = PMPI_Send(buf, count, type, dest, tag, comm);
  Mark();
  Leave();
  return rc;
}

int MPI_Recv(void *buf, int count, MPI_Datatype type, int source, int tag, MPI_Comm comm, MPI_Status *status)
{
  CommInfo *c = Traced(comm);
  MPI_Status st;
  int rc, n = 0;
  if (!c || source == MPI_PROC_NULL) return PMPI_Recv(buf, count, type, source, tag, comm, status);
  Enter();
  Own();
  rc = PMPI_Recv(buf, count, type, source, tag, comm, status == MPI_STATUS_IGNORE ? &st : status);
  Mark();
  if (status == MPI_STATUS_IGNORE) status = &st;
  PMPI_Get_count(status, type, &n);
  Line("recv %d %d %ld", c->world[status->MPI_SOURCE], Tag(c, status->MPI_TAG), Bytes(n, type));
  Leave();
  return rc;
}

int MPI_Isend(const void *buf, int count, MPI_Datatype type, int dest, int tag, MPI_Comm comm, MPI_Request *req)
{
  CommInfo *c = Traced(comm);
  int rc;
  if (!c || dest == MPI_PROC_NULL) return PMPI_Isend(buf, count, type, dest, tag, comm, req);
  Enter();
  Own();
  rc = PMPI_Isend(buf, count, type, dest, tag, comm, req);
  Mark();
  Line("isend %d %d %ld", c->world[dest], Tag(c, tag), Bytes(count, type));
  Remember(*req, T.rank, c->world[dest], Tag(c, tag));
  Leave();
  return rc;
}

int MPI_Irecv(void *buf, int count, MPI_Datatype type, int source, int tag, MPI_Comm comm, MPI_Request *req)
{
  CommInfo *c = Traced(comm);
  int rc;
  if (!c || source == MPI_PROC_NULL || source == MPI_ANY_SOURCE)
    return PMPI_Irecv(buf, count, type, source, tag, comm, req);
  Enter();
  Own();
  rc = PMPI_Irecv(buf, count, type, source, tag, comm, req);
  Mark();
  Line("irecv %d %d %ld", c->world[source], Tag(c, tag), Bytes(count, type));
  Remember(*req, c->world[source], T.rank, Tag(c, tag));
  Leave();
  return rc;
}

int MPI_Wait(MPI_Request *req, MPI_Status *status)
{
  const MPI_Request r = *req;
  int rc;
  if (!T.recording || !T.nreq) return PMPI_Wait(req, status);
  Mark();
  Enter();
  Own();
  rc = PMPI_Wait(req, status);
  Mark();
  Forget(r);
  Leave();
  return rc;
}

int MPI_Waitall(int n, MPI_Request reqs[], MPI_Status statuses[])
{
  MPI_Request *copy;
  int rc;
  if (!T.recording || !T.nreq || n < 1) return PMPI_Waitall(n, reqs, statuses);
  Mark();
  Enter();
  copy = (MPI_Request *)malloc(sizeof(MPI_Request) * (size_t)n);
  memcpy(copy, reqs, sizeof(MPI_Request) * (size_t)n);
  Own();
  rc = PMPI_Waitall(n, reqs, statuses);
  Mark();
  for (int i = 0; i < n; i++) Forget(copy[i]);
  free(copy);
  Leave();
  return rc;
}

/* Polling is part of the compute around it; a request it completes is waited for there. */
int MPI_Testall(int n, MPI_Request reqs[], int *flag, MPI_Status statuses[])
{
  MPI_Request *copy;
  int rc;
  if (!T.recording || !T.nreq || n < 1) return PMPI_Testall(n, reqs, flag, statuses);
  Mark();
  copy = (MPI_Request *)malloc(sizeof(MPI_Request) * (size_t)n);
  memcpy(copy, reqs, sizeof(MPI_Request) * (size_t)n);
  Own();
  rc = PMPI_Testall(n, reqs, flag, statuses);
  Mark();
  if (*flag) {
    Enter();
    for (int i = 0; i < n; i++) Forget(copy[i]);
    T.last = CPUTime();
  }
  free(copy);
  Own();
  return rc;
}

int MPI_Allreduce(const void *send, void *recv, int count, MPI_Datatype type, MPI_Op op, MPI_Comm comm)
{
  CommInfo *c = Traced(comm);
  int rc;
  if (!c) return PMPI_Allreduce(send, recv, count, type, op, comm);
  Enter();
  if (c->congruent)
    Line("allreduce %ld %d", Bytes(count, type), count);
  else
    AllreduceP2P(c, Bytes(count, type), COLLECTIVE_TAG(c));
  Own();
  rc = PMPI_Allreduce(send, recv, count, type, op, comm);
  Mark();
  Leave();
  return rc;
}

int MPI_Bcast(void *buf, int count, MPI_Datatype type, int root, MPI_Comm comm)
{
  CommInfo *c = Traced(comm);
  int rc;
  if (!c) return PMPI_Bcast(buf, count, type, root, comm);
  Enter();
  if (c->congruent)
    Line("bcast %ld %d", Bytes(count, type), root);
  else
    BcastP2P(c, Bytes(count, type), root, COLLECTIVE_TAG(c) + 1);
  Own();
  rc = PMPI_Bcast(buf, count, type, root, comm);
  Mark();
  Leave();
  return rc;
}

int MPI_Barrier(MPI_Comm comm)
{
  CommInfo *c = Traced(comm);
  int rc;
  if (!c) return PMPI_Barrier(comm);
  Enter();
  if (c->congruent)
    Line("barrier");
  else
    AllreduceP2P(c, 0, COLLECTIVE_TAG(c) + 2);
  Own();
  rc = PMPI_Barrier(comm);
  Mark();
  Leave();
  return rc;
}

int MPI_Gather(const void *send, int scount, MPI_Datatype stype, void *recv, int rcount, MPI_Datatype rtype, int root,
               MPI_Comm comm)
{
  CommInfo *c = Traced(comm);
  int rc;
  if (!c) return PMPI_Gather(send, scount, stype, recv, rcount, rtype, root, comm);
  Enter();
  if (c->rank == root) {
    for (int r = 0; r < c->size; r++)
      if (r != root) Line("recv %d %d %ld", c->world[r], COLLECTIVE_TAG(c) + 3, Bytes(rcount, rtype));
  } else
    Line("send %d %d %ld", c->world[root], COLLECTIVE_TAG(c) + 3, Bytes(scount, stype));
  Own();
  rc = PMPI_Gather(send, scount, stype, recv, rcount, rtype, root, comm);
  Mark();
  Leave();
  return rc;
}

int MPI_Allgatherv(const void *send, int scount, MPI_Datatype stype, void *recv, const int rcounts[],
                   const int displs[], MPI_Datatype rtype, MPI_Comm comm)
{
  CommInfo *c = Traced(comm);
  int rc;
  if (!c) return PMPI_Allgatherv(send, scount, stype, recv, rcounts, displs, rtype, comm);
  Enter();
  for (int k = 1; k < c->size; k++) {
    const int to = (c->rank + k) % c->size, from = (c->rank - k + c->size) % c->size;
    Line("isend %d %d %ld", c->world[to], COLLECTIVE_TAG(c) + 4, Bytes(scount, stype));
    Line("recv %d %d %ld", c->world[from], COLLECTIVE_TAG(c) + 4, Bytes(rcounts[from], rtype));
    Line("wait %d %d %d", T.rank, c->world[to], COLLECTIVE_TAG(c) + 4);
  }
  Own();
  rc = PMPI_Allgatherv(send, scount, stype, recv, rcounts, displs, rtype, comm);
  Mark();
  Leave();
  return rc;
}
