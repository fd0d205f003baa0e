"""Reading thetanet's HDF5 files (layouts: DESIGN.md §4) and running the program from Python.
The shared part of the analysis scripts, the scaling study and the paper job in jobs/."""
import os
import shlex
import shutil
import subprocess
import sys
import tempfile

try:
    import h5py
    import numpy as np
except ImportError:  # require_h5py() says what to do
    h5py = np = None

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROBLEMS = ("spirals", "sine", "peaks")


def require_h5py():
    """For a script's start: Debian's python3-h5py lives with /usr/bin/python3, which another
    python3 on PATH (a virtual environment, conda) may shadow; rerun the script with the one
    that has it, or stop with what to install."""
    if h5py is not None:
        return
    debian = "/usr/bin/python3"
    if os.path.exists(debian) and os.path.realpath(sys.executable) != os.path.realpath(debian):
        os.execv(debian, [debian] + sys.argv)
    sys.exit(f"{os.path.basename(sys.argv[0])}: needs h5py and numpy (Debian: apt-get install python3-h5py)")


class ThetanetError(RuntimeError):
    """A thetanet run that failed: carries the exit status and thetanet's own message."""

    def __init__(self, cmd, status, stdout, stderr):
        self.cmd, self.status, self.stdout, self.stderr = cmd, status, stdout, stderr
        lines = [l for l in stderr.splitlines() if l.startswith("thetanet:") and "warning:" not in l]
        self.message = lines[-1] if lines else (stderr.strip().splitlines() or ["(no message)"])[-1]
        super().__init__(f"{' '.join(cmd)}: exit status {status}: {self.message}")


# ---- finding and running the program -----------------------------------------------------

def find_thetanet(path=None):
    """The thetanet binary: `path` if given, else $THETANET, $THETANET_BUILD/thetanet, the
    repository's build/thetanet, or `thetanet` on PATH."""
    candidates = [path] if path else [os.environ.get("THETANET"),
                                      os.environ.get("THETANET_BUILD") and
                                      os.path.join(os.environ["THETANET_BUILD"], "thetanet"),
                                      os.path.join(ROOT, "build", "thetanet"), shutil.which("thetanet")]
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return os.path.abspath(c)
    where = path or "build/thetanet, $THETANET_BUILD or PATH"
    sys.exit(f"{os.path.basename(sys.argv[0])}: no thetanet binary at {where} "
             "(build it with `cmake --build build`, or pass --thetanet PATH)")


def launcher(mpiexec=None):
    """The MPI launcher as a list, to which `-n R` is appended: `mpiexec` if given (a command
    line), else $THETANET_MPIEXEC, `srun` inside a Slurm allocation, or `mpiexec` (with
    --oversubscribe for Open MPI, so a study may ask for more ranks than cores)."""
    if mpiexec:
        return shlex.split(mpiexec)
    if os.environ.get("THETANET_MPIEXEC"):
        return shlex.split(os.environ["THETANET_MPIEXEC"])
    if os.environ.get("SLURM_JOB_ID") and shutil.which("srun"):
        return ["srun"]
    cmd = ["mpiexec"]
    try:
        version = subprocess.run(cmd + ["--version"], capture_output=True, text=True).stdout.lower()
        if "open mpi" in version or "open-mpi" in version:
            cmd.append("--oversubscribe")
    except OSError:
        pass
    return cmd


def environment():
    """The environment of a run: single-threaded BLAS (one rank per core) and, as root, what
    Open MPI needs to start."""
    env = dict(os.environ)
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    if os.geteuid() == 0:
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    return env


def command(args, thetanet=None, ranks=None, mpiexec=None):
    """The command line of `thetanet ARGS`, under the launcher with `-n ranks` when ranks is given."""
    cmd = [find_thetanet(thetanet)] + [str(a) for a in args]
    return cmd if ranks is None else launcher(mpiexec) + ["-n", str(ranks)] + cmd


def run(args, thetanet=None, ranks=None, mpiexec=None, check=True, timeout=None, log=None):
    """Run `thetanet ARGS` (see command()); return the CompletedProcess. With check, a failed
    run raises ThetanetError. With log, stdout and stderr are also written to that file."""
    cmd = command(args, thetanet, ranks, mpiexec)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=environment())
    if log:
        with open(log, "w") as f:
            f.write("$ " + " ".join(shlex.quote(c) for c in cmd) + "\n" + p.stdout + p.stderr)
    if check and p.returncode != 0:
        raise ThetanetError(cmd, p.returncode, p.stdout, p.stderr)
    return p


def parse_summary(stdout):
    """The fields of the last `summary key value ...` line of a train run, numbers as int or
    float (nan stays a float), anything else as a string; {} when there is no such line."""
    lines = [l for l in stdout.splitlines() if l.startswith("summary ")]
    if not lines:
        return {}
    words = lines[-1].split()[1:]
    return {k: number(v) for k, v in zip(words[::2], words[1::2])}


def number(text):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


# ---- reading files -----------------------------------------------------------------------

def text(value):
    return value.decode() if isinstance(value, bytes) else value


class Results:
    """A results file (train -output) or any file with /model: history, timing, config, model."""

    def __init__(self, path):
        self.path = path
        with h5py.File(path, "r") as f:
            if "model" not in f:
                raise ValueError(f"{path}: no /model group (not a thetanet model or results file)")
            self.model = {k: text(v) for k, v in f["model"].attrs.items()}
            self.history = {k: f["history"][k][()] for k in f["history"]} if "history" in f else {}
            self.timing = {k: f["timing"][k][()] for k in f["timing"]} if "timing" in f else {}
            self.config = {k: text(v) for k, v in f["config"].attrs.items()} if "config" in f else {}

    @property
    def classification(self):
        return self.model["task"] == "classification"

    @property
    def data_name(self):
        """The training set: an embedded problem's name or the file's base name."""
        return os.path.splitext(os.path.basename(self.config.get("train", "")))[0] or "?"

    def label(self, data=False):
        """A short legend entry: ResNet / trapezoidal / theta, layers (and the data set)."""
        m = self.model
        theta = float(m["theta"])
        kind = {0.0: "ResNet", 0.5: "trapezoidal", 1.0: "backward Euler"}.get(theta, f"theta {theta:g}")
        return ((f"{self.data_name}: " if data else "") + f"{kind} (theta {theta:g}), L {m['layers']}" +
                (", antisym." if m["antisymmetric"] else ""))

    def data(self, **run_kw):
        """The training and validation sets the model was trained on, as {'train': (X, Y),
        'val': (X, Y)} (entries missing when unknown): an embedded problem is exported by
        thetanet, a file named in /config is read if it still exists."""
        out = {}
        for role in ("train", "val"):
            src = self.config.get(role, "")
            if src in PROBLEMS:
                out[role] = problem(src, **run_kw)[role]
            elif src and os.path.exists(src):
                out[role] = read_dataset(src)
        return out


def read_dataset(path):
    with h5py.File(path, "r") as f:
        return f["X"][()].astype(float), f["Y"][()]


def write_dataset(path, X, Y, task=None, name=None):
    """A data set in thetanet's layout: /X [N, d] float64, /Y [N] labels or [N]/[N, m] targets."""
    with h5py.File(path, "w") as f:
        f["X"] = np.asarray(X, dtype=float)
        f["Y"] = Y
        if task:
            f.attrs["task"] = task
        if name:
            f.attrs["name"] = name


def problem(name, **run_kw):
    """An embedded problem's data sets as thetanet generates them (`thetanet export`):
    {'train': (X, Y), 'val': (X, Y), 'task': ...}."""
    if name not in PROBLEMS:
        raise ValueError(f"unknown embedded problem {name!r} (one of {', '.join(PROBLEMS)})")
    with tempfile.TemporaryDirectory(prefix="thetanet-export-") as tmp:
        train, val = os.path.join(tmp, "train.h5"), os.path.join(tmp, "val.h5")
        run(["export", "-problem", name, "-train", train, "-val", val], **run_kw)
        with h5py.File(train, "r") as f:
            task = text(f.attrs["task"])
        return {"train": read_dataset(train), "val": read_dataset(val), "task": task}


# ---- the program as a function -----------------------------------------------------------

def predict(model, X, options=(), **run_kw):
    """The network's outputs [N, m] (logits for classification) at the points X [N, d], by
    `thetanet predict` on a data set holding X (with dummy zero labels): one implementation of
    the network, the program's. options: more thetanet options (block solver settings)."""
    r = Results(model)
    task = r.model["task"]
    Y = np.zeros(len(X), dtype=np.int64 if task == "classification" else float)
    with tempfile.TemporaryDirectory(prefix="thetanet-predict-") as tmp:
        data, out = os.path.join(tmp, "points.h5"), os.path.join(tmp, "pred.h5")
        write_dataset(data, X, Y if task == "classification" or r.model["outputs"] == 1
                      else np.zeros((len(X), r.model["outputs"])), task=task)
        run(["predict", "-model", model, "-data", data, "-output", out] + list(options), **run_kw)
        with h5py.File(out, "r") as f:
            return f["predictions"][()]


def evaluate(model, X, Y, options=(), **run_kw):
    """`thetanet evaluate` of the model on (X, Y): the root attributes it writes (loss, and
    accuracy for classification). options: more thetanet options (block solver settings)."""
    task = Results(model).model["task"]
    with tempfile.TemporaryDirectory(prefix="thetanet-evaluate-") as tmp:
        data, out = os.path.join(tmp, "data.h5"), os.path.join(tmp, "eval.h5")
        write_dataset(data, X, Y, task=task)
        run(["evaluate", "-model", model, "-data", data, "-output", out] + list(options), **run_kw)
        with h5py.File(out, "r") as f:
            return {k: float(v) for k, v in f.attrs.items()}


# ---- pictures ----------------------------------------------------------------------------

def plot_parser(doc, files, what):
    """The arguments of a plot script that draws FILES: the files, -o PNG, --labels (one per
    file) and --title; the script adds its own."""
    import argparse
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument(files, nargs="+", help=what)
    ap.add_argument("-o", "--output", required=True, help="PNG file to write")
    ap.add_argument("--labels", help="comma-separated legend entries or panel titles, one per file")
    ap.add_argument("--title")
    return ap


def plot_labels(ap, args, files):
    """--labels as a list (None when not given), one per file or a usage error."""
    labels = args.labels.split(",") if args.labels else None
    if labels and len(labels) != len(files):
        ap.error(f"--labels has {len(labels)} entries for {len(files)} files")
    return labels


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only: no display needed on a cluster)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save(fig, path):
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):
        sys.exit(f"{os.path.basename(sys.argv[0])}: no directory {d} for {path}")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt
    plt.close(fig)
    print(f"wrote {path}")
