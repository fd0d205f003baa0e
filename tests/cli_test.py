#!/usr/bin/env python3
"""End-to-end tests of the thetanet program: runs it as a user would (under mpiexec where the
case needs ranks) and reads the HDF5 files it writes back with h5py.

usage: cli_test.py CASE --thetanet PATH --mpiexec "mpiexec --oversubscribe ..."
"""
import os
import re
import shlex
import subprocess
import sys

import harness
import h5py
import numpy as np

ARGS = None


def run(cmd, ranks=1, timeout=600, env=None):
    """Run thetanet with `cmd` options on `ranks` ranks; return (status, stdout, stderr)."""
    full = [ARGS.thetanet] + cmd
    if ranks > 1:
        full = shlex.split(ARGS.mpiexec) + ["-n", str(ranks)] + full
    e = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    if env:
        e.update(env)
    p = subprocess.run(full, capture_output=True, text=True, timeout=timeout, env=e)
    return p.returncode, p.stdout, p.stderr


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def train(tmp, name, ranks, extra):
    out = os.path.join(tmp, name + ".h5")
    status, so, se = run(["train", "-output", out] + extra, ranks)
    check(status == 0, f"train {' '.join(extra)} on {ranks} ranks failed ({status}):\n{so}\n{se}")
    return out, so


def history(path):
    with h5py.File(path, "r") as f:
        return {k: f["history"][k][()] for k in f["history"]}


def rel_diff(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def write_dataset(path, X, Y, **attrs):
    with h5py.File(path, "w") as f:
        if X is not None:
            f["X"] = X
        if Y is not None:
            f["Y"] = Y
        for k, v in attrs.items():
            f.attrs[k] = v


def spiral_like(n, seed):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n, 2))
    Y = (X[:, 0] * X[:, 1] > 0).astype(np.int64)
    return X, Y


# ---- cases -------------------------------------------------------------------------------

def case_data_parallel_explicit(tmp):
    """theta = 0: the loss history does not depend on the number of data ranks (1e-10)."""
    opts = ["-problem", "spirals", "-theta", "0", "-epochs", "3", "-batch", "50", "-width", "8", "-layers", "6"]
    ref = history(train(tmp, "r1", 1, opts)[0])
    for ranks in (2, 4):
        h = history(train(tmp, f"r{ranks}", ranks, opts)[0])
        for key in ("train_loss", "val_loss", "val_accuracy"):
            d = rel_diff(h[key], ref[key])
            print(f"{ranks} ranks {key}: max relative difference {d:.2e}")
            check(d < 1e-10, f"{key} on {ranks} ranks differs by {d:.2e}")


def case_buckets(tmp):
    """The gradient reduction in buckets overlapped with the backward pass: the trained model is
    the same to the last bit for every bucket size (one bucket after the pass, one block per
    bucket, a few blocks, the default) and algorithm (recursive doubling, halving), on 2, 3 (not
    a power of two) and 4 data ranks and on a 2 x 2 grid; the losses equal one rank's to 1e-8 (as
    cli_data_parallel_implicit)."""
    opts = ["-problem", "spirals", "-theta", "0.5", "-epochs", "2", "-batch", "60", "-width", "12", "-layers", "9",
            "-block_atol", "1e-13"]
    def model(path):
        with h5py.File(path, "r") as f:
            return np.concatenate([f["model"][k][()].ravel() for k in ("opening/K", "blocks/W", "blocks/b", "closing/C")])
    one = history(train(tmp, "one", 1, opts)[0])["train_loss"]
    for ranks, extra in ((2, []), (3, []), (4, []), (4, ["-depth_ranks", "2"])):
        ref = None
        for kb, alg in ((0, "auto"), (0, "halving"), (1, "halving"), (3, "doubling"), (3, "halving"), (512, "auto")):
            out = train(tmp, f"r{ranks}{len(extra)}_{kb}_{alg}", ranks,
                        opts + extra + ["-allreduce_bucket_kb", str(kb), "-allreduce_algorithm", alg])[0]
            if ref is None:
                ref = model(out)
                d = rel_diff(history(out)["train_loss"], one)
                check(d < 1e-8, f"{ranks} ranks {extra}: losses differ from 1 rank's by {d:.1e}")
            else:
                check(np.array_equal(model(out), ref), f"{ranks} ranks {extra}: bucket {kb} KB, {alg} changes the result")
        print(f"ok: {ranks} ranks {' '.join(extra)}: buckets of 0, 1, 3, 512 KB, doubling and halving give the same "
              f"bits; losses = 1 rank's to {d:.1e}")


def case_data_parallel_implicit(tmp):
    """theta = 0.5: rank counts agree to within the block solver's tolerance."""
    opts = ["-problem", "spirals", "-theta", "0.5", "-epochs", "3", "-batch", "50", "-width", "8", "-layers", "6",
            "-block_atol", "1e-12"]
    ref = history(train(tmp, "r1", 1, opts)[0])
    for ranks in (2, 4):
        h = history(train(tmp, f"r{ranks}", ranks, opts)[0])
        for key in ("train_loss", "val_loss"):
            d = rel_diff(h[key], ref[key])
            print(f"{ranks} ranks {key}: max relative difference {d:.2e}")
            check(d < 1e-8, f"{key} on {ranks} ranks differs by {d:.2e}")


def case_depth_sequential(tmp):
    """Blocks split across depth ranks (-depth_solver sequential), alone and with data ranks:
    the histories and the final model of 1 rank, to 1e-12, in every memory mode; and a
    checkpoint written with 2 depth ranks continues on 1 rank, and the reverse, and one written on
    a 2 x 2 grid (the first data slice's depth ranks send rank 0 the network and its moments)
    continues on 2 data ranks."""
    base = ["-problem", "spirals", "-epochs", "3", "-width", "6", "-layers", "7", "-batch", "64", "-block_atol", "1e-13",
            "-adjoint_ksp_rtol", "1e-14", "-weight_decay", "1e-3", "-smooth", "1e-2"]
    for memory in ("store", "reversible", "checkpoint"):
        opts = base + ["-memory", memory]
        ref, _ = train(tmp, f"ref_{memory}", 1, opts)
        for ranks, depth in ((2, 2), (3, 3), (4, 2), (4, 4)):
            out, _ = train(tmp, f"d{ranks}_{depth}_{memory}", ranks, opts + ["-depth_ranks", str(depth)])
            h, r = history(out), history(ref)
            d = max(rel_diff(h[k], r[k]) for k in ("train_loss", "val_loss"))
            with h5py.File(out, "r") as f, h5py.File(ref, "r") as g:
                w = max(float(np.max(np.abs(f["model"][k][()] - g["model"][k][()]))) for k in
                        ("opening/K", "opening/b", "blocks/W", "blocks/b", "closing/C", "closing/b"))
            print(f"{memory}, {ranks} ranks, depth {depth}: history {d:.1e}, model {w:.1e}")
            check(d < 1e-12 and w < 1e-11, f"{memory} on {ranks} ranks with depth {depth}: history {d:.1e}, model {w:.1e}")
    ck = os.path.join(tmp, "ck.h5")
    full, _ = train(tmp, "full", 1, base[:2] + ["-epochs", "4"] + base[4:])
    for first, second in (((2, 2), (1, 1)), ((1, 1), (4, 4)), ((4, 2), (2, 1))):
        train(tmp, "part", first[0], base[:2] + ["-epochs", "2"] + base[4:] + ["-depth_ranks", str(first[1]), "-checkpoint", ck])
        out, _ = train(tmp, "cont", second[0], base[:2] + ["-epochs", "4"] + base[4:] + ["-depth_ranks", str(second[1]), "-restart", ck])
        d = max(rel_diff(history(out)[k], history(full)[k]) for k in ("train_loss", "val_loss"))
        print(f"checkpoint with depth {first[1]} continued with depth {second[1]}: history {d:.1e}")
        check(d < 1e-12, f"restart across depth layouts differs by {d:.1e}")


def case_depth_mgrit(tmp):
    """-depth_solver mgrit run to 1e-12 gives the sequential solver's training (losses and the
    final model, so the states and gradients) to 1e-9 on 1, 2 and 4 depth ranks, with
    intervals longer than a rank's share, and on a 2 x 2 grid; inexact MGRIT gives the same
    training on any number of depth ranks; with one or two iterations per solve (inexact) the default spirals still train to the
    accuracy of exact training; the default MGRIT configuration meets the accuracy criterion against layer-serial training
    (3 seeds, 2 and 4 depth ranks, models judged by evaluate); impossible set-ups are refused."""
    base = ["-problem", "spirals", "-epochs", "3", "-width", "8", "-layers", "24", "-batch", "64", "-block_atol", "1e-13",
            "-adjoint_ksp_rtol", "1e-14", "-smooth", "1e-2"]
    ref, _ = train(tmp, "seq", 1, base)
    for ranks, depth, extra in ((1, 1, []), (2, 2, []), (4, 4, ["-mgrit_levels", "3", "-mgrit_cfactor", "2"]),
                                (4, 2, ["-mgrit_coarse_weights", "average"]), (4, 4, ["-mgrit_cfactor", "8", "-mgrit_skip"])):
        out, so = train(tmp, f"mg{ranks}_{depth}", ranks, base + ["-depth_ranks", str(depth), "-depth_solver", "mgrit",
                                                                  "-mgrit_tol", "1e-12", "-mgrit_rtol", "0", "-mgrit_max_it", "60"] + extra)
        h, r = history(out), history(ref)
        d = max(rel_diff(h[k], r[k]) for k in ("train_loss", "val_loss"))
        with h5py.File(out, "r") as f, h5py.File(ref, "r") as g:
            w = max(float(np.max(np.abs(f["model"][k][()] - g["model"][k][()]))) for k in ("opening/K", "blocks/W", "blocks/b", "closing/C"))
        print(f"mgrit {ranks} ranks, depth {depth} {' '.join(extra)}: history {d:.1e}, model {w:.1e}, iterations {h['mgrit_its']}, "
              f"largest final residual {max(h['mgrit_res']):.1e}")
        check(d < 1e-9 and w < 1e-9, f"MGRIT on {ranks} ranks differs from sequential: history {d:.1e}, model {w:.1e}")
        check(max(h["mgrit_res"]) <= 1e-12, f"/history/mgrit_res {h['mgrit_res']} above -mgrit_tol")
        check(all(" mgrit_res " in l for l in so.splitlines() if l.startswith("epoch ")), "epoch lines without mgrit_res")
    # inexact MGRIT does the same arithmetic on any number of depth ranks (coarse intervals across
    # ranks gather their operators and linearisation states): one iteration gives the 1-rank
    # training on 2 and 4 ranks, with intervals longer than a rank's share
    fast = ["-depth_solver", "mgrit", "-mgrit_max_it", "1", "-mgrit_skip", "-mgrit_cfactor", "8", "-mgrit_coarse_weights", "average"]
    one = history(train(tmp, "fast1", 1, base + fast)[0])
    check(min(one["mgrit_res"]) > 0, f"an inexact solve reports a zero residual: {one['mgrit_res']}")
    for ranks in (2, 4):
        h = history(train(tmp, f"fast{ranks}", ranks, base + fast + ["-depth_ranks", str(ranks)])[0])
        d = max(rel_diff(h[k], one[k]) for k in ("train_loss", "val_loss"))
        print(f"inexact MGRIT (nested start, one iteration, cfactor 8) on {ranks} depth ranks against 1: history {d:.1e}")
        check(d < 1e-10, f"inexact MGRIT on {ranks} depth ranks differs from 1 rank by {d:.1e}")
    exact = history(train(tmp, "exact", 2, ["-depth_ranks", "2"])[0])["val_accuracy"][-1]
    for its in ("1", "2"):
        h = history(train(tmp, f"inexact{its}", 2, ["-depth_ranks", "2", "-depth_solver", "mgrit", "-mgrit_max_it", its])[0])
        acc = h["val_accuracy"][-1]
        print(f"spirals, inexact MGRIT ({its} iteration(s) per solve): val_accuracy {acc:.4f}, exact {exact:.4f}")
        check(acc >= exact - 0.01, f"inexact MGRIT reached {acc:.4f} against {exact:.4f}")
    # the default MGRIT configuration trains the network itself: models from 2 and 4 depth ranks,
    # judged by `evaluate`, meet the accuracy criterion against layer-serial training (mean over
    # seeds 1, 2, 3 within 0.01 of layer-serial's mean, or inside the range of its seeds)
    val = os.path.join(tmp, "val.h5")
    status, so, se = run(["export", "-problem", "spirals", "-val", val])
    check(status == 0, se)
    small = ["-problem", "spirals", "-width", "8", "-layers", "32", "-T", "4", "-epochs", "25", "-lr", "2e-2"]
    def evaluated(name, ranks, extra):
        accs = []
        for seed in (1, 2, 3):
            model, _ = train(tmp, f"{name}_s{seed}", ranks, small + extra + ["-seed", str(seed)])
            ev = os.path.join(tmp, f"{name}_s{seed}_ev.h5")
            status, so, se = run(["evaluate", "-model", model, "-data", val, "-output", ev])
            check(status == 0, se)
            with h5py.File(ev, "r") as f:
                accs.append(float(f.attrs["accuracy"]))
        return accs
    serial = evaluated("serial", 2, ["-depth_ranks", "2"])
    for ranks in (2, 4):
        accs = evaluated(f"default{ranks}", ranks, ["-depth_ranks", str(ranks), "-depth_solver", "mgrit"])
        mean, ref = float(np.mean(accs)), float(np.mean(serial))
        print(f"default MGRIT on {ranks} depth ranks: evaluate accuracy {accs} (mean {mean:.4f}); layer-serial {serial} "
              f"(mean {ref:.4f})")
        check(abs(mean - ref) <= 0.01 or min(serial) <= mean <= max(serial),
              f"default MGRIT on {ranks} depth ranks: mean accuracy {mean:.4f} against layer-serial {ref:.4f} {serial}")
    out = os.path.join(tmp, "x.h5")
    expect_usage_error(["train", "-depth_solver", "mgrit", "-memory", "reversible", "-output", out], "-memory store")
    expect_usage_error(["train", "-depth_solver", "mgrit", "-mgrit_coarse_its", "0", "-output", out], "-mgrit_coarse_its")
    expect_usage_error(["train", "-depth_ranks", "4", "-depth_solver", "mgrit", "-layers", "3", "-output", out], "exceeds -layers 3", ranks=4)


def case_exact_validation(tmp):
    """Validation during MGRIT training (inexact: nested start, one iteration) is that of the
    network itself: the reported validation loss and accuracy equal `evaluate` of the saved model
    (1e-10), /config records the MGRIT settings in force, and `info` prints them; `train -mgrit_test`
    runs the self-test of the MGRIT callbacks and writes nothing."""
    val = os.path.join(tmp, "val.h5")
    status, so, se = run(["export", "-problem", "spirals", "-val", val])
    check(status == 0, se)
    opts = ["-problem", "spirals", "-width", "8", "-layers", "32", "-T", "4", "-epochs", "2", "-batch", "64",
            "-depth_solver", "mgrit", "-mgrit_cfactor", "4", "-mgrit_max_it", "1", "-mgrit_skip", "-block_atol", "1e-13"]
    for ranks in (2, 4):
        out, so = train(tmp, f"mg{ranks}", ranks, opts + ["-depth_ranks", str(ranks)])
        h = history(out)
        status, eo, se = run(["evaluate", "-model", out, "-data", val, "-block_atol", "1e-13", "-output",
                              os.path.join(tmp, f"ev{ranks}.h5")])
        check(status == 0, se)
        with h5py.File(os.path.join(tmp, f"ev{ranks}.h5"), "r") as f:
            loss, acc = f.attrs["loss"], f.attrs["accuracy"]
        check(abs(h["val_loss"][-1] - loss) <= 1e-10 * abs(loss), f"{ranks} ranks: val_loss {h['val_loss'][-1]} != evaluate {loss}")
        check(h["val_accuracy"][-1] == acc, f"{ranks} ranks: val_accuracy {h['val_accuracy'][-1]} != evaluate {acc}")
        check(h["mgrit_res"][-1] > 1e-6, "the training propagation was not inexact: nothing tested")
        with h5py.File(out, "r") as f:
            cfg = dict(f["config"].attrs)
        for key, want in (("depth_solver", "mgrit"), ("mgrit_cfactor", "4"), ("mgrit_max_it", "1"), ("mgrit_skip", "true")):
            check(cfg.get(key) == want, f"/config {key} = {cfg.get(key)}, expected {want}")
        print(f"ok: {ranks} depth ranks: reported validation = evaluate ({loss:.12g}, {acc}); MGRIT residual "
              f"{h['mgrit_res'][-1]:.2e} in training")
    status, so, se = run(["info", "-model", out])
    check(status == 0 and "depth_solver mgrit" in so and "mgrit_cfactor 4" in so and "mgrit_skip true" in so, so)
    print("ok: info prints how the model was trained")
    # the self-test of the MGRIT callbacks, on 2 depth ranks, with intervals across the ranks
    for theta in ("0", "0.5", "1"):
        res = os.path.join(tmp, f"selftest{theta}.h5")
        status, so, se = run(["train", "-problem", "spirals", "-layers", "24", "-width", "6", "-theta", theta,
                              "-depth_ranks", "2", "-depth_solver", "mgrit", "-mgrit_cfactor", "8", "-mgrit_test",
                              "-output", res], ranks=2)
        check(status == 0 and "mgrit_test passed" in so and so.count("mgrit_test ") == 4, so + se)
        check(not os.path.exists(res), "-mgrit_test wrote a results file")
        print(f"ok: train -mgrit_test, theta {theta}: " + " | ".join(l for l in so.splitlines() if l.startswith("mgrit_test")))
    expect_usage_error(["train", "-mgrit_test", "-output", os.path.join(tmp, "y.h5")], "-mgrit_test needs -depth_solver mgrit")


def case_sharded(tmp):
    """-data_layout sharded: each rank reads its rows; training runs on 1, 2 and 4 ranks, the
    validation loss it reports is the whole set's (checked with evaluate), and a bad row held
    by the last rank is reported once, with its global row number, on every rank count."""
    X, Y = spiral_like(403, 5)
    Xv, Yv = spiral_like(101, 6)
    tr, va = os.path.join(tmp, "tr.h5"), os.path.join(tmp, "va.h5")
    write_dataset(tr, X, Y)
    write_dataset(va, Xv, Yv)
    for ranks in (1, 2, 4):
        out, so = train(tmp, f"s{ranks}", ranks, ["-train", tr, "-val", va, "-data_layout", "sharded", "-epochs", "3",
                                                  "-width", "6", "-layers", "3", "-batch", "40", "-block_atol", "1e-12"])
        h = history(out)
        check(np.all(np.isfinite(h["train_loss"])), "finite losses")
        status, so, se = run(["evaluate", "-model", out, "-data", va, "-block_atol", "1e-12"], ranks)
        check(status == 0, f"{ranks} ranks: evaluate status {status}\n{se}")
        loss = float(so.split(" loss ")[1].split()[0])
        check(abs(loss - h["val_loss"][-1]) <= 1e-6 * abs(loss), f"{ranks} ranks: evaluate {loss} != history {h['val_loss'][-1]}")
        print(f"{ranks} ranks: val_loss {h['val_loss'][-1]:.6f} == evaluate {loss:.6f}")
    Xn = X.copy()
    Xn[401, 0] = np.nan
    bad = os.path.join(tmp, "bad.h5")
    write_dataset(bad, Xn, Y)
    for ranks in (1, 4):
        status, so, se = run(["train", "-train", bad, "-data_layout", "sharded", "-epochs", "1"], ranks, timeout=120)
        lines = [l for l in se.splitlines() if l.startswith("thetanet:")]
        check(status == 2 and len(lines) == 1 and "row 401" in lines[0], f"{ranks} ranks: status {status}\n{se}")
        print(f"{ranks} ranks: {lines[0]}")


def case_auto_shard(tmp):
    """Without -data_layout, data sets whose replicas would take over a quarter of a node's
    memory (here a -max_memory of 8 MB against 4 MB of replicas) are sharded, the header says
    so, and the run is the -data_layout sharded run; given, -data_layout is obeyed; with room,
    replicated."""
    X, Y = spiral_like(4000, 5)
    data = os.path.join(tmp, "d.h5")
    write_dataset(data, np.repeat(X, 32, axis=1) * 0.5, Y)  # 4000 x 64 float64: 2 MB a replica, 4 MB on 2 ranks
    opts = ["-train", data, "-epochs", "1", "-width", "4", "-layers", "2", "-max_memory", "0.008"]
    auto, so = train(tmp, "auto", 2, opts)
    check("data layout: sharded" in so, f"no word of the sharding:\n{so}")
    sharded, _ = train(tmp, "sharded", 2, opts + ["-data_layout", "sharded"])
    with h5py.File(auto, "r") as f, h5py.File(sharded, "r") as g:
        check(f["config"].attrs["data_layout"] == "sharded", "/config data_layout")
        check(np.array_equal(f["model/blocks/W"][()], g["model/blocks/W"][()]), "auto-sharded != -data_layout sharded")
    kept, so = train(tmp, "kept", 2, opts + ["-data_layout", "replicated"])
    check("data layout: sharded" not in so, "-data_layout replicated was overridden")
    roomy, so = train(tmp, "roomy", 2, opts[:-2])
    with h5py.File(roomy, "r") as f:
        check(f["config"].attrs["data_layout"] == "replicated" and "data layout" not in so, "sharded with room to spare")
    print("ok: sharded when replicas take over a quarter of the node; -data_layout obeyed; replicated with room")


def case_default_spirals(tmp):
    """The default job (train with no options, 2 ranks) reaches 95% validation accuracy."""
    out, so = train(tmp, "default", 2, [])
    h = history(out)
    acc = h["val_accuracy"][-1]
    print(so.splitlines()[-2])
    print(f"final validation accuracy {acc:.4f}")
    check(acc >= 0.95, f"default spirals job reached only {acc:.4f}")
    check(any(l.startswith("summary ") for l in so.splitlines()), "no summary line")


def case_results_file(tmp):
    """The results file has the layout of DESIGN.md §4 and agrees with the printed lines."""
    out, so = train(tmp, "res", 2, ["-problem", "peaks", "-epochs", "2", "-width", "6", "-layers", "3", "-T", "1"])
    with h5py.File(out, "r") as f:
        m = f["model"]
        a = dict(m.attrs)
        L, n, d, k = a["layers"], a["width"], a["input_dim"], a["outputs"]
        check((L, n, d, k) == (3, 6, 2, 5), f"model attributes {a}")
        shapes = {"opening/K": (n, d), "opening/b": (n,), "blocks/W": (L, n, n), "blocks/b": (L, n),
                  "closing/C": (k, n), "closing/b": (k,)}
        for name, shape in shapes.items():
            check(m[name].shape == shape, f"/model/{name} has shape {m[name].shape}, expected {shape}")
        for key in ("epoch", "train_loss", "val_loss", "val_accuracy", "lr", "wall_time", "newton_its", "krylov_its", "mgrit_its", "mgrit_res"):
            check(f["history"][key].shape == (2,), f"/history/{key}")
        check(f["timing"]["forward"].shape == (2,), "/timing/forward holds one entry per rank")
        check(f["config"].attrs["ranks"] == 2, "/config ranks")
        check("width" in f["config"].attrs, "/config lists the options")
    summary = [l for l in so.splitlines() if l.startswith("summary ")][0].split()[1:]
    fields = dict(zip(summary[::2], summary[1::2]))
    for key in ("ranks", "depth_ranks", "data_ranks", "layers", "width", "theta", "epochs", "wall_s", "epoch_s",
                "samples_per_s", "train_loss", "val_loss", "val_accuracy", "newton_its", "krylov_its", "mgrit_its",
                "peak_rss_mb"):
        check(key in fields, f"summary lacks {key}")
    check(abs(float(fields["val_loss"]) - history(out)["val_loss"][-1]) < 1e-5, "summary val_loss != history")


def case_commands(tmp):
    """evaluate, evaluate -gradient, predict and info on a trained model and a data file."""
    Xtr, Ytr = spiral_like(200, 1)
    Xva, Yva = spiral_like(101, 2)
    tr, va = os.path.join(tmp, "tr.h5"), os.path.join(tmp, "va.h5")
    write_dataset(tr, Xtr.astype(np.float32), Ytr, name="quadrants")
    write_dataset(va, Xva, Yva)
    out, _ = train(tmp, "model", 2, ["-train", tr, "-val", va, "-epochs", "3", "-width", "5", "-layers", "4", "-T", "1",
                                      "-weight_decay", "1e-3", "-smooth", "1e-3"])
    val_loss = history(out)["val_loss"][-1]
    ev = os.path.join(tmp, "eval.h5")
    for ranks in (1, 2):
        status, so, se = run(["evaluate", "-model", out, "-data", va, "-output", ev, "-gradient",
                              "-weight_decay", "1e-3", "-smooth", "1e-3"], ranks)
        check(status == 0, f"evaluate failed: {se}")
        with h5py.File(ev, "r") as f:
            check(f["predictions"].shape == (101, 2), "predictions shape")
            check(abs(f.attrs["loss"] - val_loss) <= 1e-6 * abs(val_loss), f"evaluate loss {f.attrs['loss']} != {val_loss}")
            acc = np.mean(np.argmax(f["predictions"][()], axis=1) == Yva)
            check(abs(acc - f.attrs["accuracy"]) < 1e-12, "accuracy attribute matches predictions")
            check(f["gradient/blocks/W"].shape == (4, 5, 5), "gradient layout")
            g = f["gradient/blocks/W"][()]
        if ranks == 1:
            g1 = g
        else:
            check(np.max(np.abs(g - g1)) <= 1e-7 * np.max(np.abs(g1)), "gradient on 2 ranks != 1 rank")
    pred = os.path.join(tmp, "pred.h5")
    # evaluate -gradient solves to 1e-12: predict at the same tolerance gives the same outputs
    status, so, se = run(["predict", "-model", out, "-data", va, "-output", pred, "-block_atol", "1e-12"], 2)
    check(status == 0, f"predict failed: {se}")
    with h5py.File(pred, "r") as f, h5py.File(ev, "r") as g:
        check(np.allclose(f["predictions"][()], g["predictions"][()], rtol=1e-10, atol=1e-12), "predict == evaluate")
    status, so, se = run(["info", "-model", out])
    check(status == 0 and "layers 4" in so and "width 5" in so, f"info output:\n{so}{se}")
    status, so, se = run(["train", "-problem", "sine", "-epochs", "1", "-widht", "3"])
    check(status == 0 and "warning: option -widht is not used" in se, f"misspelled option not reported:\n{se}")
    status, so, se = run(["train", "-help"])
    check(status == 0, "train -help")
    for opt in ("-width", "-layers", "-theta", "-T", "-act", "-epochs", "-batch", "-lr", "-optimizer", "-weight_decay",
                "-smooth", "-seed", "-depth_ranks", "-block_method", "-block_snes_type", "-adjoint_ksp_type", "-depth_solver",
                "-mgrit_cfactor", "-mgrit_levels", "-mgrit_max_it", "-mgrit_tol", "-mgrit_rtol", "-mgrit_exact_epochs", "-mgrit_test", "-mgrit_coarse_weights", "-mgrit_coarse_its", "-mgrit_skip",
                "-memory", "-memory_stride",
                "-checkpoint", "-checkpoint_every", "-restart", "-data_layout", "-progress",
                "-lr_schedule", "-lr_step", "-lr_gamma", "-lr_min", "-lr_plateau", "-lr_warmup", "-lr_backoff",
                "-patience", "-keep_best", "-clip_norm", "-max_rejections", "-x_name", "-y_name", "-scale_uint8"):
        check(opt in so, f"train -help does not document {opt}")


# ---- data formats ------------------------------------------------------------------------

def write_idx(path, array):
    """An IDX file (gzip), the format of MNIST and Fashion-MNIST: magic, dimensions, bytes."""
    import gzip
    import struct
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 0x08, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape))
        f.write(np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def case_data_formats(tmp):
    """Data sets as people store them: IDX images converted to uint8 inputs, read as x/255 with
    -scale_uint8 (the same training as float64 inputs x/255), which evaluate applies by default to a
    model trained so; other array names; float one-hot
    labels without task refused; predict on a file without labels."""
    p = lambda n: os.path.join(tmp, n)
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(60, 4, 5), dtype=np.uint8)
    labels = rng.integers(0, 3, size=60).astype(np.uint8)
    write_idx(p("img.gz"), images)
    write_idx(p("lab.gz"), labels)
    conv = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "jobs", "data", "idx_to_hdf5.py")
    c = subprocess.run([sys.executable, conv, p("img.gz"), p("lab.gz"), p("u8.h5"), "--name", "tiny"], capture_output=True, text=True)
    check(c.returncode == 0, f"converter: {c.stderr}")
    with h5py.File(p("u8.h5"), "r") as f:
        check(f["X"].dtype == np.uint8 and f["X"].shape == (60, 20), f"converted /X {f['X'].dtype} {f['X'].shape}")
        check(np.array_equal(f["X"][()], images.reshape(60, 20)) and np.array_equal(f["Y"][()], labels), "converted values")
        check(f.attrs["task"] == "classification" and f.attrs["name"] == "tiny", "converted attributes")
    print("ok: IDX round trip")
    write_dataset(p("f64.h5"), images.reshape(60, 20).astype(float) * (1.0 / 255), labels.astype(np.int64))
    opts = ["-epochs", "3", "-width", "6", "-layers", "3", "-batch", "16", "-block_atol", "1e-12"]
    model = train(tmp, "r_u8", 1, ["-train", p("u8.h5"), "-scale_uint8"] + opts)[0]
    a = history(model)
    b = history(train(tmp, "r_f64", 1, ["-train", p("f64.h5")] + opts)[0])
    check(np.array_equal(a["train_loss"], b["train_loss"]), f"uint8/255 {a['train_loss']} != float64 {b['train_loss']}")
    print("ok: uint8 inputs with -scale_uint8 train as float64 x/255")
    # evaluate reads uint8 inputs as the model was trained on them; -scale_uint8 false reads them raw
    def evaluated(data, *extra):
        ev = p("ev.h5")
        status, so, se = run(["evaluate", "-model", model, "-data", data, "-output", ev, *extra])
        check(status == 0, se)
        with h5py.File(ev, "r") as f:
            return float(f.attrs["loss"])
    same, f64, raw = evaluated(p("u8.h5")), evaluated(p("f64.h5")), evaluated(p("u8.h5"), "-scale_uint8", "false")
    check(same == f64 and raw != same, f"evaluate: uint8 {same}, float64 x/255 {f64}, raw {raw}")
    print(f"ok: evaluate reads uint8 inputs as in training ({same:.6g} = float64 x/255 {f64:.6g}; raw {raw:.6g})")
    # other names: /data/images, /data/classes
    with h5py.File(p("named.h5"), "w") as f:
        f["data/images"] = images.reshape(60, 20).astype(float) * (1.0 / 255)
        f["data/classes"] = labels.astype(np.int64)
    c = history(train(tmp, "r_named", 1, ["-train", p("named.h5"), "-x_name", "data/images", "-y_name", "/data/classes"] + opts)[0])
    check(np.array_equal(c["train_loss"], b["train_loss"]), "-x_name/-y_name read the same data")
    print("ok: -x_name, -y_name")
    # one-hot float labels without task: refused, saying what to do
    onehot = np.eye(3)[labels]
    write_dataset(p("onehot.h5"), images.reshape(60, 20).astype(float), onehot)
    status, so, se = run(["train", "-train", p("onehot.h5"), "-epochs", "1"])
    check(status == 2 and "one-hot" in se and "task" in se, f"one-hot: status {status}\n{se}")
    write_dataset(p("onehot_reg.h5"), images.reshape(60, 20).astype(float), onehot, task="regression")
    train(tmp, "r_onehot_reg", 1, ["-train", p("onehot_reg.h5"), "-epochs", "1", "-width", "4", "-layers", "2"])
    print("ok: one-hot float labels need task")
    # predict on inputs alone, against predict on the labelled file
    with h5py.File(p("inputs.h5"), "w") as f:
        f["X"] = images.reshape(60, 20)
    for name, data in (("with", p("u8.h5")), ("without", p("inputs.h5"))):
        status, so, se = run(["predict", "-model", model, "-data", data, "-scale_uint8", "-output", p(f"pred_{name}.h5")])
        check(status == 0, f"predict {name} labels: {se}")
    with h5py.File(p("pred_with.h5"), "r") as f, h5py.File(p("pred_without.h5"), "r") as g:
        check(np.array_equal(f["predictions"][()], g["predictions"][()]), "predictions differ without /Y")
    print("ok: predict on a file without /Y")


# ---- BLAS kernel ---------------------------------------------------------------------------

def system_info(env):
    status, so, se = run(["info", "-system"], env=env)
    check(status == 0, se)
    return dict(l.strip().split(" ", 1) for l in so.splitlines()[1:] if " " in l.strip())


def read_traces(tdir, P):
    """Each rank's trace lines, checked: init first, finalize last, every line its rank's, the
    file ending with a newline."""
    with open(os.path.join(tdir, "ranks.list")) as f:
        files = f.read().splitlines()
    check(len(files) == P, f"ranks.list names {len(files)} files for {P} ranks")
    lines = []
    for r, path in enumerate(files):
        text = open(path).read()
        check(text.endswith("\n"), f"{path} does not end with a newline")
        rows = [l.split() for l in text.splitlines()]
        check(rows[0] == [str(r), "init"] and rows[-1] == [str(r), "finalize"], f"{path}: no init or finalize")
        check(all(w[0] == str(r) for w in rows), f"{path}: a line of another rank")
        lines.append(rows)
    return lines


def balanced_traces(lines, what):
    """Every message sent is received with its tag and bytes, every request waited for; returns
    the number of messages."""
    sends, recvs = {}, {}
    for r, rows in enumerate(lines):
        pending = {}
        for w in rows:
            act = w[1]
            if act in ("send", "isend"):
                key = (r, int(w[2]), int(w[3]))
                sends.setdefault(key, []).append(int(w[4]))
                if act == "isend":
                    pending[key] = pending.get(key, 0) + 1
            elif act in ("recv", "irecv"):
                key = (int(w[2]), r, int(w[3]))
                recvs.setdefault(key, []).append(int(w[4]))
                if act == "irecv":
                    pending[key] = pending.get(key, 0) + 1
            elif act == "wait":
                key = (int(w[2]), int(w[3]), int(w[4]))
                check(pending.get(key, 0) > 0, f"rank {r}: wait {key} without a request")
                pending[key] -= 1
            elif act == "compute":
                check(float(w[2]) > 0, f"rank {r}: compute {w[2]}")
            else:
                check(act in ("init", "finalize", "allreduce", "bcast", "barrier"), f"rank {r}: action {act}")
        check(not any(pending.values()), f"rank {r}: requests never waited for: {pending}")
    check(sends == recvs, f"{what}: messages sent and received differ")
    return sum(len(v) for v in sends.values())


def case_trace(tmp):
    """-trace: the results do not change (the model bit for bit, every loss); each rank's trace is
    well formed (init, finalize, newline); every message sent is received with the same tag and
    bytes, every non-blocking request waited for, and collectives (written as point-to-point
    exchanges off the world communicator) balance; -trace_epochs records only those epochs."""
    for ranks, extra in ((2, []), (2, ["-depth_ranks", "2"]), (2, ["-depth_ranks", "2", "-depth_solver", "mgrit"]),
                         (4, ["-depth_ranks", "2"]), (4, ["-depth_ranks", "2", "-depth_solver", "mgrit"])):
        opts = ["-problem", "spirals", "-epochs", "3", "-width", "8", "-layers", "16", "-batch", "64"] + extra
        plain, _ = train(tmp, "plain", ranks, opts)
        tdir = os.path.join(tmp, f"trace{ranks}_{len(extra)}")
        traced, so = train(tmp, "traced", ranks, opts + ["-trace", tdir, "-trace_epochs", "2,3"])
        with h5py.File(plain, "r") as f, h5py.File(traced, "r") as g:
            for k in ("opening/K", "blocks/W", "blocks/b", "closing/C"):
                check(np.array_equal(f["model"][k][()], g["model"][k][()]), f"-trace changes /model/{k}")
            for k in ("train_loss", "val_loss", "val_accuracy"):
                check(np.array_equal(f["history"][k][()], g["history"][k][()]), f"-trace changes /history/{k}")
        lines = read_traces(tdir, ranks)
        nmsg = balanced_traces(lines, f"{ranks} ranks {extra}")
        # the closing line: every line counted, and the tracer's own CPU time, a share of a rank's
        m = re.search(r"^trace: (\d+) lines in .* tracer_s ([0-9.]+) CPU seconds: tracer_share ([0-9.]+) of a rank's",
                      so, re.M)
        check(m is not None, f"{ranks} ranks {extra}: no trace summary line in\n{so}")
        check(int(m.group(1)) == sum(len(r) for r in lines), f"trace line count {m.group(1)} is not the files'")
        tracer_s, share = float(m.group(2)), float(m.group(3))
        check(0 < tracer_s and 0 < share < 1, f"tracer time {tracer_s} s, share {share}")
        colls = [[w[1:] for w in rows if w[1] in ("allreduce", "bcast", "barrier")] for rows in lines]
        check(all(c == colls[0] for c in colls), f"{ranks} ranks {extra}: world collectives differ between ranks")
        one = os.path.join(tmp, "one_epoch")
        train(tmp, "traced1", ranks, opts + ["-trace", one, "-trace_epochs", "2"])
        n1, n2 = sum(len(r) for r in read_traces(one, ranks)), sum(len(r) for r in lines)
        check(n1 < n2, f"-trace_epochs 2 wrote {n1} lines, epochs 2 and 3 {n2}")
        print(f"ok: {ranks} ranks {' '.join(extra)}: results unchanged; {n2} trace lines, "
              f"{nmsg} messages matched; one epoch {n1} lines")
    # THETANET_TRACE_P2P=1: world collectives written as point-to-point exchanges, still balanced
    tdir = os.path.join(tmp, "p2p")
    status, so, se = run(["train", "-problem", "spirals", "-epochs", "2", "-width", "8", "-layers", "16", "-trace", tdir,
                          "-output", os.path.join(tmp, "p2p.h5")], 4, env={"THETANET_TRACE_P2P": "1"})
    check(status == 0, se)
    lines = read_traces(tdir, 4)
    check(not any(w[1] in ("allreduce", "bcast", "barrier") for rows in lines for w in rows), "a collective line under P2P")
    print(f"ok: 4 ranks, collectives as point-to-point: {balanced_traces(lines, 'P2P')} messages matched")
    expect_usage_error(["train", "-problem", "spirals", "-epochs", "1", "-trace", "/proc/none/x",
                        "-output", os.path.join(tmp, "t.h5")], "-trace /proc/none/x")


def case_blas(tmp):
    """The OpenBLAS kernel: a value the user set is never changed; unset, the kernel in use is
    not older than the CPU runs; where OpenBLAS's choice is behind (stood for by
    THETANET_BLAS_ASSUME_DISPATCH), thetanet restarts itself with the CPU's kernel class, also
    under mpiexec, unless THETANET_BLAS_KERNEL=keep."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENBLAS_CORETYPE", "THETANET_BLAS"))}
    plain = lambda **kw: dict(clean, **kw)
    os.environ.clear()
    os.environ.update(clean)
    info = system_info({})
    print("this machine:", info["cpu"], "|", info["vector_extensions"], "|", info["blas"])
    # the extensions shown are those of /proc/cpuinfo's flags (SSE3 is "pni" there)
    with open("/proc/cpuinfo") as f:
        cpuflags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), None)
    if cpuflags is not None:
        names = {"pni": "sse3", "avx": "avx", "fma": "fma", "avx2": "avx2", "avx512f": "avx512f",
                 "avx512dq": "avx512dq", "avx512bw": "avx512bw", "avx512vl": "avx512vl", "avx512_bf16": "avx512_bf16"}
        want = [names[k] for k in names if k in cpuflags]
        shown = info.get("vector_extensions", "").split()
        check(shown == want, f"vector extensions {shown}, /proc/cpuinfo's flags say {want}")
        print("ok: the vector extensions shown are /proc/cpuinfo's")
    if not info["blas_kernel"] or info["blas_kernel"] == "-":
        check("not OpenBLAS" in info["blas"], f"no kernel and not said why: {info}")
        print("ok: another BLAS than OpenBLAS, left alone")
        return
    check("older than the CPU runs" not in info["blas"], f"the kernel in use is behind the CPU: {info}")
    user = system_info({"OPENBLAS_CORETYPE": "Prescott"})
    check(user["blas_kernel"] == "Prescott" and user["blas_kernel_chosen_by"] == "OPENBLAS_CORETYPE", f"{user}")
    print("ok: OPENBLAS_CORETYPE=Prescott is kept")
    check(info["blas_kernel_for_cpu"] not in ("-", "Prescott"), f"an x86-64 CPU newer than SSE3 expected: {info}")
    behind = system_info({"THETANET_BLAS_ASSUME_DISPATCH": "Prescott"})
    check(behind["blas_kernel"] == info["blas_kernel_for_cpu"] and behind["blas_kernel_chosen_by"] == "thetanet"
          and "OpenBLAS chose Prescott" in behind["blas"], f"no restart with the CPU's kernel: {behind}")
    kept = system_info({"THETANET_BLAS_ASSUME_DISPATCH": "Prescott", "THETANET_BLAS_KERNEL": "keep"})
    check(kept["blas_kernel_chosen_by"] == "OpenBLAS" and kept["blas_kernel"] == info["blas_kernel"], f"{kept}")
    status, so, se = run(["train", "-epochs", "1", "-width", "4", "-layers", "2"], ranks=2,
                         env={"THETANET_BLAS_ASSUME_DISPATCH": "Prescott"})
    check(status == 0 and f"kernel {info['blas_kernel_for_cpu']} (set by thetanet: OpenBLAS chose Prescott" in so,
          f"train under mpiexec after the restart: {status}\n{so}\n{se}")
    print(f"ok: a dispatch behind the CPU restarts with {info['blas_kernel_for_cpu']}, also under mpiexec; "
          "THETANET_BLAS_KERNEL=keep keeps it")


# ---- bad input ---------------------------------------------------------------------------

def expect_usage_error(cmd, needle, ranks=1, tmp=None, keep=None):
    """Exit status 2, one line on stderr starting 'thetanet:' that mentions needle, and the
    file `keep` (an existing good output) untouched."""
    before = open(keep, "rb").read() if keep else None
    status, so, se = run(cmd, ranks, timeout=120)
    lines = [l for l in se.splitlines() if l.startswith("thetanet:")]
    ok = status == 2 and len(lines) == 1 and needle in lines[0] and "PETSC ERROR" not in se
    if ranks == 1:
        ok = ok and len(se.strip().splitlines()) == 1
    if keep:
        ok = ok and open(keep, "rb").read() == before
    check(ok, f"{' '.join(cmd)} (ranks {ranks}): status {status}, stderr:\n{se}")
    print(f"ok: {' '.join(cmd[:3])}... -> {lines[0]}")


def case_bad_input(tmp):
    p = lambda name: os.path.join(tmp, name)
    X, Y = spiral_like(20, 3)
    write_dataset(p("good.h5"), X, Y)
    open(p("text.h5"), "w").write("this is not HDF5\n")
    raw = open(p("good.h5"), "rb").read()
    open(p("trunc.h5"), "wb").write(raw[: len(raw) // 2])
    write_dataset(p("noX.h5"), None, Y)
    write_dataset(p("noY.h5"), X, None)
    write_dataset(p("X1d.h5"), X[:, 0], Y)
    write_dataset(p("Y3d.h5"), X, np.zeros((20, 1, 1)))
    write_dataset(p("nmismatch.h5"), X, Y[:19])
    write_dataset(p("neg.h5"), X, np.where(np.arange(20) == 4, -1, Y))
    Xn = X.copy()
    Xn[3, 1] = np.nan
    write_dataset(p("nan.h5"), Xn, Y)
    write_dataset(p("inf.h5"), X, np.where(np.arange(20) == 2, np.inf, 0.5))
    write_dataset(p("empty.h5"), np.zeros((0, 2)), np.zeros((0,), dtype=np.int64))
    write_dataset(p("d3.h5"), np.zeros((20, 3)), Y)
    write_dataset(p("big.h5"), X, np.where(np.arange(20) == 5, 7, Y))
    out = p("keep.h5")
    open(out, "wb").write(b"a good file that must survive")
    tr = ["train", "-epochs", "1", "-output", out]
    expect_usage_error(tr + ["-train", p("missing.h5")], "missing.h5", keep=out)
    expect_usage_error(tr + ["-train", p("text.h5")], "text.h5", keep=out)
    expect_usage_error(tr + ["-train", p("trunc.h5")], "trunc.h5", keep=out)
    expect_usage_error(tr + ["-train", p("noX.h5")], "/X", keep=out)
    expect_usage_error(tr + ["-train", p("noY.h5")], "/Y", keep=out)
    expect_usage_error(tr + ["-train", p("X1d.h5")], "/X", keep=out)
    expect_usage_error(tr + ["-train", p("Y3d.h5")], "/Y", keep=out)
    expect_usage_error(tr + ["-train", p("nmismatch.h5")], "nmismatch.h5", keep=out)
    expect_usage_error(tr + ["-train", p("neg.h5")], "label", keep=out)
    expect_usage_error(tr + ["-train", p("nan.h5")], "NaN", keep=out)
    expect_usage_error(tr + ["-train", p("inf.h5")], "Inf", keep=out)
    expect_usage_error(tr + ["-train", p("empty.h5")], "empty.h5", keep=out)
    expect_usage_error(tr + ["-train", p("good.h5"), "-val", p("d3.h5")], "d3.h5", keep=out)
    expect_usage_error(tr + ["-train", p("nan.h5")], "NaN", ranks=2, keep=out)
    for opt, val, needle in (("-width", "0", "-width"), ("-layers", "-1", "-layers"), ("-batch", "0", "-batch"),
                             ("-epochs", "0", "-epochs"), ("-theta", "1.5", "-theta"), ("-theta", "-0.1", "-theta"),
                             ("-act", "swish", "swish"), ("-optimizer", "lbfgs", "lbfgs"), ("-problem", "moons", "moons"),
                             ("-width", "abc", "abc"), ("-lr", "0", "-lr"), ("-depth_ranks", "3", "-depth_ranks")):
        expect_usage_error(["train", "-epochs", "1", opt, val, "-output", out], needle, keep=out)
    expect_usage_error(["train", "-width", "0"], "-width", ranks=2)
    expect_usage_error(["frobnicate"], "frobnicate")
    expect_usage_error(["train", "-output", p("no/such/dir/r.h5")], "no/such/dir")

    # a model whose arrays contradict its attributes, and data that does not fit a model
    model, _ = train(tmp, "m", 1, ["-train", p("good.h5"), "-epochs", "1", "-width", "3", "-layers", "2"])
    bad = p("badmodel.h5")
    with h5py.File(model, "r") as f, h5py.File(bad, "w") as g:
        f.copy("model", g)
        del g["model/blocks/W"]
        g["model/blocks/W"] = np.zeros((3, 3, 3))
    expect_usage_error(["info", "-model", bad], "badmodel.h5")
    expect_usage_error(["evaluate", "-model", bad, "-data", p("good.h5")], "badmodel.h5")
    expect_usage_error(["evaluate", "-model", model, "-data", p("d3.h5")], "d3.h5")
    expect_usage_error(["evaluate", "-model", model, "-data", p("big.h5")], "label")
    expect_usage_error(["evaluate", "-model", p("missing.h5"), "-data", p("good.h5")], "missing.h5")
    expect_usage_error(["predict", "-model", model, "-data", p("good.h5")], "-output")



if __name__ == "__main__":
    sys.exit(harness.main(globals(), "thetanet-test-"))
