#!/usr/bin/env python3
"""End-to-end test of the memory modes (DESIGN.md §1): three epochs of training at theta 0.5 give
the history of -memory store with -memory reversible and checkpoint, on 1 and 2 ranks; reversible
mode reports the reconstruction error on the epoch lines and warns when it should.

usage: memory_test.py modes --thetanet PATH --mpiexec "mpiexec --oversubscribe ..."
"""
import sys

import cli_test as cli  # run(), train(), history(), rel_diff(), check() of the end-to-end tests
import harness

# tight solves, so that the modes agree far below the 1e-8 asked of them
OPTS = ["-problem", "spirals", "-theta", "0.5", "-epochs", "3", "-batch", "50", "-width", "8", "-layers", "6",
        "-block_atol", "1e-12", "-adjoint_ksp_rtol", "1e-12"]


def epoch_lines(stdout):
    return [l for l in stdout.splitlines() if l.startswith("epoch ")]


def same_history(tmp):
    """Every mode and rank count trains as store does on 1 rank (2 ranks: within the solver tolerance)."""
    ref = cli.history(cli.train(tmp, "store", 1, OPTS + ["-memory", "store"])[0])
    for ranks, mode, extra in ((1, "reversible", []), (1, "checkpoint", []), (1, "checkpoint", ["-memory_stride", "4"]),
                               (2, "reversible", []), (2, "checkpoint", ["-memory_stride", "4"])):
        out, so = cli.train(tmp, f"{mode}{ranks}{len(extra)}", ranks, OPTS + ["-memory", mode] + extra)
        h = cli.history(out)
        for key in ("train_loss", "val_loss", "val_accuracy"):
            d = cli.rel_diff(h[key], ref[key])
            print(f"{mode} {' '.join(extra)} on {ranks} ranks: {key} differs from store by {d:.2e}")
            cli.check(d < 1e-8, f"{key} of -memory {mode} {' '.join(extra)} on {ranks} ranks differs by {d:.2e}")
        lines = epoch_lines(so)
        cli.check(len(lines) == 3 and all((" recon " in l) == (mode == "reversible") for l in lines),
                  f"recon on the epoch lines of -memory {mode}:\n{so}")


def warnings():
    """theta != 0.5: one warning at the start; an error above -memory_tol: one warning per epoch.
    theta 0.5 with tight solves: none."""
    status, so, se = cli.run(["train", "-problem", "spirals", "-epochs", "2", "-width", "8", "-layers", "6", "-theta", "1",
                              "-memory", "reversible", "-memory_tol", "1e-300"])
    cli.check(status == 0, f"theta 1 reversible failed ({status}):\n{se}")
    print(se.strip())
    cli.check(se.count("symmetric only for theta 0.5") == 1, f"no (or more than one) theta warning:\n{se}")
    cli.check(se.count("exceeds -memory_tol") == 2, f"no reconstruction warning per epoch:\n{se}")
    status, so, se = cli.run(["train"] + OPTS + ["-memory", "reversible"])
    cli.check(status == 0 and "warning" not in se, f"theta 0.5 reversible with tight solves warned ({status}):\n{se}")
    print(epoch_lines(so)[-1])


def case_modes(tmp):
    cli.ARGS = ARGS  # noqa: F821 (set by harness.main)
    same_history(tmp)
    warnings()


if __name__ == "__main__":
    sys.exit(harness.main(globals(), "thetanet-memory-"))
