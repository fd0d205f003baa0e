#!/usr/bin/env python3
"""The paper (Reshniak & Webster, "Robust learning with implicit residual networks"), reproduced
with thetanet: writes HDF5 tables, the runs behind them, figures and a summary in --out.

  stability   Figure 2: forward Euler, backward Euler, trapezoidal and Verlet steps on u' = v, v' = -u
  depth       Examples 1 (sine) and 2 (spirals): ResNet (theta 0) and trapezoidal network (theta 0.5)
              for a range of depths, antisymmetric and dense blocks (Figures 3 to 6)
  lr          a learning-rate sweep (Adam and SGD) for theta 0, 0.5, 1: where each trains stably
  robustness  validation accuracy under Gaussian input noise of growing size, theta 0 ... 1
  settings    the spirals with the settings of the authors' code (width 6, 25 layers, step 0.5,
              Adam 1e-3, batch 10, 300 epochs), theta 0, 0.5, 1, several seeds: accuracy, loss
              and robustness, mean and spread

Settings come from jobs/examples/paper_example{1,2}.opts (the job adds -theta, -layers, ...).
The defaults take a few minutes on 2 cores; --full runs longer sweeps (more depths, epochs,
learning rates, training seeds and noise draws).

usage: paper.py [--out results/paper] [--full] [--only depth,lr,robustness,stability,settings]
                [--jobs N] [--thetanet PATH]
"""
import argparse
import concurrent.futures
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "analysis"))
import thetanet_results as tr  # noqa: E402

tr.require_h5py()  # before h5py: restarts under the Python that has it if need be

import h5py  # noqa: E402
import numpy as np  # noqa: E402

import plot_decision  # noqa: E402
import plot_history  # noqa: E402
import plot_stability  # noqa: E402

EXAMPLES = {"sine": os.path.join(tr.ROOT, "jobs", "examples", "paper_example1.opts"),
            "spirals": os.path.join(tr.ROOT, "jobs", "examples", "paper_example2.opts")}
KIND = {0.0: "ResNet", 0.5: "trapezoidal", 1.0: "backward Euler"}


def settings(full):
    return {
        "depth": {"layers": [1, 2, 4, 8, 16, 32] if full else [1, 2, 4, 8, 16], "thetas": [0.0, 0.5],
                  "forms": ["antisymmetric", "dense"], "epochs": 200 if full else 100},
        "lr": {"problem": "spirals", "layers": 8, "epochs": 100 if full else 60, "thetas": [0.0, 0.5, 1.0],
               "lrs": {"adam": [1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0] if full else [1e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0],
                       "sgd": [0.1, 0.3, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0] if full else [0.1, 0.3, 1.0, 2.0, 3.0, 10.0]}},
        "robustness": {"problem": "spirals", "layers": 8, "epochs": 200 if full else 100,
                       "thetas": [0.0, 0.25, 0.5, 0.75, 1.0], "seeds": [1, 2, 3, 4, 5] if full else [1, 2],
                       "sigmas": [0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3], "draws": 20 if full else 10},
        "settings": {"problem": "spirals", "width": 6, "layers": 25, "T": 12.5, "lr": 1e-3, "batch": 10,
                     "epochs": 300, "thetas": [0.0, 0.5, 1.0], "seeds": [1, 2, 3, 4, 5] if full else [1, 2, 3],
                     "forms": ["dense", "antisymmetric"], "sigmas": [0.05, 0.1], "draws": 10},
    }


class Runner:
    """Runs thetanet trainings, --jobs at a time, each writing DIR/NAME.h5 and DIR/NAME.log."""

    def __init__(self, thetanet, jobs):
        self.thetanet, self.jobs = thetanet, jobs

    def train(self, directory, name, opts):
        """A finished run: {'name', 'results', 'status', 'message', 'summary'}."""
        os.makedirs(directory, exist_ok=True)
        results = os.path.join(directory, name + ".h5")
        if os.path.exists(results):
            os.remove(results)
        p = tr.run(["train"] + [str(o) for o in opts] + ["-output", results], thetanet=self.thetanet,
                   check=False, log=os.path.join(directory, name + ".log"))
        message = "" if p.returncode == 0 else tr.ThetanetError([], p.returncode, p.stdout, p.stderr).message
        return {"name": name, "results": results if p.returncode == 0 else None, "status": p.returncode,
                "message": message, "summary": tr.parse_summary(p.stdout)}

    def train_all(self, directory, jobs):
        """jobs: {key: (name, opts)} -> {key: run}, in parallel."""
        with concurrent.futures.ThreadPoolExecutor(self.jobs) as pool:
            futures = {k: pool.submit(self.train, directory, name, opts) for k, (name, opts) in jobs.items()}
            return {k: f.result() for k, f in futures.items()}


def failure(run):
    """A short word for how a run failed, from thetanet's message."""
    m = run["message"]
    if "did not converge" in m:
        return "solve failed"
    if "loss is" in m:
        return "loss " + m.rsplit("loss is", 1)[1].strip(" .")
    return f"exit {run['status']}"


def write_table(f, group, rows):
    """rows (list of dicts) -> /group/<column> [rows]."""
    g = f.create_group(group)
    for c in rows[0]:
        vals = [r[c] for r in rows]
        if all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in vals):
            g[c] = np.array(vals, dtype=float)
        else:
            g.create_dataset(c, data=[str(v) for v in vals], dtype=h5py.string_dtype())


def fmt(x, digits=3):
    return "-" if x is None or not np.isfinite(x) else f"{x:.{digits}g}"


# ---- (a) depth: ResNet vs trapezoidal network ----------------------------------------------

def depth_study(runner, s, out, figs):
    jobs = {}
    for problem, opts_file in EXAMPLES.items():
        for form in s["forms"]:
            for theta in s["thetas"]:
                for L in s["layers"]:
                    name = f"{problem}_{form[:5]}_th{theta:g}_L{L}"
                    opts = ["-options_file", opts_file, "-theta", theta, "-layers", L, "-epochs", s["epochs"]]
                    if form == "dense":
                        opts += ["-antisymmetric", "false"]
                    jobs[(problem, form, theta, L)] = (name, opts)
    runs = runner.train_all(os.path.join(out, "depth"), jobs)
    rows = []
    for (problem, form, theta, L), r in runs.items():
        sm = r["summary"] if r["status"] == 0 else {}
        rows.append({"problem": problem, "form": form, "theta": theta, "layers": L, "status": r["status"],
                     "failure": failure(r) if r["status"] else "", "val_loss": sm.get("val_loss", np.nan),
                     "val_accuracy": sm.get("val_accuracy", np.nan), "epoch_s": sm.get("epoch_s", np.nan),
                     "newton_its": sm.get("newton_its", np.nan)})
    # Figures 3, 4: curves of ResNet and trapezoidal networks, shallow and deep (antisymmetric)
    for fig_no, problem in ((3, "sine"), (4, "spirals")):
        picks = [(t, L) for L in (2, 8) for t in s["thetas"]
                 if runs[(problem, "antisymmetric", t, L)]["results"]]
        plot_history.plot([runs[(problem, "antisymmetric", t, L)]["results"] for t, L in picks],
                          os.path.join(figs, f"fig{fig_no}_{problem}_history.png"),
                          title=f"Example {1 if problem == 'sine' else 2} ({problem}): ResNet and trapezoidal "
                                f"network, antisymmetric blocks, T 2")
    figure5(rows, s, os.path.join(figs, "fig5_depth.png"))
    # Figure 6: decision regions of the shallow networks, where ResNet and trapezoidal differ most
    L6 = 2 if 2 in s["layers"] else s["layers"][0]
    models = [runs[("spirals", "antisymmetric", t, L6)]["results"] for t in s["thetas"]]
    if all(models):
        plot_decision.plot(models, os.path.join(figs, "fig6_decision.png"), thetanet=runner.thetanet,
                           title=f"Example 2: decision regions with {L6} layers (antisymmetric blocks, T 2)",
                           options=["-options_file", EXAMPLES["spirals"]])
    return rows


def figure5(rows, s, path):
    plt = tr.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, problem in zip(axes, EXAMPLES):
        for form, ls in (("antisymmetric", "-"), ("dense", "--")):
            for theta, color in zip(s["thetas"], ("C0", "C1", "C2")):
                sel = [r for r in rows if (r["problem"], r["form"], r["theta"]) == (problem, form, theta)]
                L = np.array([r["layers"] for r in sel])
                v = np.array([r["val_loss"] for r in sel])
                ok = np.isfinite(v)
                ax.loglog(L[ok], v[ok], ls, marker="o", color=color, label=f"{KIND[theta]}, {form}")
                if (~ok).any():
                    ax.scatter(L[~ok], np.full((~ok).sum(), 1.0), marker="x", s=60, color=color)
        ax.set_xticks(s["layers"])
        ax.set_xticklabels([str(L) for L in s["layers"]])
        ax.set_xlabel("layers L (step h = T / L, T 2)")
        ax.set_ylabel("final validation loss")
        ax.set_title(f"{problem}: x at 1 = the run stopped (block solve failed)", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Validation loss after {s['epochs']} epochs against depth")
    tr.save(fig, path)


def depth_summary(rows, s):
    lines = []
    for problem in EXAMPLES:
        acc = problem == "spirals"
        lines += [f"\n**{problem}** (validation loss{' / accuracy' if acc else ''} after {s['epochs']} epochs)\n",
                  "| layers | " + " | ".join(f"{KIND[t]} {f}" for f in s["forms"] for t in s["thetas"]) + " |",
                  "|---|" + "---|" * (len(s["forms"]) * len(s["thetas"]))]
        for L in s["layers"]:
            cells = []
            for f in s["forms"]:
                for t in s["thetas"]:
                    r = next(r for r in rows if (r["problem"], r["form"], r["theta"], r["layers"]) == (problem, f, t, L))
                    cells.append(r["failure"] if r["status"] else
                                 fmt(r["val_loss"]) + (f" / {r['val_accuracy']:.3f}" if acc else ""))
            lines.append(f"| {L} | " + " | ".join(cells) + " |")
        # the claim: layers the trapezoidal network needs to reach the ResNet's validation loss
        for f in s["forms"]:
            res = {r["layers"]: r["val_loss"] for r in rows if (r["problem"], r["form"], r["theta"]) == (problem, f, 0.0)}
            trap = {r["layers"]: r["val_loss"] for r in rows if (r["problem"], r["form"], r["theta"]) == (problem, f, 0.5)}
            parts = []
            for L, v in sorted(res.items()):
                if not np.isfinite(v):
                    continue
                need = [Lt for Lt, vt in sorted(trap.items()) if np.isfinite(vt) and vt <= v]
                parts.append(f"L {L} ({fmt(v)}): {need[0] if need else 'none'}")
            lines.append(f"\n{problem}, {f}: trapezoidal layers needed to reach the ResNet's validation loss at "
                         + "; ".join(parts))
    return lines


# ---- (b) learning-rate sweep -----------------------------------------------------------------

CAP = 10.0  # losses above this are drawn at it: the run diverged


def verdict(run, first, final, chance):
    """How a run of the sweep went: stopped (thetanet stopped it: NaN/inf loss, failed block
    solve), diverged (finished with a loss above chance and above its first epoch's), stalled
    (finished above chance) or trains (below chance and below its first epoch's)."""
    if run["status"]:
        return failure(run)
    if not np.isfinite(final) or (final >= chance and final > first):
        return "diverged"
    return "trains" if final < chance and final < first else "stalled"


def lr_study(runner, s, out, figs):
    jobs = {}
    for opt, lrs in s["lrs"].items():
        for theta in s["thetas"]:
            for lr in lrs:
                jobs[(opt, theta, lr)] = (f"{opt}_th{theta:g}_lr{lr:g}",
                                          ["-options_file", EXAMPLES[s["problem"]], "-theta", theta,
                                           "-layers", s["layers"], "-epochs", s["epochs"], "-optimizer", opt,
                                           "-lr", lr])
    runs = runner.train_all(os.path.join(out, "lr"), jobs)
    chance = np.log(2)  # cross-entropy of a 50/50 guess on the two balanced spirals
    rows = []
    for (opt, theta, lr), r in runs.items():
        first = tr.Results(r["results"]).history["val_loss"][0] if r["results"] else np.nan
        final = r["summary"].get("val_loss", np.nan) if r["status"] == 0 else np.nan
        # a failed block solve rejects the step and lowers the rate (-lr_backoff): the run goes
        # on at the rate it backed off to, which the table reports with the rejections
        last_lr = tr.Results(r["results"]).history["lr"][-1] if r["results"] else np.nan
        rows.append({"optimizer": opt, "theta": theta, "lr": lr, "status": r["status"],
                     "verdict": verdict(r, first, final, chance), "val_loss": final, "first_val_loss": first,
                     "rejections": r["summary"].get("rejections", 0) if r["status"] == 0 else np.nan,
                     "final_lr": last_lr,
                     "val_accuracy": r["summary"].get("val_accuracy", np.nan) if r["status"] == 0 else np.nan})
    plt = tr.pyplot()
    fig, axes = plt.subplots(1, len(s["lrs"]), figsize=(6 * len(s["lrs"]), 4.5), squeeze=False)
    for ax, opt in zip(axes[0], s["lrs"]):
        for theta, color in zip(s["thetas"], ("C0", "C1", "C2")):
            sel = [r for r in rows if (r["optimizer"], r["theta"]) == (opt, theta)]
            lr = np.array([r["lr"] for r in sel])
            v = np.array([r["val_loss"] for r in sel])
            stopped = np.array([r["status"] != 0 for r in sel])
            ax.loglog(lr[~stopped], np.minimum(v[~stopped], CAP), "o-", color=color,
                      label=f"{KIND[theta]} (theta {theta:g})")
            if stopped.any():
                ax.scatter(lr[stopped], np.full(stopped.sum(), CAP), marker="x", s=80, color=color, zorder=3)
        ax.axhline(chance, color="0.5", ls=":", lw=1, label="chance (ln 2)")
        ax.set_ylim(top=CAP * 1.6)
        ax.set_xlabel("learning rate")
        ax.set_ylabel(f"final validation loss (capped at {CAP:g})")
        ax.set_title(f"{opt}: x = thetanet stopped the run (inf loss, or block solves failing after rejections)",
                     fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Learning-rate sweep: {s['problem']}, {s['layers']} antisymmetric layers, {s['epochs']} epochs")
    tr.save(fig, os.path.join(figs, "lr_sweep.png"))
    return rows


def lr_summary(rows, s):
    lines = []
    for opt, lrs in s["lrs"].items():
        lines += [f"\n**{opt}** (final validation loss; stalled: above chance ln 2; diverged: above chance and "
                  "above the first epoch's; rejected: steps whose block solves failed, taken back at a lower rate; "
                  "or why thetanet stopped the run)\n",
                  "| theta | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " | trains for |",
                  "|---|" + "---|" * (len(lrs) + 1)]
        for theta in s["thetas"]:
            sel = [r for r in rows if (r["optimizer"], r["theta"]) == (opt, theta)]
            cells = [r["verdict"] if r["status"] else
                     fmt(r["val_loss"]) + ("" if r["verdict"] == "trains" else f" ({r['verdict']})") +
                     (f", {r['rejections']:.0f} rejected, lr to {r['final_lr']:.2g}" if r["rejections"] else "")
                     for r in sel]
            good = [r["lr"] for r in sel if r["verdict"] == "trains"]
            span = f"lr {min(good):g} to {max(good):g}" if good else "none"
            lines.append(f"| {theta:g} ({KIND[theta]}) | " + " | ".join(cells) + f" | {span} |")
    return lines


# ---- (c) robustness to input noise -----------------------------------------------------------

def nearest_arm_accuracy(X, Y, Xn, Yn):
    """Accuracy of labelling each noisy point by the nearest clean point (both arms, densely
    sampled): about the best any classifier can do at that noise, a reference for the networks."""
    d = ((Xn[:, None, :] - X[None, :, :]) ** 2).sum(axis=2)
    return float(np.mean(Y[np.argmin(d, axis=1)] == Yn))


def robustness_study(runner, s, out, figs):
    jobs = {(theta, seed): (f"{s['problem']}_th{theta:g}_seed{seed}",
                            ["-options_file", EXAMPLES[s["problem"]], "-theta", theta, "-layers", s["layers"],
                             "-epochs", s["epochs"], "-seed", seed])
            for theta in s["thetas"] for seed in s["seeds"]}
    runs = runner.train_all(os.path.join(out, "robustness"), jobs)
    data = tr.problem(s["problem"], thetanet=runner.thetanet)
    Xv, Yv = data["val"]
    Xall = np.concatenate([data["train"][0], Xv])
    Yall = np.concatenate([data["train"][1], Yv])
    rng = np.random.default_rng(2019)
    # the same noisy copies of the validation set for every network: `draws` copies per sigma
    noisy = {sig: (np.concatenate([Xv + sig * rng.standard_normal(Xv.shape) for _ in range(s["draws"])]),
                   np.tile(Yv, s["draws"])) for sig in s["sigmas"]}
    reference = np.array([nearest_arm_accuracy(Xall, Yall, *noisy[sig]) for sig in s["sigmas"]])
    shape = (len(s["thetas"]), len(s["seeds"]), len(s["sigmas"]))
    acc, loss = np.full(shape, np.nan), np.full(shape, np.nan)

    def evaluate(i, k, j):
        r = runs[(s["thetas"][i], s["seeds"][k])]
        if r["results"]:
            try:
                e = tr.evaluate(r["results"], *noisy[s["sigmas"][j]], thetanet=runner.thetanet,
                                options=["-options_file", EXAMPLES[s["problem"]]])
                acc[i, k, j], loss[i, k, j] = e["accuracy"], e["loss"]
            except tr.ThetanetError as err:
                print(f"robustness: theta {s['thetas'][i]:g} seed {s['seeds'][k]} sigma {s['sigmas'][j]:g}: "
                      f"{err.message}")

    with concurrent.futures.ThreadPoolExecutor(runner.jobs) as pool:
        list(pool.map(lambda ikj: evaluate(*ikj), np.ndindex(*shape)))
    plt = tr.pyplot()
    fig, (ax, ax_gap) = plt.subplots(1, 2, figsize=(13, 4.8))
    for i, theta in enumerate(s["thetas"]):
        label = f"theta {theta:g}" + (f" ({KIND[theta]})" if theta in KIND else "")
        mean, std = np.nanmean(acc[i], axis=0), np.nanstd(acc[i], axis=0)
        ax.errorbar(s["sigmas"], mean, yerr=std, marker="o", capsize=3, label=label)
        ax_gap.errorbar(s["sigmas"], mean - reference, yerr=std, marker="o", capsize=3, label=label)
    ax.plot(s["sigmas"], reference, "k--", lw=1, label="nearest clean point (reference)")
    ax_gap.axhline(0, color="k", ls="--", lw=1)
    ax.set_ylabel("validation accuracy")
    ax_gap.set_ylabel("accuracy - reference")
    for a in (ax, ax_gap):
        a.set_xlabel("standard deviation of the Gaussian input noise")
        a.grid(True, alpha=0.3)
        a.legend(fontsize=8)
    fig.suptitle(f"Robustness: {s['problem']}, {s['layers']} antisymmetric layers, T 2; mean (bars: std) over "
                 f"{len(s['seeds'])} seeds, {s['draws']} noisy copies of the validation set each", fontsize=10)
    tr.save(fig, os.path.join(figs, "robustness.png"))
    failed = {key: r["message"] for key, r in runs.items() if r["status"]}
    return acc, loss, reference, failed


def robustness_summary(acc, reference, failed, s):
    lines = [f"\n(mean over {len(s['seeds'])} training seeds of the accuracy on {s['draws']} noisy copies of the "
             "validation set; +- the standard deviation over the seeds)\n",
             "| theta | " + " | ".join(f"sigma {sig:g}" for sig in s["sigmas"]) + " |",
             "|---|" + "---|" * len(s["sigmas"])]
    for i, theta in enumerate(s["thetas"]):
        mean, spread = np.nanmean(acc[i], axis=0), np.nanstd(acc[i], axis=0)
        lines.append(f"| {theta:g} | " + " | ".join(f"{m:.3f} +- {d:.3f}" for m, d in zip(mean, spread)) + " |")
    lines.append("| nearest clean point | " + " | ".join(f"{r:.3f}" for r in reference) + " |")
    for (theta, seed), message in failed.items():
        lines.append(f"\ntheta {theta:g} seed {seed}: training stopped: {message}")
    return lines


# ---- (d) the authors' settings ----------------------------------------------------------------

def settings_study(runner, s, out):
    """The spirals at the settings of the authors' public code, for each block form, theta and
    seed: the final validation loss and accuracy, the accuracy under input noise, the solver's
    work, and how each run ended."""
    jobs = {}
    for form in s["forms"]:
        for theta in s["thetas"]:
            for seed in s["seeds"]:
                jobs[(form, theta, seed)] = (
                    f"{form}_th{theta:g}_seed{seed}",
                    ["-options_file", EXAMPLES[s["problem"]], "-width", s["width"], "-layers", s["layers"], "-T", s["T"],
                     "-lr", s["lr"], "-batch", s["batch"], "-epochs", s["epochs"], "-theta", theta, "-seed", seed,
                     "-antisymmetric", "1" if form == "antisymmetric" else "0"])
    runs = runner.train_all(os.path.join(out, "settings"), jobs)
    data = tr.problem(s["problem"], thetanet=runner.thetanet)
    Xv, Yv = data["val"]
    rng = np.random.default_rng(2019)
    noisy = {sig: (np.concatenate([Xv + sig * rng.standard_normal(Xv.shape) for _ in range(s["draws"])]),
                   np.tile(Yv, s["draws"])) for sig in s["sigmas"]}
    rows = []
    for (form, theta, seed), r in runs.items():
        sm = r["summary"] if r["status"] == 0 else {}
        row = {"form": form, "theta": theta, "seed": seed, "status": r["status"], "message": r["message"],
               "val_loss": sm.get("val_loss", np.nan), "val_accuracy": sm.get("val_accuracy", np.nan),
               "train_loss": sm.get("train_loss", np.nan), "newton_its": sm.get("newton_its", np.nan),
               "rejections": sm.get("rejections", np.nan), "wall_s": sm.get("wall_s", np.nan)}
        for sig in s["sigmas"]:
            acc = np.nan
            if r["results"]:
                try:
                    acc = tr.evaluate(r["results"], *noisy[sig], thetanet=runner.thetanet,
                                      options=["-options_file", EXAMPLES[s["problem"]]])["accuracy"]
                except tr.ThetanetError as err:  # a noisy input whose block solve fails
                    print(f"settings: {form} theta {theta:g} seed {seed} noise {sig:g}: {err.message}")
                    row["message"] = f"noise {sig:g}: {err.message}"
            row[f"noisy_accuracy_{sig:g}"] = acc
        rows.append(row)
    return rows


def settings_summary(rows, s):
    cols = ["val_loss", "val_accuracy"] + [f"noisy_accuracy_{sig:g}" for sig in s["sigmas"]]
    heads = ["validation loss", "validation accuracy"] + [f"accuracy, noise {sig:g}" for sig in s["sigmas"]]
    lines = [f"\nSpirals, width {s['width']}, {s['layers']} layers, T {s['T']:g} (step {s['T'] / s['layers']:g}), "
             f"Adam {s['lr']:g}, batch {s['batch']}, {s['epochs']} epochs; mean +- standard deviation over seeds "
             f"{s['seeds']} (noise: {s['draws']} noisy copies of the validation set)\n",
             "| blocks | theta | " + " | ".join(heads) + " | Newton its | runs finished |",
             "|---|---|" + "---|" * (len(cols) + 2)]
    for form in s["forms"]:
        for theta in s["thetas"]:
            sel = [r for r in rows if (r["form"], r["theta"]) == (form, theta)]
            ok = [r for r in sel if r["status"] == 0]
            cells = []
            for c in cols:
                v = [r[c] for r in ok if np.isfinite(r[c])]
                cells.append((f"{np.mean(v):.4g} +- {np.std(v):.2g}" + (f" ({len(v)} of {len(ok)})" if len(v) < len(ok) else ""))
                             if v else "-")
            newton = f"{np.mean([r['newton_its'] for r in ok]):.1f}" if ok and theta > 0 else "-"
            lines.append(f"| {form} | {theta:g} | " + " | ".join(cells) + f" | {newton} | {len(ok)} of {len(sel)} |")
    for r in rows:
        if r["message"]:
            lines.append(f"\n{r['form']} theta {r['theta']:g} seed {r['seed']}: "
                         f"{'stopped: ' if r['status'] else ''}{r['message']}")
    return lines


# ---- driver ----------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(tr.ROOT, "results", "paper"),
                    help="directory for the HDF5 files, runs and figures (default results/paper)")
    ap.add_argument("--full", action="store_true", help="bigger sweeps (more depths, epochs, rates, draws)")
    ap.add_argument("--only", default="stability,depth,lr,robustness",
                    help="comma-separated parts to run (also: settings, the authors' settings, about 10 minutes)")
    ap.add_argument("--jobs", type=int, default=1, help="trainings run at once (default 1)")
    ap.add_argument("--thetanet", help="thetanet binary (default build/thetanet, or thetanet on PATH)")
    a = ap.parse_args()
    parts = a.only.split(",")
    unknown = set(parts) - {"stability", "depth", "lr", "robustness", "settings"}
    if unknown:
        ap.error(f"--only: unknown part(s) {', '.join(sorted(unknown))}")
    os.makedirs(a.out, exist_ok=True)
    figs = a.out
    runner = Runner(tr.find_thetanet(a.thetanet), a.jobs)
    s = settings(a.full)
    summary = [f"# thetanet: the paper, reproduced ({'--full' if a.full else 'default settings'})"]
    t0 = time.time()
    h5 = os.path.join(a.out, "paper.h5")
    with h5py.File(h5 + ".tmp", "w") as f:
        f.attrs["settings"] = json.dumps(s)
        f.attrs["thetanet"] = runner.thetanet
        if "stability" in parts:
            plot_stability.plot(os.path.join(figs, "fig2_stability.png"))
        if "depth" in parts:
            rows = depth_study(runner, s["depth"], a.out, figs)
            write_table(f, "depth", rows)
            summary += ["\n## (a) Depth: ResNet (theta 0) and trapezoidal network (theta 0.5)"] + depth_summary(rows, s["depth"])
            print(f"paper: depth study done ({time.time() - t0:.0f} s)", flush=True)
        if "lr" in parts:
            rows = lr_study(runner, s["lr"], a.out, figs)
            write_table(f, "lr", rows)
            summary += ["\n## (b) Learning-rate sweep"] + lr_summary(rows, s["lr"])
            print(f"paper: learning-rate sweep done ({time.time() - t0:.0f} s)", flush=True)
        if "robustness" in parts:
            acc, loss, reference, failed = robustness_study(runner, s["robustness"], a.out, figs)
            g = f.create_group("robustness")
            g["theta"], g["seed"], g["sigma"] = s["robustness"]["thetas"], s["robustness"]["seeds"], s["robustness"]["sigmas"]
            g["accuracy"], g["loss"], g["reference_accuracy"] = acc, loss, reference  # [theta, seed, sigma]
            summary += ["\n## (c) Validation accuracy under Gaussian input noise"] + \
                robustness_summary(acc, reference, failed, s["robustness"])
            print(f"paper: robustness study done ({time.time() - t0:.0f} s)", flush=True)
        if "settings" in parts:
            rows = settings_study(runner, s["settings"], a.out)
            write_table(f, "settings", rows)
            summary += ["\n## (d) The authors' settings"] + settings_summary(rows, s["settings"])
            print(f"paper: settings study done ({time.time() - t0:.0f} s)", flush=True)
        f.attrs["wall_s"] = time.time() - t0
    os.replace(h5 + ".tmp", h5)
    summary.append(f"\nTotal time {time.time() - t0:.0f} s; tables in {h5}, figures and runs in {a.out}/")
    text = "\n".join(summary) + "\n"
    with open(os.path.join(a.out, "summary.md"), "w") as fh:
        fh.write(text)
    print(text)


if __name__ == "__main__":
    main()
