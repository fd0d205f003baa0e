/* MGRIT: FCF relaxation, FAS coarse-grid correction, V-cycles (DESIGN.md §2). Level 0 holds the
   fine points 0..N; level l+1 holds every cfactor-th point of level l (and the last one). The
   ranks split the fine steps evenly and own the points of every level that fall in their share:
   a coarse level may have fewer points than there are ranks, and an interval may span ranks.
   Each rank keeps one ghost, the point before its first, and states travel only between the
   owners of neighbouring points: F-relaxation runs the chains that start at a rank's own
   C-points first, and only the chain entering from the previous rank waits for it.

   An iteration on the fine level is C-relaxation, F-relaxation, the FAS correction, then the
   final sweep: F-relaxation and the C-point residual. The final sweep's steps into the
   C-points are the next iteration's C-relaxation, so an FCF cycle costs no more than in the
   textbook order, and the solve returns with F-points consistent with the C-points and the
   residual of what it returns. */
#include "mgrit.h"

static PetscClassId TN_CLASSID_MGRIT;
static PetscLogEvent TN_EVENT_MGRIT;

typedef struct {
  PetscInt n;             /* intervals of this level: points 0..n */
  PetscInt *pos;          /* pos[0..n]: the fine index of each point */
  PetscInt a, b;          /* the points this rank owns, a..b (none: a > b); it stores a-1..b */
  PetscMPIInt prev, next; /* owners of points a-1 and b+1 (-1: point 0, known to all; or none) */
  PetscBool *isC;         /* isC[k]: stored point k is a point of the next level */
  PetscInt *cidx;         /* stored index on this level of each owned point of the next level */
  PetscScalar *u, *v, *g; /* stored states: iterate, restricted iterate, FAS forcing */
} Level;

struct _n_TNMGRIT {
  MPI_Comm comm;
  PetscMPIInt rank, size;
  PetscInt N;
  PetscBool mirror, setup;
  TNMGRITApp app;
  PetscInt cfactor, nlevels, max_it, maxsize;
  PetscReal tol, rtol; /* stop at residual <= max(tol, rtol * |C-point states|) */
  PetscBool skip;
  Level *lv;
  PetscInt nlv;
  PetscInt lo, hi;     /* this rank's fine steps [lo, hi): it stores the points lo..hi */
  PetscInt *rlo, *rhi; /* every rank's */
  PetscScalar *tmp, *u0;
  PetscReal *hist;
  PetscInt hist_n;
  PetscBool from_start;      /* TNMGRITSetStartGuess */
  PetscInt nspan, maxcoarse; /* intervals across ranks: their ends span[2k], span[2k+1] */
  PetscInt *span;
  PetscScalar *spanbuf;
  PetscBool view; /* -mgrit_view: print at set-up */
};

static PetscErrorCode Create(MPI_Comm comm, PetscInt N, PetscBool mirror, PetscBool reversed, const TNMGRITApp *app,
                             TNMGRIT *out)
{
  TNMGRIT mg;

  PetscFunctionBegin;
  if (!TN_CLASSID_MGRIT) {
    PetscCall(PetscClassIdRegister("TNMGRIT", &TN_CLASSID_MGRIT));
    PetscCall(PetscLogEventRegister("TNMGRITCycle", TN_CLASSID_MGRIT, &TN_EVENT_MGRIT));
  }
  PetscCheck(N > 0, comm, PETSC_ERR_ARG_OUTOFRANGE, "MGRIT needs at least one step, got %" PetscInt_FMT, N);
  PetscCall(PetscNew(&mg));
  /* a communicator of its own: no message of MGRIT can match one of the application's */
  if (reversed) {
    PetscMPIInt rank, size;
    PetscCallMPI(MPI_Comm_rank(comm, &rank));
    PetscCallMPI(MPI_Comm_size(comm, &size));
    PetscCallMPI(MPI_Comm_split(comm, 0, size - 1 - rank, &mg->comm));
  } else
    PetscCallMPI(MPI_Comm_dup(comm, &mg->comm));
  PetscCallMPI(MPI_Comm_set_name(mg->comm, reversed ? "thetanet mgrit adjoint" : "thetanet mgrit"));
  PetscCallMPI(MPI_Comm_rank(mg->comm, &mg->rank));
  PetscCallMPI(MPI_Comm_size(mg->comm, &mg->size));
  mg->N       = N;
  mg->mirror  = mirror;
  mg->app     = *app;
  mg->cfactor = 4;
  mg->nlevels = 2;
  mg->max_it  = 30;
  mg->tol     = 1e-10;
  mg->rtol    = 0;
  mg->skip    = PETSC_FALSE;
  *out        = mg;
  PetscFunctionReturn(0);
}

PetscErrorCode TNMGRITCreate(MPI_Comm comm, PetscInt N, PetscBool mirror, const TNMGRITApp *app, TNMGRIT *out)
{
  PetscFunctionBegin;
  PetscCall(Create(comm, N, mirror, PETSC_FALSE, app, out));
  PetscFunctionReturn(0);
}

PetscErrorCode TNMGRITCreateReversed(MPI_Comm comm, PetscInt N, const TNMGRITApp *app, TNMGRIT *out)
{
  PetscFunctionBegin;
  PetscCall(Create(comm, N, PETSC_TRUE, PETSC_TRUE, app, out));
  PetscFunctionReturn(0);
}

PetscErrorCode TNMGRITAgree(TNMGRIT mg, PetscBool *ok)
{
  PetscFunctionBegin;
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, ok, 1, MPIU_BOOL, MPI_LAND, mg->comm));
  PetscFunctionReturn(0);
}

PetscErrorCode TNMGRITSetStartGuess(TNMGRIT mg, PetscBool from_start)
{
  PetscFunctionBegin;
  mg->from_start = from_start;
  PetscFunctionReturn(0);
}

PetscErrorCode TNMGRITSetApp(TNMGRIT mg, const TNMGRITApp *app)
{
  PetscFunctionBegin;
  PetscCheck(!mg->setup || app->size <= mg->maxsize, mg->comm, PETSC_ERR_ARG_WRONGSTATE,
             "state size %" PetscInt_FMT " exceeds the %" PetscInt_FMT " set up for", app->size, mg->maxsize);
  PetscCheck(!mg->setup || app->coarse_size <= mg->maxcoarse, mg->comm, PETSC_ERR_ARG_WRONGSTATE,
             "coarse data size %" PetscInt_FMT " exceeds the %" PetscInt_FMT " set up for", app->coarse_size,
             mg->maxcoarse);
  mg->app = *app;
  PetscFunctionReturn(0);
}

PetscErrorCode TNMGRITGetParameters(TNMGRIT mg, PetscInt *cfactor, PetscInt *levels, PetscInt *max_it, PetscReal *tol)
{
  PetscFunctionBegin;
  *cfactor = mg->cfactor;
  *levels  = mg->nlevels;
  *max_it  = mg->max_it;
  *tol     = mg->tol;
  PetscFunctionReturn(0);
}

PetscErrorCode TNMGRITSetParameters(TNMGRIT mg, PetscInt cfactor, PetscInt levels, PetscInt max_it, PetscReal tol)
{
  PetscFunctionBegin;
  PetscCheck(cfactor >= 2, mg->comm, TN_ERR_USER, "-mgrit_cfactor must be at least 2, got %" PetscInt_FMT, cfactor);
  PetscCheck(levels >= 2, mg->comm, TN_ERR_USER, "-mgrit_levels must be at least 2, got %" PetscInt_FMT, levels);
  PetscCheck(max_it >= 1, mg->comm, TN_ERR_USER, "-mgrit_max_it must be at least 1, got %" PetscInt_FMT, max_it);
  PetscCheck(tol >= 0, mg->comm, TN_ERR_USER, "-mgrit_tol must be non-negative, got %g", (double)tol);
  /* the hierarchy, once built, fixes the coarsening; the residual history is sized by max_it */
  PetscCheck(!mg->lv || (cfactor == mg->cfactor && levels == mg->nlevels), mg->comm, PETSC_ERR_ARG_WRONGSTATE,
             "MGRIT: the coarsening factor and levels cannot change once the hierarchy is built");
  if (mg->setup && max_it != mg->max_it) {
    PetscCall(PetscFree(mg->hist));
    PetscCall(PetscMalloc1(max_it, &mg->hist));
    mg->hist_n = 0;
  }
  mg->cfactor = cfactor;
  mg->nlevels = levels;
  mg->max_it  = max_it;
  mg->tol     = tol;
  PetscFunctionReturn(0);
}

PetscErrorCode TNMGRITSetRelativeTolerance(TNMGRIT mg, PetscReal rtol)
{
  PetscFunctionBegin;
  PetscCheck(rtol >= 0 && rtol < 1, mg->comm, TN_ERR_USER, "-mgrit_rtol must be in [0, 1), got %g", (double)rtol);
  mg->rtol = rtol;
  PetscFunctionReturn(0);
}

PetscErrorCode TNMGRITGetRelativeTolerance(TNMGRIT mg, PetscReal *rtol)
{
  PetscFunctionBegin;
  *rtol = mg->rtol;
  PetscFunctionReturn(0);
}

PetscErrorCode TNMGRITSetSkip(TNMGRIT mg, PetscBool skip)
{
  PetscFunctionBegin;
  mg->skip = skip;
  PetscFunctionReturn(0);
}

PetscErrorCode TNMGRITGetSkip(TNMGRIT mg, PetscBool *skip)
{
  PetscFunctionBegin;
  *skip = mg->skip;
  PetscFunctionReturn(0);
}

PetscErrorCode TNMGRITSetFromOptions(TNMGRIT mg)
{
  PetscInt m = mg->cfactor, l = mg->nlevels, it = mg->max_it;
  PetscReal tol = mg->tol, rtol = mg->rtol;
  PetscBool skip = mg->skip;

  PetscFunctionBegin;
  PetscOptionsBegin(mg->comm, NULL, "MGRIT solver", "thetanet");
  PetscCall(TNOptionsInt("-mgrit_cfactor", "Coarsening factor m: C-points every m blocks", "", m, &m, NULL));
  PetscCall(TNOptionsInt("-mgrit_levels", "Levels of the MGRIT hierarchy (2: two-level)", "", l, &l, NULL));
  PetscCall(TNOptionsInt("-mgrit_max_it",
                         "Most MGRIT iterations per solve (1 or 2: an inexact propagation, which does not train the "
                         "network to layer-serial accuracy)",
                         "", it, &it, NULL));
  PetscCall(TNOptionsReal("-mgrit_tol", "Tolerance on the 2-norm of the C-point residuals", "", tol, &tol, NULL));
  PetscCall(TNOptionsReal("-mgrit_rtol",
                          "Relative tolerance: stop once the C-point residual is at most this times the norm of the "
                          "C-point states (0: -mgrit_tol alone)",
                          "", rtol, &rtol, NULL));
  PetscCall(PetscOptionsBool(
      "-mgrit_skip",
      "First iteration: the coarsest level's propagation interpolated by F-relaxation (no relaxation on the way down)",
      "", skip, &skip, NULL));
  PetscCall(PetscOptionsName("-mgrit_view", "Print the MGRIT hierarchy once set up", "TNMGRITView", &mg->view));
  PetscOptionsEnd();
  PetscCall(TNMGRITSetParameters(mg, m, l, it, tol));
  PetscCall(TNMGRITSetRelativeTolerance(mg, rtol));
  mg->skip = skip;
  PetscFunctionReturn(0);
}

/* Points of level l: multiples of cfactor^l and N (mirrored: N minus those). */
static PetscErrorCode LevelPoints(TNMGRIT mg, PetscInt stride, Level *L)
{
  PetscInt k = 0;

  PetscFunctionBegin;
  L->n = (mg->N + stride - 1) / stride;
  PetscCall(PetscMalloc1(L->n + 1, &L->pos));
  for (PetscInt p = 0; p < L->n; p++) L->pos[k++] = p * stride;
  L->pos[k] = mg->N;
  if (mg->mirror) {
    for (PetscInt p = 0; p <= L->n / 2; p++) {
      const PetscInt a = mg->N - L->pos[p], b = mg->N - L->pos[L->n - p];
      L->pos[p]        = b;
      L->pos[L->n - p] = a;
    }
  }
  PetscFunctionReturn(0);
}

static PetscInt FindPoint(const Level *L, PetscInt fine)
{
  PetscInt a = 0, b = L->n;
  while (a < b) {
    const PetscInt c = (a + b) / 2;
    if (L->pos[c] < fine)
      a = c + 1;
    else
      b = c;
  }
  return a;
}

/* The rank of comm owning fine point p >= 1 (the one whose steps lead to it). */
static PetscMPIInt Owner(TNMGRIT mg, PetscInt p)
{
  PetscMPIInt r = 0;
  while (r < mg->size - 1 && !(mg->rlo[r] < p && p <= mg->rhi[r])) r++;
  return r;
}

/* The levels and this rank's share of them: what ownership needs, before any state size. */
static PetscErrorCode Hierarchy(TNMGRIT mg)
{
  PetscInt stride = 1;

  PetscFunctionBegin;
  if (mg->lv) PetscFunctionReturn(0);
  PetscCheck(mg->N >= mg->size, mg->comm, TN_ERR_USER,
             "MGRIT: %" PetscInt_FMT " blocks cannot be split over %d depth ranks: use fewer depth ranks", mg->N,
             mg->size);
  /* even shares of the steps; a mirrored problem runs on the ranks in reverse order and owns the
     mirror image of the forward problem's shares, so each rank keeps its blocks */
  PetscCall(PetscMalloc2(mg->size, &mg->rlo, mg->size, &mg->rhi));
  for (PetscMPIInt r = 0; r < mg->size; r++) {
    if (!mg->mirror)
      TNGridSplit(mg->N, mg->size, r, &mg->rlo[r], &mg->rhi[r]);
    else {
      PetscInt lo, hi;
      TNGridSplit(mg->N, mg->size, mg->size - 1 - r, &lo, &hi);
      mg->rlo[r] = mg->N - hi;
      mg->rhi[r] = mg->N - lo;
    }
  }
  mg->lo = mg->rlo[mg->rank];
  mg->hi = mg->rhi[mg->rank];
  /* stop coarsening once a level would have a single interval */
  mg->nlv = 1;
  while (mg->nlv < mg->nlevels && stride * mg->cfactor < mg->N) {
    stride *= mg->cfactor;
    mg->nlv++;
  }
  PetscCall(PetscCalloc1(mg->nlv, &mg->lv));
  stride = 1;
  for (PetscInt l = 0; l < mg->nlv; l++, stride *= mg->cfactor) {
    Level *L = &mg->lv[l];
    PetscCall(LevelPoints(mg, stride, L));
    /* owned: the points in (lo, hi] */
    L->a = FindPoint(L, mg->lo + 1);
    L->b = FindPoint(L, mg->hi);
    if (L->pos[L->b] > mg->hi) L->b--;
    L->prev = L->a > L->b || L->a == 1 ? -1 : Owner(mg, L->pos[L->a - 1]);
    L->next = L->a > L->b || L->b == L->n ? -1 : Owner(mg, L->pos[L->b + 1]);
  }
  for (PetscInt l = 0; l + 1 < mg->nlv; l++) {
    Level *L       = &mg->lv[l];
    const Level *C = &mg->lv[l + 1];
    if (L->a > L->b) continue;
    PetscCall(PetscMalloc1(L->b - L->a + 2, &L->isC));
    for (PetscInt q = L->a - 1; q <= L->b; q++) {
      const PetscInt P     = FindPoint(C, L->pos[q]);
      L->isC[q - L->a + 1] = P <= C->n && C->pos[P] == L->pos[q] ? PETSC_TRUE : PETSC_FALSE;
    }
    PetscCall(PetscMalloc1(PetscMax(C->b - C->a + 1, 1), &L->cidx));
    for (PetscInt P = C->a; P <= C->b; P++) L->cidx[P - C->a] = FindPoint(L, C->pos[P]) - L->a + 1;
  }
  PetscFunctionReturn(0);
}

/* The coarse intervals, on every level, whose fine steps lie on more than one rank. */
static PetscErrorCode SpanSetUp(TNMGRIT mg)
{
  PetscInt cap = 0;

  PetscFunctionBegin;
  mg->maxcoarse = mg->app.coarse_pack ? mg->app.coarse_size : 0;
  if (!mg->maxcoarse || mg->size == 1) PetscFunctionReturn(0);
  for (PetscInt l = 1; l < mg->nlv; l++) cap += mg->lv[l].n;
  PetscCall(PetscMalloc1(2 * cap, &mg->span));
  for (PetscInt l = 1; l < mg->nlv; l++) {
    const Level *C = &mg->lv[l];
    for (PetscInt P = 1; P <= C->n; P++) {
      const PetscInt from = C->pos[P - 1], to = C->pos[P];
      PetscBool seen = PETSC_FALSE;
      /* steps from .. to-1 lead to points from+1 .. to */
      if (to - from < 2 || Owner(mg, from + 1) == Owner(mg, to)) continue;
      for (PetscInt k = 0; k < mg->nspan && !seen; k++) seen = mg->span[2 * k] == from && mg->span[2 * k + 1] == to;
      if (seen) continue;
      mg->span[2 * mg->nspan]     = from;
      mg->span[2 * mg->nspan + 1] = to;
      mg->nspan++;
    }
  }
  PetscCall(PetscMalloc1(PetscMax(mg->nspan, 1) * mg->maxcoarse, &mg->spanbuf));
  PetscFunctionReturn(0);
}

/* The coarse data of the intervals across ranks: every rank's share, summed (one reduction). */
static PetscErrorCode AssembleCoarse(TNMGRIT mg)
{
  const PetscInt cs = mg->app.coarse_size;

  PetscFunctionBegin;
  if (!mg->nspan || !mg->app.coarse_pack) PetscFunctionReturn(0);
  PetscCall(PetscArrayzero(mg->spanbuf, mg->nspan * cs));
  for (PetscInt k = 0; k < mg->nspan; k++) {
    const PetscInt from = mg->span[2 * k], to = mg->span[2 * k + 1];
    const PetscInt lo = PetscMax(from, mg->lo), hi = PetscMin(to, mg->hi);
    if (lo < hi) PetscCall(mg->app.coarse_pack(mg->app.ctx, from, to, lo, hi, mg->spanbuf + k * cs));
  }
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, mg->spanbuf, (PetscMPIInt)(mg->nspan * cs), MPIU_SCALAR, MPI_SUM, mg->comm));
  for (PetscInt k = 0; k < mg->nspan; k++)
    PetscCall(mg->app.coarse_unpack(mg->app.ctx, mg->span[2 * k], mg->span[2 * k + 1], mg->spanbuf + k * cs));
  PetscFunctionReturn(0);
}

/* Coarse-level storage for states of up to the current app.size entries (solves may then use
   any smaller size: the last batch of an epoch is smaller). */
PetscErrorCode TNMGRITSetUp(TNMGRIT mg)
{
  PetscFunctionBegin;
  if (mg->setup) PetscFunctionReturn(0);
  PetscCall(Hierarchy(mg));
  PetscCheck(mg->app.size > 0, mg->comm, PETSC_ERR_ARG_WRONGSTATE, "MGRIT set up without a state size");
  mg->maxsize = mg->app.size;
  for (PetscInt l = 1; l < mg->nlv; l++) {
    Level *L         = &mg->lv[l];
    const PetscInt n = PetscMax(L->b - L->a + 2, 1) * mg->maxsize;
    PetscCall(PetscMalloc3(n, &L->u, n, &L->v, n, &L->g));
  }
  PetscCall(PetscMalloc2(mg->maxsize, &mg->tmp, mg->maxsize, &mg->u0));
  PetscCall(PetscMalloc1(mg->max_it, &mg->hist));
  PetscCall(SpanSetUp(mg));
  mg->setup = PETSC_TRUE;
  if (mg->view) PetscCall(TNMGRITView(mg, PETSC_VIEWER_STDOUT_(mg->comm)));
  PetscFunctionReturn(0);
}

PetscErrorCode TNMGRITView(TNMGRIT mg, PetscViewer viewer)
{
  PetscFunctionBegin;
  PetscCall(Hierarchy(mg));
  PetscCall(PetscViewerASCIIPrintf(viewer,
                                   "TNMGRIT%s: %" PetscInt_FMT " steps on %d ranks, cfactor %" PetscInt_FMT
                                   ", %" PetscInt_FMT " levels (%" PetscInt_FMT " asked for), max_it %" PetscInt_FMT
                                   ", tol %g, rtol %g%s\n",
                                   mg->mirror ? " (mirrored)" : "", mg->N, mg->size, mg->cfactor, mg->nlv, mg->nlevels,
                                   mg->max_it, (double)mg->tol, (double)mg->rtol, mg->skip ? ", nested start" : ""));
  PetscCall(PetscViewerASCIIPushTab(viewer));
  for (PetscInt l = 0; l < mg->nlv; l++)
    PetscCall(PetscViewerASCIIPrintf(viewer, "level %" PetscInt_FMT ": %" PetscInt_FMT " intervals\n", l, mg->lv[l].n));
  PetscCall(PetscViewerASCIIPopTab(viewer));
  PetscFunctionReturn(0);
}

PetscErrorCode TNMGRITGetLevels(TNMGRIT mg, PetscInt *nlevels)
{
  PetscFunctionBegin;
  PetscCall(Hierarchy(mg));
  *nlevels = mg->nlv;
  PetscFunctionReturn(0);
}

PetscErrorCode TNMGRITGetLevelPoints(TNMGRIT mg, PetscInt l, PetscInt *n, const PetscInt **pos)
{
  PetscFunctionBegin;
  PetscCall(Hierarchy(mg));
  PetscCheck(l >= 0 && l < mg->nlv, mg->comm, PETSC_ERR_ARG_OUTOFRANGE, "level %" PetscInt_FMT " of %" PetscInt_FMT, l,
             mg->nlv);
  *n   = mg->lv[l].n;
  *pos = mg->lv[l].pos;
  PetscFunctionReturn(0);
}

PetscErrorCode TNMGRITIsCPoint(TNMGRIT mg, PetscInt p, PetscBool *cpoint)
{
  PetscFunctionBegin;
  PetscCall(Hierarchy(mg));
  *cpoint = PETSC_FALSE;
  if (mg->nlv > 1) {
    const Level *C   = &mg->lv[1];
    const PetscInt a = FindPoint(C, p);
    *cpoint          = a <= C->n && C->pos[a] == p ? PETSC_TRUE : PETSC_FALSE;
  }
  PetscFunctionReturn(0);
}

PetscErrorCode TNMGRITGetOwnership(TNMGRIT mg, PetscInt *lo, PetscInt *hi)
{
  PetscFunctionBegin;
  PetscCall(Hierarchy(mg));
  *lo = mg->lo;
  *hi = mg->hi;
  PetscFunctionReturn(0);
}

/* Stored state k of a level: point a-1+k. */
#define STATE(U, k) ((U) + (size_t)(k) * (size_t)mg->app.size)
#define OWNED(L) ((L)->a <= (L)->b)
#define LAST(L) ((L)->b - (L)->a + 1)

/* message tags by level and kind, so no message of one sweep can match another's */
#define TAG(L, kind) ((int)(10 + 3 * ((L)-mg->lv) + (kind)))
enum { TAG_F, TAG_X, TAG_SEQ };

/* out = Phi(u) + g into stored point k of level L, from the state u of point k-1 */
static PetscErrorCode Step(TNMGRIT mg, const Level *L, PetscInt k, const PetscScalar *u, PetscScalar *out)
{
  const PetscInt q = L->a - 1 + k;

  PetscFunctionBegin;
  PetscCall(mg->app.step(mg->app.ctx, L->pos[q - 1], L->pos[q], u, out));
  if (L->g)
    for (PetscInt i = 0; i < mg->app.size; i++) out[i] += STATE(L->g, k)[i];
  PetscFunctionReturn(0);
}

/* The ghost (stored point 0) of a rank whose first point follows point 0 is u_0. */
static PetscErrorCode GhostFromStart(TNMGRIT mg, const Level *L, PetscScalar *U)
{
  PetscFunctionBegin;
  if (OWNED(L) && L->a == 1) PetscCall(PetscArraycpy(STATE(U, 0), mg->u0, mg->app.size));
  PetscFunctionReturn(0);
}

/* Each owner's last state becomes the ghost of the owner of the next point. */
static PetscErrorCode Exchange(TNMGRIT mg, const Level *L, PetscScalar *U)
{
  const PetscMPIInt n = (PetscMPIInt)mg->app.size;
  MPI_Request req     = MPI_REQUEST_NULL;

  PetscFunctionBegin;
  if (!OWNED(L)) PetscFunctionReturn(0);
  if (L->prev >= 0) PetscCallMPI(MPI_Irecv(STATE(U, 0), n, MPIU_SCALAR, L->prev, TAG(L, TAG_X), mg->comm, &req));
  if (L->next >= 0) PetscCallMPI(MPI_Send(STATE(U, LAST(L)), n, MPIU_SCALAR, L->next, TAG(L, TAG_X), mg->comm));
  PetscCallMPI(MPI_Wait(&req, MPI_STATUS_IGNORE));
  PetscFunctionReturn(0);
}

/* F-relaxation of level l (l below the coarsest): the chains from this rank's own C-points
   first, then the chain entering from the previous rank, once its state arrives. The last
   state goes to the next owner as soon as it is final, and the ghost is current afterwards. */
static PetscErrorCode FRelax(TNMGRIT mg, PetscInt l, PetscScalar *u)
{
  const Level *L      = &mg->lv[l];
  const PetscMPIInt n = (PetscMPIInt)mg->app.size;
  const PetscInt last = LAST(L);
  PetscInt first_c    = 1;
  MPI_Request send    = MPI_REQUEST_NULL;

  PetscFunctionBegin;
  if (!OWNED(L)) PetscFunctionReturn(0);
  while (first_c <= last && !L->isC[first_c]) first_c++;
  for (PetscInt k = first_c + 1; k <= last; k++)
    if (!L->isC[k]) PetscCall(Step(mg, L, k, STATE(u, k - 1), STATE(u, k)));
  if (first_c <= last && L->next >= 0)
    PetscCallMPI(MPI_Isend(STATE(u, last), n, MPIU_SCALAR, L->next, TAG(L, TAG_F), mg->comm, &send));
  if (L->prev >= 0)
    PetscCallMPI(MPI_Recv(STATE(u, 0), n, MPIU_SCALAR, L->prev, TAG(L, TAG_F), mg->comm, MPI_STATUS_IGNORE));
  for (PetscInt k = 1; k < first_c; k++) PetscCall(Step(mg, L, k, STATE(u, k - 1), STATE(u, k)));
  if (first_c > last && L->next >= 0)
    PetscCallMPI(MPI_Isend(STATE(u, last), n, MPIU_SCALAR, L->next, TAG(L, TAG_F), mg->comm, &send));
  PetscCallMPI(MPI_Wait(&send, MPI_STATUS_IGNORE));
  PetscFunctionReturn(0);
}

/* Fine steps in a final sweep may be the last at their points (see TNMGRITApp). */
static PetscErrorCode FinalSweep(TNMGRIT mg, PetscBool on)
{
  PetscFunctionBegin;
  if (mg->app.final_sweep) PetscCall(mg->app.final_sweep(mg->app.ctx, on));
  PetscFunctionReturn(0);
}

/* The coarsest level is solved exactly: a pipeline through the ranks that hold its points. */
static PetscErrorCode SequentialLevel(TNMGRIT mg, PetscInt l, PetscScalar *u)
{
  const Level *L      = &mg->lv[l];
  const PetscMPIInt n = (PetscMPIInt)mg->app.size;

  PetscFunctionBegin;
  if (!OWNED(L)) PetscFunctionReturn(0);
  if (L->prev >= 0)
    PetscCallMPI(MPI_Recv(STATE(u, 0), n, MPIU_SCALAR, L->prev, TAG(L, TAG_SEQ), mg->comm, MPI_STATUS_IGNORE));
  for (PetscInt k = 1; k <= LAST(L); k++) PetscCall(Step(mg, L, k, STATE(u, k - 1), STATE(u, k)));
  if (L->next >= 0) PetscCallMPI(MPI_Send(STATE(u, LAST(L)), n, MPIU_SCALAR, L->next, TAG(L, TAG_SEQ), mg->comm));
  PetscFunctionReturn(0);
}

/* phi_P = Phi(u_{b-1}) (+ g) into each owned C-point b of level l (the next level's point P),
   kept in the next level's g; with ss, the squared norm of the residuals phi_P - u_b. The ghost
   must be current. */
static PetscErrorCode CPointSteps(TNMGRIT mg, PetscInt l, const PetscScalar *u, PetscReal *ss)
{
  const Level *L = &mg->lv[l], *C = &mg->lv[l + 1];
  const PetscInt size = mg->app.size;

  PetscFunctionBegin;
  if (ss) ss[0] = ss[1] = 0;
  for (PetscInt P = C->a; P <= C->b; P++) {
    const PetscInt k = L->cidx[P - C->a];
    PetscScalar *phi = STATE(C->g, P - C->a + 1);
    PetscCall(Step(mg, L, k, STATE(u, k - 1), phi));
    if (ss)
      for (PetscInt i = 0; i < size; i++) {
        const PetscScalar r = phi[i] - STATE(u, k)[i];
        ss[0] += PetscRealPart(r * PetscConj(r));
        ss[1] += PetscRealPart(phi[i] * PetscConj(phi[i]));
      }
  }
  PetscFunctionReturn(0);
}

/* C-relaxation with the steps CPointSteps left in the next level's g. */
static PetscErrorCode CRelaxFrom(TNMGRIT mg, PetscInt l, PetscScalar *u)
{
  const Level *L = &mg->lv[l], *C = &mg->lv[l + 1];

  PetscFunctionBegin;
  for (PetscInt P = C->a; P <= C->b; P++)
    PetscCall(PetscArraycpy(STATE(u, L->cidx[P - C->a]), STATE(C->g, P - C->a + 1), mg->app.size));
  PetscCall(Exchange(mg, L, u));
  PetscFunctionReturn(0);
}

static PetscErrorCode Cycle(TNMGRIT, PetscInt, PetscScalar *);

/* The FAS coarse-grid correction of level l, with CPointSteps' phi in the next level's g:
   v_P = u at C-point P, g_P = r_P + v_P - Phi_c(v_{P-1}) = phi_P - Phi_c(v_{P-1}); a V-cycle
   on the next level; u_P += w_P - v_P at every owned C-point. The F-points (and the ghost) are
   left to the caller's F-relaxation. */
static PetscErrorCode Correct(TNMGRIT mg, PetscInt l, PetscScalar *u)
{
  Level *L = &mg->lv[l], *C = &mg->lv[l + 1];
  const PetscInt size = mg->app.size;

  PetscFunctionBegin;
  for (PetscInt P = C->a; P <= C->b; P++)
    PetscCall(PetscArraycpy(STATE(C->v, P - C->a + 1), STATE(u, L->cidx[P - C->a]), size));
  PetscCall(GhostFromStart(mg, C, C->v));
  PetscCall(Exchange(mg, C, C->v));
  for (PetscInt P = C->a; P <= C->b; P++) {
    PetscScalar *g = STATE(C->g, P - C->a + 1);
    PetscCall(mg->app.step(mg->app.ctx, C->pos[P - 1], C->pos[P], STATE(C->v, P - C->a), mg->tmp));
    for (PetscInt i = 0; i < size; i++) g[i] -= mg->tmp[i];
  }
  if (OWNED(C)) PetscCall(PetscArraycpy(C->u, C->v, (C->b - C->a + 2) * size));
  PetscCall(Cycle(mg, l + 1, C->u));
  for (PetscInt P = C->a; P <= C->b; P++) {
    PetscScalar *uf = STATE(u, L->cidx[P - C->a]);
    for (PetscInt i = 0; i < size; i++) uf[i] += STATE(C->u, P - C->a + 1)[i] - STATE(C->v, P - C->a + 1)[i];
  }
  PetscFunctionReturn(0);
}

/* One V-cycle on a coarse level l >= 1: FCF, correction, F-relaxation (the interpolation of the
   correction to the F-points, which the finer level's C-points include). */
static PetscErrorCode Cycle(TNMGRIT mg, PetscInt l, PetscScalar *u)
{
  PetscFunctionBegin;
  if (l == mg->nlv - 1) {
    PetscCall(SequentialLevel(mg, l, u));
    PetscFunctionReturn(0);
  }
  PetscCall(FRelax(mg, l, u));
  PetscCall(CPointSteps(mg, l, u, NULL));
  PetscCall(CRelaxFrom(mg, l, u));
  PetscCall(FRelax(mg, l, u));
  PetscCall(CPointSteps(mg, l, u, NULL));
  PetscCall(Correct(mg, l, u));
  PetscCall(FRelax(mg, l, u));
  PetscFunctionReturn(0);
}

/* The nested start (XBraid's skip): the coarsest level propagated from u_0 with no forcing,
   interpolated to each finer level by injection at its C-points and F-relaxation. It spends no
   relaxation on values that carry no information yet. */
static PetscErrorCode Nested(TNMGRIT mg, PetscInt l, PetscScalar *u)
{
  Level *L            = &mg->lv[l], *C;
  const PetscInt size = mg->app.size;

  PetscFunctionBegin;
  if (l == mg->nlv - 1) {
    PetscCall(SequentialLevel(mg, l, u));
    PetscFunctionReturn(0);
  }
  C = &mg->lv[l + 1];
  if (OWNED(C)) PetscCall(PetscArrayzero(C->g, (C->b - C->a + 2) * size));
  PetscCall(GhostFromStart(mg, C, C->u));
  PetscCall(Nested(mg, l + 1, C->u));
  for (PetscInt P = C->a; P <= C->b; P++)
    PetscCall(PetscArraycpy(STATE(u, L->cidx[P - C->a]), STATE(C->u, P - C->a + 1), size));
  if (l == 0) PetscCall(FinalSweep(mg, PETSC_TRUE));
  PetscCall(FRelax(mg, l, u));
  PetscFunctionReturn(0);
}

/* The final sweep of a fine-level iteration: F-relaxation (unless the nested start just did
   it), the C-point residual norm and the tolerance it is held to: -mgrit_tol, or -mgrit_rtol
   times the norm of the C-point states (the steps into them) when that is larger. */
static PetscErrorCode FinishIteration(TNMGRIT mg, PetscScalar *u, PetscBool relax, PetscReal *res, PetscReal *tol)
{
  PetscReal ss[2];

  PetscFunctionBegin;
  PetscCall(FinalSweep(mg, PETSC_TRUE));
  if (relax) PetscCall(FRelax(mg, 0, u));
  PetscCall(CPointSteps(mg, 0, u, ss));
  PetscCall(FinalSweep(mg, PETSC_FALSE));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, ss, 2, MPIU_REAL, MPI_SUM, mg->comm));
  *res = PetscSqrtReal(ss[0]);
  *tol = PetscMax(mg->tol, mg->rtol * PetscSqrtReal(ss[1]));
  PetscFunctionReturn(0);
}

PetscErrorCode TNMGRITSolve(TNMGRIT mg, const PetscScalar *u0, PetscScalar *u, PetscInt *its, PetscReal *residual)
{
  PetscReal res, tol;
  PetscInt it = 0;

  PetscFunctionBegin;
  PetscCall(TNMGRITSetUp(mg));
  if (!mg->rank) PetscCall(PetscArraycpy(mg->u0, u0, mg->app.size));
  PetscCallMPI(MPI_Bcast(mg->u0, (PetscMPIInt)mg->app.size, MPIU_SCALAR, 0, mg->comm));
  if (mg->from_start && !mg->skip)
    for (PetscInt p = 0; p <= mg->hi - mg->lo; p++) PetscCall(PetscArraycpy(STATE(u, p), mg->u0, mg->app.size));
  PetscCall(AssembleCoarse(mg));
  PetscCall(GhostFromStart(mg, &mg->lv[0], u));
  mg->hist_n = 0;
  if (mg->nlv == 1) {
    PetscCall(FinalSweep(mg, PETSC_TRUE));
    PetscCall(SequentialLevel(mg, 0, u));
    PetscCall(FinalSweep(mg, PETSC_FALSE));
    *its      = 0;
    *residual = 0;
    PetscFunctionReturn(0);
  }
  PetscCall(PetscLogEventBegin(TN_EVENT_MGRIT, 0, 0, 0, 0));
  if (mg->skip) {
    /* the nested start is the first iteration */
    PetscCall(Nested(mg, 0, u));
    PetscCall(FinishIteration(mg, u, PETSC_FALSE, &res, &tol));
    mg->hist[it++] = res;
  } else
    PetscCall(FinishIteration(mg, u, PETSC_TRUE, &res, &tol));
  PetscCall(PetscLogEventEnd(TN_EVENT_MGRIT, 0, 0, 0, 0));
  while (res > tol && it < mg->max_it) {
    PetscCall(PetscLogEventBegin(TN_EVENT_MGRIT, 0, 0, 0, 0));
    PetscCall(CRelaxFrom(mg, 0, u));
    PetscCall(FRelax(mg, 0, u));
    PetscCall(CPointSteps(mg, 0, u, NULL));
    PetscCall(Correct(mg, 0, u));
    PetscCall(FinishIteration(mg, u, PETSC_TRUE, &res, &tol));
    PetscCall(PetscLogEventEnd(TN_EVENT_MGRIT, 0, 0, 0, 0));
    mg->hist[it++] = res;
  }
  mg->hist_n = it;
  *its       = it;
  *residual  = res;
  PetscFunctionReturn(0);
}

PetscErrorCode TNMGRITGetResidualHistory(TNMGRIT mg, PetscInt *its, const PetscReal **history)
{
  PetscFunctionBegin;
  *its     = mg->hist_n;
  *history = mg->hist;
  PetscFunctionReturn(0);
}

PetscErrorCode TNMGRITDestroy(TNMGRIT *mgp)
{
  TNMGRIT mg = *mgp;

  PetscFunctionBegin;
  if (!mg) PetscFunctionReturn(0);
  for (PetscInt l = 0; l < mg->nlv; l++) {
    PetscCall(PetscFree(mg->lv[l].pos));
    PetscCall(PetscFree(mg->lv[l].cidx));
    PetscCall(PetscFree(mg->lv[l].isC));
    if (l > 0 && mg->setup) PetscCall(PetscFree3(mg->lv[l].u, mg->lv[l].v, mg->lv[l].g));
  }
  PetscCall(PetscFree(mg->lv));
  PetscCall(PetscFree2(mg->rlo, mg->rhi));
  if (mg->setup) PetscCall(PetscFree2(mg->tmp, mg->u0));
  PetscCall(PetscFree(mg->hist));
  PetscCall(PetscFree(mg->span));
  PetscCall(PetscFree(mg->spanbuf));
  PetscCallMPI(MPI_Comm_free(&mg->comm));
  PetscCall(PetscFree(mg));
  *mgp = NULL;
  PetscFunctionReturn(0);
}

PetscErrorCode TNMGRITSequential(const TNMGRITApp *app, PetscInt N, PetscScalar *u)
{
  PetscFunctionBegin;
  for (PetscInt p = 1; p <= N; p++)
    PetscCall(app->step(app->ctx, p - 1, p, u + (size_t)(p - 1) * app->size, u + (size_t)p * app->size));
  PetscFunctionReturn(0);
}
