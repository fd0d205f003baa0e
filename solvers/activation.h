/* Activation functions s of the blocks and the opening layer, applied to whole batches.
   Vectorisable: on a wide layer the activation must not cost more than the GEMM before it. */
#ifndef THETANET_ACTIVATION_H
#define THETANET_ACTIVATION_H

#include "thetanet.h"

/* out[i] = s(z[i]); out may alias z. */
PETSC_EXTERN void TNActivate(TNActivation, PetscInt len, const PetscScalar *z, PetscScalar *out);
/* ds[i] = s'(z[i]) computed from F[i] = s(z[i]) (every activation here has s' as a function of
   s), so a stored F_j(y) is all the backward pass needs; ds may alias F. */
PETSC_EXTERN void TNActivationDerivative(TNActivation, PetscInt len, const PetscScalar *F, PetscScalar *ds);

#endif
