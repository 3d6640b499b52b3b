#!/usr/bin/env python3
"""PyTorch references for benches/pointnet.rs: one JSON line per spec, median seconds.

Specs: fps:B:N:M (the vectorised loop FPS, the common fallback), ballq:B:N:M:S:r (the sort-based
ball query of the public PyTorch PointNet++ ports), group:B:C:N:M:S (torch.gather),
groupbwd:B:C:N:M:S (scatter_add_), maxpool:B:C:M:S (torch.max over the last axis with indices).
On CUDA: events, 3 warm-ups, L2 flushed (a 2x L2 buffer rewritten) before every repeat.
"""
import argparse
import json

import torch


def fps(x, m):
    b, n, _ = x.shape
    idx = torch.zeros(b, m, dtype=torch.long, device=x.device)
    dist = torch.full((b, n), float("inf"), device=x.device)
    far = torch.zeros(b, dtype=torch.long, device=x.device)
    rows = torch.arange(b, device=x.device)
    for i in range(m):
        idx[:, i] = far
        c = x[rows, far].unsqueeze(1)
        dist = torch.minimum(dist, ((x - c) ** 2).sum(-1))
        far = dist.argmax(-1)
    return idx


def ball_query(xyz, new_xyz, r, s):
    b, n, _ = xyz.shape
    m = new_xyz.shape[1]
    d2 = torch.cdist(new_xyz, xyz) ** 2
    gi = torch.arange(n, device=xyz.device).view(1, 1, n).repeat(b, m, 1)
    gi[d2 >= r * r] = n
    gi = gi.sort(dim=-1)[0][:, :, :s]
    first = gi[:, :, 0:1].expand(-1, -1, s)
    mask = gi == n
    gi[mask] = first[mask]
    return gi


def make(spec, dev):
    kind, *a = spec.split(":")
    g = torch.Generator(device="cpu").manual_seed(0)
    rnd = lambda *shape: (torch.rand(*shape, generator=g) * 2 - 1).to(dev)
    if kind == "fps":
        b, n, m = map(int, a)
        x = rnd(b, n, 3)
        return lambda: fps(x, m)
    if kind == "ballq":
        b, n, m, s = map(int, a[:4])
        r = float(a[4])
        x = rnd(b, n, 3)
        c = x[:, :m].contiguous()
        return lambda: ball_query(x, c, r, s)
    if kind in ("group", "groupbwd"):
        b, c, n, m, s = map(int, a)
        f = rnd(b, c, n)
        idx = torch.randint(0, n, (b, m * s), generator=g).to(dev)
        ie = idx.view(b, 1, m * s).expand(b, c, m * s)
        if kind == "group":
            return lambda: torch.gather(f, 2, ie).view(b, c, m, s)
        gr = rnd(b, c, m * s)
        return lambda: torch.zeros(b, c, n, device=dev).scatter_add_(2, ie, gr)
    if kind == "maxpool":
        b, c, m, s = map(int, a)
        x = rnd(b, c, m, s)
        return lambda: torch.max(x, dim=-1)
    raise ValueError(f"unknown spec {spec}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("specs", nargs="*")
    args = p.parse_args()
    cuda = torch.cuda.is_available()
    dev = torch.device("cuda" if cuda else "cpu")
    print(json.dumps({"device": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__}))
    flush = None
    if cuda:
        l2 = getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 64 << 20)
        flush = torch.empty(2 * l2 // 4, dtype=torch.float32, device=dev)
    import time

    for spec in args.specs:
        try:
            f = make(spec, dev)
            for _ in range(3):
                f()
            times = []
            for _ in range(args.repeats):
                if cuda:
                    flush.fill_(1.0)
                    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    s.record()
                    f()
                    e.record()
                    torch.cuda.synchronize()
                    times.append(s.elapsed_time(e) / 1e3)
                else:
                    t = time.perf_counter()
                    f()
                    times.append(time.perf_counter() - t)
            times.sort()
            print(json.dumps({"name": spec, "seconds": times[len(times) // 2]}), flush=True)
        except Exception as ex:  # noqa: BLE001
            print(json.dumps({"name": spec, "error": str(ex)}), flush=True)


if __name__ == "__main__":
    main()
