#!/usr/bin/env python3
"""PyTorch references for benches/contrastive.rs, printed as JSON lines.

Specs (forward + backward, f32, inputs requiring grad):
  infonce:N,D   a, b (N x D, unit rows): s = a @ b.T / 0.07, loss = (F.cross_entropy(s, arange) +
                F.cross_entropy(s.T, arange)) / 2, loss.backward()
  barlow:N,D    the public Barlow Twins loss: BatchNorm1d(D, affine=False) in training mode on
                both views, c = bn(z1).T @ bn(z2) / N, on_diag = (diag(c) - 1)^2 summed,
                off_diag = off-diagonal c^2 summed, loss = on_diag + 0.0051 * off_diag, backward
On a GPU: CUDA events, 3 warm-up calls, median of the repeats, L2 flushed (a buffer of twice its
size written) before every repeat, TF32 off. Without one: wall time on the CPU.
Arguments: `--repeats N`, then specs. Output: a first line {"device": ..., "torch": ...}, then
{"name": spec, "seconds": median} (or "error") per spec.
"""
import json
import sys
import time

import torch
import torch.nn.functional as F


def emit(**kw):
    print(json.dumps(kw), flush=True)


def off_diagonal(x):
    n, m = x.shape
    return x.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def main():
    args = sys.argv[1:]
    repeats = 20
    if len(args) >= 2 and args[0] == "--repeats":
        repeats = int(args[1])
        args = args[2:]
    cuda = torch.cuda.is_available()
    dev = torch.device("cuda", 0) if cuda else torch.device("cpu")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    emit(device=torch.cuda.get_device_name(0) if cuda else "cpu", torch=torch.__version__)
    if cuda:
        l2 = torch.cuda.get_device_properties(0).L2_cache_size
        flush = torch.empty(max(2 * l2, 1 << 20), dtype=torch.uint8, device=dev)
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)

    def median_time(fn):
        for _ in range(3):
            fn()
        times = []
        if cuda:
            torch.cuda.synchronize()
        for r in range(repeats):
            if cuda:
                flush.fill_(r & 255)
                start.record()
                fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) / 1e3)
            else:
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
        times.sort()
        return times[len(times) // 2]

    for spec in args:
        kind, _, arg = spec.partition(":")
        try:
            n, d = (int(v) for v in arg.split(","))
            g = torch.Generator(device="cpu").manual_seed(0)
            if kind == "infonce":
                a = F.normalize(torch.randn(n, d, generator=g), dim=1).to(dev).requires_grad_()
                b = F.normalize(torch.randn(n, d, generator=g), dim=1).to(dev).requires_grad_()
                labels = torch.arange(n, device=dev)

                def fn():
                    s = a @ b.T / 0.07
                    loss = (F.cross_entropy(s, labels) + F.cross_entropy(s.T, labels)) / 2
                    loss.backward()
            elif kind == "barlow":
                z1 = torch.randn(n, d, generator=g).to(dev).requires_grad_()
                z2 = torch.randn(n, d, generator=g).to(dev).requires_grad_()
                bn = torch.nn.BatchNorm1d(d, affine=False).to(dev)

                def fn():
                    c = bn(z1).T @ bn(z2)
                    c = c / n
                    on_diag = torch.diagonal(c).add(-1).pow(2).sum()
                    off_diag = off_diagonal(c).pow(2).sum()
                    loss = on_diag + 0.0051 * off_diag
                    loss.backward()
            else:
                raise ValueError(f"unknown spec {spec}")
            emit(name=spec, seconds=median_time(fn))
        except Exception as e:  # noqa: BLE001 - reported per spec
            emit(name=spec, error=str(e))


if __name__ == "__main__":
    main()
