#!/usr/bin/env python3
"""Checkpoints and faults, end to end: restarts continue a run exactly (also on another number
of ranks), a signal stops a run with a checkpoint it can continue from, kill -9 while
checkpointing never leaves an unloadable file, bad checkpoints are refused, and a NaN loss or a
diverged block solve stops the run with exit status 1 keeping the last good checkpoint.

usage: checkpoint_test.py CASE --thetanet PATH --mpiexec "mpiexec --oversubscribe ..."
"""
import os
import random
import shlex
import signal
import subprocess
import sys
import time

import harness
import h5py
import numpy as np

ARGS = None
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1")


def command(opts, ranks):
    cmd = [ARGS.thetanet, "train"] + opts
    return shlex.split(ARGS.mpiexec) + ["-n", str(ranks)] + cmd if ranks > 1 else cmd


def run(opts, ranks=1, expect=0):
    p = subprocess.run(command(opts, ranks), capture_output=True, text=True, timeout=600, env=ENV)
    if p.returncode != expect:
        raise AssertionError(f"{' '.join(opts)} on {ranks} ranks: status {p.returncode}, expected {expect}\n{p.stdout}\n{p.stderr}")
    return p


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def history(path):
    with h5py.File(path, "r") as f:
        return {k: f["history"][k][()] for k in f["history"]}


def model(path):
    with h5py.File(path, "r") as f:
        out = {}
        f["model"].visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
        return out


def same(a, b, rtol, what):
    for k in ("train_loss", "val_loss", "val_accuracy"):
        x, y = np.asarray(a[k]), np.asarray(b[k])
        check(x.shape == y.shape, f"{what}: {k} lengths {x.shape} {y.shape}")
        d = float(np.max(np.abs(x - y) / np.maximum(np.abs(y), 1e-300))) if x.size else 0.0
        print(f"{what}: {k} max relative difference {d:.2e}")
        check(d <= rtol, f"{what}: {k} differs by {d:.2e} > {rtol:.0e}")


def checkpoint_state(path):
    with h5py.File(path, "r") as f:
        return dict(f["state"].attrs)


# ---- cases --------------------------------------------------------------------------------

BASE = ["-problem", "spirals", "-width", "8", "-layers", "4", "-batch", "50"]


def case_restart_exact(tmp):
    """4 epochs in one go == 2 epochs, then a restart up to 4: same losses, same model, bit for bit;
    also from a checkpoint that lacks the newer /history/mgrit_res."""
    p = lambda n: os.path.join(tmp, n)
    run(BASE + ["-epochs", "4", "-output", p("full.h5")])
    run(BASE + ["-epochs", "2", "-checkpoint", p("c.h5")])
    check(checkpoint_state(p("c.h5"))["epoch"] == 2, "checkpoint after 2 epochs")
    out = run(BASE + ["-epochs", "4", "-restart", p("c.h5"), "-output", p("cont.h5")]).stdout
    check("restarting from" in out, "restart announced")
    same(history(p("cont.h5")), history(p("full.h5")), 0.0, "restart on the same ranks")
    a, b = model(p("cont.h5")), model(p("full.h5"))
    for k in a:
        check(np.array_equal(a[k], b[k]), f"/model/{k} differs after the restart")
    # a checkpoint of an earlier version, whose /history has no mgrit_res, still restarts
    with h5py.File(p("c.h5"), "a") as f:
        del f["history/mgrit_res"]
    run(BASE + ["-epochs", "4", "-restart", p("c.h5"), "-output", p("old.h5")])
    h = history(p("old.h5"))
    check(np.array_equal(h["train_loss"], history(p("full.h5"))["train_loss"]), "restart from a checkpoint without /history/mgrit_res")


def case_restart_ranks(tmp):
    """theta 0: a 2-rank checkpoint restarts on 1 and on 4 ranks; histories agree to 1e-10."""
    p = lambda n: os.path.join(tmp, n)
    opts = BASE + ["-theta", "0"]
    run(opts + ["-epochs", "4", "-output", p("full.h5")], ranks=2)
    run(opts + ["-epochs", "2", "-checkpoint", p("c2.h5")], ranks=2)
    for ranks in (1, 4):
        run(opts + ["-epochs", "4", "-restart", p("c2.h5"), "-output", p(f"r{ranks}.h5")], ranks=ranks)
        same(history(p(f"r{ranks}.h5")), history(p("full.h5")), 1e-10, f"2-rank checkpoint on {ranks} ranks")


def signal_and_restart(tmp, ranks):
    p = lambda n: os.path.join(tmp, n)
    opts = ["-problem", "peaks", "-theta", "0", "-width", "12", "-layers", "4", "-batch", "32", "-epochs", "400"]
    run(opts + ["-output", p("full.h5")], ranks=ranks)
    proc = subprocess.Popen(command(opts + ["-checkpoint", p("c.h5")], ranks), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV)
    # signal once training is under way (before, the handler is not yet installed)
    for line in proc.stdout:
        if line.startswith("epoch 5/"):
            break
    proc.send_signal(signal.SIGUSR1)
    so, se = proc.communicate(timeout=300)
    check(proc.returncode == 1, f"status {proc.returncode} after SIGUSR1:\n{se}")
    check("stopped by a signal" in se and "-restart" in se, f"message after SIGUSR1:\n{se}")
    st = checkpoint_state(p("c.h5"))
    print(f"{ranks} ranks: stopped after epoch {st['epoch']} batch {st['batch']}")
    check(st["complete"] == 1 and st["epoch"] < 400, f"checkpoint state {st}")
    run(opts + ["-restart", p("c.h5"), "-output", p("cont.h5")], ranks=ranks)
    same(history(p("cont.h5")), history(p("full.h5")), 0.0, f"stopped by SIGUSR1 and restarted, {ranks} ranks")


def case_signal(tmp):
    """SIGUSR1 (what Slurm sends before the time limit) stops a run within an epoch with a
    checkpoint; the restart finishes it exactly as an uninterrupted run."""
    signal_and_restart(tmp, 1)


def case_signal_mpi(tmp):
    """The same under mpiexec with 2 ranks (the launcher forwards SIGUSR1)."""
    signal_and_restart(tmp, 2)


def wait_complete(path, proc, timeout=300):
    """Wait until path holds a complete checkpoint (however loaded the machine is)."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        check(proc.poll() is None, f"the run ended (status {proc.returncode}) before writing {path}")
        try:
            if checkpoint_state(path)["complete"] == 1:
                return
        except (OSError, KeyError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"no complete checkpoint {path} after {timeout} s")


def case_kill9(tmp):
    """kill -9 at random moments of a run that checkpoints every epoch: the checkpoint is always
    complete and a restart from it runs."""
    p = lambda n: os.path.join(tmp, n)
    opts = ["-problem", "peaks", "-theta", "0", "-width", "32", "-layers", "8", "-epochs", "100000", "-checkpoint_every", "1",
            "-checkpoint", p("c.h5")]
    rng = random.Random(4)
    for trial in range(6):
        if os.path.exists(p("c.h5")):
            os.remove(p("c.h5"))
        proc = subprocess.Popen(command(opts, 1), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
        # the first checkpoint of this run exists: from now on it is being replaced, epoch after epoch
        wait_complete(p("c.h5"), proc)
        time.sleep(rng.random())
        proc.kill()
        proc.wait()
        st = checkpoint_state(p("c.h5"))
        check(st["complete"] == 1, f"trial {trial}: checkpoint incomplete {st}")
        run(["-problem", "peaks", "-theta", "0", "-width", "32", "-layers", "8", "-epochs", str(st["epoch"] + 1),
             "-restart", p("c.h5")])
        print(f"trial {trial}: killed after epoch {st['epoch']}, checkpoint loads and restarts")


def case_bad_checkpoint(tmp):
    """Missing, truncated, incomplete or foreign checkpoints, and options that contradict the
    checkpoint, are refused with exit status 2 and one line."""
    p = lambda n: os.path.join(tmp, n)
    run(BASE + ["-epochs", "1", "-checkpoint", p("good.h5"), "-output", p("results.h5")])
    raw = open(p("good.h5"), "rb").read()
    open(p("trunc.h5"), "wb").write(raw[: len(raw) // 2])
    with h5py.File(p("good.h5"), "r") as f, h5py.File(p("incomplete.h5"), "w") as g:
        for k in f:
            f.copy(k, g)
        g["state"].attrs["complete"] = 0
    cases = [(p("missing.h5"), "missing.h5"), (p("trunc.h5"), "trunc.h5"), (p("incomplete.h5"), "incomplete"),
             (p("results.h5"), "not a checkpoint")]
    for path, needle in cases:
        r = run(BASE + ["-epochs", "2", "-restart", path], expect=2)
        lines = [l for l in r.stderr.splitlines() if l.startswith("thetanet:")]
        check(len(lines) == 1 and needle in lines[0] and "PETSC ERROR" not in r.stderr, f"{path}: {r.stderr}")
        print(f"ok: {lines[0]}")
    r = run(BASE[:-4] + ["-width", "9", "-layers", "4", "-epochs", "2", "-restart", p("good.h5")], expect=2)
    check("-width differs from the checkpoint" in r.stderr, r.stderr)
    r = run(BASE + ["-epochs", "2", "-restart", p("trunc.h5")], ranks=2, expect=2)
    check("trunc.h5" in r.stderr, r.stderr)


def case_faults(tmp):
    """A NaN loss and a diverged block solve stop training with exit status 1, name where, and
    keep the last good checkpoint."""
    p = lambda n: os.path.join(tmp, n)
    opts = BASE + ["-theta", "0", "-act", "relu"]
    run(opts + ["-epochs", "2", "-checkpoint", p("c.h5")])
    before = open(p("c.h5"), "rb").read()
    r = run(opts + ["-epochs", "4", "-restart", p("c.h5"), "-lr", "1e200", "-checkpoint", p("c.h5"), "-checkpoint_every", "1"], expect=1)
    check("epoch 3 batch" in r.stderr and "loss" in r.stderr, f"NaN loss message:\n{r.stderr}")
    check(open(p("c.h5"), "rb").read() == before, "the last good checkpoint was replaced")
    print("NaN loss:", r.stderr.strip().splitlines()[0])
    r = run(["-problem", "spirals", "-theta", "1", "-T", "400", "-layers", "2", "-width", "8", "-block_method", "picard", "-epochs", "2"],
            expect=1)
    check("block" in r.stderr and "did not converge" in r.stderr and "epoch 1" in r.stderr, f"diverged solve message:\n{r.stderr}")
    print("diverged:", r.stderr.strip().splitlines()[0])



if __name__ == "__main__":
    sys.exit(harness.main(globals(), "thetanet-ckpt-"))
