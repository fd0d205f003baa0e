/* The BLAS behind thetanet's GEMMs: which library and, for OpenBLAS, which kernel it runs; and
   the choice of a better kernel when OpenBLAS's own dispatch falls short of the CPU (a virtual
   machine that hides the CPU model makes it fall back to its oldest x86-64 kernel). */
#ifndef THETANET_BLAS_H
#define THETANET_BLAS_H

#include <petscsys.h>

typedef enum {
  TN_BLAS_CHOSEN_BY_OPENBLAS, /* OpenBLAS's dispatch, left as it was */
  TN_BLAS_CHOSEN_BY_USER,     /* OPENBLAS_CORETYPE set before thetanet started */
  TN_BLAS_CHOSEN_BY_THETANET  /* thetanet set OPENBLAS_CORETYPE and restarted itself */
} TNBlasOrigin;

typedef struct {
  char library[PETSC_MAX_PATH_LEN]; /* the shared object that provides dgemm_ */
  char config[160];                 /* openblas_get_config(); "" for another BLAS */
  char kernel[64];                  /* openblas_get_corename(); "" for another BLAS */
  char dispatched[64];              /* the kernel OpenBLAS chose, when thetanet replaced it */
  char best[32];                    /* the newest kernel class this CPU runs ("" unknown) */
  char cpu[160];                    /* the CPU's model name */
  char flags[160];                  /* its vector extensions */
  TNBlasOrigin origin;
} TNBlasInfo;

/* Before MPI_Init: when OpenBLAS runs a kernel older than the CPU supports and neither
   OPENBLAS_CORETYPE nor THETANET_BLAS_KERNEL=keep is set, set OPENBLAS_CORETYPE to the CPU's
   kernel class and re-execute the program once (same arguments, same process). Returns only
   when nothing is to be done or the re-execution failed. THETANET_BLAS_ASSUME_DISPATCH=NAME
   takes NAME for OpenBLAS's choice (to test the restart where OpenBLAS chooses right). */
void TNBlasSelectKernel(char **argv);
void TNBlasGetInfo(TNBlasInfo *);
/* One line: "OpenBLAS 0.3.21 ... kernel SkylakeX (set by thetanet; OpenBLAS chose Prescott)". */
void TNBlasDescribe(const TNBlasInfo *, char *line, size_t len);

#endif
