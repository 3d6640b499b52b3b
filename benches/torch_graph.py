#!/usr/bin/env python3
"""PyTorch reference for benches/graph.rs: einsum('nkctv,kvw->nctw') forward and forward+backward
(gradients of x and A) on the given shapes, f32, CUDA events, 3 warm-ups, median of repeats, L2
flushed before every repeat. Args: `--repeats N` then specs `N,K,C,T,V`. Prints JSON lines
{"name": spec, "fwd": s, "fwd_bwd": s} (or "error"); the first line names the device."""
import json
import sys

import torch


def main():
    args = sys.argv[1:]
    repeats = 20
    if len(args) >= 2 and args[0] == "--repeats":
        repeats, args = int(args[1]), args[2:]
    if not torch.cuda.is_available():
        print(json.dumps({"error": "torch sees no CUDA device"}))
        return
    dev = torch.device("cuda")
    print(json.dumps({"device": torch.cuda.get_device_name(), "torch": torch.__version__}))
    flush = torch.empty(2 * 64 * 2**20, dtype=torch.uint8, device=dev)

    def time(f):
        for _ in range(3):
            f()
        times = []
        for r in range(repeats):
            flush.fill_(r & 0xFF)
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            f()
            e.record()
            torch.cuda.synchronize()
            times.append(s.elapsed_time(e) / 1e3)
        return sorted(times)[len(times) // 2]

    for spec in args:
        try:
            n, k, c, t, v = map(int, spec.split(","))
            x = torch.randn(n, k, c, t, v, device=dev, requires_grad=True)
            a = torch.randn(k, v, v, device=dev, requires_grad=True)
            g = torch.randn(n, c, t, v, device=dev)
            fwd = time(lambda: torch.einsum("nkctv,kvw->nctw", x, a))

            def fb():
                y = torch.einsum("nkctv,kvw->nctw", x, a)
                torch.autograd.grad(y, (x, a), g)

            print(json.dumps({"name": spec, "fwd": fwd, "fwd_bwd": time(fb)}), flush=True)
        except Exception as exc:  # noqa: BLE001
            print(json.dumps({"name": spec, "error": str(exc)}), flush=True)


if __name__ == "__main__":
    main()
