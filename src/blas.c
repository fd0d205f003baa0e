/* OpenBLAS kernel selection. OpenBLAS built with DYNAMIC_ARCH (Debian's) picks its kernel from
   the CPU's family and model; a virtual machine that hides them gets its oldest x86-64 kernel
   (Prescott, SSE3), several times slower at DGEMM than the AVX-512 or AVX2 kernels the CPU
   runs. The vector extensions themselves are visible (cpuid feature flags), so thetanet ranks
   the kernel in use against them and, when it is behind, restarts itself with OPENBLAS_CORETYPE
   naming the right class. The library is looked up at run time (dlsym): another BLAS works,
   untouched. */
#define _GNU_SOURCE
#include "blas.h"
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* The vector extensions a kernel class needs: 1 SSE3, 2 AVX, 3 AVX2 + FMA, 4 AVX-512. */
static const struct {
  const char *name;
  int level;
} Kernels[] = {{"SkylakeX", 4},    {"Cooperlake", 4}, {"SapphireRapids", 4}, {"Haswell", 3},     {"Zen", 3},
               {"Sandybridge", 2}, {"Bulldozer", 2},  {"Piledriver", 2},     {"Steamroller", 2}, {"Excavator", 2},
               {"Prescott", 1},    {"Core2", 1},      {"Penryn", 1},         {"Dunnington", 1},  {"Nehalem", 1},
               {"Atom", 1},        {"Barcelona", 1},  {"Opteron", 1},        {"Bobcat", 1},      {"Nano", 1}};

static int KernelLevel(const char *name)
{
  for (size_t i = 0; i < sizeof Kernels / sizeof Kernels[0]; i++)
    if (!strcasecmp(name, Kernels[i].name)) return Kernels[i].level;
  return 0; /* unknown: never replaced */
}

/* The newest class the CPU runs (the kernel named is the one OpenBLAS has for it). */
static const char *BestKernel(int *level)
{
  *level = 0;
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl"))
    return *level = 4, "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return *level = 3, "Haswell";
  if (__builtin_cpu_supports("avx")) return *level = 2, "Sandybridge";
  if (__builtin_cpu_supports("sse3")) return *level = 1, "Prescott";
#endif
  return NULL;
}

static const char *CoreName(void)
{
  char *(*corename)(void) = (char *(*)(void))dlsym(RTLD_DEFAULT, "openblas_get_corename");
  return corename ? corename() : NULL;
}

void TNBlasSelectKernel(char **argv)
{
  const char *keep = getenv("THETANET_BLAS_KERNEL"), *now, *best;
  int level;

  if (getenv("OPENBLAS_CORETYPE") || getenv("THETANET_BLAS_DISPATCHED")) return;
  if (keep && !strcmp(keep, "keep")) return;
  /* THETANET_BLAS_ASSUME_DISPATCH=NAME stands for OpenBLAS's choice, to exercise the restart on
     a machine where OpenBLAS dispatches right (tests) */
  now = getenv("THETANET_BLAS_ASSUME_DISPATCH") && CoreName() ? getenv("THETANET_BLAS_ASSUME_DISPATCH") : CoreName();
  if (!now || !(best = BestKernel(&level))) return;
  if (!KernelLevel(now) || KernelLevel(now) >= level) return;
  /* remember what OpenBLAS chose (for the header line), then start again with the better kernel */
  setenv("THETANET_BLAS_DISPATCHED", now, 1);
  setenv("OPENBLAS_CORETYPE", best, 1);
  execv("/proc/self/exe", argv);
  /* could not: go on with the kernel OpenBLAS chose */
  unsetenv("OPENBLAS_CORETYPE");
}

/* The "model name" of /proc/cpuinfo, and the vector extensions of its flags. */
static void CPUDescribe(TNBlasInfo *info)
{
  /* as /proc/cpuinfo names them (Linux calls SSE3 "pni"), and as printed */
  static const struct {
    const char *flag, *name;
  } wanted[] = {{"pni", "sse3"},          {"avx", "avx"},           {"fma", "fma"},
                {"avx2", "avx2"},         {"avx512f", "avx512f"},   {"avx512dq", "avx512dq"},
                {"avx512bw", "avx512bw"}, {"avx512vl", "avx512vl"}, {"avx512_bf16", "avx512_bf16"}};
  char line[8192];
  FILE *f   = fopen("/proc/cpuinfo", "r");
  int model = 0, flags = 0;

  snprintf(info->cpu, sizeof info->cpu, "unknown");
  info->flags[0] = 0;
  if (!f) return;
  while ((!model || !flags) && fgets(line, sizeof line, f)) {
    char *colon = strchr(line, ':');
    if (!colon) continue;
    if (!model && !strncmp(line, "model name", 10)) {
      snprintf(info->cpu, sizeof info->cpu, "%s", colon + 2);
      info->cpu[strcspn(info->cpu, "\n")] = 0;
      model                               = 1;
    } else if (!flags && !strncmp(line, "flags", 5)) {
      /* the line ends in a space, so that the last flag matches " flag " too */
      const size_t end = strcspn(line, "\n");
      if (end + 1 < sizeof line) {
        line[end]     = ' ';
        line[end + 1] = 0;
      }
      for (size_t i = 0; i < sizeof wanted / sizeof wanted[0]; i++) {
        char word[32];
        snprintf(word, sizeof word, " %s ", wanted[i].flag);
        if (strstr(colon, word)) {
          size_t used = strlen(info->flags);
          snprintf(info->flags + used, sizeof info->flags - used, "%s%s", used ? " " : "", wanted[i].name);
        }
      }
      flags = 1;
    }
  }
  fclose(f);
}

void TNBlasGetInfo(TNBlasInfo *info)
{
  extern void dgemm_(void);
  char *(*config)(void) = (char *(*)(void))dlsym(RTLD_DEFAULT, "openblas_get_config");
  const char *core = CoreName(), *best, *dispatched = getenv("THETANET_BLAS_DISPATCHED");
  Dl_info dl;
  int level;

  memset(info, 0, sizeof *info);
  snprintf(info->library, sizeof info->library, "%s",
           dladdr((void *)dgemm_, &dl) && dl.dli_fname ? dl.dli_fname : "unknown");
  if (config) snprintf(info->config, sizeof info->config, "%s", config());
  if (core) snprintf(info->kernel, sizeof info->kernel, "%s", core);
  if ((best = BestKernel(&level))) snprintf(info->best, sizeof info->best, "%s", best);
  CPUDescribe(info);
  if (dispatched && getenv("OPENBLAS_CORETYPE")) {
    info->origin = TN_BLAS_CHOSEN_BY_THETANET;
    snprintf(info->dispatched, sizeof info->dispatched, "%s", dispatched);
  } else if (getenv("OPENBLAS_CORETYPE"))
    info->origin = TN_BLAS_CHOSEN_BY_USER;
}

void TNBlasDescribe(const TNBlasInfo *info, char *line, size_t len)
{
  if (!info->kernel[0]) {
    snprintf(line, len, "%s (not OpenBLAS: its kernel is its own)", info->library);
    return;
  }
  if (info->origin == TN_BLAS_CHOSEN_BY_THETANET)
    snprintf(line, len, "%s, kernel %s (set by thetanet: OpenBLAS chose %s for this CPU)", info->config, info->kernel,
             info->dispatched);
  else if (info->origin == TN_BLAS_CHOSEN_BY_USER)
    snprintf(line, len, "%s, kernel %s (OPENBLAS_CORETYPE=%s)", info->config, info->kernel,
             getenv("OPENBLAS_CORETYPE"));
  else
    snprintf(line, len, "%s, kernel %s%s", info->config, info->kernel,
             info->best[0] && KernelLevel(info->kernel) && KernelLevel(info->kernel) < KernelLevel(info->best)
                 ? " (older than the CPU runs)"
                 : "");
}
