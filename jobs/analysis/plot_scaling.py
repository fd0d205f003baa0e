#!/usr/bin/env python3
"""Speed-up and parallel efficiency of one or several scaling studies (jobs/scaling/study),
against the number of ranks, with the ideal line. A grid study draws one line per number of
depth ranks. A simulated study (jobs/scaling/simulate) adds the predicted curves, dashed.

usage: plot_scaling.py STUDY.h5 [STUDY.h5 ...] -o FILE.png [--labels A,B,...] [--title T]
"""

import thetanet_results as tr

tr.require_h5py()  # before numpy: restarts under the Python that has h5py if need be

import h5py  # noqa: E402
import numpy as np  # noqa: E402


def read_study(path):
    with h5py.File(path, "r") as f:
        if "runs" not in f:
            raise SystemExit(f"plot_scaling.py: {path} has no /runs (not written by jobs/scaling/study)")
        g = f["runs"]
        runs = {k: (g[k].asstr()[()] if h5py.check_string_dtype(g[k].dtype) else g[k][()]) for k in g}
        return runs, {k: tr.text(v) for k, v in f.attrs.items()}


def plot(paths, out, labels=None, title=None):
    plt = tr.pyplot()
    fig, (ax_s, ax_e) = plt.subplots(1, 2, figsize=(12, 4.5))
    all_ranks = set()
    for i, path in enumerate(paths):
        runs, attrs = read_study(path)
        name = labels[i] if labels else f"{attrs.get('axis', '?')} axis, {attrs.get('scaling', '?')}"
        ranks, depth = runs["ranks"], runs["depth_ranks"]
        groups = sorted(set(depth)) if attrs.get("axis") == "grid" else [None]
        for d in groups:
            sel = np.ones(len(ranks), bool) if d is None else depth == d
            label = name if d is None else f"{name}, depth ranks {d}"
            line = ax_s.plot(ranks[sel], runs["speedup"][sel], "o-", label=label)[0]
            ax_e.plot(ranks[sel], runs["efficiency"][sel], "o-", label=label, color=line.get_color())
            if "predicted_speedup" in runs:
                # jobs/scaling/simulate: the SimGrid replay of the same runs
                ax_s.plot(ranks[sel], runs["predicted_speedup"][sel], "x--", color=line.get_color(),
                          label=label + ", predicted (SimGrid)")
                ax_e.plot(ranks[sel], runs["predicted_efficiency"][sel], "x--", color=line.get_color(),
                          label=label + ", predicted (SimGrid)")
        all_ranks |= set(int(r) for r in ranks)
        for r, g, t, s, e in zip(ranks, runs["grid"], runs["epoch_s"], runs["speedup"], runs["efficiency"]):
            print(f"{name}: P {r} grid {g} epoch_s {t:.4g} speed-up {s:.2f} efficiency {e:.2f}")
    P = np.array(sorted(all_ranks))
    ax_s.plot(P, P / P[0], "k--", lw=1, label="ideal")
    ax_e.axhline(1.0, color="k", ls="--", lw=1)
    for ax, ylabel in ((ax_s, "speed-up (throughput / first run's)"), (ax_e, "parallel efficiency")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(P)
        ax.set_xticklabels([str(p) for p in P])
        ax.set_xlabel("ranks")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    ax_e.set_ylim(0, max(1.1, ax_e.get_ylim()[1]))
    if title:
        fig.suptitle(title)
    tr.save(fig, out)


def main():
    ap = tr.plot_parser(__doc__, "studies", "files written by jobs/scaling/study")
    a = ap.parse_args()
    plot(a.studies, a.output, tr.plot_labels(ap, a, a.studies), a.title)


if __name__ == "__main__":
    main()
