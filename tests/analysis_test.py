#!/usr/bin/env python3
"""Tests of the job scripts in jobs/: each analysis script draws a picture from a tiny run (the
PNG exists, has a sane size and is not blank), the scaling study writes one row per run and a
column per summary field, and every example options file trains.

usage: analysis_test.py CASE --thetanet PATH --mpiexec "mpiexec --oversubscribe ..."
"""
import glob
import os
import subprocess
import sys

import harness
import h5py
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ANALYSIS = os.path.join(ROOT, "jobs", "analysis")
STUDY = os.path.join(ROOT, "jobs", "scaling", "study")
SUMMARY_KEYS = ("ranks depth_ranks data_ranks layers width theta epochs wall_s epoch_s samples_per_s train_loss "
                "val_loss val_accuracy newton_its krylov_its mgrit_its peak_rss_mb").split()
TINY = ["-epochs", "3", "-width", "4", "-layers", "2", "-T", "1"]
ARGS = None


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def environment():
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", MPLBACKEND="Agg")
    if os.geteuid() == 0:
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    return env


def script(path, *args, expect=0):
    """Run a job script with this Python; return (status, stdout, stderr)."""
    p = subprocess.run([sys.executable, path] + [str(a) for a in args], capture_output=True, text=True,
                       timeout=600, env=environment())
    if expect is not None:
        check(p.returncode == expect, f"{os.path.basename(path)} {' '.join(map(str, args))}: exit status "
                                      f"{p.returncode}, expected {expect}\n{p.stdout}\n{p.stderr}")
    return p.returncode, p.stdout, p.stderr


def train(tmp, name, extra):
    """thetanet train EXTRA -output TMP/NAME.h5; it must succeed without an unused-option warning
    (a misspelled option only warns)."""
    out = os.path.join(tmp, name + ".h5")
    p = subprocess.run([ARGS.thetanet, "train", "-output", out] + extra, capture_output=True, text=True,
                       timeout=600, env=environment())
    check(p.returncode == 0, f"train {' '.join(extra)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    check("is not used" not in p.stderr, f"train {' '.join(extra)}: an option is not used:\n{p.stderr}")
    return out


def check_png(path, min_side=200):
    """The picture exists, has a sane size and is not blank."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.image as mpimg
    check(os.path.isfile(path), f"{path} was not written")
    size = os.path.getsize(path)
    check(5_000 < size < 5_000_000, f"{path}: {size} bytes")
    img = mpimg.imread(path)
    check(img.ndim == 3 and min(img.shape[:2]) >= min_side, f"{path}: image of shape {img.shape}")
    std = float(np.std(img[..., :3]))
    check(std > 0.01, f"{path} is blank (pixel standard deviation {std:.3g})")
    print(f"ok: {os.path.basename(path)} {img.shape[1]}x{img.shape[0]}, {size} bytes, pixel std {std:.3f}")


# ---- cases -------------------------------------------------------------------------------

def case_history(tmp):
    """plot_history.py on two runs (classification) and one regression run."""
    a = train(tmp, "a", ["-problem", "spirals", "-theta", "0"] + TINY)
    b = train(tmp, "b", ["-problem", "spirals", "-theta", "0.5"] + TINY)
    c = train(tmp, "c", ["-problem", "sine"] + TINY)
    png = os.path.join(tmp, "history.png")
    _, so, _ = script(os.path.join(ANALYSIS, "plot_history.py"), a, b, c, "-o", png)
    check("ResNet (theta 0)" in so and "trapezoidal (theta 0.5)" in so, f"run labels:\n{so}")
    check_png(png)
    _, _, se = script(os.path.join(ANALYSIS, "plot_history.py"), a, "-o", os.path.join(tmp, "no", "dir.png"), expect=1)
    check("no directory" in se, f"a missing output directory is reported:\n{se}")


def case_decision(tmp):
    """plot_decision.py: regions of a 2-D classifier (via thetanet predict) and a 1-D fit."""
    a = train(tmp, "spirals", ["-problem", "spirals"] + TINY)
    b = train(tmp, "sine", ["-problem", "sine"] + TINY)
    png = os.path.join(tmp, "decision.png")
    script(os.path.join(ANALYSIS, "plot_decision.py"), a, "-o", png, "--resolution", "40",
           "--thetanet", ARGS.thetanet)
    check_png(png)
    png = os.path.join(tmp, "fit.png")
    script(os.path.join(ANALYSIS, "plot_decision.py"), b, "-o", png, "--resolution", "50",
           "--thetanet", ARGS.thetanet, "--options=-block_atol 1e-8")
    check_png(png)
    # the embedded problems as `thetanet export` writes them (read by the module) are the sets
    # that training validates on (an explicit network, so that the losses agree to rounding, not
    # to a solver tolerance)
    sys.path.insert(0, ANALYSIS)
    import thetanet_results as tr
    for problem in tr.PROBLEMS:
        model = train(tmp, "explicit_" + problem, ["-problem", problem, "-theta", "0"] + TINY)
        X, Y = tr.problem(problem, thetanet=ARGS.thetanet)["val"]
        e = tr.evaluate(model, X, Y, thetanet=ARGS.thetanet)
        with h5py.File(model, "r") as f:
            val_loss = f["history/val_loss"][-1]
        check(abs(e["loss"] - val_loss) <= 1e-12 * abs(val_loss), f"exported {problem}: loss {e['loss']} != {val_loss}")
        print(f"ok: exported {problem} validation set: loss {e['loss']:.12g} = {val_loss:.12g}")


def case_stability(tmp):
    """plot_stability.py: the portraits, and the radii that make Figure 2's point."""
    png = os.path.join(tmp, "stability.png")
    _, so, _ = script(os.path.join(ANALYSIS, "plot_stability.py"), "-o", png)
    check_png(png)
    radius = {}
    for line in so.splitlines():
        if "|y| after" in line:
            radius[line.split("|y|")[0].strip()] = float(line.rsplit(":", 1)[1])
    print(radius)
    fe = [v for k, v in radius.items() if k.startswith("forward Euler")][0]
    be = [v for k, v in radius.items() if k.startswith("backward Euler")][0]
    tz = [v for k, v in radius.items() if k.startswith("trapezoidal")][0]
    check(fe > 2 and be < 0.5 and abs(tz - 1) < 1e-6, f"forward Euler {fe}, backward Euler {be}, trapezoidal {tz}")


def study(tmp, name, ranks, axis, extra=(), expect=0):
    out = os.path.join(tmp, name + ".h5")
    status, so, se = script(STUDY, "--ranks", ranks, "--axis", axis, "--out", out, "--thetanet", ARGS.thetanet,
                            "--mpiexec", ARGS.mpiexec, *extra, "--", "-problem", "spirals", *TINY, expect=expect)
    return out, status, so, se


def case_study(tmp):
    """jobs/scaling/study --ranks 1,2: one row per run, a column per summary field and per
    /timing phase, speed-up 1 for the first run; then plot_scaling.py."""
    out, _, so, _ = study(tmp, "data", "1,2", "data")
    print(so)
    with h5py.File(out, "r") as f:
        runs = f["runs"]
        columns = list(runs.attrs["columns"])
        for key in SUMMARY_KEYS + ["timing_forward", "timing_total", "speedup", "efficiency", "grid", "command"]:
            check(key in runs and key in columns, f"study file lacks column {key}")
        for key in columns:
            check(runs[key].shape == (2,), f"/runs/{key} has shape {runs[key].shape}, expected one row per run")
        check(list(runs["ranks"][()]) == [1, 2] and list(runs["data_ranks"][()]) == [1, 2], "ranks per row")
        check(runs["speedup"][0] == 1.0 and runs["efficiency"][0] == 1.0, "the first run is the reference")
        check(np.allclose(runs["efficiency"][()], runs["speedup"][()] / runs["ranks"][()]), "efficiency = speed-up / P")
        check(f.attrs["axis"] == "data" and f.attrs["scaling"] == "strong", "study attributes")
        for path in runs["results"].asstr()[()]:
            check(os.path.isfile(path), f"run results {path} kept")
    _, _, so, _ = study(tmp, "weak", "1,2", "data", ["--weak"])
    with h5py.File(os.path.join(tmp, "weak.h5"), "r") as f:
        check(list(f["runs/batch"][()]) == [64, 128], f"weak scaling batches {f['runs/batch'][()]}")
    png = os.path.join(tmp, "scaling.png")
    script(os.path.join(ANALYSIS, "plot_scaling.py"), out, os.path.join(tmp, "weak.h5"), "-o", png)
    check_png(png)


def case_simulate(tmp):
    """jobs/scaling/simulate --ranks 1,2 (data and depth axes, MGRIT on depth): the study's rows
    plus the replayed epoch time of each traced run (SimGrid replay ran on the traces and printed a
    positive simulated time), the measured one, their ratio; traces and replay logs kept; then
    plot_scaling.py draws measured and predicted curves."""
    sim = os.path.join(ROOT, "jobs", "scaling", "simulate")
    for axis, extra in (("data", []), ("depth", ["-depth_solver", "mgrit"])):
        out = os.path.join(tmp, f"sim_{axis}.h5")
        status, so, se = script(sim, "--ranks", "1,2", "--axis", axis, "--out", out, "--thetanet", ARGS.thetanet,
                                "--mpiexec", ARGS.mpiexec, "--cores-per-node", "2", "--", "-problem", "spirals",
                                *TINY, *extra)
        print(so)
        with h5py.File(out, "r") as f:
            runs = f["runs"]
            for key in SUMMARY_KEYS + ["speedup", "measured_epoch_s", "predicted_epoch_s", "replay_error",
                                       "predicted_speedup", "nodes", "trace"]:
                check(key in runs and runs[key].shape == (2,), f"simulate file lacks column {key}")
            pred, meas = runs["predicted_epoch_s"][()], runs["measured_epoch_s"][()]
            check(np.all(pred > 0) and np.all(meas > 0), f"epoch times {pred} {meas}")
            check(np.allclose(runs["replay_error"][()], pred / meas - 1), "replay_error = predicted / measured - 1")
            check(list(runs["nodes"][()]) == [1, 1], "2 ranks on one node of 2 cores")
            check(f.attrs["simulated"] == 1 and f.attrs["bandwidth"] == "100Gbps", "platform attributes")
            for t in runs["trace"].asstr()[()]:
                log = open(os.path.join(t, "replay.log")).read()
                check("Simulation time" in log, f"{t}/replay.log: {log[-500:]}")
        png = os.path.join(tmp, f"sim_{axis}.png")
        script(os.path.join(ANALYSIS, "plot_scaling.py"), out, "-o", png)
        check_png(png)
    # simulate_study: one call per set of rank counts, the table of every file in the directory
    study_dir = os.path.join(tmp, "study")
    net = ["--layers", "4", "--width", "4", "--batch", "32", "--samples", "64", "--cores-per-node", "2",
           "--thetanet", ARGS.thetanet, "--mpiexec", ARGS.mpiexec, "--epochs", "1", "--grid", ""]
    sim_study = os.path.join(ROOT, "jobs", "scaling", "simulate_study")
    script(sim_study, "--ranks", "1", "--modes", "data,sequential", "--out", study_dir, *net)
    status, so, se = script(sim_study, "--ranks", "2", "--modes", "data", "--out", study_dir, *net)
    print(so)
    check(sorted(os.listdir(study_dir)) == sorted(["data_1.h5", "data_1.runs", "data_2.h5", "data_2.runs",
                                                   "sequential_1.h5", "sequential_1.runs", "study.png",
                                                   "synth.h5"]), f"study files {os.listdir(study_dir)}")
    rows = {int(l.split()[0]): l.split() for l in so.splitlines() if l.split() and l.split()[0] in ("1", "2")}
    check(sorted(rows) == [1, 2], f"table rows for P 1 and 2 from both calls:\n{so}")
    # cells: data, layer-serial depth, MGRIT depth, best grid ('-' where not run), and vs data
    # ('-' without a depth or grid run)
    check(rows[1].count("-") == 2 and rows[2].count("-") == 4,
          f"P 1 has data and layer-serial depth, P 2 data only:\n{so}")
    check_png(os.path.join(study_dir, "study.png"))


def case_study_depth(tmp):
    """study --axis depth passes -depth_ranks P: on 1 rank it runs; on 2 it either runs (depth
    parallelism built) or stops with thetanet's own message and exit status 2."""
    out, _, _, _ = study(tmp, "depth1", "1", "depth")
    with h5py.File(out, "r") as f:
        check(list(f["runs/depth_ranks"][()]) == [1], "depth ranks of the 1-rank run")
    out, status, so, se = study(tmp, "depth2", "1,2", "depth", expect=None)
    if status == 0:
        with h5py.File(out, "r") as f:
            check(list(f["runs/depth_ranks"][()]) == [1, 2], "depth ranks per row")
        print("depth parallelism available: 2 rows")
    else:
        lines = [l for l in se.splitlines() if l.startswith("thetanet:")]
        check(status == 2 and lines and "-depth_ranks" in lines[-1], f"status {status}, stderr:\n{se}")
        check(not os.path.exists(out), "a failed study writes no file")
        print(f"depth parallelism not built yet, reported: {lines[-1]}")


def case_examples(tmp):
    """Every jobs/examples/*.opts trains one epoch on one rank, and uses every option it gives."""
    files = sorted(glob.glob(os.path.join(ROOT, "jobs", "examples", "*.opts")))
    check(len(files) >= 5, f"examples: {files}")
    for f in files:
        first = open(f).readline()
        check(first.startswith("# ") and len(first) > 20, f"{f}: the first line says what it shows")
        text = open(f).read()
        data = []
        if "-problem" not in text and "-train" not in text:
            # a data-set example (its job script passes the files): 28 x 28 uint8 images of its shape
            rng = np.random.default_rng(1)
            for name, n in (("images", 300), ("images_val", 100)):
                with h5py.File(os.path.join(tmp, name + ".h5"), "w") as g:
                    g["X"] = rng.integers(0, 256, size=(n, 784), dtype=np.uint8)
                    g["Y"] = rng.integers(0, 10, size=n)
                    g.attrs["task"] = "classification"
            data = ["-train", os.path.join(tmp, "images.h5"), "-val", os.path.join(tmp, "images_val.h5")]
        train(tmp, os.path.basename(f)[:-5], ["-options_file", f, "-epochs", "1"] + data)
        print(f"ok: {os.path.basename(f)}: {first[2:].strip()}")



if __name__ == "__main__":
    sys.exit(harness.main(globals(), "thetanet-analysis-"))
