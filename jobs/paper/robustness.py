#!/usr/bin/env python3
"""Robustness to input noise on Fashion-MNIST, the table the journal version of the paper reports
on MNIST: networks of the same depth and width with theta = 0 (ResNet), 0.5 (trapezoidal) and
1 (backward Euler), several training seeds each, evaluated with `thetanet evaluate -noise_std`
on the 10,000 test images with Gaussian noise of each standard deviation added to the inputs
(pixels scaled to [0, 1]).

Writes OUT/robustness.h5 (/accuracy, /accuracy_draw_std, /loss [theta, seed, std], /clean_accuracy
[theta, seed], attributes with the settings), OUT/robustness.md (the table: mean +- standard
deviation over the seeds) and OUT/robustness.png, and keeps each run's results file and log.
The data come from jobs/data/fashion_mnist.sh (run by jobs/paper/robustness.sh).

usage: robustness.py --data DIR [--out results/robustness] [--thetas 0,0.5,1] [--seeds 1,2,3]
                     [--stds 0,0.1,0.2,0.4,0.6,1] [--samples 5] [--width 128] [--layers 4] [--T 2]
                     [--epochs 8] [--ranks 2] [--thetanet PATH] [--mpiexec CMD]
"""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "analysis"))
import thetanet_results as tr  # noqa: E402

tr.require_h5py()

import h5py  # noqa: E402
import numpy as np  # noqa: E402

KIND = {0.0: "ResNet", 0.5: "trapezoidal", 1.0: "backward Euler"}


def floats(text):
    return [float(v) for v in text.split(",")]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="directory with train.h5, val.h5, test.h5 (uint8 images)")
    ap.add_argument("--out", default=os.path.join(tr.ROOT, "results", "robustness"))
    ap.add_argument("--thetas", type=floats, default=[0.0, 0.5, 1.0])
    ap.add_argument("--seeds", type=lambda t: [int(v) for v in t.split(",")], default=[1, 2, 3])
    ap.add_argument("--stds", type=floats, default=[0.0, 0.1, 0.2, 0.4, 0.6, 1.0])
    ap.add_argument("--samples", type=int, default=5, help="noise draws per standard deviation")
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--T", type=float, default=2.0)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--thetanet")
    ap.add_argument("--mpiexec")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    data = {k: os.path.join(a.data, k + ".h5") for k in ("train", "val", "test")}
    for k, p in data.items():
        if not os.path.exists(p):
            sys.exit(f"robustness.py: no {p} (run jobs/data/fashion_mnist.sh)")
    common = ["-scale_uint8", "-width", a.width, "-layers", a.layers, "-T", a.T, "-optimizer", "adam", "-lr", a.lr,
              "-lr_schedule", "cosine", "-batch", 128, "-epochs", a.epochs, "-keep_best"]
    shape = (len(a.thetas), len(a.seeds), len(a.stds))
    acc, draw_std, loss = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    failed, t0 = {}, time.time()
    for i, theta in enumerate(a.thetas):
        for k, seed in enumerate(a.seeds):
            name = os.path.join(a.out, f"theta{theta:g}_seed{seed}")
            p = tr.run(["train", "-train", data["train"], "-val", data["val"], "-theta", theta, "-seed", seed,
                        "-output", name + ".h5"] + common, thetanet=a.thetanet, ranks=a.ranks, mpiexec=a.mpiexec,
                       check=False, log=name + ".log")
            if p.returncode:
                failed[(theta, seed)] = tr.ThetanetError([], p.returncode, p.stdout, p.stderr).message
                print(f"theta {theta:g} seed {seed}: training failed: {failed[(theta, seed)]}")
                continue
            q = tr.run(["evaluate", "-model", name + ".h5", "-data", data["test"], "-scale_uint8", "-noise_std",
                        ",".join(f"{s:g}" for s in a.stds), "-noise_samples", a.samples, "-seed", 1,
                        "-output", name + "_test.h5"], thetanet=a.thetanet, ranks=a.ranks, mpiexec=a.mpiexec,
                       log=name + "_test.log")
            with h5py.File(name + "_test.h5", "r") as f:
                r = f["robustness"]
                acc[i, k], draw_std[i, k], loss[i, k] = r["accuracy_mean"][()], r["accuracy_std"][()], r["loss_mean"][()]
            s = tr.parse_summary(p.stdout)
            print(f"theta {theta:g} seed {seed}: best epoch {s.get('best_epoch')}, val_acc {s.get('val_accuracy')}, "
                  f"test accuracy by noise std: " + " ".join(f"{v:.4f}" for v in acc[i, k]) +
                  f" ({time.time() - t0:.0f} s so far)", flush=True)
    with h5py.File(os.path.join(a.out, "robustness.h5"), "w") as f:
        f["accuracy"], f["accuracy_draw_std"], f["loss"] = acc, draw_std, loss
        f["theta"], f["seed"], f["noise_std"] = a.thetas, a.seeds, a.stds
        f.attrs["settings"] = json.dumps({k: v for k, v in vars(a).items() if k not in ("thetanet", "mpiexec")})
    lines = [f"Fashion-MNIST test accuracy (10,000 images) under Gaussian input noise: width {a.width}, "
             f"{a.layers} layers, T {a.T:g}, Adam {a.lr:g} with a cosine schedule, {a.epochs} epochs, best epoch "
             f"kept; mean +- standard deviation over seeds {a.seeds}, {a.samples} noise draws each.\n",
             "| theta | " + " | ".join(f"std {s:g}" for s in a.stds) + " |", "|---|" + "---|" * len(a.stds)]
    for i, theta in enumerate(a.thetas):
        m, d = np.nanmean(acc[i], axis=0), np.nanstd(acc[i], axis=0)
        lines.append(f"| {theta:g} ({KIND.get(theta, '')}) | " + " | ".join(f"{x:.4f} +- {y:.4f}" for x, y in zip(m, d)) + " |")
    for (theta, seed), msg in failed.items():
        lines.append(f"\ntheta {theta:g} seed {seed} failed: {msg}")
    lines.append(f"\n{time.time() - t0:.0f} s on {a.ranks} ranks.")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(a.out, "robustness.md"), "w") as fh:
        fh.write(text)
    print(text)
    plt = tr.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, theta in enumerate(a.thetas):
        ax.errorbar(a.stds, np.nanmean(acc[i], axis=0), yerr=np.nanstd(acc[i], axis=0), marker="o", capsize=3,
                    label=f"theta {theta:g} ({KIND.get(theta, '')})")
    ax.set_xlabel("standard deviation of the Gaussian input noise (pixels in [0, 1])")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"Fashion-MNIST: width {a.width}, {a.layers} layers, T {a.T:g}; {len(a.seeds)} seeds", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend()
    tr.save(fig, os.path.join(a.out, "robustness.png"))


if __name__ == "__main__":
    main()
