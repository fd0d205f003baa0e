#!/usr/bin/env python3
"""MGRIT across depth, measured and modelled.

(A) Iterations to -mgrit_tol 1e-10 and the mean per-iteration convergence factor of the
    forward and adjoint MGRIT solves of a 256-layer network, against the coarsening factor m
    (2, 4, 8, 16), for theta 0, 0.5 and 1, T = 4 and 16, with dense, antisymmetric, and stiff
    dissipative antisymmetric blocks (gamma 8, where m h |A| reaches 9), with m h |A| reported
    (|A|: the mean spectral norm of the blocks' operators). (--T 64 adds a case where the dense
    blocks' implicit coarse equations have no unique solution: slow, and only theta 0 converges.)
(B) Wall-clock time of a training epoch of a 256-layer, width-32 network: sequential on 1 rank
    against inexact MGRIT on 2 depth ranks (the nested start with -mgrit_max_it 1 and 2,
    cfactor 16; and one FCF cycle with cfactor 4), and the validation accuracy each reaches
    after the same number of epochs.
(C) A performance model calibrated with the measured cost of a fine and of a coarse block
    step, the message latency and the iteration counts of (B), predicting the speed-up of MGRIT
    over sequential propagation for 2 to 1024 depth ranks and L = 256 to 4096, checked against
    the measured 2-rank speed-up; the configuration it picks for 64 ranks and L = 1024 is then
    trained on one rank to check that one iteration per solve still reaches the accuracy of
    sequential training (MGRIT's arithmetic does not depend on the number of depth ranks).
Everything goes to one HDF5 file and a PNG.

usage: mgrit_study.py --thetanet BUILD/thetanet --mpiexec "mpiexec ..." [--out DIR] [--epochs E]
                       [--parts ABC] [--T 4 16 ...]
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


# the inexact configuration of (B) and of the model: the nested start (-mgrit_skip), one
# iteration per solve, coarse intervals of 16 blocks whose steps take at most 3 Picard iterations
FAST = ["-mgrit_skip", "-mgrit_cfactor", "16", "-mgrit_coarse_its", "3"]
COARSEST = 32  # the nested start in the model: at least 32 coarse intervals (steps of T/32 or less)


def part_b(args, out):
    base = ["-problem", "spirals", "-width", "32", "-layers", "256", "-T", "4", "-epochs", str(args.epochs)]
    mg = ["-depth_ranks", "2", "-depth_solver", "mgrit"]
    configs = (("sequential, 1 rank", 1, []),
               ("MGRIT max_it 1, nested start, m 16", 2, mg + ["-mgrit_max_it", "1"] + FAST),
               ("MGRIT max_it 2, nested start, m 16", 2, mg + ["-mgrit_max_it", "2"] + FAST),
               ("MGRIT max_it 1, FCF cycle, m 4", 2, mg + ["-mgrit_max_it", "1"]))
    print(f"\n(B) training epoch of a 256-layer, width-32 network, {args.epochs} epochs")
    results = []
    for label, ranks, extra in configs:
        status, s, wall = run(args, base + extra, ranks, check=False)
        epoch_s = s.get("epoch_s", float("nan"))
        acc = s.get("val_accuracy", float("nan"))
        results.append([ranks, epoch_s, acc, status, 1.0])
        print(f"{label:36s} epoch_s {epoch_s:8.4f} val_accuracy {acc:.4f}" + ("" if status == 0 else f" (failed: {status})"))
    seq = results[0][1]
    for row, (label, _, _) in zip(results[1:], configs[1:]):
        row[4] = seq / row[1]
        print(f"speed-up of {label} on 2 ranks over sequential on 1: {row[4]:.2f}x (target 1.2x), "
              f"val_accuracy {row[2]:.4f} against {results[0][2]:.4f}")
    return np.array(results, dtype=float)


def part_c(args, out, table_a, table_b):
    """Per solve, sequential: L c. MGRIT on P ranks, levels l = 0..nl-1 of L_l = L/m^l points,
    n_l = L_l/P of them per rank: a fine step costs c, a coarse one kappa c. An F-relaxation on
    level l costs n_l (1 - 1/m) steps when a rank holds whole intervals (n_l >= m), else the
    chain of m - 1 steps of one interval through the ranks that hold it, with a message per
    rank crossed; the C-point steps cost max(1, n_l/m); the coarsest level is a pipeline of L_c
    steps. With the nested start and one iteration the model takes two levels and coarse steps of
    T/32 or less, where one iteration still trains (measured; see below). The nested start costs the coarsest pipeline and an F-relaxation on each finer level;
    every iteration closes with an F-relaxation and the C-point residual (an allreduce) on level
    0; each further iteration adds the fine F-relaxation, the restriction and a V-cycle (FCF,
    restriction, F-interpolation per level). Per training step the operators of the intervals
    across ranks (up to P - 1 per level, n^2 + n values each) are summed in one allreduce, at an
    assumed 2 GB/s, shared by the forward and the adjoint solve. c: one block step, from a
    sequential epoch; kappa: from a one-rank MGRIT epoch (m 2, one iteration, nested start) over
    the sequential one, whose ratio is 1 + kappa/2; a: from 1- and 2-rank runs of a tiny network;
    each the shortest of three runs."""
    L0 = 256
    net = ["-problem", "spirals", "-width", "32", "-layers", str(L0), "-T", "4", "-epochs", "2", "-batch", "64"]
    def best_of_3(cmd, ranks=1):
        """the shortest epoch of three runs: this machine is shared"""
        return min(run(args, cmd, ranks)[1]["epoch_s"] for _ in range(3))

    seq = best_of_3(net)
    serial = best_of_3(net + ["-depth_solver", "mgrit", "-mgrit_max_it", "1"] + FAST[:1] + ["-mgrit_cfactor", "2"] + FAST[3:])
    steps = 2 * (512 // 64) * L0  # forward and adjoint steps of an epoch
    c = seq / steps
    kappa = max(0.5, 2 * (serial / seq - 1))
    # latency: a 2-layer, width-2 network split over 2 depth ranks against 1 rank, where the
    # messages (one forward, one backward per step) are most of the difference
    tiny = ["-problem", "spirals", "-width", "2", "-layers", "2", "-T", "1", "-theta", "0", "-epochs", "20", "-batch", "8"]
    a = max(1e-7, (best_of_3(tiny + ["-depth_ranks", "2"], ranks=2) - best_of_3(tiny)) / (2 * (512 // 8)))
    print(f"\n(C) model: block step c = {c * 1e6:.1f} us, coarse step kappa c with kappa = {kappa:.2f}, message latency a = {a * 1e6:.1f} us")

    width, bandwidth = 32, 2e9

    def mgrit_time(L, P, m, nl, K, skip):
        Ll = [L / m ** lev for lev in range(nl)]
        cost = [c] + [kappa * c] * (nl - 1)

        def fsweep(lev):
            n = Ll[lev] / P
            if n >= m:
                return cost[lev] * n * (1 - 1 / m) + a
            return cost[lev] * (m - 1) + a * (m - 1) / max(n, 1)

        def csteps(lev):
            return cost[lev] * max(1.0, Ll[lev] / (m * P)) + a

        def vcycle(lev):
            if lev == nl - 1:
                return cost[lev] * Ll[lev] + a * min(P, Ll[lev])
            return 3 * fsweep(lev) + 2 * csteps(lev) + csteps(lev + 1) + vcycle(lev + 1)

        close = fsweep(0) + csteps(0) + a * math.log2(max(P, 2))
        spans = sum(min(P - 1, Ll[lev]) for lev in range(1, nl)) * (width * width + width) * 8
        t = close + 0.5 * (a * math.log2(max(P, 2)) + 2 * spans / bandwidth)
        if skip:
            t += cost[-1] * Ll[-1] + a * min(P, Ll[-1]) + sum(fsweep(lev) for lev in range(1, nl - 1))
        for _ in range(K - (1 if skip else 0)):
            t += fsweep(0) + csteps(0) + csteps(1) + vcycle(1) + close
        return t

    Ps = [2, 8, 16, 32, 64, 128, 256, 512, 1024]
    Ls = [256, 512, 1024, 2048, 4096]
    models = (("nested start, K = 1", 1, True), ("FCF cycles, K = 2", 2, False))
    pred = np.full((len(models), len(Ls), len(Ps)), np.nan)
    for k, (name, K, skip) in enumerate(models):
        best = {}
        for i, L in enumerate(Ls):
            for j, P in enumerate(Ps):
                # one nested iteration trains only from a fine enough coarse level: two levels,
                # coarse steps of at most T/32 (at L 1024, 100 epochs, sequential 1.0: m 16 and
                # 32 with two levels 0.998; m 64 0.979; m 4 with three levels 0.988, m 8 with
                # three 0.969, with four 0.788)
                options = [(mgrit_time(L, P, m, nl, K, skip), m, nl) for m in (2, 4, 8, 16, 32) for nl in range(2, 12)
                           if (not skip or (nl == 2 and L / m >= COARSEST)) and L / m ** (nl - 1) >= 2]
                if options:
                    t, m, nl = min(options)
                    pred[k, i, j] = L * c / t
                    best[(L, P)] = (m, nl)
        print(f"predicted speed-up, {name}, best cfactor and levels:  P = " + " ".join(f"{P:6d}" for P in Ps))
        for i, L in enumerate(Ls):
            print(f"  L = {L:5d}" + " " * 44 + " ".join(f"{x:6.1f}" for x in pred[k, i]))
        j64, i1024 = Ps.index(64), Ls.index(1024)
        print(f"  at 64 ranks, L = 1024: {pred[k, i1024, j64]:.1f}x with cfactor {best[(1024, 64)][0]} and {best[(1024, 64)][1]} levels (target 8x)")
        if k == 0:
            best_fast = best[(1024, 64)]
    # the model against the measurement of (B): 2 ranks, L 256, m 16, two levels
    model_b = L0 * c / mgrit_time(L0, 2, 16, 2, 1, True)
    measured = table_b[1][4] if len(table_b) > 1 else float("nan")
    print(f"model at 2 ranks, L 256, m 16, nested start, K 1: {model_b:.2f}x; measured in (B): {measured:.2f}x")
    # one nested-start iteration must still train: the configuration the model picks for 64
    # ranks and L 1024, run on one rank (MGRIT's arithmetic does not depend on the number of
    # depth ranks, so this is the training 64 ranks would do)
    m, nl = best_fast
    check = ["-problem", "spirals", "-width", "32", "-layers", "1024", "-T", "4", "-epochs", str(args.epochs)]
    _, sq, _ = run(args, check)
    _, mg, _ = run(args, check + ["-depth_solver", "mgrit", "-mgrit_max_it", "1", "-mgrit_skip", "-mgrit_cfactor", str(m),
                                  "-mgrit_levels", str(nl), "-mgrit_coarse_its", "3"])
    accuracy = (sq["val_accuracy"], mg["val_accuracy"])
    print(f"L 1024, {args.epochs} epochs: val_accuracy {accuracy[0]:.4f} sequential, {accuracy[1]:.4f} with the nested start, "
          f"one iteration, cfactor {m}, {nl} levels")
    return pred, Ps, Ls, c, a, kappa, (m, nl) + accuracy


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--thetanet", required=True)
    ap.add_argument("--mpiexec", default="mpiexec --oversubscribe")
    ap.add_argument("--out", default="mgrit_study")
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--parts", default="ABC", help="which of the parts A, B, C to run")
    ap.add_argument("--T", type=int, nargs="+", default=[4, 16], help="final times of part A")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    a = part_a(args, args.out) if "A" in args.parts else np.zeros((0, 8))
    b = part_b(args, args.out) if "B" in args.parts else np.zeros((0, 5))
    pred, Ps, Ls, c, lat, kappa, check = (part_c(args, args.out, a, b) if "C" in args.parts
                                          else (np.zeros((2, 0, 0)), [], [], 0.0, 0.0, 0.0, (0, 0, np.nan, np.nan)))
    h5 = os.path.join(args.out, "mgrit_study.h5")
    with h5py.File(h5, "w") as f:
        f["iterations"] = a
        f["iterations"].attrs["columns"] = "theta antisymmetric gamma T cfactor mh|A| mgrit_its factor"
        f["speedup_2ranks"] = b
        f["speedup_2ranks"].attrs["columns"] = ("ranks epoch_s val_accuracy status speedup (rows: sequential; nested start, m 16, "
                                                "max_it 1; the same, max_it 2; FCF cycle, m 4, max_it 1)")
        f["model/speedup"] = pred
        f["model/speedup"].attrs["axes"] = "variant (nested start K 1, FCF cycles K 2) x layers x ranks"
        f["model/ranks"] = Ps
        f["model/layers"] = Ls
        f["model"].attrs["step_s"] = c
        f["model"].attrs["latency_s"] = lat
        f["model"].attrs["coarse_step_ratio"] = kappa
        f["model"].attrs["check_cfactor_levels_accuracy_sequential_mgrit"] = np.array(check, dtype=float)
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
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
    for i, L in enumerate(Ls):
        ax[1].loglog(Ps, pred[0, i], "o-", label=f"L {L}")
    ax[1].set_xlabel("depth ranks")
    ax[1].set_ylabel("predicted speed-up (model, nested start, K 1)")
    ax[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "mgrit_study.png"), dpi=100)
    print(f"\nwritten: {h5}, {os.path.join(args.out, 'mgrit_study.png')}")


if __name__ == "__main__":
    main()
