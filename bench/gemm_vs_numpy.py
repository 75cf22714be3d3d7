#!/usr/bin/env python3
"""The numpy (OpenBLAS) baseline of `luoshu bench gemm`.

Usage: gemm_vs_numpy.py M,K,N,TA,TB ...   (TA/TB: 1 if that operand is stored transposed)
Prints one line per shape: `M,K,N,TA,TB <GFLOP/s>` (best of repeated f32 products into a
preallocated output). The thread count comes from OPENBLAS_NUM_THREADS (default 2), which
must be set before numpy loads.
"""
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")
os.environ.setdefault("OMP_NUM_THREADS", os.environ["OPENBLAS_NUM_THREADS"])
os.environ.setdefault("MKL_NUM_THREADS", os.environ["OPENBLAS_NUM_THREADS"])

try:
    import numpy as np
except ImportError:
    print("numpy is not installed; install it with `pip install numpy`", file=sys.stderr)
    sys.exit(2)

MIN_SECONDS = 1.0
MIN_RUNS = 5


def operand(rng, rows, cols, transposed):
    """A rows×cols f32 matrix, stored as its transpose when asked (a strided view)."""
    if transposed:
        return rng.standard_normal((cols, rows), dtype=np.float32).T
    return rng.standard_normal((rows, cols), dtype=np.float32)


def best_seconds(a, b, out):
    np.matmul(a, b, out=out)
    best, total, runs = float("inf"), 0.0, 0
    while total < MIN_SECONDS or runs < MIN_RUNS:
        start = time.perf_counter()
        np.matmul(a, b, out=out)
        elapsed = time.perf_counter() - start
        best, total, runs = min(best, elapsed), total + elapsed, runs + 1
    return best


def main(specs):
    rng = np.random.default_rng(0)
    for spec in specs:
        m, k, n, ta, tb = (int(x) for x in spec.split(","))
        a = operand(rng, m, k, ta == 1)
        b = operand(rng, k, n, tb == 1)
        out = np.empty((m, n), dtype=np.float32)
        gflops = 2.0 * m * k * n / best_seconds(a, b, out) / 1e9
        print(f"{spec} {gflops:.2f}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(1)
    main(sys.argv[1:])
