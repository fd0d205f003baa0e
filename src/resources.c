/* The node's memory: the smaller of its physical memory and a cgroup limit (a container's or a
   batch job's), shared by the ranks that MPI_COMM_TYPE_SHARED puts on the node. */
#include "resources.h"
#include <stdio.h>
#include <unistd.h>

static PetscReal NodeMemory(void)
{
  PetscReal total = (PetscReal)sysconf(_SC_PHYS_PAGES) * (PetscReal)sysconf(_SC_PAGESIZE);
  FILE *f         = fopen("/sys/fs/cgroup/memory.max", "r");
  double limit;

  if (!f) f = fopen("/sys/fs/cgroup/memory/memory.limit_in_bytes", "r");
  if (f) {
    if (fscanf(f, "%lf", &limit) == 1 && limit > 0 && limit < total) total = limit;
    fclose(f);
  }
  return total;
}

PetscErrorCode TNNodeMemory(MPI_Comm comm, PetscReal max_memory_gb, PetscReal *bytes, PetscMPIInt *ranks)
{
  MPI_Comm node;
  PetscReal have;

  PetscFunctionBegin;
  PetscCallMPI(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
  PetscCallMPI(MPI_Comm_size(node, ranks));
  PetscCallMPI(MPI_Comm_free(&node));
  have = max_memory_gb > 0 ? max_memory_gb * 1e9 : NodeMemory();
  /* the smallest node, the most ranks on one: for a decision every rank takes alike */
  PetscCallMPI(MPI_Allreduce(&have, bytes, 1, MPIU_REAL, MPI_MIN, comm));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, ranks, 1, MPI_INT, MPI_MAX, comm));
  PetscFunctionReturn(0);
}

PetscErrorCode TNMemoryCheck(MPI_Comm comm, PetscReal bytes, PetscReal max_memory_gb, const char *what)
{
  MPI_Comm node;
  PetscReal need = bytes, have, ratio;

  PetscFunctionBegin;
  PetscCallMPI(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &need, 1, MPIU_REAL, MPI_SUM, node));
  PetscCallMPI(MPI_Comm_free(&node));
  have  = max_memory_gb > 0 ? max_memory_gb * 1e9 : NodeMemory();
  ratio = need / have;
  /* the fullest node speaks for all */
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &ratio, 1, MPIU_REAL, MPI_MAX, comm));
  PetscCheck(ratio <= 1, comm, TN_ERR_USER,
             "%s needs about %.3g GB of memory on a node, more than the %.3g GB it has%s: use fewer or narrower "
             "layers, more nodes, -memory reversible or "
             "checkpoint, or a smaller -batch",
             what, ratio * have / 1e9, have / 1e9, max_memory_gb > 0 ? " (-max_memory)" : "");
  PetscFunctionReturn(0);
}
