#!/usr/bin/env python3
"""PyTorch timings of the operations benches/cuda_kernels.rs measures, printed as JSON lines.

Called by the Rust bench in the same run (after its own measurements, one process on the GPU at a
time) so the ratios compare like with like on one device. Timing as in the bench: CUDA events
around each call, after 3 warm-up calls, median over the repeats, the L2 cache flushed before
every repeat by writing a buffer of twice its size.

Arguments: `--repeats N` (for every spec except gemm:8192 and up, which take a fifth of N, at
least 3), then specs:
  copy:N add:N mul:N gelu:N sum_all:N    on N f32 elements
  sum_rows:R,C softmax:R,C               over the rows of an R x C f32 matrix (last axis)
  gemm:N gemm_tf32:N                     N x N @ N x N f32, TF32 off / on
  adamw:N                                torch.optim.AdamW(fused=True) on one N-element tensor
Each output line: {"name": spec, "seconds": median} or {"name": spec, "error": message}; the
first line: {"device": name, "torch": version}.
"""
import json
import sys

import torch


def emit(**kw):
    print(json.dumps(kw), flush=True)


def repeats_for(spec, repeats):
    kind, _, arg = spec.partition(":")
    if kind.startswith("gemm") and int(arg) >= 8192:
        return max(3, repeats // 5)
    return repeats


def main():
    args = sys.argv[1:]
    repeats = 50
    if len(args) >= 2 and args[0] == "--repeats":
        repeats = int(args[1])
        args = args[2:]
    if not torch.cuda.is_available():
        raise SystemExit("torch sees no CUDA device")
    dev = torch.device("cuda", 0)
    emit(device=torch.cuda.get_device_name(0), torch=torch.__version__)
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    flush = torch.empty(max(2 * l2, 1 << 20), dtype=torch.uint8, device=dev)
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)

    def median_time(fn, reps):
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        times = []
        for r in range(reps):
            flush.fill_(r & 255)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        times.sort()
        return times[len(times) // 2]

    gen = torch.Generator(device=dev)
    gen.manual_seed(0)

    def rand(*shape):
        return torch.rand(*shape, generator=gen, device=dev) * 2 - 1

    for spec in args:
        kind, _, arg = spec.partition(":")
        try:
            with torch.no_grad():
                if kind in ("copy", "add", "mul", "gelu", "sum_all"):
                    n = int(arg)
                    a, b = rand(n), rand(n)
                    out = torch.empty_like(a)
                    fn = {
                        "copy": lambda: out.copy_(a),
                        "add": lambda: a + b,
                        "mul": lambda: a * b,
                        "gelu": lambda: torch.nn.functional.gelu(a),
                        "sum_all": lambda: a.sum(),
                    }[kind]
                elif kind in ("sum_rows", "softmax"):
                    r, c = (int(v) for v in arg.split(","))
                    x = rand(r, c)
                    fn = (lambda: x.sum(dim=1)) if kind == "sum_rows" else (lambda: torch.softmax(x, dim=-1))
                elif kind in ("gemm", "gemm_tf32"):
                    n = int(arg)
                    a, b = rand(n, n), rand(n, n)
                    torch.backends.cuda.matmul.allow_tf32 = kind == "gemm_tf32"
                    fn = lambda: a @ b
                elif kind == "adamw":
                    n = int(arg)
                    p = rand(n).requires_grad_(True)
                    p.grad = rand(n)
                    opt = torch.optim.AdamW([p], lr=1e-3, weight_decay=0.01, fused=True)
                    fn = opt.step
                else:
                    raise ValueError(f"unknown benchmark spec {spec}")
                seconds = median_time(fn, repeats_for(spec, repeats))
            emit(name=spec, seconds=seconds)
        except Exception as e:  # report and carry on with the next spec
            emit(name=spec, error=f"{type(e).__name__}: {e}")
        finally:
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
