#!/usr/bin/env python3
"""numpy reference timings for bench/gemm.ts and bench/softmax.ts.

Reads one JSON object on stdin:
  {"kind": "gemm", "shapes": [[M, N, K], ...], "reps": 7, "min_time": 0.2}
      times C = A @ B.T in float32 with A [M, K] and B [N, K] (a linear layer, like sgemm(transB=true))
  {"kind": "softmax", "shapes": [[rows, cols], ...], "reps": 7, "min_time": 0.2}
      times a numerically stable softmax over the last axis of a float32 [rows, cols] array
and prints one JSON object on stdout: {"numpy": version, "blas": {...}, "results": [{"shape": [...], "seconds": median}]}.
Timing: one warm-up call, then at least `reps` calls and at least `min_time` seconds; the median is reported.
"""
import ctypes
import glob
import json
import os
import statistics
import sys
import time

import numpy as np


def blas_info():
    """Which OpenBLAS numpy links and which kernel it picked for this CPU (threadpoolctl if installed)."""
    try:
        from threadpoolctl import threadpool_info  # type: ignore

        for entry in threadpool_info():
            if entry.get("internal_api") == "openblas":
                return {"library": entry.get("filepath"), "version": entry.get("version"),
                        "corename": entry.get("architecture"), "threads": entry.get("num_threads")}
    except ImportError:
        pass
    # numpy wheels bundle scipy-openblas with prefixed symbols; ask it directly.
    libs = glob.glob(os.path.join(os.path.dirname(np.__file__), "..", "numpy.libs", "libscipy_openblas*"))
    for path in libs:
        lib = ctypes.CDLL(path)
        for prefix in ("scipy_openblas_", "openblas_"):
            for suffix in ("64_", ""):
                try:
                    core = getattr(lib, f"{prefix}get_corename{suffix}")
                    config = getattr(lib, f"{prefix}get_config{suffix}")
                    threads = getattr(lib, f"{prefix}get_num_threads{suffix}")
                except AttributeError:
                    continue
                core.restype = ctypes.c_char_p
                config.restype = ctypes.c_char_p
                return {"library": os.path.basename(path), "config": config().decode(),
                        "corename": core().decode(), "threads": threads()}
    return {"library": "unknown"}


def median_seconds(fn, reps, min_time):
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < reps or time.perf_counter() - start < min_time:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        if len(times) >= 1000:
            break
    return statistics.median(times)


def gemm(shape, reps, min_time, rng):
    m, n, k = shape
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((n, k), dtype=np.float32)
    c = np.empty((m, n), dtype=np.float32)
    bt = b.T
    return median_seconds(lambda: np.matmul(a, bt, out=c), reps, min_time)


def softmax(shape, reps, min_time, rng):
    rows, cols = shape
    x = rng.standard_normal((rows, cols), dtype=np.float32)
    y = np.empty_like(x)
    mx = np.empty((rows, 1), dtype=np.float32)
    s = np.empty((rows, 1), dtype=np.float32)

    def run():
        np.max(x, axis=-1, keepdims=True, out=mx)
        np.subtract(x, mx, out=y)
        np.exp(y, out=y)
        np.sum(y, axis=-1, keepdims=True, out=s)
        np.divide(y, s, out=y)

    return median_seconds(run, reps, min_time)


def main():
    req = json.load(sys.stdin)
    kind = req["kind"]
    if kind not in ("gemm", "softmax"):
        sys.exit(f"numpy_ref.py: kind must be 'gemm' or 'softmax', got {kind!r}")
    fn = gemm if kind == "gemm" else softmax
    rng = np.random.default_rng(0)
    reps = int(req.get("reps", 7))
    min_time = float(req.get("min_time", 0.2))
    results = [{"shape": shape, "seconds": fn(shape, reps, min_time, rng)} for shape in req["shapes"]]
    json.dump({"numpy": np.__version__, "blas": blas_info(), "results": results}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
