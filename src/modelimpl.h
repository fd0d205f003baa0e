/* The model object's fields, for the files of src/ that propagate and train it (and the tests);
   everyone else goes through the accessors of thetanet.h. */
#ifndef THETANET_MODELIMPL_H
#define THETANET_MODELIMPL_H

#include "thetanet.h"

struct _n_TNModel {
  TNModelConfig cfg;   /* the whole network */
  PetscInt jlo, jhi;   /* the blocks held here: all of them, or a depth rank's share */
  MPI_Comm depth;      /* the ranks holding the other blocks (MPI_COMM_NULL: none) */
  PetscInt nparams;    /* parameters held here */
  PetscScalar *params; /* the nparams parameters: K kb W[jlo..jhi) b[jlo..jhi) C c */
  TNParams p;          /* views into params; p.W starts at block jlo */
};

#endif
