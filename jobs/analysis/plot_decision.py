#!/usr/bin/env python3
"""Decision regions of a 2-D classifier with its data points (the paper's Figure 6), one panel
per model; for a 1-D regression model (-problem sine), the fitted curve over the data. The
network is evaluated over a grid by `thetanet predict` (one implementation of the network: the
program's). The data points are those the model was trained on (an embedded problem is exported
by `thetanet export`, a data file named in /config is read), or --data FILE.

usage: plot_decision.py MODEL.h5 [MODEL.h5 ...] -o FILE.png [--data F.h5] [--resolution 200]
                        [--box XMIN,XMAX,YMIN,YMAX] [--thetanet PATH] [--options="THETANET OPTIONS"]
"""
import shlex

import thetanet_results as tr

tr.require_h5py()  # before numpy: restarts under the Python that has h5py if need be

import numpy as np  # noqa: E402


def extent(points, box):
    if box:
        return box
    if not points:
        return (-1.5, 1.5, -1.5, 1.5)
    X = np.concatenate(points)
    lo, hi = X.min(axis=0), X.max(axis=0)
    pad = 0.1 * (hi - lo) + 1e-9
    lo, hi = lo - pad, hi + pad
    return tuple(v for pair in zip(lo, hi) for v in pair)


def points_of(r, data, thetanet=None):
    """{'train': (X, Y), 'val': (X, Y)} to draw: --data, else what the model was trained on."""
    if data:
        return {"data": tr.read_dataset(data)}
    found = r.data(thetanet=thetanet)
    if not found:
        print(f"plot_decision.py: {r.path}: training data unknown or gone; pass --data F.h5 to draw points")
    return found


def panel_classifier(ax, plt, r, pts, box, resolution, run_kw):
    x0, x1, y0, y1 = extent([X for X, _ in pts.values()], box)
    xx, yy = np.meshgrid(np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution))
    logits = tr.predict(r.path, np.column_stack([xx.ravel(), yy.ravel()]), **run_kw)
    m = logits.shape[1]
    cls = np.argmax(logits, axis=1).reshape(xx.shape)
    colors = plt.get_cmap("tab10").colors[:m]
    from matplotlib.colors import ListedColormap
    ax.contourf(xx, yy, cls, levels=np.arange(m + 1) - 0.5, cmap=ListedColormap(colors), alpha=0.3)
    ax.contour(xx, yy, cls, levels=np.arange(1, m) - 0.5, colors="k", linewidths=0.6)
    markers = {"train": "o", "val": "x", "data": "o"}
    for role, (X, Y) in pts.items():
        for c in range(m):
            sel = np.asarray(Y).astype(int) == c
            ax.scatter(X[sel, 0], X[sel, 1], s=6, marker=markers[role], color=colors[c], linewidths=0.6,
                       label=f"{role} class {c}" if role != "data" else f"class {c}")
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal")
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")


def panel_regression(ax, r, pts, box, resolution, run_kw):
    x0, x1 = extent([X for X, _ in pts.values()], box)[:2]
    x = np.linspace(x0, x1, resolution)
    y = tr.predict(r.path, x[:, None], **run_kw)[:, 0]
    for role, (X, Y) in pts.items():
        ax.plot(X[:, 0], np.asarray(Y).reshape(len(X), -1)[:, 0], "o" if role != "val" else "x", ms=2.5,
                label=role, alpha=0.6)
    ax.plot(x, y, "k-", lw=1.2, label="network")
    ax.set_xlabel("x")
    ax.set_ylabel("output")
    ax.grid(True, alpha=0.3)


def plot(models, out, data=None, resolution=200, box=None, labels=None, thetanet=None, title=None, options=()):
    plt = tr.pyplot()
    run_kw = {"thetanet": thetanet, "options": options}
    runs = [tr.Results(p) for p in models]
    for r in runs:
        d, task = r.model["input_dim"], r.model["task"]
        if not ((d == 2 and task == "classification") or (d == 1 and task == "regression")):
            raise SystemExit(f"plot_decision.py: {r.path}: a {task} model with input dimension {d}; "
                             "decision regions need d = 2 (classification), fitted curves d = 1 (regression)")
    labels = labels or [r.label() for r in runs]
    fig, axes = plt.subplots(1, len(runs), figsize=(5.2 * len(runs), 5), squeeze=False)
    for ax, r, label in zip(axes[0], runs, labels):
        pts = points_of(r, data, thetanet)
        if r.classification:
            panel_classifier(ax, plt, r, pts, box, resolution, run_kw)
        else:
            panel_regression(ax, r, pts, box, resolution, run_kw)
        h = r.history
        if h and r.classification:
            label += f"\nvalidation accuracy {h['val_accuracy'][-1]:.3f}"
        elif h:
            label += f"\nvalidation loss {h['val_loss'][-1]:.3g}"
        ax.set_title(label, fontsize=10)
    axes[0][-1].legend(fontsize=7, loc="upper right", markerscale=2)
    if title:
        fig.suptitle(title)
    tr.save(fig, out)


def main():
    ap = tr.plot_parser(__doc__, "models", "model or results files (with /model)")
    ap.add_argument("--data", help="data set whose points to draw (default: the model's training data)")
    ap.add_argument("--resolution", type=int, default=200, help="grid points per axis (default 200)")
    ap.add_argument("--box", help="XMIN,XMAX,YMIN,YMAX of the picture (default: the data's, padded)")
    ap.add_argument("--thetanet", help="thetanet binary (default: build/thetanet, or thetanet on PATH)")
    ap.add_argument("--options", default="", help='more options for thetanet predict, e.g. '
                    '"-block_fallback_snes_linesearch_type bt" (the block solver settings of the training)')
    a = ap.parse_args()
    box = tuple(float(v) for v in a.box.split(",")) if a.box else None
    if box and len(box) != 4:
        ap.error("--box takes XMIN,XMAX,YMIN,YMAX")
    labels = tr.plot_labels(ap, a, a.models)
    tr.find_thetanet(a.thetanet)
    try:
        plot(a.models, a.output, a.data, a.resolution, box, labels, a.thetanet, a.title, shlex.split(a.options))
    except tr.ThetanetError as e:
        raise SystemExit(f"plot_decision.py: {e}")


if __name__ == "__main__":
    main()
