#!/usr/bin/env python3
"""Write a synthetic classification set for benchmarks: N samples of d Gaussian features,
labels = argmax of a random linear teacher (classes). usage: make_dataset.py OUT N d classes"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "analysis"))
import thetanet_results as tr  # noqa: E402

tr.require_h5py()  # before h5py: restarts under the Python that has it if need be

import h5py  # noqa: E402
import numpy as np  # noqa: E402

out, N, d, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(12345)
X = rng.standard_normal((N, d))
Y = np.argmax(X @ rng.standard_normal((d, k)), axis=1).astype(np.int64)
with h5py.File(out, "w") as f:
    f["X"] = X
    f["Y"] = Y
    f.attrs["task"] = "classification"
    f.attrs["name"] = f"synthetic {N}x{d}, {k} classes"
