/* The process grid: two MPI_Comm_split of the world communicator (a zeroed grid destroys as
   nothing). */
#include "grid.h"

PetscErrorCode TNGridCreate(MPI_Comm world, PetscInt depth_ranks, PetscInt layers, TNGrid *g)
{
  PetscFunctionBegin;
  PetscCall(PetscMemzero(g, sizeof(*g)));
  g->world = world;
  g->data = g->depth = MPI_COMM_NULL;
  PetscCallMPI(MPI_Comm_size(world, &g->size));
  PetscCallMPI(MPI_Comm_rank(world, &g->rank));
  PetscCheck(depth_ranks >= 1, world, TN_ERR_USER, "-depth_ranks must be at least 1, got %" PetscInt_FMT, depth_ranks);
  PetscCheck(g->size % depth_ranks == 0, world, TN_ERR_USER,
             "-depth_ranks %" PetscInt_FMT " does not divide the %d ranks of the job", depth_ranks, g->size);
  PetscCheck(layers >= depth_ranks, world, TN_ERR_USER, "-depth_ranks %" PetscInt_FMT " exceeds -layers %" PetscInt_FMT,
             depth_ranks, layers);
  PetscCallMPI(MPI_Comm_split(world, g->rank % (PetscMPIInt)depth_ranks, g->rank, &g->data));
  PetscCallMPI(MPI_Comm_split(world, g->rank / (PetscMPIInt)depth_ranks, g->rank, &g->depth));
  /* names that keep their messages apart in a trace (-trace) */
  PetscCallMPI(MPI_Comm_set_name(g->data, "thetanet data"));
  PetscCallMPI(MPI_Comm_set_name(g->depth, "thetanet depth"));
  PetscCallMPI(MPI_Comm_size(g->data, &g->data_size));
  PetscCallMPI(MPI_Comm_rank(g->data, &g->data_rank));
  PetscCallMPI(MPI_Comm_size(g->depth, &g->depth_size));
  PetscCallMPI(MPI_Comm_rank(g->depth, &g->depth_rank));
  PetscFunctionReturn(0);
}

PetscErrorCode TNGridDestroy(TNGrid *g)
{
  PetscFunctionBegin;
  if (g->data && g->data != MPI_COMM_NULL) PetscCallMPI(MPI_Comm_free(&g->data));
  if (g->depth && g->depth != MPI_COMM_NULL) PetscCallMPI(MPI_Comm_free(&g->depth));
  PetscFunctionReturn(0);
}
