#!/usr/bin/env python3
"""Which depth-parallel training modes train the network itself?

For one problem, trains each mode (layer-serial, and MGRIT settings) with seeds 1, 2, 3 on
--ranks depth ranks, evaluates every saved model with `thetanet evaluate` (the exact, layer-serial
forward propagation) on the validation set, and prints per mode the mean validation accuracy
(or loss, for regression), the seeds' values, the wall time, and whether the mode meets the
criterion against layer-serial training: the mean accuracy within 0.01 of layer-serial's mean or
inside the range of its seeds (regression: the mean loss within 10%).

  jobs/bench/depth_accuracy.py --problem spirals [--modes serial,rtol1e-3,...] [--seeds 1,2,3]
      [--ranks 2] [--work DIR] [--json FILE]
  jobs/bench/depth_accuracy.py --summarize FILE

Problems: spirals (256 layers, width 32, 100 epochs; jobs/examples/mgrit_deep.opts), spirals64
(jobs/examples/mgrit.opts: 64 layers, width 16, 50 epochs), sine (128 layers, 100 epochs),
fashion_mnist (64 layers, width 64, 5 epochs, the first --fm_rows training rows of
data/fashion_mnist, made by jobs/data/fashion_mnist.sh). Modes are named in MODES; `default` is
`-depth_solver mgrit` with every MGRIT option at its default.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import h5py
import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
EXE = os.environ.get("THETANET", os.path.join(ROOT, "build", "thetanet"))
MPIEXEC = ["mpiexec", "--oversubscribe", "--bind-to", "none"]

PROBLEMS = {
    "spirals": ["-problem", "spirals", "-width", "32", "-layers", "256", "-T", "4", "-theta", "0.5", "-epochs", "100"],
    # the network of jobs/examples/mgrit.opts
    "spirals64": ["-problem", "spirals", "-width", "16", "-layers", "64", "-T", "4", "-theta", "0.5", "-epochs", "50"],
    "sine": ["-problem", "sine", "-layers", "128", "-T", "4", "-theta", "0.5", "-epochs", "100"],
    "fashion_mnist": ["-scale_uint8", "-width", "64", "-layers", "64", "-T", "2", "-theta", "0.5", "-act", "tanh",
                      "-optimizer", "adam", "-lr", "1e-3", "-batch", "128", "-epochs", "5"],
}

# the MGRIT part of each mode; every MGRIT mode keeps the nested start and the rough coarse solve
NESTED = ["-depth_solver", "mgrit", "-mgrit_skip", "-mgrit_coarse_its", "3"]
MODES = {
    "serial": ["-depth_solver", "sequential"],
    # the former jobs/examples/mgrit_inexact.opts: one iteration per solve, cfactor 16
    "inexact": NESTED + ["-mgrit_cfactor", "16", "-mgrit_max_it", "1"],
    # the same, the last fifth of the epochs layer-serial (converged)
    "inexact_exact20": NESTED + ["-mgrit_cfactor", "16", "-mgrit_max_it", "1", "-mgrit_exact_epochs", "20%"],
    "inexact_cf4": NESTED + ["-mgrit_cfactor", "4", "-mgrit_max_it", "1"],
    "rtol1e-2": NESTED + ["-mgrit_cfactor", "16", "-mgrit_max_it", "30", "-mgrit_tol", "0", "-mgrit_rtol", "1e-2"],
    "rtol1e-3": NESTED + ["-mgrit_cfactor", "16", "-mgrit_max_it", "30", "-mgrit_tol", "0", "-mgrit_rtol", "1e-3"],
    "rtol1e-4": NESTED + ["-mgrit_cfactor", "16", "-mgrit_max_it", "30", "-mgrit_tol", "0", "-mgrit_rtol", "1e-4"],
    "cf4_rtol1e-3": NESTED + ["-mgrit_cfactor", "4", "-mgrit_max_it", "30", "-mgrit_tol", "0", "-mgrit_rtol", "1e-3"],
    "default": ["-depth_solver", "mgrit"],
}


def epochs_of(opts):
    return int(opts[opts.index("-epochs") + 1])


def resolve(mode_opts, base):
    """'-mgrit_exact_epochs 20%' becomes that share of the problem's epochs."""
    out = list(mode_opts)
    for i, o in enumerate(out):
        if o.endswith("%"):
            out[i] = str(max(1, epochs_of(base) * int(o[:-1]) // 100))
    return out


def run(cmd, log):
    with open(log, "w") as f:
        status = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT)
    if status:
        sys.exit(f"depth_accuracy: {' '.join(cmd)} failed (status {status}); see {log}")


def data_files(problem, work, fm_rows):
    """(training options, validation file) for a problem."""
    if problem != "fashion_mnist":
        name = PROBLEMS[problem][PROBLEMS[problem].index("-problem") + 1]
        val = os.path.join(work, f"{name}_val.h5")
        if not os.path.exists(val):
            run([EXE, "export", "-problem", name, "-val", val], val + ".log")
        return [], val
    src = os.path.join(ROOT, "data", "fashion_mnist")
    if not os.path.exists(os.path.join(src, "train.h5")):
        sys.exit("depth_accuracy: data/fashion_mnist/train.h5 is missing: run jobs/data/fashion_mnist.sh first")
    train = os.path.join(work, f"fm_train_{fm_rows}.h5")
    if not os.path.exists(train):
        with h5py.File(os.path.join(src, "train.h5"), "r") as f, h5py.File(train, "w") as g:
            g["X"], g["Y"] = f["X"][:fm_rows], f["Y"][:fm_rows]
    return ["-train", train, "-val", os.path.join(src, "val.h5")], os.path.join(src, "val.h5")


def table(problem, rows, ranks, seeds):
    """Prints the modes of one problem against its layer-serial runs."""
    ref = rows.get("serial")
    classify = not np.isnan(rows[next(iter(rows))]["accuracy"][0])
    print(f"\n{problem}: exact validation (thetanet evaluate) of the saved models, {ranks} depth ranks, seeds {seeds}")
    print(f"{'mode':16s} {'mean acc' if classify else 'mean loss':>10s} {'seeds':>26s} {'wall_s':>8s}  criterion")
    for mode, r in rows.items():
        vals = r["accuracy"] if classify else r["loss"]
        mean = float(np.mean(vals))
        verdict = ""
        if ref and mode != "serial":
            rv = ref["accuracy"] if classify else ref["loss"]
            rmean = float(np.mean(rv))
            if classify:
                ok = abs(mean - rmean) <= 0.01 or min(rv) <= mean <= max(rv)
            else:
                ok = mean <= 1.1 * rmean
            verdict = "met" if ok else "NOT met"
        print(f"{mode:16s} {mean:10.4g} {' '.join(f'{v:.4g}' for v in vals):>26s} {np.mean(r['wall_s']):8.1f}  {verdict}")


def summarize(path):
    """The tables of every problem in a --json file (the last entry of each problem and mode)."""
    rows = {}
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            rows.setdefault(r["problem"], {})[r["mode"]] = r
    for problem, modes in rows.items():
        if "serial" in modes:
            modes = {"serial": modes["serial"], **{k: v for k, v in modes.items() if k != "serial"}}
        first = next(iter(modes.values()))
        table(problem, modes, first["ranks"], ",".join(str(x) for x in first["seeds"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problem", choices=sorted(PROBLEMS), default="spirals")
    ap.add_argument("--modes", default="serial,inexact,rtol1e-2,rtol1e-3,default")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--epochs", type=int, help="override the problem's epochs")
    ap.add_argument("--fm_rows", type=int, default=10000)
    ap.add_argument("--work", default="depth_accuracy")
    ap.add_argument("--json", help="append one JSON line per mode here")
    ap.add_argument("--summarize", metavar="FILE", help="print the tables of a --json file and stop")
    a = ap.parse_args()
    if a.summarize:
        summarize(a.summarize)
        return
    os.makedirs(a.work, exist_ok=True)
    base = list(PROBLEMS[a.problem])
    if a.epochs:
        base[base.index("-epochs") + 1] = str(a.epochs)
    data, val = data_files(a.problem, a.work, a.fm_rows)
    seeds = [int(s) for s in a.seeds.split(",")]
    rows = {}
    for mode in a.modes.split(","):
        if mode not in MODES:
            sys.exit(f"depth_accuracy: unknown mode {mode} (modes: {', '.join(MODES)})")
        acc, loss, wall = [], [], []
        for seed in seeds:
            tag = f"{a.problem}_{mode}_s{seed}"
            out, ev = os.path.join(a.work, tag + ".h5"), os.path.join(a.work, tag + "_eval.h5")
            cmd = MPIEXEC + ["-n", str(a.ranks), EXE, "train"] + base + data + resolve(MODES[mode], base) + [
                "-seed", str(seed), "-depth_ranks", str(a.ranks), "-output", out]
            t0 = time.time()
            run(cmd, os.path.join(a.work, tag + ".log"))
            wall.append(time.time() - t0)
            # uint8 images are read as the model was trained on them (x/255)
            scale = ["-scale_uint8"] if a.problem == "fashion_mnist" else []
            run([EXE, "evaluate", "-model", out, "-data", val, "-output", ev] + scale,
                os.path.join(a.work, tag + "_eval.log"))
            with h5py.File(ev, "r") as f:
                loss.append(float(f.attrs["loss"]))
                acc.append(float(f.attrs["accuracy"]) if "accuracy" in f.attrs else float("nan"))
            print(f"  {mode:16s} seed {seed}: evaluate accuracy {acc[-1]:.4f} loss {loss[-1]:.4g} "
                  f"({wall[-1]:.0f} s)", flush=True)
        rows[mode] = {"problem": a.problem, "mode": mode, "options": resolve(MODES[mode], base), "seeds": seeds,
                      "accuracy": acc, "loss": loss, "wall_s": wall, "ranks": a.ranks}
    table(a.problem, rows, a.ranks, a.seeds)
    if a.json:
        with open(a.json, "a") as f:
            for r in rows.values():
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
