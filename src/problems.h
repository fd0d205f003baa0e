/* The embedded problems: two spirals (the paper's Example 2), sine regression (Example 1) and
   the peaks function binned into five classes. Generated identically on every rank. */
#ifndef THETANET_PROBLEMS_H
#define THETANET_PROBLEMS_H

#include "tnio.h"

typedef enum { TN_PROBLEM_SPIRALS, TN_PROBLEM_SINE, TN_PROBLEM_PEAKS } TNProblem;
PETSC_EXTERN const char *const TNProblems[];

PETSC_EXTERN PetscErrorCode TNProblemCreate(TNProblem, TNDataset *train, TNDataset *val);

#endif
