/* MGRIT: FCF relaxation, FAS coarse-grid correction, V-cycles (DESIGN.md §2). Level 0 holds the
   fine points 0..N; level l+1 holds every cfactor-th point of level l (and the last one). Every
   rank owns whole intervals of the coarsest level, so relaxation on any level is local but for
   one state that travels from each rank to the next.

   An iteration on the fine level is C-relaxation, F-relaxation, the FAS correction, then the
   closing sweep: F-relaxation and the C-point residual. The closing sweep's steps into the
   C-points are the next iteration's C-relaxation, so an FCF cycle costs no more than in the
   textbook order, and the solve returns with F-points consistent with the C-points and the
   residual of what it returns. */
#include "mgrit.h"
#include "events.h"

typedef struct {
  PetscInt     n;      /* intervals of this level */
  PetscInt    *pos;    /* pos[0..n]: the fine index of each point */
  PetscInt     lo, hi; /* this rank's points lo..hi (indices into pos) */
  PetscInt    *cidx;   /* local index (0-based from lo) of each local point of the next level */
  PetscScalar *u, *v, *g; /* local values (hi-lo+1 states): iterate, restricted iterate, FAS forcing */
} Level;

struct _n_TNMGRIT {
  MPI_Comm    comm;
  PetscMPIInt rank, size;
  PetscInt    N;
  PetscBool   mirror, setup;
  TNMGRITApp  app;
  PetscInt    cfactor, nlevels, max_it, maxsize;
  PetscReal   tol;
  PetscBool   skip;
  Level      *lv;
  PetscInt    nlv;
  PetscScalar *tmp;
  PetscReal  *hist;
  PetscInt    hist_n;
};

PetscErrorCode TNMGRITCreate(MPI_Comm comm, PetscInt N, PetscBool mirror, const TNMGRITApp *app, TNMGRIT *out)
{
  TNMGRIT mg;

  PetscFunctionBegin;
  PetscCheck(N > 0, comm, PETSC_ERR_ARG_OUTOFRANGE, "MGRIT needs at least one step, got %" PetscInt_FMT, N);
  PetscCall(PetscNew(&mg));
  mg->comm = comm;
  PetscCallMPI(MPI_Comm_rank(comm, &mg->rank));
  PetscCallMPI(MPI_Comm_size(comm, &mg->size));
  mg->N       = N;
  mg->mirror  = mirror;
  mg->app     = *app;
  mg->cfactor = 4;
  mg->nlevels = 2;
  mg->max_it  = 30;
  mg->tol     = 1e-10;
  mg->skip    = PETSC_FALSE;
  *out        = mg;
  PetscFunctionReturn(0);
}

PetscErrorCode TNMGRITSetApp(TNMGRIT mg, const TNMGRITApp *app)
{
  PetscFunctionBegin;
  PetscCheck(!mg->setup || app->size <= mg->maxsize, mg->comm, PETSC_ERR_ARG_WRONGSTATE, "state size %" PetscInt_FMT " exceeds the %" PetscInt_FMT " set up for",
             app->size, mg->maxsize);
  mg->app = *app;
  PetscFunctionReturn(0);
}

PetscErrorCode TNMGRITSetParameters(TNMGRIT mg, PetscInt cfactor, PetscInt levels, PetscInt max_it, PetscReal tol)
{
  PetscFunctionBegin;
  PetscCheck(cfactor >= 2, mg->comm, TN_ERR_USER, "-mgrit_cfactor must be at least 2, got %" PetscInt_FMT, cfactor);
  PetscCheck(levels >= 2, mg->comm, TN_ERR_USER, "-mgrit_levels must be at least 2, got %" PetscInt_FMT, levels);
  PetscCheck(max_it >= 1, mg->comm, TN_ERR_USER, "-mgrit_max_it must be at least 1, got %" PetscInt_FMT, max_it);
  PetscCheck(tol >= 0, mg->comm, TN_ERR_USER, "-mgrit_tol must be non-negative, got %g", (double)tol);
  mg->cfactor = cfactor;
  mg->nlevels = levels;
  mg->max_it  = max_it;
  mg->tol     = tol;
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
  PetscInt  m = mg->cfactor, l = mg->nlevels, it = mg->max_it;
  PetscReal tol = mg->tol;
  PetscBool skip = mg->skip;

  PetscFunctionBegin;
  PetscOptionsBegin(mg->comm, NULL, "MGRIT solver", "thetanet");
  PetscCall(PetscOptionsInt("-mgrit_cfactor", "Coarsening factor m: C-points every m blocks", "", m, &m, NULL));
  PetscCall(PetscOptionsInt("-mgrit_levels", "Levels of the MGRIT hierarchy (2: two-level)", "", l, &l, NULL));
  PetscCall(PetscOptionsInt("-mgrit_max_it", "Most MGRIT iterations per solve (1 or 2: inexact, faster)", "", it, &it, NULL));
  PetscCall(PetscOptionsReal("-mgrit_tol", "Tolerance on the 2-norm of the C-point residuals", "", tol, &tol, NULL));
  PetscCall(PetscOptionsBool("-mgrit_skip", "First iteration: the coarsest level's propagation interpolated by F-relaxation (no relaxation on the way down)", "",
                             skip, &skip, NULL));
  PetscOptionsEnd();
  PetscCall(TNMGRITSetParameters(mg, m, l, it, tol));
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
    if (L->pos[c] < fine) a = c + 1;
    else b = c;
  }
  return a;
}

/* The levels and this rank's share of them: what ownership needs, before any state size. */
static PetscErrorCode Hierarchy(TNMGRIT mg)
{
  PetscInt stride = 1, Ilo, Ihi, lo, hi;
  Level   *top;

  PetscFunctionBegin;
  if (mg->lv) PetscFunctionReturn(0);
  /* stop coarsening once a level would have a single interval */
  mg->nlv = 1;
  while (mg->nlv < mg->nlevels && stride * mg->cfactor < mg->N) {
    stride *= mg->cfactor;
    mg->nlv++;
  }
  PetscCall(PetscCalloc1(mg->nlv, &mg->lv));
  stride = 1;
  for (PetscInt l = 0; l < mg->nlv; l++, stride *= mg->cfactor) PetscCall(LevelPoints(mg, stride, &mg->lv[l]));
  top = &mg->lv[mg->nlv - 1];
  PetscCheck(top->n >= mg->size, mg->comm, TN_ERR_USER,
             "MGRIT: %" PetscInt_FMT " steps give %" PetscInt_FMT " intervals on the coarsest of %" PetscInt_FMT " levels (cfactor %" PetscInt_FMT
             "), fewer than the %d ranks across depth: use fewer levels, a smaller cfactor or fewer depth ranks",
             mg->N, top->n, mg->nlv, mg->cfactor, mg->size);
  /* a mirrored problem runs on the ranks in reverse order and owns the mirror image of the
     forward problem's intervals, so each rank keeps its blocks */
  if (!mg->mirror) TNGridSplit(top->n, mg->size, mg->rank, &Ilo, &Ihi);
  else {
    PetscInt a, b;
    TNGridSplit(top->n, mg->size, mg->size - 1 - mg->rank, &a, &b);
    Ilo = top->n - b;
    Ihi = top->n - a;
  }
  lo = top->pos[Ilo];
  hi = top->pos[Ihi];
  for (PetscInt l = 0; l < mg->nlv; l++) {
    Level *L = &mg->lv[l];
    L->lo    = FindPoint(L, lo);
    L->hi    = FindPoint(L, hi);
    if (l + 1 < mg->nlv) {
      const Level *C = &mg->lv[l + 1];
      PetscInt     clo = FindPoint(C, lo), chi = FindPoint(C, hi);
      PetscCall(PetscMalloc1(chi - clo + 1, &L->cidx));
      for (PetscInt P = clo; P <= chi; P++) L->cidx[P - clo] = FindPoint(L, C->pos[P]) - L->lo;
    }
  }
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
    Level         *L = &mg->lv[l];
    const PetscInt n = (L->hi - L->lo + 1) * mg->maxsize;
    PetscCall(PetscMalloc3(n, &L->u, n, &L->v, n, &L->g));
  }
  PetscCall(PetscMalloc1(mg->maxsize, &mg->tmp));
  PetscCall(PetscMalloc1(mg->max_it, &mg->hist));
  mg->setup = PETSC_TRUE;
  PetscFunctionReturn(0);
}

PetscErrorCode TNMGRITIsCPoint(TNMGRIT mg, PetscInt p, PetscBool *cpoint)
{
  PetscFunctionBegin;
  PetscCall(Hierarchy(mg));
  *cpoint = PETSC_FALSE;
  if (mg->nlv > 1) {
    const Level *C = &mg->lv[1];
    const PetscInt a = FindPoint(C, p);
    *cpoint = a <= C->n && C->pos[a] == p ? PETSC_TRUE : PETSC_FALSE;
  }
  PetscFunctionReturn(0);
}

PetscErrorCode TNMGRITGetOwnership(TNMGRIT mg, PetscInt *lo, PetscInt *hi)
{
  PetscFunctionBegin;
  PetscCall(Hierarchy(mg));
  *lo = mg->lv[0].lo;
  *hi = mg->lv[0].hi;
  PetscFunctionReturn(0);
}

#define STATE(L, U, q) ((U) + (size_t)(q) * (size_t)mg->app.size)

/* out = Phi(u) + g between local points q-1 and q of level L */
static PetscErrorCode Step(TNMGRIT mg, const Level *L, PetscInt q, const PetscScalar *u, PetscScalar *out)
{
  PetscFunctionBegin;
  PetscCall(mg->app.step(mg->app.ctx, L->pos[L->lo + q - 1], L->pos[L->lo + q], u, out));
  if (L->g)
    for (PetscInt i = 0; i < mg->app.size; i++) out[i] += STATE(L, L->g, q)[i];
  PetscFunctionReturn(0);
}

/* The state at this rank's last point becomes the next rank's first. */
static PetscErrorCode Exchange(TNMGRIT mg, const Level *L, PetscScalar *u)
{
  const PetscMPIInt n = (PetscMPIInt)mg->app.size;
  MPI_Request       req = MPI_REQUEST_NULL;

  PetscFunctionBegin;
  if (mg->rank > 0) PetscCallMPI(MPI_Irecv(STATE(L, u, 0), n, MPIU_SCALAR, mg->rank - 1, 0, mg->comm, &req));
  if (mg->rank < mg->size - 1) PetscCallMPI(MPI_Send(STATE(L, u, L->hi - L->lo), n, MPIU_SCALAR, mg->rank + 1, 0, mg->comm));
  PetscCallMPI(MPI_Wait(&req, MPI_STATUS_IGNORE));
  PetscFunctionReturn(0);
}

/* Within each local interval of the next level: F-points from the C-point, and with c also the
   closing C-point. */
static PetscErrorCode Relax(TNMGRIT mg, PetscInt l, PetscScalar *u, PetscBool fpoints, PetscBool cpoints)
{
  const Level *L = &mg->lv[l], *C = &mg->lv[l + 1];
  const PetscInt nint = C->hi - C->lo;

  PetscFunctionBegin;
  for (PetscInt k = 0; k < nint; k++) {
    const PetscInt a = L->cidx[k], b = L->cidx[k + 1];
    if (fpoints)
      for (PetscInt q = a + 1; q < b; q++) PetscCall(Step(mg, L, q, STATE(L, u, q - 1), STATE(L, u, q)));
    if (cpoints) PetscCall(Step(mg, L, b, STATE(L, u, b - 1), STATE(L, u, b)));
  }
  if (cpoints) PetscCall(Exchange(mg, L, u));
  PetscFunctionReturn(0);
}

/* Fine steps in a closing sweep may be the last at their points (see TNMGRITApp). */
static PetscErrorCode Closing(TNMGRIT mg, PetscBool on)
{
  PetscFunctionBegin;
  if (mg->app.closing) PetscCall(mg->app.closing(mg->app.ctx, on));
  PetscFunctionReturn(0);
}

/* The coarsest level is solved exactly: a pipeline through the ranks. */
static PetscErrorCode SequentialLevel(TNMGRIT mg, PetscInt l, PetscScalar *u)
{
  const Level      *L = &mg->lv[l];
  const PetscMPIInt n = (PetscMPIInt)mg->app.size;

  PetscFunctionBegin;
  if (mg->rank > 0) PetscCallMPI(MPI_Recv(STATE(L, u, 0), n, MPIU_SCALAR, mg->rank - 1, 1, mg->comm, MPI_STATUS_IGNORE));
  for (PetscInt q = 1; q <= L->hi - L->lo; q++) PetscCall(Step(mg, L, q, STATE(L, u, q - 1), STATE(L, u, q)));
  if (mg->rank < mg->size - 1) PetscCallMPI(MPI_Send(STATE(L, u, L->hi - L->lo), n, MPIU_SCALAR, mg->rank + 1, 1, mg->comm));
  PetscFunctionReturn(0);
}

/* phi_P = Phi(u_{b-1}) (+ g) into each local C-point b of level l (the next level's point P),
   kept in the next level's g; with ss, the squared norm of the residuals phi_P - u_b. */
static PetscErrorCode CPointSteps(TNMGRIT mg, PetscInt l, const PetscScalar *u, PetscReal *ss)
{
  const Level   *L = &mg->lv[l], *C = &mg->lv[l + 1];
  const PetscInt size = mg->app.size;

  PetscFunctionBegin;
  if (ss) *ss = 0;
  for (PetscInt P = 1; P <= C->hi - C->lo; P++) {
    const PetscInt b   = L->cidx[P];
    PetscScalar   *phi = STATE(C, C->g, P);
    PetscCall(Step(mg, L, b, STATE(L, u, b - 1), phi));
    if (ss)
      for (PetscInt i = 0; i < size; i++) {
        const PetscScalar r = phi[i] - STATE(L, u, b)[i];
        *ss += PetscRealPart(r * PetscConj(r));
      }
  }
  PetscFunctionReturn(0);
}

/* C-relaxation with the steps CPointSteps left in the next level's g. */
static PetscErrorCode CRelaxFrom(TNMGRIT mg, PetscInt l, PetscScalar *u)
{
  const Level *L = &mg->lv[l], *C = &mg->lv[l + 1];

  PetscFunctionBegin;
  for (PetscInt P = 1; P <= C->hi - C->lo; P++) PetscCall(PetscArraycpy(STATE(L, u, L->cidx[P]), STATE(C, C->g, P), mg->app.size));
  PetscCall(Exchange(mg, L, u));
  PetscFunctionReturn(0);
}

static PetscErrorCode Cycle(TNMGRIT, PetscInt, PetscScalar *);

/* The FAS coarse-grid correction of level l, with CPointSteps' phi in the next level's g:
   v_P = u at C-point P, g_P = r_P + v_P - Phi_c(v_{P-1}) = phi_P - Phi_c(v_{P-1}); a V-cycle
   on the next level; u_P += w_P - v_P at every local C-point (the first one too: its coarse
   value arrived from the previous rank). The F-points are left to the caller's F-relaxation. */
static PetscErrorCode Correct(TNMGRIT mg, PetscInt l, PetscScalar *u)
{
  Level         *L = &mg->lv[l], *C = &mg->lv[l + 1];
  const PetscInt size = mg->app.size, nC = C->hi - C->lo;

  PetscFunctionBegin;
  for (PetscInt P = 0; P <= nC; P++) PetscCall(PetscArraycpy(STATE(C, C->v, P), STATE(L, u, L->cidx[P]), size));
  for (PetscInt P = 1; P <= nC; P++) {
    PetscScalar *g = STATE(C, C->g, P);
    PetscCall(mg->app.step(mg->app.ctx, C->pos[C->lo + P - 1], C->pos[C->lo + P], STATE(C, C->v, P - 1), mg->tmp));
    for (PetscInt i = 0; i < size; i++) g[i] -= mg->tmp[i];
  }
  PetscCall(PetscArraycpy(C->u, C->v, (nC + 1) * size));
  PetscCall(Cycle(mg, l + 1, C->u));
  for (PetscInt P = 0; P <= nC; P++) {
    PetscScalar *uf = STATE(L, u, L->cidx[P]);
    for (PetscInt i = 0; i < size; i++) uf[i] += STATE(C, C->u, P)[i] - STATE(C, C->v, P)[i];
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
  PetscCall(Relax(mg, l, u, PETSC_TRUE, PETSC_FALSE));
  PetscCall(Relax(mg, l, u, PETSC_FALSE, PETSC_TRUE));
  PetscCall(Relax(mg, l, u, PETSC_TRUE, PETSC_FALSE));
  PetscCall(CPointSteps(mg, l, u, NULL));
  PetscCall(Correct(mg, l, u));
  PetscCall(Relax(mg, l, u, PETSC_TRUE, PETSC_FALSE));
  PetscFunctionReturn(0);
}

/* The nested start (XBraid's skip): the coarsest level propagated from u_0 with no forcing,
   interpolated to each finer level by injection at its C-points and F-relaxation. It spends no
   relaxation on values that carry no information yet. */
static PetscErrorCode Nested(TNMGRIT mg, PetscInt l, PetscScalar *u)
{
  Level         *L = &mg->lv[l], *C;
  const PetscInt size = mg->app.size;

  PetscFunctionBegin;
  if (l == mg->nlv - 1) {
    PetscCall(SequentialLevel(mg, l, u));
    PetscFunctionReturn(0);
  }
  C = &mg->lv[l + 1];
  PetscCall(PetscArraycpy(C->u, STATE(L, u, 0), size));
  PetscCall(PetscArrayzero(C->g, (C->hi - C->lo + 1) * size));
  PetscCall(Nested(mg, l + 1, C->u));
  for (PetscInt P = 0; P <= C->hi - C->lo; P++) PetscCall(PetscArraycpy(STATE(L, u, L->cidx[P]), STATE(C, C->u, P), size));
  if (l == 0) PetscCall(Closing(mg, PETSC_TRUE));
  PetscCall(Relax(mg, l, u, PETSC_TRUE, PETSC_FALSE));
  PetscFunctionReturn(0);
}

/* The closing sweep of a fine-level iteration: F-relaxation (unless the nested start just did
   it) and the C-point residual norm. */
static PetscErrorCode CloseIteration(TNMGRIT mg, PetscScalar *u, PetscBool relax, PetscReal *res)
{
  PetscReal ss;

  PetscFunctionBegin;
  PetscCall(Closing(mg, PETSC_TRUE));
  if (relax) PetscCall(Relax(mg, 0, u, PETSC_TRUE, PETSC_FALSE));
  PetscCall(CPointSteps(mg, 0, u, &ss));
  PetscCall(Closing(mg, PETSC_FALSE));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &ss, 1, MPIU_REAL, MPI_SUM, mg->comm));
  *res = PetscSqrtReal(ss);
  PetscFunctionReturn(0);
}

PetscErrorCode TNMGRITSolve(TNMGRIT mg, const PetscScalar *u0, PetscScalar *u, PetscInt *its, PetscReal *residual)
{
  PetscReal res;
  PetscInt  it = 0;

  PetscFunctionBegin;
  PetscCall(TNMGRITSetUp(mg));
  if (!mg->rank) PetscCall(PetscArraycpy(u, u0, mg->app.size));
  mg->hist_n = 0;
  if (mg->nlv == 1) {
    PetscCall(Closing(mg, PETSC_TRUE));
    PetscCall(SequentialLevel(mg, 0, u));
    PetscCall(Closing(mg, PETSC_FALSE));
    *its      = 0;
    *residual = 0;
    PetscFunctionReturn(0);
  }
  PetscCall(TNEventsRegister());
  PetscCall(PetscLogEventBegin(TN_EVENT_MGRIT, 0, 0, 0, 0));
  if (mg->skip) {
    /* the nested start is the first iteration */
    PetscCall(Nested(mg, 0, u));
    PetscCall(CloseIteration(mg, u, PETSC_FALSE, &res));
    mg->hist[it++] = res;
  } else PetscCall(CloseIteration(mg, u, PETSC_TRUE, &res));
  PetscCall(PetscLogEventEnd(TN_EVENT_MGRIT, 0, 0, 0, 0));
  while (res > mg->tol && it < mg->max_it) {
    PetscCall(PetscLogEventBegin(TN_EVENT_MGRIT, 0, 0, 0, 0));
    PetscCall(CRelaxFrom(mg, 0, u));
    PetscCall(Relax(mg, 0, u, PETSC_TRUE, PETSC_FALSE));
    PetscCall(CPointSteps(mg, 0, u, NULL));
    PetscCall(Correct(mg, 0, u));
    PetscCall(CloseIteration(mg, u, PETSC_TRUE, &res));
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
    if (l > 0 && mg->setup) PetscCall(PetscFree3(mg->lv[l].u, mg->lv[l].v, mg->lv[l].g));
  }
  PetscCall(PetscFree(mg->lv));
  PetscCall(PetscFree(mg->tmp));
  PetscCall(PetscFree(mg->hist));
  PetscCall(PetscFree(mg));
  *mgp = NULL;
  PetscFunctionReturn(0);
}

PetscErrorCode TNMGRITSequential(const TNMGRITApp *app, PetscInt N, PetscScalar *u)
{
  PetscFunctionBegin;
  for (PetscInt p = 1; p <= N; p++) PetscCall(app->step(app->ctx, p - 1, p, u + (size_t)(p - 1) * app->size, u + (size_t)p * app->size));
  PetscFunctionReturn(0);
}
