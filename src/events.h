/* The network's and the trainer's -log_view events: where the time of a run goes, phase by phase
   (the block solver and MGRIT register their own). */
#ifndef THETANET_EVENTS_H
#define THETANET_EVENTS_H

#include <petsclog.h>

PETSC_EXTERN PetscLogEvent TN_EVENT_FORWARD, TN_EVENT_BACKWARD, TN_EVENT_ALLREDUCE, TN_EVENT_UPDATE, TN_EVENT_IO;

/* Registers the events once; later calls do nothing. */
PETSC_EXTERN PetscErrorCode TNEventsRegister(void);

#endif
