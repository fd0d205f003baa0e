#!/usr/bin/env python3
"""Convert a pair of IDX files (the MNIST and Fashion-MNIST format, gzip-compressed or not) into
a thetanet data set: /X [N, rows*cols] uint8 images (train with -scale_uint8 to read them as
[0, 1]), /Y [N] int64 labels, root attributes task = "classification" and name.

usage: idx_to_hdf5.py IMAGES.idx3[.gz] LABELS.idx1[.gz] OUT.h5 [--name NAME] [--rows A:B]
"""
import argparse
import gzip
import os
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "analysis"))
import thetanet_results as tr  # noqa: E402

tr.require_h5py()  # before numpy: restarts under the Python that has h5py if need be

import numpy as np  # noqa: E402

# IDX: two zero bytes, the element type (0x08: unsigned byte), the number of dimensions, then the
# dimensions as big-endian 32-bit integers, then the data in row-major order.
UBYTE = 0x08


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        head = f.read(4)
        if len(head) != 4 or head[:2] != b"\0\0":
            sys.exit(f"idx_to_hdf5.py: {path}: not an IDX file (bad magic number)")
        if head[2] != UBYTE:
            sys.exit(f"idx_to_hdf5.py: {path}: element type 0x{head[2]:02x}, only unsigned bytes (0x08) are read")
        dims = struct.unpack(">" + "I" * head[3], f.read(4 * head[3]))
        data = np.frombuffer(f.read(), dtype=np.uint8)
    if data.size != int(np.prod(dims)):
        sys.exit(f"idx_to_hdf5.py: {path}: {data.size} bytes of data for dimensions {list(dims)} (truncated?)")
    return data.reshape(dims)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images")
    ap.add_argument("labels")
    ap.add_argument("out")
    ap.add_argument("--name", help="the data set's name (default: OUT's base name)")
    ap.add_argument("--rows", help="A:B keeps the samples A..B-1 (Python slice syntax: 55000: is the last rows)")
    a = ap.parse_args()
    X, Y = read_idx(a.images), read_idx(a.labels)
    if X.ndim < 2 or Y.ndim != 1 or X.shape[0] != Y.shape[0]:
        sys.exit(f"idx_to_hdf5.py: images {list(X.shape)} and labels {list(Y.shape)} do not pair up")
    X = X.reshape(X.shape[0], -1)
    if a.rows:
        try:
            sel = slice(*[int(v) if v else None for v in a.rows.split(":")])
        except ValueError:
            sys.exit(f"idx_to_hdf5.py: --rows {a.rows}: expected A:B")
        X, Y = X[sel], Y[sel]
        if not len(Y):
            sys.exit(f"idx_to_hdf5.py: --rows {a.rows} keeps no sample")
    name = a.name or os.path.splitext(os.path.basename(a.out))[0]
    tmp = a.out + f".{os.getpid()}.tmp"
    with tr.h5py.File(tmp, "w") as f:
        f.create_dataset("X", data=X, dtype=np.uint8)
        f.create_dataset("Y", data=Y.astype(np.int64))
        f.attrs["task"] = "classification"
        f.attrs["name"] = name
    os.replace(tmp, a.out)
    print(f"{a.out}: {X.shape[0]} samples of {X.shape[1]} uint8 features, {len(np.unique(Y))} classes ({name})")


if __name__ == "__main__":
    main()
