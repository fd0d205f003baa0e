#!/usr/bin/env python3
"""thetanet's gradient against an independent float64 computation written here from the
equations of DESIGN.md §1: the forward theta-method solved by Newton's method in NumPy, and
the derivative of the loss by the complex step, d loss/d p = Im loss(p + i eps e_p) / eps with
eps = 1e-30, exact to rounding (no subtraction, no adjoint). `evaluate -gradient` must agree to
1e-8 relative at its default (tight) tolerances.

usage: reference_test.py CASE --thetanet PATH --mpiexec "mpiexec --oversubscribe ..."
"""
import os
import sys

import cli_test as cli
import harness
import h5py
import numpy as np
from cli_test import check

ARGS = None
ARRAYS = ("opening/K", "opening/b", "blocks/W", "blocks/b", "closing/C", "closing/b")


def act(name, z):
    """An activation and its derivative, analytic in z (complex arguments allowed)."""
    if name == "none":
        return z, np.ones_like(z)
    if name == "tanh":
        s = np.tanh(z)
        return s, 1 - s * s
    if name == "sigmoid":
        s = 1 / (1 + np.exp(-z))
        return s, s * (1 - s)
    if name == "softplus":
        return np.log(1 + np.exp(z)), 1 / (1 + np.exp(-z))
    raise ValueError(name)


def outputs(p, cfg, X):
    """The network's outputs z [N, m] for the parameter arrays p (complex allowed)."""
    n, L, theta, h = cfg["width"], cfg["layers"], cfg["theta"], cfg["T"] / cfg["layers"]
    y = act(cfg["opening_activation"], X @ p["opening/K"].T + p["opening/b"])[0]
    for j in range(L):
        W = p["blocks/W"][j]
        A = W - W.T - cfg["gamma"] * np.eye(n) if cfg["antisymmetric"] else W
        b = p["blocks/b"][j]
        F = lambda v: act(cfg["activation"], v @ A.T + b)
        c = y + h * (1 - theta) * F(y)[0]
        if theta == 0:
            y = c
            continue
        v = y + h * F(y)[0]
        for _ in range(60):  # Newton: G(v) = v - c - h theta F(v), Jacobian I - h theta diag(s') A per sample
            s, ds = F(v)
            G = v - c - h * theta * s
            J = np.eye(n) - h * theta * ds[:, :, None] * A[None, :, :]
            v = v - np.linalg.solve(J, G[:, :, None])[:, :, 0]
        check(np.max(np.abs(v - c - h * theta * F(v)[0])) < 1e-13, "the reference Newton solve did not converge")
        y = v
    return y @ p["closing/C"].T + p["closing/b"]


def loss(p, cfg, X, Y):
    """The data loss of DESIGN.md §1."""
    z = outputs(p, cfg, X)
    if cfg["task"] == "classification":
        zmax = np.max(z.real, axis=1, keepdims=True)
        lse = np.log(np.sum(np.exp(z - zmax), axis=1)) + zmax[:, 0]
        return np.mean(lse - z[np.arange(len(Y)), Y])
    return np.mean((z - Y.reshape(z.shape)) ** 2)


def complex_step_gradient(p, cfg, X, Y):
    eps = 1e-30
    grad = {}
    for name in ARRAYS:
        g = np.zeros(p[name].shape)
        for idx in np.ndindex(p[name].shape):
            q = {k: v.astype(complex) for k, v in p.items()}
            q[name][idx] += 1j * eps
            g[idx] = loss(q, cfg, X, Y).imag / eps
        grad[name] = g
    return grad


def read_model(path):
    with h5py.File(path, "r") as f:
        p = {k: f["model"][k][()] for k in ARRAYS}
        cfg = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f["model"].attrs.items()}
    for k in ("width", "layers"):
        cfg[k] = int(cfg[k])
    for k in ("theta", "T", "gamma"):
        cfg[k] = float(cfg[k])
    cfg["antisymmetric"] = bool(int(cfg["antisymmetric"]))
    return p, cfg


def case_gradient(tmp):
    """evaluate -gradient against the complex-step reference: explicit, trapezoidal and backward
    Euler blocks, dense and antisymmetric, tanh, sigmoid and softplus, both tasks, 1 and 2 ranks."""
    cli.ARGS = ARGS
    rng = np.random.default_rng(5)
    X = rng.standard_normal((37, 3))
    labels = (X[:, 0] * X[:, 1] + 0.3 * X[:, 2] > 0).astype(np.int64) + (X[:, 2] > 1).astype(np.int64)
    targets = np.stack([np.sin(X[:, 0]), X[:, 1] * X[:, 2]], axis=1)
    cls, reg = os.path.join(tmp, "cls.h5"), os.path.join(tmp, "reg.h5")
    cli.write_dataset(cls, X, labels)
    cli.write_dataset(reg, X, targets)
    cases = [
        ("explicit", cls, ["-theta", "0"], 1),
        ("trapezoidal", cls, ["-theta", "0.5", "-opening_act", "tanh"], 2),
        ("backward-euler-softplus-regression", reg, ["-theta", "1", "-act", "softplus", "-T", "3"], 1),
        ("antisymmetric-sigmoid", cls, ["-theta", "0.5", "-antisymmetric", "-gamma", "0.1", "-act", "sigmoid"], 2),
        ("gmres-adjoint", cls, ["-theta", "0.7", "-T", "3"], 1),
    ]
    for label, data, opts, ranks in cases:
        model, _ = cli.train(tmp, label, 1, ["-train", data, "-width", "4", "-layers", "3", "-epochs", "4",
                                             "-batch", "8", "-lr", "0.05"] + opts)
        p, cfg = read_model(model)
        task = cfg["task"]
        ref = complex_step_gradient(p, cfg, X, labels if task == "classification" else targets)
        extra = ["-block_method", "newton"] if label == "gmres-adjoint" else []
        out = os.path.join(tmp, label + "_g.h5")
        status, so, se = cli.run(["evaluate", "-model", model, "-data", data, "-gradient", "-output", out] + extra, ranks)
        check(status == 0, f"{label}: evaluate -gradient failed\n{se}")
        with h5py.File(out, "r") as f:
            g = {k: f["gradient"][k][()] for k in ARRAYS}
            value = f.attrs["loss"]
        a = np.concatenate([g[k].ravel() for k in ARRAYS])
        b = np.concatenate([ref[k].ravel() for k in ARRAYS])
        err = np.linalg.norm(a - b) / np.linalg.norm(b)
        worst = np.max(np.abs(a - b)) / np.max(np.abs(b))
        lref = loss(p, cfg, X, labels if task == "classification" else targets)
        print(f"{label} ({ranks} rank(s)): |g - g_ref| / |g_ref| = {err:.2e}, max {worst:.2e}; "
              f"loss {value:.15g} vs {lref:.15g}")
        check(err < 1e-8 and worst < 1e-8, f"{label}: gradient differs from the reference by {err:.2e} ({worst:.2e})")
        check(abs(value - lref) < 1e-12 * abs(lref), f"{label}: loss {value} != reference {lref}")
        # the same model at the training run's solver tolerances: how far loose solves are
        status, so, se = cli.run(["evaluate", "-model", model, "-data", data, "-gradient", "-output", out,
                                  "-block_atol", "1e-6", "-adjoint_ksp_rtol", "1e-6"] + extra, ranks)
        with h5py.File(out, "r") as f:
            loose = np.concatenate([f["gradient"][k][()].ravel() for k in ARRAYS])
        print(f"    at -block_atol 1e-6 -adjoint_ksp_rtol 1e-6: {np.linalg.norm(loose - b) / np.linalg.norm(b):.2e}")


# ---- robustness ----------------------------------------------------------------------------

M64 = (1 << 64) - 1


def hash64(x):
    """splitmix64's finaliser, as src/rng.c (NumPy uint64 arrays wrap around like C)."""
    x = x + np.uint64(0x9e3779b97f4a7c15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xbf58476d1ce4e5b9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94d049bb133111eb)
    return x ^ (x >> np.uint64(31))


def normal(seed, stream, index):
    """src/rng.c's counter-based standard normal (Box-Muller), written again here."""
    with np.errstate(over="ignore"):
        key = hash64(hash64(np.uint64(seed)) ^ np.uint64((stream * 0xd1b54a32d192ed03) & M64))
        u = lambda i: (hash64(key ^ i) >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
        u1, u2 = 1.0 - u(np.uint64(2) * index), u(np.uint64(2) * index + np.uint64(1))
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def case_robustness(tmp):
    """evaluate -noise_std: /robustness against the accuracy and loss of the reference forward
    on inputs with the documented noise (Gaussian, a function of seed, draw, row and component),
    recomputed here; noise 0 equals plain evaluate; the same on 2 ranks."""
    cli.ARGS = ARGS
    rng = np.random.default_rng(7)
    X = rng.standard_normal((300, 3))
    Y = (X[:, 0] * X[:, 1] + 0.3 * X[:, 2] > 0).astype(np.int64)
    data = os.path.join(tmp, "d.h5")
    cli.write_dataset(data, X, Y)
    model, _ = cli.train(tmp, "m", 1, ["-train", data, "-width", "6", "-layers", "3", "-epochs", "30", "-batch", "20"])
    p, cfg = read_model(model)
    stds, K, seed = [0.0, 0.3, 1.0], 3, 11
    want = {"accuracy_mean": [], "accuracy_std": [], "loss_mean": []}
    rows = np.arange(X.shape[0], dtype=np.uint64)[:, None] * np.uint64(X.shape[1]) + np.arange(X.shape[1], dtype=np.uint64)
    for s in stds:
        acc, los = [], []
        for k in range(K if s > 0 else 1):
            Xn = X + s * normal(seed, (k << 8) | 3, rows) if s > 0 else X
            z = outputs(p, cfg, Xn)
            acc.append(np.mean(np.argmax(z, axis=1) == Y))
            los.append(loss(p, cfg, Xn, Y))
        want["accuracy_mean"].append(np.mean(acc))
        want["accuracy_std"].append(np.std(acc, ddof=1) if len(acc) > 1 else 0.0)
        want["loss_mean"].append(np.mean(los))
    check(len(set(want["accuracy_mean"])) > 1, f"noise changed nothing: {want}")
    results = []
    for ranks in (1, 2):
        out = os.path.join(tmp, f"r{ranks}.h5")
        status, so, se = cli.run(["evaluate", "-model", model, "-data", data, "-noise_std", ",".join(map(str, stds)),
                                  "-noise_samples", str(K), "-seed", str(seed), "-output", out, "-block_atol", "1e-12"], ranks)
        check(status == 0, se)
        with h5py.File(out, "r") as f:
            r = {k: f["robustness"][k][()] for k in f["robustness"]}
            plain = (f.attrs["accuracy"], f.attrs["loss"])
        check(np.array_equal(r["noise_std"], stds), f"noise_std {r['noise_std']}")
        check(np.array_equal(r["accuracy_mean"], want["accuracy_mean"]), f"accuracy {r['accuracy_mean']} != {want}")
        check(np.allclose(r["accuracy_std"], want["accuracy_std"], rtol=1e-12, atol=1e-15), f"{r['accuracy_std']}")
        check(np.allclose(r["loss_mean"], want["loss_mean"], rtol=1e-9, atol=0), f"loss {r['loss_mean']} != {want}")
        check(r["accuracy_mean"][0] == plain[0] and r["loss_mean"][0] == plain[1], "noise 0 differs from evaluate")
        results.append(r)
        print(f"ok: {ranks} rank(s):", {k: np.round(v, 6).tolist() for k, v in r.items()})
    # the same draws on any number of ranks: accuracies equal, losses to the order of summation
    check(all(np.array_equal(results[0][k], results[1][k]) for k in ("accuracy_mean", "accuracy_std")),
          "2 ranks draw other noise than 1")
    check(np.allclose(results[0]["loss_mean"], results[1]["loss_mean"], rtol=1e-13, atol=0), "2 ranks' losses")


if __name__ == "__main__":
    sys.exit(harness.main(globals(), "thetanet-reference-"))
