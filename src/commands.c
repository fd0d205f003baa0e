/* Command drivers: option reading, input checks that span files (a data set against a model),
   and what each command prints and writes: train, evaluate, predict, info, export. */
#include <string.h>
#include "commands.h"
#include "errors.h"
#include "evaluate.h"
#include "problems.h"
#include "trainer.h"
#include "blas.h"
#include <unistd.h>
#include <stdio.h>

/* Options nobody has read by the time the work starts are most likely misspelled: say so
   before hours of compute, not after. */
static PetscErrorCode WarnUnusedOptions(MPI_Comm comm, const char *cmd)
{
  PetscInt N;
  char **names, **values;

  PetscFunctionBegin;
  PetscCall(PetscOptionsLeftGet(NULL, &N, &names, &values));
  for (PetscInt i = 0; i < N; i++)
    PetscCall(PetscFPrintf(comm, PETSC_STDERR, "thetanet: warning: option -%s is not used by %s (misspelled?)\n",
                           names[i], cmd));
  PetscCall(PetscOptionsLeftRestore(NULL, &N, &names, &values));
  PetscFunctionReturn(0);
}

PetscErrorCode TNCommandTrain(MPI_Comm comm)
{
  TNTrainer t;
  PetscBool help;

  PetscFunctionBegin;
  PetscCall(PetscOptionsHasHelp(NULL, &help));
  PetscCall(TNTrainerCreate(comm, &t));
  PetscCall(TNTrainerSetFromOptions(t));
  /* with -help, setting up lists the options of every object made on the way, then it stops */
  PetscCall(TNTrainerSetUp(t));
  if (!help) {
    PetscCall(WarnUnusedOptions(comm, "train"));
    PetscCall(TNTrainerTrain(t));
  }
  PetscCall(TNTrainerDestroy(&t));
  PetscFunctionReturn(0);
}

/* The data set must fit the model: input dimension, task, labels below the number of classes,
   number of regression targets. */
static PetscErrorCode CheckDataAgainstModel(MPI_Comm comm, const char *data_path, const TNDatasetInfo *D,
                                            const char *model_path, const TNModelConfig *c)
{
  PetscFunctionBegin;
  PetscCheck(D->d == c->d, comm, TN_ERR_USER,
             "%s: input dimension %" PetscInt_FMT " but the model %s takes %" PetscInt_FMT, data_path, D->d, model_path,
             c->d);
  /* inputs alone (predict) need nothing more */
  if (!D->has_targets) PetscFunctionReturn(0);
  PetscCheck(D->task == c->task, comm, TN_ERR_USER, "%s: a %s data set but the model %s does %s", data_path,
             TNTasks[D->task], model_path, TNTasks[c->task]);
  if (D->task == TN_TASK_CLASSIFICATION)
    PetscCheck(D->m <= c->m, comm, TN_ERR_USER,
               "%s: label %" PetscInt_FMT " but the model %s has %" PetscInt_FMT " classes", data_path, D->m - 1,
               model_path, c->m);
  else
    PetscCheck(D->m == c->m, comm, TN_ERR_USER,
               "%s: %" PetscInt_FMT " targets per sample but the model %s has %" PetscInt_FMT " outputs", data_path,
               D->m, model_path, c->m);
  PetscFunctionReturn(0);
}

/* A gradient dump is a one-off computation that can afford tight solves: the blocks and the
   adjoints to 1e-12, where the command line says nothing else. Some solvers never read some of
   these (an exact pbjacobi adjoint has no tolerance; the fallback exists for Picard alone): the
   values inserted here are marked used (used = TRUE), so that they raise no warning. */
static const char *const TightOptions[][2] = {
    {"-block_atol", "1e-12"}, {"-adjoint_ksp_rtol", "1e-12"}, {"-adjoint_fallback_ksp_rtol", "1e-12"}};
#define TN_TIGHT (sizeof TightOptions / sizeof TightOptions[0])

static PetscErrorCode TightSolves(PetscBool inserted[TN_TIGHT], PetscBool used)
{
  PetscFunctionBegin;
  for (size_t i = 0; i < TN_TIGHT; i++) {
    PetscBool set;
    if (used) {
      if (inserted[i]) PetscCall(PetscOptionsHasName(NULL, NULL, TightOptions[i][0], &set));
      continue;
    }
    PetscCall(PetscOptionsHasName(NULL, NULL, TightOptions[i][0], &set));
    inserted[i] = set ? PETSC_FALSE : PETSC_TRUE;
    if (!set) PetscCall(PetscOptionsSetValue(NULL, TightOptions[i][0], TightOptions[i][1]));
  }
  PetscFunctionReturn(0);
}

/* Robustness to input noise: for each standard deviation, the accuracy (mean and sample standard
   deviation over the draws) and the mean loss of the data set with Gaussian noise added to its
   inputs; one line each on stdout, columns for /robustness. */
#define TN_NOISE_MAX 64
static const char *const RobustnessColumns[4] = {"noise_std", "accuracy_mean", "accuracy_std", "loss_mean"};

static PetscErrorCode Robustness(TNNetwork net, const TNGrid *grid, TNDataset D, PetscInt chunk, const char *data,
                                 PetscInt nstd, const PetscReal std[], PetscInt samples, PetscInt seed,
                                 PetscReal *col[4])
{
  PetscFunctionBegin;
  for (int k = 0; k < 4; k++) PetscCall(PetscMalloc1(nstd, &col[k]));
  for (PetscInt i = 0; i < nstd; i++) {
    PetscReal sum = 0, sum2 = 0, lsum = 0, t0 = MPI_Wtime();
    char level[32];
    /* without noise every draw is the same evaluation */
    const PetscInt draws = std[i] > 0 ? samples : 1;
    for (PetscInt k = 0; k < draws; k++) {
      const TNInputNoise noise = {std[i], seed, k};
      PetscReal loss, acc;
      char where[PETSC_MAX_PATH_LEN + 64];
      PetscCall(
          PetscSNPrintf(where, sizeof where, "%s with noise %g (draw %" PetscInt_FMT ")", data, (double)std[i], k));
      PetscCall(TNEvaluateDatasetNoisy(net, grid, D, chunk, where, &noise, &loss, &acc));
      sum += acc;
      sum2 += acc * acc;
      lsum += loss;
    }
    col[0][i] = std[i];
    col[1][i] = sum / draws;
    col[2][i] = draws > 1 ? PetscSqrtReal(PetscMax(0, (sum2 - sum * sum / draws) / (draws - 1))) : 0;
    col[3][i] = lsum / draws;
    snprintf(level, sizeof level, "%g", (double)std[i]);
    PetscCall(PetscPrintf(
        grid->world, "robustness %s: noise_std %s accuracy %.4f +- %.4f loss %.4f (%" PetscInt_FMT " draws, %.2f s)\n",
        data, level, (double)col[1][i], (double)col[2][i], (double)col[3][i], draws, MPI_Wtime() - t0));
  }
  PetscFunctionReturn(0);
}

PetscErrorCode TNCommandEvaluate(MPI_Comm comm, PetscBool predict)
{
  char model_path[PETSC_MAX_PATH_LEN] = "", data_path[PETSC_MAX_PATH_LEN] = "", output[PETSC_MAX_PATH_LEN] = "";
  PetscBool gradient = PETSC_FALSE, help, tight[TN_TIGHT];
  PetscReal noise_std[TN_NOISE_MAX], *robust[4] = {NULL, NULL, NULL, NULL};
  PetscInt nstd = 0, samples = 10, seed = 1;
  PetscInt chunk       = 1024;
  TNRegularization reg = {0, 0};
  TNModel M            = NULL;
  TNDataset D          = NULL;
  TNNetwork net        = NULL;
  TNGrid grid;
  PetscScalar *grad = NULL;
  PetscReal *pred   = NULL, loss, acc, R;
  const char *cmd   = predict ? "predict" : "evaluate";
  const TNModelConfig *c;
  TNDatasetInfo info;
  TNDataFormat format;
  PetscInt nparams;

  PetscFunctionBegin;
  TNErrorReadingOptions(PETSC_TRUE);
  PetscOptionsBegin(comm, NULL, predict ? "thetanet predict" : "thetanet evaluate", "thetanet");
  PetscCall(TNOptionsString("-model", "Model, checkpoint or results file holding /model (required)", "", model_path,
                            model_path, sizeof model_path, NULL));
  PetscCall(
      TNOptionsString("-data", "Data set (HDF5: /X, /Y) (required)", "", data_path, data_path, sizeof data_path, NULL));
  PetscCall(TNOptionsString("-output",
                            predict ? "Predictions file (required)" : "Evaluation file: /predictions, loss attributes",
                            "", output, output, sizeof output, NULL));
  if (!predict) {
    PetscCall(PetscOptionsBool("-gradient",
                               "Also write /gradient = dJ/dparameters over the whole data set, with the blocks and "
                               "adjoints solved to 1e-12 (unless -block_atol, -adjoint_ksp_rtol say otherwise)",
                               "", gradient, &gradient, NULL));
  }
  PetscCall(TNOptionsInt("-batch", "Samples propagated at once per rank", "", chunk, &chunk, NULL));
  if (!predict) {
    nstd = TN_NOISE_MAX;
    PetscCall(
        PetscOptionsRealArray("-noise_std",
                              "Also evaluate with Gaussian noise of these standard deviations added to the inputs "
                              "(comma-separated; written as /robustness)",
                              "", noise_std, &nstd, NULL));
    PetscCall(TNOptionsInt("-noise_samples", "Noise draws per standard deviation", "", samples, &samples, NULL));
    PetscCall(TNOptionsInt("-seed", "Seed of the noise draws", "", seed, &seed, NULL));
  }
  PetscOptionsEnd();
  if (!predict) PetscCall(TNRegularizationSetFromOptions(comm, &reg));
  TNDataFormatDefault(&format);
  if (model_path[0] && !access(model_path, R_OK)) {
    /* uint8 inputs are read as the model was trained on them, unless -scale_uint8 says otherwise */
    const char *const keys[] = {"scale_uint8"};
    char values[1][128];
    PetscCall(TNResultsConfigRead(comm, model_path, 1, keys, values));
    format.scale_uint8 = !strcmp(values[0], "true") ? PETSC_TRUE : PETSC_FALSE;
  }
  PetscCall(TNDataFormatSetFromOptions(comm, &format));
  format.targets_optional = predict;
  TNErrorReadingOptions(PETSC_FALSE);
  PetscCall(PetscOptionsHasHelp(NULL, &help));
  if (help) PetscFunctionReturn(0);
  PetscCheck(model_path[0], comm, TN_ERR_USER, "%s needs -model FILE", cmd);
  PetscCheck(data_path[0], comm, TN_ERR_USER, "%s needs -data FILE", cmd);
  PetscCheck(!predict || output[0], comm, TN_ERR_USER, "predict needs -output FILE");
  PetscCheck(chunk > 0, comm, TN_ERR_USER, "-batch must be positive, got %" PetscInt_FMT, chunk);
  PetscCheck(samples >= 1, comm, TN_ERR_USER, "-noise_samples must be at least 1, got %" PetscInt_FMT, samples);
  for (PetscInt i = 0; i < nstd; i++)
    PetscCheck(noise_std[i] >= 0 && PetscIsNormalReal(noise_std[i] + 1), comm, TN_ERR_USER,
               "-noise_std: %g is not a standard deviation", (double)noise_std[i]);
  if (output[0]) PetscCall(TNOutputPathCheck(comm, "-output", output));
  PetscCall(TNOutputNotInput(comm, "-output", output, "-model", model_path));
  PetscCall(TNOutputNotInput(comm, "-output", output, "-data", data_path));

  PetscCall(TNModelLoad(comm, model_path, &M));
  PetscCall(TNModelGetConfig(M, &c));
  PetscCall(TNModelGetParameters(M, &nparams, NULL));
  PetscCall(TNDatasetLoad(comm, data_path, &format, &D));
  PetscCall(TNDatasetGetInfo(D, &info));
  PetscCall(CheckDataAgainstModel(comm, data_path, &info, model_path, c));
  PetscCall(TNGridCreate(comm, 1, c->L, &grid));
  chunk = PetscMax(1, PetscMin(chunk, (info.N + grid.data_size - 1) / grid.data_size));
  if (gradient) PetscCall(TightSolves(tight, PETSC_FALSE));
  PetscCall(TNNetworkCreate(M, chunk, &net));
  PetscCall(TNNetworkSetFromOptions(net));
  PetscCall(TNNetworkSetUp(net));
  if (gradient) PetscCall(TightSolves(tight, PETSC_TRUE));
  PetscCall(WarnUnusedOptions(comm, cmd));
  if (gradient) PetscCall(PetscCalloc1(nparams, &grad));
  if (output[0]) PetscCall(PetscMalloc1(info.N * c->m, &pred));
  PetscCall(TNEvaluateDataset(net, &grid, D, chunk, data_path, &loss, &acc, grad, pred));
  PetscCall(TNModelRegularizer(M, reg.alpha, reg.beta, &R, grad));
  if (!predict) {
    PetscCall(PetscPrintf(comm, "evaluate %s: N %" PetscInt_FMT " loss %.6g", data_path, info.N, (double)loss));
    if (info.task == TN_TASK_CLASSIFICATION) PetscCall(PetscPrintf(comm, " accuracy %.6g", (double)acc));
    PetscCall(PetscPrintf(comm, " regularizer %.6g objective %.6g\n", (double)R, (double)(loss + R)));
  }
  if (nstd) PetscCall(Robustness(net, &grid, D, chunk, data_path, nstd, noise_std, samples, seed, robust));
  if (output[0]) {
    const char *names[3] = {"loss", "regularizer", "accuracy"};
    PetscReal values[3]  = {loss, R, acc};
    PetscInt nattr       = predict ? 0 : (info.task == TN_TASK_CLASSIFICATION ? 3 : 2);
    TNTable table        = {4, nstd, RobustnessColumns, NULL, robust};
    PetscCall(TNEvaluationWrite(comm, output, M, info.N, pred, grad, nattr, names, values, nstd ? &table : NULL));
    PetscCall(PetscPrintf(comm, "%s written to %s\n", predict ? "predictions" : "evaluation", output));
  }
  PetscCall(PetscFree(grad));
  PetscCall(PetscFree(pred));
  for (int k = 0; k < 4; k++) PetscCall(PetscFree(robust[k]));
  PetscCall(TNNetworkDestroy(&net));
  PetscCall(TNGridDestroy(&grid));
  PetscCall(TNDatasetDestroy(&D));
  PetscCall(TNModelDestroy(&M));
  PetscFunctionReturn(0);
}

PetscErrorCode TNCommandInfo(MPI_Comm comm)
{
  char path[PETSC_MAX_PATH_LEN] = "";
  TNModel M;
  const TNModelConfig *c;
  PetscBool help, sys = PETSC_FALSE;

  PetscFunctionBegin;
  TNErrorReadingOptions(PETSC_TRUE);
  PetscOptionsBegin(comm, NULL, "thetanet info", "thetanet");
  PetscCall(
      TNOptionsString("-model", "Model, checkpoint or results file holding /model", "", path, path, sizeof path, NULL));
  PetscCall(PetscOptionsBool("-system", "Print the machine: CPU, vector extensions, BLAS library and kernel", "", sys,
                             &sys, NULL));
  PetscOptionsEnd();
  TNErrorReadingOptions(PETSC_FALSE);
  PetscCall(PetscOptionsHasHelp(NULL, &help));
  if (help) PetscFunctionReturn(0);
  PetscCheck(path[0] || sys, comm, TN_ERR_USER, "info needs -model FILE or -system");
  PetscCall(WarnUnusedOptions(comm, "info"));
  if (sys) {
    TNBlasInfo b;
    char line[512];
    PetscMPIInt size;
    TNBlasGetInfo(&b);
    TNBlasDescribe(&b, line, sizeof line);
    PetscCallMPI(MPI_Comm_size(comm, &size));
    PetscCall(PetscPrintf(comm,
                          "system\n  cpu %s\n  vector_extensions %s\n  cores_online %ld\n  ranks %d\n  blas_library "
                          "%s\n  blas %s\n  blas_kernel %s\n  blas_kernel_for_cpu %s\n  blas_kernel_chosen_by %s\n",
                          b.cpu, b.flags, sysconf(_SC_NPROCESSORS_ONLN), size, b.library, line,
                          b.kernel[0] ? b.kernel : "-", b.best[0] ? b.best : "-",
                          b.origin == TN_BLAS_CHOSEN_BY_THETANET ? "thetanet"
                          : b.origin == TN_BLAS_CHOSEN_BY_USER   ? "OPENBLAS_CORETYPE"
                                                                 : "OpenBLAS"));
    if (!path[0]) PetscFunctionReturn(0);
  }
  PetscCall(TNModelLoad(comm, path, &M));
  PetscCall(TNModelGetConfig(M, &c));
  PetscCall(PetscPrintf(comm,
                        "model %s\n  task %s\n  input_dim %" PetscInt_FMT "\n  width %" PetscInt_FMT
                        "\n  layers %" PetscInt_FMT "\n  outputs %" PetscInt_FMT "\n",
                        path, TNTasks[c->task], c->d, c->n, c->L, c->m));
  PetscCall(PetscPrintf(comm,
                        "  theta %g\n  T %g\n  h %g\n  activation %s\n  opening_activation %s\n  antisymmetric %s\n  "
                        "gamma %g\n  parameters %" PetscInt_FMT "\n",
                        (double)c->theta, (double)c->T, (double)(c->T / c->L), TNActivations[c->act],
                        TNActivations[c->opening_act], c->antisymmetric ? "yes" : "no", (double)c->gamma,
                        TNParamCount(c)));
  {
    /* how a results file's model was trained: the depth solver and its MGRIT settings */
    const char *const keys[] = {
        "depth_solver",     "depth_ranks",        "data_ranks", "mgrit_cfactor", "mgrit_levels",
        "mgrit_max_it",     "mgrit_tol",          "mgrit_rtol", "mgrit_skip",    "mgrit_coarse_weights",
        "mgrit_coarse_its", "mgrit_exact_epochs", "validation", "best_epoch"};
    char values[sizeof keys / sizeof keys[0]][128];
    PetscCall(TNResultsConfigRead(comm, path, (PetscInt)(sizeof keys / sizeof keys[0]), keys, values));
    if (values[0][0]) PetscCall(PetscPrintf(comm, "trained with\n"));
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
      if (values[k][0]) PetscCall(PetscPrintf(comm, "  %s %s\n", keys[k], values[k]));
  }
  PetscCall(TNModelDestroy(&M));
  PetscFunctionReturn(0);
}

PetscErrorCode TNCommandExport(MPI_Comm comm)
{
  char train[PETSC_MAX_PATH_LEN] = "", val[PETSC_MAX_PATH_LEN] = "";
  TNProblem problem = TN_PROBLEM_SPIRALS;
  TNDataset D[2]    = {NULL, NULL};
  PetscBool help;

  PetscFunctionBegin;
  TNErrorReadingOptions(PETSC_TRUE);
  PetscOptionsBegin(comm, NULL, "thetanet export", "thetanet");
  PetscCall(TNOptionsEnum("-problem", "Embedded problem to write", "", TNProblems, (PetscEnum)problem,
                          (PetscEnum *)&problem, NULL));
  PetscCall(
      TNOptionsString("-train", "File for its training set (HDF5 data layout)", "", train, train, sizeof train, NULL));
  PetscCall(TNOptionsString("-val", "File for its validation set", "", val, val, sizeof val, NULL));
  PetscOptionsEnd();
  TNErrorReadingOptions(PETSC_FALSE);
  PetscCall(PetscOptionsHasHelp(NULL, &help));
  if (help) PetscFunctionReturn(0);
  PetscCheck(train[0] || val[0], comm, TN_ERR_USER, "export needs -train FILE or -val FILE (or both)");
  if (train[0]) PetscCall(TNOutputPathCheck(comm, "-train", train));
  if (val[0]) PetscCall(TNOutputPathCheck(comm, "-val", val));
  PetscCall(TNOutputNotInput(comm, "-val", val, "-train", train));
  PetscCall(WarnUnusedOptions(comm, "export"));
  PetscCall(TNProblemCreate(problem, &D[0], &D[1]));
  for (int k = 0; k < 2; k++) {
    const char *path = k ? val : train;
    if (!path[0]) continue;
    PetscCall(TNDatasetSave(comm, path, D[k]));
    PetscCall(PetscPrintf(comm, "%s %s set written to %s\n", TNProblems[problem], k ? "validation" : "training", path));
  }
  PetscCall(TNDatasetDestroy(&D[0]));
  PetscCall(TNDatasetDestroy(&D[1]));
  PetscFunctionReturn(0);
}

PetscErrorCode TNCommandRun(MPI_Comm comm, const char *cmd)
{
  PetscBool help, flg;

  PetscFunctionBegin;
  PetscCall(PetscOptionsHasHelp(NULL, &help));
  if (!cmd) {
    PetscCheck(help, comm, TN_ERR_USER,
               "no command given: use train, evaluate, predict, info or export (thetanet -help lists the options)");
    PetscCall(TNCommandTrain(comm));
    PetscCall(TNCommandEvaluate(comm, PETSC_FALSE));
    PetscCall(TNCommandInfo(comm));
    PetscCall(TNCommandExport(comm));
    PetscFunctionReturn(0);
  }
  PetscCall(PetscStrcmp(cmd, "train", &flg));
  if (flg)
    PetscCall(TNCommandTrain(comm));
  else {
    PetscBool evaluate, predict, info, export;
    PetscCall(PetscStrcmp(cmd, "evaluate", &evaluate));
    PetscCall(PetscStrcmp(cmd, "predict", &predict));
    PetscCall(PetscStrcmp(cmd, "info", &info));
    PetscCall(PetscStrcmp(cmd, "export", &export));
    PetscCheck(evaluate || predict || info || export, comm, TN_ERR_USER,
               "unknown command '%s': use train, evaluate, predict, info or export", cmd);
    if (info)
      PetscCall(TNCommandInfo(comm));
    else if (export)
      PetscCall(TNCommandExport(comm));
    else
      PetscCall(TNCommandEvaluate(comm, predict));
  }
  PetscFunctionReturn(0);
}
