#!/usr/bin/env python3
"""End-to-end tests of the training controls: learning-rate schedules, early stopping, the best
model, gradient clipping and the rejection of steps whose block solves fail. Each option is
checked against what it must do, computed here from the run's own history or from other runs.

usage: controls_test.py CASE --thetanet PATH --mpiexec "mpiexec --oversubscribe ..."
"""
import math
import os
import re
import sys

import cli_test as cli
import harness
import h5py
import numpy as np
from cli_test import check, history

ARGS = None

# Small spirals runs: 8 layers of width 16, full epochs in a few milliseconds.
BASE = ["-problem", "spirals", "-width", "8", "-layers", "4"]


def train(tmp, name, extra, ranks=1, base=BASE):
    cli.ARGS = ARGS
    return cli.train(tmp, name, ranks, base + extra)


def model_arrays(path, group="model"):
    with h5py.File(path, "r") as f:
        return {k: f[group][k][()] for k in ("opening/K", "opening/b", "blocks/W", "blocks/b", "closing/C", "closing/b")}


def same_model(a, b):
    return all(np.array_equal(a[k], b[k]) for k in a)


def summary(stdout):
    line = [l for l in stdout.splitlines() if l.startswith("summary ")][0].split()[1:]
    return dict(zip(line[::2], line[1::2]))


# ---- schedules ---------------------------------------------------------------------------

def case_schedule(tmp):
    """The lr column of /history follows each schedule's formula, computed here."""
    lr0 = 0.02
    opts = ["-epochs", "7", "-lr", str(lr0), "-batch", "100"]
    # step after one epoch of warm-up: lr0/2, then lr0 * 0.5^floor((e-2)/2)
    h = history(train(tmp, "step", opts + ["-lr_schedule", "step", "-lr_step", "2", "-lr_gamma", "0.5",
                                           "-lr_warmup", "1"])[0])
    want = [lr0 / 2] + [lr0 * 0.5 ** ((e - 2) // 2) for e in range(2, 8)]
    check(np.allclose(h["lr"], want, rtol=1e-15, atol=0), f"step: {h['lr']} != {want}")
    print("ok: step with warm-up", h["lr"])
    # cosine from lr0 towards lr_min over the 7 epochs
    h = history(train(tmp, "cos", opts + ["-lr_schedule", "cosine", "-lr_min", "0.001"])[0])
    want = [0.001 + 0.5 * (lr0 - 0.001) * (1 + math.cos(math.pi * (e - 1) / 7)) for e in range(1, 8)]
    check(np.allclose(h["lr"], want, rtol=1e-14, atol=0), f"cosine: {h['lr']} != {want}")
    print("ok: cosine", h["lr"])
    # plateau: a cut by gamma after `patience` epochs without a better validation loss, replayed
    # here from the validation losses the run reports
    opts = ["-epochs", "12", "-lr", "0.08", "-optimizer", "adam", "-batch", "50"]
    h = history(train(tmp, "plat", opts + ["-lr_schedule", "plateau", "-lr_plateau", "2", "-lr_gamma", "0.3"])[0])
    best, wait, cuts, want = float("inf"), 0, 0, []
    for v in h["val_loss"]:
        want.append(0.08 * 0.3 ** cuts)
        if v < best:
            best, wait = v, 0
        else:
            wait += 1
            if wait >= 2:
                cuts, wait = cuts + 1, 0
    check(np.allclose(h["lr"], want, rtol=1e-14, atol=0), f"plateau: {h['lr']} != {want} (val {h['val_loss']})")
    check(cuts >= 1, f"plateau: the run never stalled, nothing was tested (val {h['val_loss']})")
    print(f"ok: plateau, {cuts} cuts", h["lr"])


# ---- early stopping and the best model ---------------------------------------------------

def case_early_stop(tmp):
    """-patience stops where the validation loss has not improved for that many epochs;
    -keep_best's /model is the best epoch's model, /model_last the last epoch's."""
    opts = ["-lr", "0.1", "-optimizer", "adam", "-batch", "50"]
    full, _ = train(tmp, "full", opts + ["-epochs", "24"])
    v = history(full)["val_loss"]
    best, stall, stop = 0, 0, None
    for e in range(1, len(v)):
        if v[e] < v[best]:
            best, stall = e, 0
        else:
            stall += 1
            if stall >= 3:
                stop = e + 1
                break
    check(stop is not None and best > 0, f"the validation loss never stalled for 3 epochs after the first: {v}")
    out, so = train(tmp, "early", opts + ["-epochs", "24", "-patience", "3", "-keep_best"])
    h = history(out)
    check(len(h["epoch"]) == stop, f"stopped after {len(h['epoch'])} epochs, expected {stop} (val {v})")
    check(np.array_equal(h["val_loss"], v[:stop]), "early-stopped history differs from the full run's")
    check(summary(so)["epochs"] == str(stop) and summary(so)["best_epoch"] == str(best + 1), so.splitlines()[-2])
    check(f"early stop after epoch {stop}" in so, so)
    print(f"ok: stopped after epoch {stop}, best epoch {best + 1}")
    # the best model is the model trained for best+1 epochs; the last is the one of `stop` epochs
    at_best, _ = train(tmp, "at_best", opts + ["-epochs", str(best + 1)])
    at_stop, _ = train(tmp, "at_stop", opts + ["-epochs", str(stop)])
    check(same_model(model_arrays(out), model_arrays(at_best)), "/model is not the best epoch's model")
    check(same_model(model_arrays(out, "model_last"), model_arrays(at_stop)), "/model_last is not the last model")
    check(not same_model(model_arrays(at_best), model_arrays(at_stop)), "best and last coincide: nothing tested")
    with h5py.File(out, "r") as f:
        check(f["config"].attrs["best_epoch"] == str(best + 1), "/config best_epoch")
    print("ok: /model is the best epoch's, /model_last the last's")


def case_clip_norm(tmp):
    """-clip_norm c: one full-batch SGD step moves the parameters by exactly c (the gradient is
    longer), along the unclipped step; the same on 2 depth ranks."""
    opts = ["-epochs", "1", "-optimizer", "sgd", "-batch", "100000"]
    p0 = model_arrays(train(tmp, "p0", opts + ["-lr", "1e-300"])[0])
    free = model_arrays(train(tmp, "free", opts + ["-lr", "1"])[0])
    step = np.concatenate([(free[k] - p0[k]).ravel() for k in p0])
    c = 0.1 * np.linalg.norm(step)
    for ranks, extra in ((1, []), (2, ["-depth_ranks", "2"])):
        clipped = model_arrays(train(tmp, f"clip{ranks}", opts + ["-lr", "1", "-clip_norm", repr(c)] + extra, ranks)[0])
        d = np.concatenate([(clipped[k] - p0[k]).ravel() for k in p0])
        check(abs(np.linalg.norm(d) - c) < 1e-9 * c, f"{ranks} ranks: step of norm {np.linalg.norm(d)}, clip {c}")
        check(np.allclose(d, step * (c / np.linalg.norm(step)), rtol=1e-7, atol=1e-14), "clipped step direction")
        print(f"ok: {ranks} rank(s): step norm {np.linalg.norm(d):.6e} = clip {c:.6e}")
    big = model_arrays(train(tmp, "big", opts + ["-lr", "1", "-clip_norm", repr(20 * c)])[0])
    check(same_model(big, free), "a clip longer than the gradient changed the step")


# ---- step rejection ----------------------------------------------------------------------

# Backward-Euler blocks solved by fixed-point iteration, which diverges once the weights grow:
# large Adam steps make block solves fail, full batches make each epoch one step.
REJECT = ["-theta", "1", "-T", "4", "-block_method", "picard", "-optimizer", "adam", "-batch", "100000",
          "-width", "16", "-layers", "8"]


def rejections(stdout):
    """(epoch, where, lr) of each rejection warning: where is 'validation' or 'batch K'."""
    pat = r"warning: epoch (\d+) (validation|batch \d+): .* rejected and redone with lr (\S+) "
    return [(int(e), w, float(lr)) for e, w, lr in re.findall(pat, stdout)]


def case_rejection(tmp):
    """A failed block solve rejects the last update: the run goes on as if that update had been
    taken at the lowered rate, bitwise (a restart before it with -lr at that rate), on the
    validation pass and on a training step (no validation set)."""
    cli.ARGS = ARGS
    data = os.path.join(tmp, "train.h5")
    status, so, se = cli.run(["export", "-problem", "spirals", "-train", data, "-val", os.path.join(tmp, "v.h5")])
    check(status == 0, se)
    for label, src, lr in (("validation", ["-problem", "spirals"], "0.3"), ("training", ["-train", data], "1")):
        opts = REJECT + src + ["-lr", lr]
        out, so = cli.train(tmp, f"{label}_probe", 1, opts + ["-epochs", "6"])
        rej = rejections(so)
        check(rej, f"{label}: no rejection happened, nothing tested:\n{so}")
        e, where, lr_new = rej[0]
        n_first = sum(1 for r in rej if r[0] == e)
        check(where == "validation" if label == "validation" else where == "batch 1", f"{label}: {rej}")
        h = history(out)
        check(h["lr"][e - 1] == float(lr) * 0.5 ** n_first, f"{label}: lr {h['lr']} after {n_first} rejections")
        # the rejected update is epoch e's (validation) or epoch e-1's (training step)
        before = e - 1 if where == "validation" else e - 2
        ref = os.path.join(tmp, f"{label}_ck.h5")
        if before > 0:
            cli.train(tmp, f"{label}_a", 1, opts + ["-epochs", str(before), "-checkpoint", ref])
            redo, _ = cli.train(tmp, f"{label}_b", 1, opts[:-2] + ["-restart", ref, "-lr", repr(h["lr"][e - 1]),
                                                                      "-epochs", str(e)])
        else:
            redo, _ = cli.train(tmp, f"{label}_b", 1, opts[:-2] + ["-lr", repr(h["lr"][e - 1]), "-epochs", str(e)])
        upto, so_e = cli.train(tmp, f"{label}_e", 1, opts + ["-epochs", str(e)])
        check(same_model(model_arrays(upto), model_arrays(redo)),
              f"{label}: the run with the rejection differs from the run redone at lr {h['lr'][e - 1]}")
        print(f"ok: {label}: {n_first} rejection(s) in epoch {e} ({where}) = restart at lr {h['lr'][e - 1]:g}")


def case_rejection_parallel(tmp):
    """On 2 data x 2 depth ranks every rank takes the same rejections as one rank does (no rank
    is left waiting), and the run is the 2 data ranks' run to the last bit."""
    opts = REJECT + ["-problem", "spirals", "-lr", "0.3", "-epochs", "5"]
    _, so1 = train(tmp, "one", opts, base=[])
    two, so2 = train(tmp, "two", opts, ranks=2, base=[])
    four, so4 = train(tmp, "four", opts + ["-depth_ranks", "2"], ranks=4, base=[])
    r1, r2, r4 = rejections(so1), rejections(so2), rejections(so4)
    check(r1, "no rejection happened: nothing tested")
    check(r1 == r2 == r4, f"1 rank rejected {r1}, 2 ranks {r2}, 2 x 2 ranks {r4}")
    check(same_model(model_arrays(two), model_arrays(four)), "2 x 2 ranks end with another model than 1 x 2")
    print(f"ok: the same {len(r1)} rejections on 1, 2 and 2 x 2 ranks; 2 x 2 = 1 x 2 bitwise")


def case_max_rejections(tmp):
    """More rejections in a row than -max_rejections: exit 1, the last good checkpoint kept."""
    cli.ARGS = ARGS
    opts = REJECT + ["-problem", "spirals", "-lr", "0.3", "-epochs", "6"]
    _, so = train(tmp, "probe", opts, base=[])
    rej = rejections(so)
    runs = {}
    for e, where, _ in rej:
        runs[(e, where)] = runs.get((e, where), 0) + 1
    (e, where), n = max(runs.items(), key=lambda kv: kv[1])
    check(n >= 2 and e >= 2, f"no epoch after the first with two rejections in a row: {rej}")
    ck = os.path.join(tmp, "ck.h5")
    status, so, se = cli.run(["train"] + opts + ["-max_rejections", str(n - 1), "-checkpoint", ck,
                                                          "-checkpoint_every", "1"])
    check(status == 1, f"exit status {status}, expected 1\n{se}")
    check(f"after {n - 1} rejected steps in a row" in se, se)
    with h5py.File(ck, "r") as f:
        check(f["state"].attrs["epoch"] == e - 1 and f["state"].attrs["complete"] == 1,
              f"checkpoint at epoch {f['state'].attrs['epoch']}, expected {e - 1}")
    status, so, se = cli.run(["train"] + opts + ["-max_rejections", "0"])
    check(status == 1 and "no step to reject" not in se and rej[0][1] in se, f"-max_rejections 0: {status}\n{se}")
    print(f"ok: {n} rejections in a row in epoch {e} stop a run allowed {n - 1}; checkpoint of epoch {e - 1} kept")


def case_bad_values(tmp):
    """Out-of-range control options, and controls that need a validation set without one, are
    refused with one line naming the option (exit 2)."""
    cli.ARGS = ARGS
    data = os.path.join(tmp, "train.h5")
    cli.run(["export", "-problem", "spirals", "-train", data])
    cases = [(["-lr_schedule", "linear"], "linear"), (["-lr_step", "0"], "-lr_step"), (["-lr_gamma", "2"], "-lr_gamma"),
             (["-lr_gamma", "0"], "-lr_gamma"), (["-lr_min", "-1"], "-lr_min"), (["-lr_plateau", "0"], "-lr_plateau"),
             (["-lr_warmup", "-1"], "-lr_warmup"), (["-lr_backoff", "1"], "-lr_backoff"),
             (["-patience", "-1"], "-patience"), (["-clip_norm", "-1"], "-clip_norm"),
             (["-max_rejections", "-1"], "-max_rejections"), (["-train", data, "-patience", "3"], "-patience"),
             (["-train", data, "-keep_best"], "-keep_best")]
    for extra, needle in cases:
        status, so, se = cli.run(["train", "-epochs", "1"] + extra)
        lines = [l for l in se.splitlines() if l.strip()]
        check(status == 2 and len(lines) == 1 and needle in lines[0], f"{extra}: status {status}\n{se}")
    print(f"ok: {len(cases)} bad control options refused")


# ---- restarts ----------------------------------------------------------------------------

def case_restart(tmp):
    """A restart continues the schedule, the rejections' back-off, early stopping and the best
    model exactly: 4 + 4 epochs equal 8."""
    opts = REJECT + ["-problem", "spirals", "-lr", "0.3", "-lr_schedule", "plateau", "-lr_plateau", "1",
                     "-keep_best", "-patience", "50"]
    whole, so = train(tmp, "whole", opts + ["-epochs", "8"], base=[])
    check(rejections(so), "no rejection in the run: the back-off is not tested")
    ck = os.path.join(tmp, "ck.h5")
    train(tmp, "first", opts + ["-epochs", "4", "-checkpoint", ck], base=[])
    second, _ = train(tmp, "second", opts + ["-epochs", "8", "-restart", ck], base=[])
    a, b = history(whole), history(second)
    check(np.array_equal(a["lr"], b["lr"]) and np.array_equal(a["val_loss"], b["val_loss"]),
          f"lr {a['lr']} vs {b['lr']}")
    check(len(set(a["lr"])) > 2, f"the rate hardly moved: {a['lr']}")
    for g in ("model", "model_last"):
        check(same_model(model_arrays(whole, g), model_arrays(second, g)), f"/{g} differs after the restart")
    print("ok: 4 + 4 epochs = 8: lr", a["lr"])


if __name__ == "__main__":
    sys.exit(harness.main(globals(), "thetanet-controls-"))
