/* The process grid P = depth_ranks x data_ranks (DESIGN.md §2): ranks r and r + depth_ranks
   share a depth position; the data communicator joins the ranks of one depth position, the
   depth communicator the ranks of one data slice. */
#ifndef THETANET_GRID_H
#define THETANET_GRID_H

#include "thetanet.h"

typedef struct {
  MPI_Comm world, data, depth;
  PetscMPIInt size, rank, data_size, data_rank, depth_size, depth_rank;
} TNGrid;

/* TN_ERR_USER unless depth_ranks divides the ranks and does not exceed the layers. */
PETSC_EXTERN PetscErrorCode TNGridCreate(MPI_Comm, PetscInt depth_ranks, PetscInt layers, TNGrid *);
PETSC_EXTERN PetscErrorCode TNGridDestroy(TNGrid *);

#endif
