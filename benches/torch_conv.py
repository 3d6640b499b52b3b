#!/usr/bin/env python3
"""cuDNN timings (through torch.nn.functional.conv3d) of the layers benches/conv.rs measures,
printed as JSON lines. fp32 with TF32 off (torch.backends.cudnn.allow_tf32 = False), cuDNN
benchmark mode on (it picks its fastest algorithm during the warm-up). Timing as in the Rust
bench: CUDA events around each call after 3 warm-up calls, the median over the repeats, the L2
cache flushed before every repeat by writing a buffer of twice its size.

Arguments: `--repeats N`, then specs `MODE:N,C_in,C_out,T,H,W,kt,kh,kw,pt,ph,pw` with MODE `fwd`
(forward with bias) or `fwdbwd` (forward, then backward to the input, weight and bias).
Output: a first line {"device": name, "torch": version}, then {"name": spec, "seconds": median}
or {"name": spec, "error": message} per spec.
"""
import json
import sys

import torch
import torch.nn.functional as F


def emit(**kw):
    print(json.dumps(kw), flush=True)


def main():
    args = sys.argv[1:]
    repeats = 20
    if args[:1] == ["--repeats"]:
        repeats, args = int(args[1]), args[2:]
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")
    emit(device=torch.cuda.get_device_name(0), torch=torch.__version__)
    l2 = getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 64 << 20)
    flush = torch.empty(max(2 * l2, 1 << 20), dtype=torch.uint8, device=dev)
    for spec in args:
        try:
            mode, _, sizes = spec.partition(":")
            n, ci, co, t, h, w, kt, kh, kw, pt, ph, pw = map(int, sizes.split(","))
            x = torch.randn(n, ci, t, h, w, device=dev, requires_grad=(mode == "fwdbwd"))
            wt = torch.randn(co, ci, kt, kh, kw, device=dev, requires_grad=(mode == "fwdbwd"))
            b = torch.randn(co, device=dev, requires_grad=(mode == "fwdbwd"))
            pad = (pt, ph, pw)

            def call():
                y = F.conv3d(x, wt, b, padding=pad)
                if mode == "fwdbwd":
                    y.backward(g)

            g = torch.randn_like(F.conv3d(x.detach(), wt.detach(), b.detach(), padding=pad))
            for _ in range(3):
                call()
            torch.cuda.synchronize()
            times = []
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            for r in range(repeats):
                flush.fill_(r & 0xFF)
                start.record()
                call()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) / 1e3)
            times.sort()
            emit(name=spec, seconds=times[len(times) // 2])
        except Exception as e:  # noqa: BLE001 - reported per spec
            emit(name=spec, error=str(e))


if __name__ == "__main__":
    main()
