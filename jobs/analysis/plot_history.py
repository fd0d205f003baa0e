#!/usr/bin/env python3
"""Training and validation curves of one or several thetanet runs (the paper's Figures 3 to 5):
the loss per epoch (training dashed, validation solid, log scale) and, for classification, the
validation accuracy. Reads /history of each results file.

usage: plot_history.py RESULTS.h5 [RESULTS.h5 ...] -o FILE.png [--labels A,B,...] [--x epoch|time] [--title T]
"""

import thetanet_results as tr

tr.require_h5py()  # before numpy: restarts under the Python that has h5py if need be

import numpy as np  # noqa: E402


def plot(paths, out, labels=None, x="epoch", title=None):
    plt = tr.pyplot()
    runs = [tr.Results(p) for p in paths]
    for r in runs:
        if not r.history:
            raise SystemExit(f"plot_history.py: {r.path} has no /history (a model, not a results file?)")
    labels = labels or [r.label(data=len({r.data_name for r in runs}) > 1) for r in runs]
    accuracy = any(r.classification for r in runs)
    fig, axes = plt.subplots(1, 2 if accuracy else 1, figsize=(12 if accuracy else 6.5, 4.3), squeeze=False)
    axes = axes[0]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (r, label) in enumerate(zip(runs, labels)):
        h, c = r.history, colors[i % len(colors)]
        t = h["wall_time"] if x == "time" else h["epoch"]
        axes[0].semilogy(t, h["train_loss"], ls="--", lw=1, color=c)
        if np.isfinite(h["val_loss"]).any():
            axes[0].semilogy(t, h["val_loss"], lw=1.5, color=c, label=label)
        else:
            axes[0].lines[-1].set_label(label + " (training)")
        if accuracy and r.classification:
            axes[1].plot(t, h["val_accuracy"], lw=1.5, color=c, label=label)
        final = {k: h[k][-1] for k in ("train_loss", "val_loss", "val_accuracy")}
        print(f"{label}: {len(t)} epochs, final train_loss {final['train_loss']:.4g} val_loss "
              f"{final['val_loss']:.4g}" + (f" val_accuracy {final['val_accuracy']:.4f}" if r.classification else ""))
    xlabel = "wall time [s]" if x == "time" else "epoch"
    axes[0].set_xlabel(xlabel)
    axes[0].set_ylabel("loss (training dashed, validation solid)")
    axes[0].grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    if accuracy:
        axes[1].set_xlabel(xlabel)
        axes[1].set_ylabel("validation accuracy")
        axes[1].grid(True, alpha=0.3)
        axes[1].legend(fontsize=8, loc="lower right")
    if title:
        fig.suptitle(title)
    tr.save(fig, out)


def main():
    ap = tr.plot_parser(__doc__, "results", "results files (thetanet train -output)")
    ap.add_argument("--x", choices=("epoch", "time"), default="epoch", help="horizontal axis (default epoch)")
    a = ap.parse_args()
    plot(a.results, a.output, tr.plot_labels(ap, a, a.results), a.x, a.title)


if __name__ == "__main__":
    main()
