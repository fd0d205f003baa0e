#!/usr/bin/env python3
"""MGRIT across depth: how fast it converges.

(A) Iterations to -mgrit_tol 1e-10 and the mean per-iteration convergence factor of the
    forward and adjoint MGRIT solves of a 256-layer network, against the coarsening factor m
    (2, 4, 8, 16), for theta 0, 0.5 and 1, T = 4 and 16, with dense, antisymmetric, and stiff
    dissipative antisymmetric blocks (gamma 8, where m h |A| reaches 9), with m h |A| reported
    (|A|: the mean spectral norm of the blocks' operators). (--T 64 adds a case where the dense
    blocks' implicit coarse equations have no unique solution: slow, and only theta 0 converges.)
Its former parts (B) and (C), the speed of inexact MGRIT training and an analytic model of it up
to 1024 ranks, rested on one inexact iteration per solve, whose models do not work as the
network; jobs/scaling/simulate_study replaces them with SimGrid replays of traced runs of the
default (converged) configuration.
Everything goes to one HDF5 file and a PNG.

usage: mgrit_study.py --thetanet BUILD/thetanet --mpiexec "mpiexec ..." [--out DIR] [--T 4 16 ...]
"""
import argparse
import math
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "analysis"))
import thetanet_results as tr  # noqa: E402

tr.require_h5py()  # before h5py: restarts under the Python that has it if need be

import h5py  # noqa: E402
import numpy as np  # noqa: E402

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def run(args, cmd, ranks=1, check=True):
    """`thetanet train CMD` on `ranks` ranks: exit status, summary fields, wall seconds."""
    t0 = time.time()
    p = tr.run(["train"] + cmd, thetanet=args.thetanet, ranks=ranks if ranks > 1 else None, mpiexec=args.mpiexec, check=False)
    wall = time.time() - t0
    if check and p.returncode:
        sys.exit(f"failed: thetanet train {' '.join(cmd)}\n{p.stderr}")
    return p.returncode, tr.parse_summary(p.stdout), wall


def spectral_norm(path, antisymmetric, gamma=0.0):
    with h5py.File(path, "r") as f:
        W = f["model/blocks/W"][()]
    A = W - np.transpose(W, (0, 2, 1)) - gamma * np.eye(W.shape[1]) if antisymmetric else W
    return float(np.mean([np.linalg.norm(a, 2) for a in A]))


# the block families of (A): (label, antisymmetric, gamma). The last is stiff and dissipative:
# A = W - W^T - 8 I, whose coarse steps a theta >= 1/2 step keeps stable and an explicit one
# does not once m h gamma > 2; its implicit coarse steps need Newton (Picard contracts only
# while h_c theta |A| < 1).
FAMILIES = (("dense", False, 0.0), ("antisymmetric", True, 0.0), ("antisym, gamma 8", True, 8.0))


def part_a(args, out):
    L, rows = 256, []
    print(f"(A) MGRIT iterations to 1e-10 and convergence factor, L = {L}, width 8, two levels "
          "(not converged in 100 iterations: 100)")
    print(f"{'theta':>5} {'blocks':>16} {'T':>3} {'m':>3} {'m h |A|':>8} {'its':>6} {'factor':>8}")
    for label, antisym, gamma in FAMILIES:
        for T in args.T:
            for theta in (0.0, 0.5, 1.0):
                norm = None
                for m in (2, 4, 8, 16):
                    res = os.path.join(out, "a.h5")
                    cmd = ["-problem", "spirals", "-width", "8", "-layers", str(L), "-T", str(T), "-theta", str(theta), "-epochs", "1",
                           "-batch", "512", "-lr", "1e-12", "-depth_solver", "mgrit", "-mgrit_cfactor", str(m), "-mgrit_tol", "1e-10",
                           "-mgrit_max_it", "100", "-output", res, "-block_atol", "1e-12"]
                    if antisym:
                        cmd += ["-antisymmetric", "-gamma", str(gamma)]
                    if gamma > 0:
                        cmd += ["-block_method", "newton_assembled"]
                    status, s, _ = run(args, cmd, check=False)
                    if norm is None and status == 0:
                        norm = spectral_norm(res, antisym, gamma)
                    its = s.get("mgrit_its", float("nan")) if status == 0 else float("nan")
                    fac = s.get("mgrit_factor", float("nan")) if status == 0 else float("nan")
                    mha = m * T / L * (norm or float("nan"))
                    rows.append((theta, int(antisym), gamma, T, m, mha, its, fac))
                    print(f"{theta:5.1f} {label:>16} {T:3d} {m:3d} {mha:8.2f} "
                          f"{(f'{its:6.1f}' if status == 0 else 'failed'):>6} {fac:8.3f}")
    return np.array(rows, dtype=float)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--thetanet", required=True)
    ap.add_argument("--mpiexec", default="mpiexec --oversubscribe")
    ap.add_argument("--out", default="mgrit_study")
    ap.add_argument("--T", type=int, nargs="+", default=[4, 16], help="final times of part A")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    a = part_a(args, args.out)
    h5 = os.path.join(args.out, "mgrit_study.h5")
    with h5py.File(h5, "w") as f:
        f["iterations"] = a
        f["iterations"].attrs["columns"] = "theta antisymmetric gamma T cfactor mh|A| mgrit_its factor"
    fig, ax = plt.subplots(1, 1, figsize=(6, 4))
    ax = [ax]
    for theta, style in ((0.0, "o"), (0.5, "s"), (1.0, "^")):
        for T in args.T:
            for gamma, line in ((0.0, "-"), (8.0, "--")):
                rows = a[(a[:, 0] == theta) & (a[:, 2] == gamma) & (a[:, 1] == (gamma > 0)) & (a[:, 3] == T)]
                if len(rows):
                    ax[0].semilogy(rows[:, 4], rows[:, 6], style + line,
                                   label=f"theta {theta:g}, T {T}, " + ("stiff" if gamma else "dense"))
    ax[0].set_xscale("log", base=2)
    ax[0].set_xlabel("cfactor m")
    ax[0].set_ylabel("MGRIT iterations to 1e-10 (100: not converged)")
    ax[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "mgrit_study.png"), dpi=100)
    print(f"\nwritten: {h5}, {os.path.join(args.out, 'mgrit_study.png')}")


if __name__ == "__main__":
    main()
