/* Time-independent traces of a run for SimGrid's SMPI replay (-trace DIR): the MPI calls are
   interposed (trace.c); DIR/rankR.trace holds rank R's lines and DIR/ranks.list the files in
   rank order, the list smpirun -replay reads. */
#ifndef THETANET_TRACE_H
#define THETANET_TRACE_H

#include <mpi.h>

/* Opens this rank's trace in dir (collective over MPI_COMM_WORLD) with compute bursts of CPU
   seconds times speed flops; nonzero when a file cannot be written. */
int TNTraceOpen(const char *dir, double speed);
/* Starts (on) or pauses (off) recording: only what runs while recording is in the trace. */
void TNTraceRecord(int on);
/* Writes the last line and closes the trace; lines: how many it has; own: the CPU seconds the
   tracer's own code took while recording (its cost to the run, the MPI calls themselves
   excluded); recorded: the CPU seconds of the thread while recording. */
int TNTraceClose(long *lines, double *own, double *recorded);

#endif
