/* What a node offers a run: its memory and how many ranks share it; a run that would need more
   memory than that is refused before it allocates (exit status 2, with the estimate). */
#ifndef THETANET_RESOURCES_H
#define THETANET_RESOURCES_H

#include "thetanet.h"

/* Collective on comm: every rank's estimate (bytes) summed over the ranks of each node must fit
   the node's memory: -max_memory GB when given (> 0), else its physical memory or cgroup limit.
   what says what was estimated, for the message. */
/* Collective: the memory of the smallest node (-max_memory GB when given) and the most ranks any
   node holds. */
PETSC_EXTERN PetscErrorCode TNNodeMemory(MPI_Comm comm, PetscReal max_memory_gb, PetscReal *bytes, PetscMPIInt *ranks);
PETSC_EXTERN PetscErrorCode TNMemoryCheck(MPI_Comm comm, PetscReal bytes, PetscReal max_memory_gb, const char *what);

#endif
