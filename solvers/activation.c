/* Batched activations. glibc's scalar tanh costs ~10 ns a call; here exp is evaluated with a
   branch-free range reduction and polynomial that the compiler turns into SIMD code. */
#include "activation.h"
#include <math.h>
#include <stdint.h>
#include <string.h>

/* exp(x) = 2^k exp(r), x = k ln2 + r, |r| <= ln2/2; degree-13 Taylor polynomial on r gives
   full double precision. 2^k is built in the exponent bits; t = x log2(e) + 1.5*2^52 leaves
   k in the low mantissa bits of t. */
static inline double ExpVec(double x)
{
  const double shifter = 0x1.8p52, ln2_hi = 0x1.62e42fefa3800p-1, ln2_lo = 0x1.ef35793c76730p-45;
  const uint64_t shifter_bits = 0x4338000000000000ULL;
  double t, k, r, p;
  uint64_t tb, sb;

  x = x < -708.0 ? -708.0 : (x > 708.0 ? 708.0 : x);
  t = x * 1.4426950408889634 + shifter;
  k = t - shifter;
  r = (x - k * ln2_hi) - k * ln2_lo;
  /* Estrin's scheme: a short dependency chain keeps the SIMD units busy */
  {
    const double r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;
    const double p01 = 1.0 + r, p23 = 0.5 + r * (1.0 / 6), p45 = 1.0 / 24 + r * (1.0 / 120),
                 p67 = 1.0 / 720 + r * (1.0 / 5040);
    const double p89 = 1.0 / 40320 + r * (1.0 / 362880), pab = 1.0 / 3628800 + r * (1.0 / 39916800);
    const double pcd = 1.0 / 479001600 + r * (1.0 / 6227020800.0);
    p                = (p01 + r2 * p23) + r4 * (p45 + r2 * p67) + r8 * ((p89 + r2 * pab) + r4 * pcd);
  }
  memcpy(&tb, &t, sizeof tb);
  sb = (tb - shifter_bits + 1023) << 52;
  memcpy(&t, &sb, sizeof t);
  return p * t;
}

void TNActivate(TNActivation act, PetscInt len, const PetscScalar *z, PetscScalar *out)
{
  switch (act) {
  case TN_ACT_NONE:
    if (out != z) memcpy(out, z, (size_t)len * sizeof(*out));
    break;
  case TN_ACT_TANH:
    for (PetscInt i = 0; i < len; i++) {
      /* tanh(x) = 1 - 2/(e^{2x}+1); beyond |x| = 20 it is 1 to double precision */
      double x = z[i] < -20.0 ? -20.0 : (z[i] > 20.0 ? 20.0 : z[i]);
      out[i]   = 1.0 - 2.0 / (ExpVec(2.0 * x) + 1.0);
    }
    break;
  case TN_ACT_RELU:
    for (PetscInt i = 0; i < len; i++) out[i] = z[i] > 0 ? z[i] : 0.0;
    break;
  case TN_ACT_SIGMOID:
    for (PetscInt i = 0; i < len; i++) out[i] = 1.0 / (1.0 + ExpVec(-z[i]));
    break;
  case TN_ACT_SOFTPLUS:
    /* log(1 + e^z) = max(z, 0) + log1p(e^{-|z|}), without overflow */
    for (PetscInt i = 0; i < len; i++) out[i] = (z[i] > 0 ? z[i] : 0.0) + log1p(ExpVec(-fabs(z[i])));
    break;
  }
}

void TNActivationDerivative(TNActivation act, PetscInt len, const PetscScalar *F, PetscScalar *ds)
{
  switch (act) {
  case TN_ACT_NONE:
    for (PetscInt i = 0; i < len; i++) ds[i] = 1.0;
    break;
  case TN_ACT_TANH:
    for (PetscInt i = 0; i < len; i++) ds[i] = 1.0 - F[i] * F[i];
    break;
  case TN_ACT_RELU:
    for (PetscInt i = 0; i < len; i++) ds[i] = F[i] > 0 ? 1.0 : 0.0;
    break;
  case TN_ACT_SIGMOID:
    for (PetscInt i = 0; i < len; i++) ds[i] = F[i] * (1.0 - F[i]);
    break;
  case TN_ACT_SOFTPLUS:
    /* s' = sigmoid(z) = 1 - e^{-s(z)} */
    for (PetscInt i = 0; i < len; i++) ds[i] = -expm1(-F[i]);
    break;
  }
}

/* tanh(z + d) = (F + t) / (1 + F t) with F = tanh(z), t = tanh(d) = d - d^3/3 + 2d^5/15 - 17d^7/315
   (the next term, 62d^9/2835, is below 2^-60 |t| for |d| <= 2^-8) and 1/(1 + u), u = F t,
   |u| <= |t| < 2^-7, as the geometric series to u^7 (the remainder is below 2^-56): no division
   and no exponential, a few ulps from tanh(z + d). */
PetscBool TNActivateStep(TNActivation act, PetscInt len, const float *dz, PetscScalar *F)
{
  float big = 0;

  if (act != TN_ACT_TANH) return PETSC_FALSE;
#pragma omp simd reduction(max : big)
  for (PetscInt i = 0; i < len; i++) big = fabsf(dz[i]) > big ? fabsf(dz[i]) : big;
  if (!(big <= 0x1p-8f)) return PETSC_FALSE;
#pragma omp simd
  for (PetscInt i = 0; i < len; i++) {
    const double d = dz[i], d2 = d * d;
    const double t = d * (1.0 + d2 * (-1.0 / 3 + d2 * (2.0 / 15 + d2 * (-17.0 / 315))));
    const double u = F[i] * t;
    const double q = 1.0 - u * (1.0 - u * (1.0 - u * (1.0 - u * (1.0 - u * (1.0 - u * (1.0 - u))))));
    F[i]           = (F[i] + t) * q;
  }
  return PETSC_TRUE;
}

PetscReal TNActivationLipschitz(TNActivation act)
{
  return act == TN_ACT_SIGMOID ? 0.25 : 1.0; /* tanh, relu, softplus and the identity: 1 */
}
