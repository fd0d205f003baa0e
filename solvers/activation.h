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
/* F[i] = s(z[i] + dz[i]) from F[i] = s(z[i]) when a small step makes that cheaper than s itself
   (tanh: the addition theorem, for |dz| <= 2^-8); returns PETSC_FALSE, writing nothing, where
   it does not apply, and the caller evaluates s. */
PETSC_EXTERN PetscBool TNActivateStep(TNActivation, PetscInt len, const float *dz, PetscScalar *F);
/* A Lipschitz constant of s: |s(a) - s(b)| <= L |a - b|. */
PETSC_EXTERN PetscReal TNActivationLipschitz(TNActivation);

#endif
