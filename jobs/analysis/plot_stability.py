#!/usr/bin/env python3
"""Phase portraits of one-step methods on the paper's linear test system u' = v, v' = -u
(Figure 2): the exact orbits are circles. Forward Euler spirals out (each step multiplies the
radius by sqrt(1 + h^2)), backward Euler spirals in (by 1/sqrt(1 + h^2)), the trapezoidal step
keeps the circle for every h, and Stormer-Verlet keeps a closed orbit only for h < 2.

usage: plot_stability.py -o FILE.png [--h 0.2] [--time 30] [--verlet-h 0.5,1.9,2.05]
"""
import argparse

import thetanet_results as tr

tr.require_h5py()  # before numpy: restarts under the Python that has h5py if need be

import numpy as np  # noqa: E402

# y' = A y with y = (u, v)
A = np.array([[0.0, 1.0], [-1.0, 0.0]])
I = np.eye(2)


def theta_step(h, theta):
    """The theta-method's step matrix (I - h theta A)^{-1} (I + h (1-theta) A): theta 0 forward
    Euler, 1/2 trapezoidal, 1 backward Euler (the blocks of thetanet on a linear F)."""
    return np.linalg.solve(I - h * theta * A, I + h * (1 - theta) * A)


def verlet_step(h):
    """Stormer-Verlet (leapfrog) for u' = v, v' = -u: half kick, drift, half kick. Its trace is
    2 - h^2, so both eigenvalues lie on the unit circle exactly when h <= 2."""
    kick = np.array([[1.0, 0.0], [-h / 2, 1.0]])
    drift = np.array([[1.0, h], [0.0, 1.0]])
    return kick @ drift @ kick


def orbit(M, steps, y0=(1.0, 0.0)):
    ys = [np.array(y0)]
    for _ in range(steps):
        ys.append(M @ ys[-1])
    return np.array(ys)


def plot(out, h=0.2, time=30.0, verlet_h=(0.5, 1.9, 2.05)):
    plt = tr.pyplot()
    steps = int(round(time / h))
    stable = [hv for hv in verlet_h if hv < 2]
    unstable = [hv for hv in verlet_h if hv >= 2]
    # (title, [(step matrix, steps, legend)], verdict, marker style, axis limit: None = the data's)
    panels = [(f"forward Euler (theta 0), h {h:g}", [(theta_step(h, 0.0), steps, None)], "spirals out", ".-", 3.5),
              (f"backward Euler (theta 1), h {h:g}", [(theta_step(h, 1.0), steps, None)], "spirals in", ".-", 3.5),
              (f"trapezoidal (theta 1/2), h {h:g}", [(theta_step(h, 0.5), steps, None)], "keeps the orbit", ".-", 3.5)]
    if stable:  # many steps, points only: they fill the invariant ellipse
        panels.append(("Stormer-Verlet, h < 2", [(verlet_step(hv), 400, f"h {hv:g}") for hv in stable],
                       "closed orbits (ellipses)", ".", 3.5))
    if unstable:
        panels.append(("Stormer-Verlet, h >= 2", [(verlet_step(hv), 12, f"h {hv:g}") for hv in unstable],
                       "grows without bound", ".-", None))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.8 * len(panels), 4.3))
    circle = np.linspace(0, 2 * np.pi, 400)
    for ax, (title, runs, verdict, style, lim) in zip(axes, panels):
        ax.plot(np.cos(circle), np.sin(circle), color="0.6", ls="--", lw=1, label="exact")
        for M, n, label in runs:
            ys = orbit(M, n)
            ax.plot(ys[:, 0], ys[:, 1], style, ms=3, lw=0.8, label=label)
            lim = lim or 1.1 * np.abs(ys).max()
            print(f"{title:36s} {label or '':8s} |y| after {n} steps: {np.linalg.norm(ys[-1]):.3g}")
        ax.plot([1], [0], "ko", ms=5)
        ax.set_title(f"{title}\n{verdict}", fontsize=10)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_xlabel("u")
        ax.legend(loc="lower right", fontsize=7)
    axes[0].set_ylabel("v")
    fig.suptitle(f"u' = v, v' = -u from (1, 0); theta-methods up to t = {time:g}")
    tr.save(fig, out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", required=True, help="PNG file to write")
    ap.add_argument("--h", type=float, default=0.2, help="step of the theta-methods (default 0.2)")
    ap.add_argument("--time", type=float, default=30.0, help="final time (default 30)")
    ap.add_argument("--verlet-h", default="0.5,1.9,2.05", help="Verlet steps (default 0.5,1.9,2.05)")
    a = ap.parse_args()
    plot(a.output, a.h, a.time, [float(x) for x in a.verlet_h.split(",")])


if __name__ == "__main__":
    main()
