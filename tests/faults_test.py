#!/usr/bin/env python3
"""Faults a hostile user or a failing cluster brings: outputs that name inputs, two jobs writing
one file, a full disk, sizes beyond 32 bits or the node's memory, options without values or
beyond range, errors on many ranks, restarts that do not fit, SIGTERM to mpiexec, and the MGRIT
figures of the summary. Each case fails (or hangs) without the fix it guards.

usage: faults_test.py CASE --thetanet PATH --mpiexec "mpiexec --oversubscribe ..."
"""
import contextlib
import glob
import os
import resource
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


def command(args, ranks):
    cmd = [ARGS.thetanet] + [str(a) for a in args]
    return shlex.split(ARGS.mpiexec) + ["-n", str(ranks)] + cmd if ranks > 1 else cmd


def run(args, ranks=1, expect=0, timeout=300, **kw):
    p = subprocess.run(command(args, ranks), capture_output=True, text=True, timeout=timeout, env=ENV, **kw)
    if expect is not None and p.returncode != expect:
        raise AssertionError(f"{' '.join(map(str, args))} on {ranks} ranks: status {p.returncode}, expected {expect}\n"
                             f"{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return p


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def one_line(p, needle, what):
    """Exactly one `thetanet:` line on stderr, naming needle, and no PETSc traceback."""
    lines = [l for l in p.stderr.splitlines() if l.startswith("thetanet:") and "warning" not in l]
    check(len(lines) == 1 and needle in lines[0] and "PETSC ERROR" not in p.stderr, f"{what}: stderr\n{p.stderr}")
    print(f"ok: {what}: {lines[0]}")


def usage_error(args, needle, ranks=1):
    one_line(run(args, ranks, expect=2, timeout=120), needle, " ".join(map(str, args)))


SMALL = ["-width", "8", "-layers", "4", "-batch", "64"]


# ---- data loss ----------------------------------------------------------------------------

def case_same_file(tmp):
    """An output naming an input, however spelt, is refused before anything is written, and the
    input is untouched; a restart may replace its own checkpoint."""
    p = lambda n: os.path.join(tmp, n)
    run(["export", "-problem", "spirals", "-train", p("x.h5"), "-val", p("v.h5")])
    run(["train", "-epochs", "1", "-output", p("m.h5"), "-checkpoint", p("c.h5")] + SMALL)
    os.symlink(p("x.h5"), p("link.h5"))
    before = {n: open(p(n), "rb").read() for n in ("x.h5", "v.h5", "m.h5", "c.h5")}
    tr = ["train", "-epochs", "1"] + SMALL
    cases = [(tr + ["-train", p("x.h5"), "-output", p("x.h5")], "-output"),
             (tr + ["-train", p("x.h5"), "-val", p("v.h5"), "-output", os.path.join(tmp, ".", "v.h5")], "-val"),
             (tr + ["-train", p("x.h5"), "-checkpoint", p("link.h5")], "-train"),
             (tr + ["-output", p("n.h5"), "-checkpoint", p("n.h5")], "-checkpoint"),
             (tr + ["-epochs", "2", "-restart", p("c.h5"), "-output", p("c.h5")], "-restart"),
             (["evaluate", "-model", p("m.h5"), "-data", p("x.h5"), "-output", p("m.h5")], "-model"),
             (["evaluate", "-model", p("m.h5"), "-data", p("x.h5"), "-output", p("link.h5")], "-data"),
             (["predict", "-model", p("m.h5"), "-data", p("x.h5"), "-output", os.path.join(tmp, "..", os.path.basename(tmp), "x.h5")],
              "-data"),
             (["export", "-problem", "sine", "-train", p("s.h5"), "-val", p("s.h5")], "-train")]
    for args, needle in cases:
        usage_error(args, needle)
    for n, b in before.items():
        check(open(p(n), "rb").read() == b, f"{n} changed")
    check(not os.path.exists(p("n.h5")) and not os.path.exists(p("s.h5")), "a refused run wrote a file")
    r = run(tr + ["-epochs", "2", "-restart", p("c.h5"), "-checkpoint", p("c.h5")])
    check("checkpoint epoch 2" in r.stdout, "a restart replaces its own checkpoint")


def final_model(path):
    with h5py.File(path, "r") as f:
        return f["model/blocks/W"][()], int(f["config"].attrs["seed"])


def case_concurrent_output(tmp):
    """Two jobs writing the same -output at once: each writes a temporary file of its own, so the
    file left is whole and is one job's (its model that job's own, as its checkpoint shows)."""
    p = lambda n: os.path.join(tmp, n)
    for trial in range(4):
        procs = [subprocess.Popen(command(["train", "-epochs", "1", "-width", "256", "-layers", "24", "-theta", "0", "-batch", "512",
                                           "-seed", s, "-output", p("s.h5"), "-checkpoint", p(f"c{s}.h5")], 1),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV) for s in (1, 2)]
        for proc in procs:
            so, se = proc.communicate(timeout=300)
            check(proc.returncode == 0 and "results written" in so, f"trial {trial}: status {proc.returncode}\n{se}")
        W, seed = final_model(p("s.h5"))
        with h5py.File(p(f"c{seed}.h5"), "r") as f:
            check(np.array_equal(W, f["model/blocks/W"][()]), f"trial {trial}: s.h5 mixes the jobs' data")
        check(not glob.glob(p("*.tmp")), f"trial {trial}: temporary files left: {glob.glob(p('*.tmp'))}")
        print(f"trial {trial}: s.h5 is job {seed}'s, whole")


@contextlib.contextmanager
def full_disk(tmp):
    """A directory where writes beyond a few MB fail: a 2 MB tmpfs mounted when the test runs as
    root and may mount, else a 4 MB file-size limit (RLIMIT_FSIZE; thetanet ignores SIGXFSZ and
    gets EFBIG) on the processes started, MPI's own files included."""
    d = os.path.join(tmp, "full")
    os.mkdir(d)
    mounted = os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", d],
                                                   capture_output=True).returncode == 0
    if mounted:
        print("full disk: a 2 MB tmpfs")
        try:
            yield d, {}
        finally:
            subprocess.run(["umount", "-l", d])
    else:
        print("full disk: RLIMIT_FSIZE of 4 MB")

        def limit():
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (4 << 20, 4 << 20))
        yield d, {"preexec_fn": limit}


def case_full_disk(tmp):
    """A checkpoint or results write that fails (full disk) ends the run with exit status 1 and
    one line, on 1 and 2 ranks, within seconds; the old checkpoint stays; nothing is left."""
    small = os.path.join(tmp, "small.h5")
    run(["train", "-epochs", "1", "-checkpoint", small] + SMALL)
    with full_disk(tmp) as (d, kw):
        ckpt = os.path.join(d, "c.h5")
        big = ["train", "-epochs", "2", "-width", "128", "-layers", "64", "-theta", "0"]  # results of 8 MB
        for ranks in (1, 2):
            with open(small, "rb") as src, open(ckpt, "wb") as dst:
                dst.write(src.read())
            good = open(ckpt, "rb").read()
            t0 = time.time()
            r = run(big + ["-checkpoint", ckpt, "-checkpoint_every", "1"], ranks, expect=1, timeout=120, **kw)
            one_line(r, "cannot write", f"checkpoint on a full disk, {ranks} ranks ({time.time() - t0:.1f} s)")
            check(open(ckpt, "rb").read() == good, "the old checkpoint was damaged")
            check(os.listdir(d) == ["c.h5"], f"left behind: {os.listdir(d)}")
            os.remove(ckpt)
            r = run(big[:2] + ["1"] + big[3:] + ["-output", os.path.join(d, "r.h5")], ranks, expect=1, timeout=120, **kw)
            one_line(r, "cannot write", f"results on a full disk, {ranks} ranks")
            check(os.listdir(d) == [], f"left behind: {os.listdir(d)}")


# ---- sizes and options --------------------------------------------------------------------

def case_sizes(tmp):
    """Sizes are checked in 64 bits and against the node's memory before anything that large is
    allocated: exit status 2, quickly, with the figure."""
    tr = ["train", "-epochs", "1"]
    for args, needle in ((["-layers", "1000000000"], "parameters"), (["-width", "100000", "-layers", "1"], "parameters"),
                         (["-width", "20000", "-layers", "4"], "GB of memory"), (["-width", "2e9"], "-width 2e9"),
                         (["-width", "256", "-layers", "64", "-max_memory", "0.01"], "-max_memory"),
                         (["-layers", "100000", "-width", "64", "-batch", "512"], "-batch")):
        t0 = time.time()
        usage_error(tr + args, needle)
        check(time.time() - t0 < 60, f"{args}: took {time.time() - t0:.0f} s")


def case_option_values(tmp):
    """An option given without its value, or an integer beyond 32 bits, is refused naming it; a
    bad option on 4 ranks is reported once."""
    for opt in ("-output", "-checkpoint", "-width", "-epochs", "-lr", "-act", "-block_atol"):
        usage_error(["train", "-epochs", "1", opt], f"{opt} needs a value")
    usage_error(["train", "-epochs", "99999999999"], "-epochs 99999999999")
    usage_error(["train", "-epochs", "1", "-batch", "99999999999"], "-batch 99999999999")
    usage_error(["evaluate", "-model"], "-model needs a value")
    usage_error(["train", "-act", "swish"], "swish", ranks=4)
    usage_error(["train", "-width", "2e9"], "-width", ranks=2)


# ---- restarts, signals --------------------------------------------------------------------

def case_restart_gaps(tmp):
    """A restart whose -epochs is not beyond the checkpoint's, or on another training set, is
    refused; -restart_new_data allows the latter."""
    p = lambda n: os.path.join(tmp, n)
    run(["train", "-epochs", "3", "-checkpoint", p("c.h5")] + SMALL)
    for e in ("2", "3"):
        usage_error(["train", "-epochs", e, "-restart", p("c.h5")] + SMALL, "-epochs " + e)
    run(["export", "-problem", "spirals", "-train", p("same.h5")])
    run(["train", "-epochs", "4", "-restart", p("c.h5"), "-train", p("same.h5")] + SMALL)
    with h5py.File(p("same.h5"), "r+") as f:
        f["X"][0, 0] += 1e-9
    usage_error(["train", "-epochs", "4", "-restart", p("c.h5"), "-train", p("same.h5")] + SMALL, "-restart_new_data")
    run(["train", "-epochs", "4", "-restart", p("c.h5"), "-train", p("same.h5"), "-restart_new_data"] + SMALL)


class Started:
    """A long run whose output goes to files (a pipe nobody reads would stall the launcher),
    started and waited for until it has trained `epochs` epochs."""

    def __init__(self, cmd, tmp, name, epochs=20):
        self.out, self.err = os.path.join(tmp, name + ".out"), os.path.join(tmp, name + ".err")
        with open(self.out, "w") as o, open(self.err, "w") as e:
            self.proc = subprocess.Popen(cmd, stdout=o, stderr=e, env=ENV)
        t0 = time.time()
        while f"epoch {epochs}/" not in open(self.out).read():
            check(self.proc.poll() is None, f"the run ended by itself: {open(self.err).read()[-2000:]}")
            check(time.time() - t0 < 120, "the run does not get going")
            time.sleep(0.1)

    def signal(self, sig, timeout=120):
        """Send sig; return (status, stdout, stderr) once the process has ended."""
        self.proc.send_signal(sig)
        self.proc.wait(timeout=timeout)
        return self.proc.returncode, open(self.out).read(), open(self.err).read()


def loadable(ckpt, ranks):
    """The checkpoint is complete and a restart continues from it."""
    with h5py.File(ckpt, "r") as f:
        epoch = int(f["state"].attrs["epoch"])
        check(int(f["state"].attrs["complete"]) == 1, "checkpoint incomplete")
    run(["train", "-epochs", str(epoch + 2), "-restart", ckpt] + STEADY, ranks)
    return epoch


STEADY = ["-lr", "1e-3"]  # a run that trains on steadily until stopped


def case_sigterm(tmp):
    """Signals to the launcher (Open MPI's mpiexec): SIGUSR1 reaches every rank at once, which
    write a checkpoint and stop with exit status 1 and the message; SIGTERM reaches them only
    as mpiexec's own shutdown (SIGCONT, SIGTERM a second later, SIGKILL a second after, output
    no longer relayed), which never leaves a damaged checkpoint; the job script turns SIGTERM
    into SIGUSR1, so a run started by it stops with its checkpoint."""
    p = lambda n: os.path.join(tmp, n)
    long = ["train", "-epochs", "1000000", "-checkpoint_every", "1000000"] + STEADY
    status, so, se = Started(command(long + ["-checkpoint", p("usr1.h5")], 2), tmp, "usr1").signal(signal.SIGUSR1)
    check(status == 1 and "stopped by a signal" in se, f"SIGUSR1: status {status}\n{se[-2000:]}")
    print(f"SIGUSR1 to mpiexec: stopped with a checkpoint after epoch {loadable(p('usr1.h5'), 2)}")

    t0 = time.time()
    status, so, se = Started(command(long + ["-checkpoint", p("term.h5")], 2), tmp, "term").signal(signal.SIGTERM)
    check(status != 0, "SIGTERM: the run went on to the end")
    print(f"SIGTERM to mpiexec: the job ended {time.time() - t0:.1f} s later (status {status}); "
          + (f"checkpoint after epoch {loadable(p('term.h5'), 2)}" if os.path.exists(p("term.h5")) else "no checkpoint"))

    # the job scripts' runner (jobs/lib/checkpointed.sh), as jobs/mpirun/train.sh calls it
    lib = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "jobs", "lib", "checkpointed.sh")
    job = " ".join(shlex.quote(a) for a in command(long, 2))
    status, so, se = Started(["bash", "-c", f"source {shlex.quote(lib)}; tn_checkpointed_run {shlex.quote(p('job'))} {job}; exit $TN_STATUS"],
                             tmp, "script").signal(signal.SIGTERM)
    check("stopped by a signal" in so + se and os.path.exists(p("job.ckpt.h5")), f"job script: status {status}\n{(so + se)[-2000:]}")
    print(f"SIGTERM to the job script: stopped with a checkpoint after epoch {loadable(p('job.ckpt.h5'), 2)}")


def case_mgrit_factor(tmp):
    """The summary's MGRIT figures are the training solves': a validation set does not change
    them."""
    p = lambda n: os.path.join(tmp, n)
    run(["export", "-problem", "spirals", "-train", p("t.h5"), "-val", p("v.h5")])
    base = ["train", "-train", p("t.h5"), "-epochs", "2", "-width", "8", "-layers", "32", "-depth_solver", "mgrit", "-mgrit_max_it", "3",
            "-mgrit_tol", "0", "-mgrit_rtol", "0"]
    def summary(args):
        line = [l for l in run(args).stdout.splitlines() if l.startswith("summary ")][-1].split()[1:]
        return dict(zip(line[::2], line[1::2]))
    a, b = summary(base), summary(base + ["-val", p("v.h5")])
    for k in ("mgrit_its", "mgrit_factor", "mgrit_res", "newton_its", "krylov_its"):
        check(a[k] == b[k], f"{k}: {a[k]} without validation, {b[k]} with")
    print(f"mgrit_factor {a['mgrit_factor']} with and without validation")


if __name__ == "__main__":
    sys.exit(harness.main(globals(), "thetanet-faults-"))
