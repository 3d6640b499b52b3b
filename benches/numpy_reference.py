#!/usr/bin/env python3
"""NumPy timings of the operations benches/cpu_kernels.rs measures, printed as JSON lines.

Called by the Rust bench in the same run so the ratios compare like with like on one machine.
Each line: {"name": ..., "seconds": median seconds per call}.
"""
import json
import sys
import time

import numpy as np


def median_time(fn, repeats):
    fn()  # warm-up: page faults, thread pool start
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def emit(name, seconds):
    print(json.dumps({"name": name, "seconds": seconds}), flush=True)


def main():
    rng = np.random.default_rng(0)
    for spec in sys.argv[1:]:
        kind, _, arg = spec.partition(":")
        if kind == "gemm":
            m, k, n = (int(v) for v in arg.split("x"))
            a = rng.standard_normal((m, k), dtype=np.float32)
            b = rng.standard_normal((k, n), dtype=np.float32)
            reps = 5 if m * n * k >= 512**3 else 20
            emit(spec, median_time(lambda: a @ b, reps))
        elif kind in ("add", "mul", "exp", "relu", "sum", "sum_rows", "memcpy", "add_bcast", "softmax"):
            n = int(arg)
            a = rng.standard_normal(n, dtype=np.float32)
            b = rng.standard_normal(n, dtype=np.float32)
            out = np.empty_like(a)
            rows = a.reshape(-1, 1024)
            bias = rng.standard_normal(1024, dtype=np.float32)

            def softmax():
                e = np.exp(rows - rows.max(axis=1, keepdims=True))
                return e / e.sum(axis=1, keepdims=True)

            fns = {
                "add_bcast": lambda: rows + bias,
                "softmax": softmax,
                "add": lambda: a + b,
                "mul": lambda: a * b,
                "exp": lambda: np.exp(a),
                "relu": lambda: np.maximum(a, 0),
                "sum": lambda: a.sum(),
                "sum_rows": lambda: a.reshape(-1, 1024).sum(axis=1),
                "memcpy": lambda: np.copyto(out, a),
            }
            emit(spec, median_time(fns[kind], 10))
        else:
            raise SystemExit(f"unknown benchmark spec {spec}")


if __name__ == "__main__":
    main()
