/* Registration of the -log_view events named in events.h. */
#include "events.h"

PetscLogEvent TN_EVENT_FORWARD, TN_EVENT_BACKWARD, TN_EVENT_ALLREDUCE, TN_EVENT_UPDATE, TN_EVENT_IO;

PetscErrorCode TNEventsRegister(void)
{
  static PetscBool registered = PETSC_FALSE;
  PetscClassId id;

  PetscFunctionBegin;
  if (registered) PetscFunctionReturn(0);
  PetscCall(PetscClassIdRegister("thetanet", &id));
  PetscCall(PetscLogEventRegister("TNForward", id, &TN_EVENT_FORWARD));
  PetscCall(PetscLogEventRegister("TNBackward", id, &TN_EVENT_BACKWARD));
  PetscCall(PetscLogEventRegister("TNAllreduce", id, &TN_EVENT_ALLREDUCE));
  PetscCall(PetscLogEventRegister("TNUpdate", id, &TN_EVENT_UPDATE));
  PetscCall(PetscLogEventRegister("TNIO", id, &TN_EVENT_IO));
  registered = PETSC_TRUE;
  PetscFunctionReturn(0);
}
