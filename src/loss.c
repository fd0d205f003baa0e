/* The data loss of DESIGN.md §1 on the closing layer's outputs: softmax cross-entropy for
   classification, squared error for regression, and its derivative. */
#include "network.h"

void TNLossEvaluate(TNTask task, PetscInt B, PetscInt m, const PetscReal *out, const PetscInt *labels,
                    const PetscReal *targets, PetscReal scale, PetscReal *loss_sum, PetscInt *correct, PetscReal *dout)
{
  PetscReal loss = 0;
  PetscInt right = 0;

  for (PetscInt s = 0; s < B; s++) {
    const PetscReal *z = out + s * m;
    if (task == TN_TASK_CLASSIFICATION) {
      /* softmax cross-entropy: log sum exp(z) - z_label, shifted by max z against overflow */
      PetscInt arg   = 0;
      PetscReal zmax = z[0], sum = 0;
      for (PetscInt k = 1; k < m; k++)
        if (z[k] > zmax) zmax = z[k], arg = k;
      for (PetscInt k = 0; k < m; k++) sum += PetscExpReal(z[k] - zmax);
      loss += PetscLogReal(sum) + zmax - z[labels[s]];
      right += arg == labels[s];
      if (dout)
        for (PetscInt k = 0; k < m; k++) dout[s * m + k] = scale * (PetscExpReal(z[k] - zmax) / sum - (k == labels[s]));
    } else {
      for (PetscInt k = 0; k < m; k++) {
        const PetscReal e = z[k] - targets[s * m + k];
        loss += e * e;
        if (dout) dout[s * m + k] = scale * 2 * e;
      }
    }
  }
  *loss_sum = loss;
  *correct  = right;
}
