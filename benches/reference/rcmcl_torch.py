#!/usr/bin/env python3
"""RCMCL in PyTorch, for comparison only: the `tiny` and `small` presets of `models::rcmcl`
(same layers, same parameter counts) and one pre-training step of L_total, timed.

This is a reference for benches/pretrain_step.rs (which runs it as a subprocess), not a second
implementation of the project: nothing reads its weights or its losses. It mirrors, layer by
layer, models/src/{skeleton,point,rgbd,heads,gate,rcmcl,objective}.rs and models/src/losses:

- E_S: ST-GCN (data_bn, blocks of 1x1 conv to K*C channels + graph aggregation with the Kinect-25
  spatial partitions times a learnable edge importance, BN, ReLU, (9, 1) temporal conv, BN,
  residual), mean over joints and bodies, Linear to d per time step, mean over time.
- E_R: two (2+1)D residual CNN streams (RGB 3 channels, depth 1), spatial mean per time step,
  concatenated, Linear to d per time step, mean over time.
- E_P: clip centring, PointNet++ SSG (FPS from index 0, ball query: first `nsample` hits in
  index order, offsets divided by the radius), two levels and a global MLP, max-pools, then a
  pre-norm transformer over frames (qkv Linear, key padding mask for empty frames), final
  LayerNorm, Linear head per frame, mean over time.
- H_R, H_S, H_P, H_F: Linear(no bias) -> BN -> ReLU -> Linear(128); D_S: Linear -> ReLU ->
  Linear to T*M*J*3; AMG: Linear(d, 1) per sensor, sigmoid; C: Linear(d, classes).
- L_total = 1.0 L_CM + 0.5 L_IM + 0.2 L_deg + 0.5 L_FUSION with L_CM the symmetric InfoNCE
  (tau 0.07) summed over the pairs (R,S), (R,P), (S,P) of view 1; L_IM Barlow Twins (lambda
  0.0051, columns standardised with the biased variance, eps 1e-5) between views 1 and 2 summed
  over sensors; L_deg: view 1's skeleton with 30 % of the joints and 20 % of the frames of each
  sample zeroed, through E_S and D_S, MSE against the clean skeleton; L_FUSION: the AMG fusion
  of view 2's R and P features and the masked skeleton's, each sensor of each sample dropped
  with probability 0.3 (one kept), through H_F, symmetric InfoNCE against each clean
  embedding of view 1, averaged. AdamW (PyTorch defaults, lr 2e-3).

Where the layer differs only in form, the parameter count is the same: ours stores 1x1 and
(k, 1) convolutions of the skeleton blocks as Conv3d weights (C_out, C_in, k, 1, 1), here
Conv2d (C_out, C_in, k, 1), as ST-GCN's code does.

Usage: rcmcl_torch.py --preset tiny|small --batch 16 [--steps 10] [--warmup 2] [--threads N]
       [--device cpu|cuda] [--expect-params N] [--seed 0]
Output: JSON lines: {"kind": "setup", ...} (torch version, device, threads, parameter count per
part), then {"kind": "result", "step_seconds": [...], "median_s": ..., "samples_per_s": ...,
"cpu_s_per_step": ... (process CPU time, all threads, over the timed steps), "peak_bytes": ...,
"peak_kind": ...}. With --expect-params, a different parameter count is an error (exit code 3)
after the setup line.
"""
import argparse
import json
import os
import statistics
import sys
import time
import warnings

# torch wheels warn on import when NumPy is absent; the reference does not need it.
warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

TAU = 0.07
BARLOW_LAMBDA = 0.0051
BARLOW_EPS = 1e-5
WEIGHTS = {"cm": 1.0, "im": 0.5, "deg": 0.2, "fusion": 0.5}
JOINT_RATIO, FRAME_RATIO, FUSION_DROP = 0.3, 0.2, 0.3
CLASSES = 32

# Kinect 25 (models/src/data/layouts.rs): (joint, parent) bones and the centre joint.
KINECT_BONES = [
    (0, 1), (1, 20), (2, 20), (3, 2), (4, 20), (5, 4), (6, 5), (7, 6), (8, 20), (9, 8),
    (10, 9), (11, 10), (12, 0), (13, 12), (14, 13), (15, 14), (16, 0), (17, 16), (18, 17),
    (19, 18), (21, 22), (22, 7), (23, 24), (24, 11),
]
KINECT_CENTRE = 20
JOINTS = 25

# The presets (models/src/rcmcl.rs RcmclConfig::preset and the encoders' presets).
PRESETS = {
    "tiny": dict(
        data=dict(frames=8, size=32, points=64, bodies=1),
        skeleton=dict(blocks=[(16, 1), (32, 2), (32, 1)], dropout=0.0),
        rgbd=dict(stem=(8, 5, 8), stem_stride=(4, 1), stages=[(16, 1, 2, 2)]),
        point=dict(
            sa1=(16, 0.2, 8, [16, 32]), sa2=(4, 0.6, 8, [32, 64]), global_mlp=[64],
            d_model=64, heads=2, layers=1, mlp_ratio=2, max_frames=16, dropout=0.0,
        ),
        proj_hidden=64, decoder_hidden=[64],
    ),
    "small": dict(
        data=dict(frames=32, size=48, points=256, bodies=1),
        skeleton=dict(
            blocks=[(16, 1)] * 4 + [(32, 2), (32, 1), (32, 1), (64, 2), (64, 1)], dropout=0.0
        ),
        rgbd=dict(
            stem=(8, 5, 8), stem_stride=(4, 2), stages=[(16, 1, 2, 1), (32, 1, 2, 2), (64, 1, 2, 1)]
        ),
        point=dict(
            sa1=(32, 0.12, 12, [32, 32]), sa2=(8, 0.35, 8, [64, 128]), global_mlp=[128, 256],
            d_model=128, heads=4, layers=2, mlp_ratio=2, max_frames=64, dropout=0.1,
        ),
        proj_hidden=256, decoder_hidden=[256],
    ),
}
D = 256  # every encoder's out_dim
PROJ_DIM = 128


def spatial_partitions(bones, centre, j):
    """ST-GCN's K = 3 spatial partitions (self, centripetal, centrifugal), in-degree normalised,
    rows = sources (models/src/skeleton/graph.rs)."""
    nb = [[False] * j for _ in range(j)]
    for a, b in bones:
        nb[a][b] = nb[b][a] = True
    dist = [None] * j
    dist[centre] = 0
    queue = [centre]
    while queue:
        u = queue.pop(0)
        for w in range(j):
            if nb[u][w] and dist[w] is None:
                dist[w] = dist[u] + 1
                queue.append(w)
    inf = 10 ** 9
    dist = [inf if d is None else d for d in dist]
    a = torch.zeros(3, j, j)
    for w in range(j):
        value = 1.0 / (1 + sum(nb[w]))
        for v in range(j):
            if v == w:
                k = 0
            elif not nb[v][w]:
                continue
            elif dist[v] >= dist[w]:
                k = 1
            else:
                k = 2
            a[k, v, w] = value
    return a


# ----------------------------------------------------------------------------------- E_S


class StGcnBlock(nn.Module):
    def __init__(self, cin, cout, stride, kt, dropout, residual, joints):
        super().__init__()
        self.cout = cout
        self.gcn = nn.Conv2d(cin, 3 * cout, 1)
        self.bn1 = nn.BatchNorm2d(cout)
        self.tcn = nn.Conv2d(cout, cout, (kt, 1), (stride, 1), ((kt - 1) // 2, 0))
        self.bn2 = nn.BatchNorm2d(cout)
        self.dropout = nn.Dropout(dropout)
        self.edge_importance = nn.Parameter(torch.ones(3, joints, joints))
        if not residual:
            self.residual = None
        elif cin == cout and stride == 1:
            self.residual = nn.Identity()
        else:
            self.residual = nn.Sequential(
                nn.Conv2d(cin, cout, 1, (stride, 1)), nn.BatchNorm2d(cout)
            )

    def forward(self, x, a):
        n, _, t, j = x.shape
        h = self.gcn(x).view(n, 3, self.cout, t, j)
        h = torch.einsum("nkctv,kvw->nctw", h, a * self.edge_importance)
        h = F.relu(self.bn1(h))
        h = self.dropout(self.bn2(self.tcn(h)))
        if self.residual is not None:
            h = h + self.residual(x)
        return F.relu(h)


class SkeletonEncoder(nn.Module):
    def __init__(self, blocks, dropout, kt=9):
        super().__init__()
        self.register_buffer("a", spatial_partitions(KINECT_BONES, KINECT_CENTRE, JOINTS))
        self.data_bn = nn.BatchNorm1d(JOINTS * 3)
        layers, cin = [], 3
        for i, (cout, stride) in enumerate(blocks):
            layers.append(StGcnBlock(cin, cout, stride, kt, dropout, i > 0, JOINTS))
            cin = cout
        self.blocks = nn.ModuleList(layers)
        self.head = nn.Linear(cin, D)

    def forward(self, x):  # (B, T, M, J, C)
        b, t, m, j, c = x.shape
        h = self.data_bn(x.permute(0, 2, 3, 4, 1).reshape(b * m, j * c, t))
        h = h.view(b * m, j, c, t).permute(0, 2, 3, 1).contiguous()
        for block in self.blocks:
            h = block(h, self.a)
        ch, t2 = h.shape[1], h.shape[2]
        h = h.mean(3).view(b, m, ch, t2).mean(1).permute(0, 2, 1)
        per_time = self.head(h)
        return per_time.mean(1), per_time


# ----------------------------------------------------------------------------------- E_R


class Conv2Plus1d(nn.Module):
    def __init__(self, cin, cout, ks, kt, stride, mid):
        super().__init__()
        s, ts = stride
        self.spatial = nn.Conv3d(cin, mid, (1, ks, ks), (1, s, s), (0, ks // 2, ks // 2), bias=False)
        self.bn = nn.BatchNorm3d(mid)
        self.temporal = nn.Conv3d(mid, cout, (kt, 1, 1), (ts, 1, 1), (kt // 2, 0, 0), bias=False)

    def forward(self, x):
        return self.temporal(F.relu(self.bn(self.spatial(x))))


class Block(nn.Module):
    def __init__(self, cin, cout, k, stride):
        super().__init__()
        mid = cout  # MidWidth::Out (the tiny and small presets)
        self.conv1 = Conv2Plus1d(cin, cout, k, k, stride, mid)
        self.bn1 = nn.BatchNorm3d(cout)
        self.conv2 = Conv2Plus1d(cout, cout, k, k, (1, 1), mid)
        self.bn2 = nn.BatchNorm3d(cout)
        if cin != cout or stride != (1, 1):
            s, ts = stride
            self.downsample = nn.Sequential(
                nn.Conv3d(cin, cout, 1, (ts, s, s), bias=False), nn.BatchNorm3d(cout)
            )
        else:
            self.downsample = None

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        sc = x if self.downsample is None else self.downsample(x)
        return F.relu(h + sc)


class Stream(nn.Module):
    def __init__(self, cin, stem, stem_stride, stages, k=3):
        super().__init__()
        ch, ks, mid = stem
        self.stem_conv = Conv2Plus1d(cin, ch, ks, k, stem_stride, mid)
        self.stem_bn = nn.BatchNorm3d(ch)
        blocks, width = [], ch
        for channels, n, s, ts in stages:
            for i in range(n):
                blocks.append(Block(width, channels, k, (s, ts) if i == 0 else (1, 1)))
                width = channels
        self.blocks = nn.Sequential(*blocks)
        self.out_channels = width

    def forward(self, x):  # (B, C, T, H, W) -> (B, C', T')
        h = F.relu(self.stem_bn(self.stem_conv(x)))
        return self.blocks(h).mean((3, 4))


class RgbdEncoder(nn.Module):
    def __init__(self, stem, stem_stride, stages):
        super().__init__()
        self.rgb = Stream(3, stem, stem_stride, stages)
        self.depth = Stream(1, stem, stem_stride, stages)
        self.fuse = nn.Linear(self.rgb.out_channels + self.depth.out_channels, D)

    def forward(self, rgb, depth):  # (B, T, C, H, W)
        zr = self.rgb(rgb.permute(0, 2, 1, 3, 4))
        zd = self.depth(depth.permute(0, 2, 1, 3, 4))
        per_time = self.fuse(torch.cat([zr, zd], 1).permute(0, 2, 1))
        return per_time.mean(1), per_time


# ----------------------------------------------------------------------------------- E_P


@torch.no_grad()
def farthest_point_sample(xyz, m):
    """(n, P, 3) -> (n, m) indices, starting at index 0, ties to the lowest index."""
    n, p, _ = xyz.shape
    idx = torch.zeros(n, m, dtype=torch.long, device=xyz.device)
    dist = torch.full((n, p), float("inf"), device=xyz.device)
    rows = torch.arange(n, device=xyz.device)
    cur = torch.zeros(n, dtype=torch.long, device=xyz.device)
    for j in range(1, m):
        c = xyz[rows, cur].unsqueeze(1)
        dist = torch.minimum(dist, ((xyz - c) ** 2).sum(-1))
        cur = dist.argmax(-1)
        idx[:, j] = cur
    return idx


@torch.no_grad()
def ball_query(xyz, centres, radius, ns):
    """The first `ns` points (index order) with d^2 < r^2 of each centre; the first hit fills
    the rest; no hit: the nearest point. (n, P, 3), (n, m, 3) -> (n, m, ns)."""
    p = xyz.shape[1]
    d2 = ((centres.unsqueeze(2) - xyz.unsqueeze(1)) ** 2).sum(-1)
    order = torch.arange(p, device=xyz.device).expand_as(d2)
    key = torch.where(d2 < radius * radius, order, torch.full_like(order, p))
    key = key.topk(min(ns, p), dim=-1, largest=False, sorted=True).values
    if ns > p:
        key = torch.cat([key, key.new_full(key.shape[:-1] + (ns - p,), p)], -1)
    first = key[..., :1]
    first = torch.where(first == p, d2.argmin(-1, keepdim=True), first)
    return torch.where(key == p, first, key)


def gather(x, idx):
    """x (n, P, C), idx (n, ...) -> (n, ..., C)."""
    n = x.shape[0]
    flat = idx.reshape(n, -1)
    out = torch.gather(x, 1, flat.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
    return out.view(*idx.shape, x.shape[-1])


class SharedMlp(nn.Module):
    """Per layer: a bias-free 1x1 convolution (a Linear on the channels), BN, ReLU."""

    def __init__(self, cin, widths):
        super().__init__()
        layers = []
        for w in widths:
            layers.append(nn.ModuleDict({"conv": nn.Linear(cin, w, bias=False), "bn": nn.BatchNorm1d(w)}))
            cin = w
        self.layers = nn.ModuleList(layers)

    def forward(self, x):  # (..., C)
        lead = x.shape[:-1]
        h = x.reshape(-1, x.shape[-1])
        for layer in self.layers:
            h = F.relu(layer["bn"](layer["conv"](h)))
        return h.view(*lead, h.shape[-1])


class SetAbstraction(nn.Module):
    def __init__(self, cfg, in_features):
        super().__init__()
        self.centres, self.radius, self.nsample, widths = cfg
        self.mlp = SharedMlp(3 + in_features, widths)

    def forward(self, xyz, features):
        idx = farthest_point_sample(xyz, self.centres)
        centres = gather(xyz, idx)  # (n, m, 3)
        nbr = ball_query(xyz.detach(), centres.detach(), self.radius, self.nsample)
        rel = (gather(xyz, nbr) - centres.unsqueeze(2)) / self.radius
        grouped = rel if features is None else torch.cat([rel, gather(features, nbr)], -1)
        return centres, self.mlp(grouped).amax(2)


class Attention(nn.Module):
    def __init__(self, d, heads, p):
        super().__init__()
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.heads = heads
        self.dropout = nn.Dropout(p)

    def forward(self, x, padding):
        b, t, e = x.shape
        h, d = self.heads, e // self.heads
        q, k, v = self.qkv(x).view(b, t, 3, h, d).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-1, -2) / d ** 0.5
        scores = scores.masked_fill(padding.view(b, 1, 1, t), -1e9)
        w = self.dropout(scores.softmax(-1))
        return self.out((w @ v).permute(0, 2, 1, 3).reshape(b, t, e))


class TransformerLayer(nn.Module):
    def __init__(self, d, heads, mlp_ratio, p):
        super().__init__()
        self.norm1 = nn.LayerNorm(d)
        self.attn = Attention(d, heads, p)
        self.norm2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, d * mlp_ratio)
        self.fc2 = nn.Linear(d * mlp_ratio, d)
        self.dropout = nn.Dropout(p)

    def forward(self, x, padding):
        x = x + self.dropout(self.attn(self.norm1(x), padding))
        return x + self.dropout(self.fc2(F.gelu(self.fc1(self.norm2(x)))))


class PointEncoder(nn.Module):
    def __init__(self, sa1, sa2, global_mlp, d_model, heads, layers, mlp_ratio, max_frames, dropout):
        super().__init__()
        self.sa1 = SetAbstraction(sa1, 0)
        self.sa2 = SetAbstraction(sa2, sa1[3][-1])
        self.global_mlp = SharedMlp(3 + sa2[3][-1], global_mlp)
        self.embed = nn.Linear(global_mlp[-1], d_model)
        self.pos_embedding = nn.Parameter(torch.randn(max_frames, d_model) * 0.02)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            [TransformerLayer(d_model, heads, mlp_ratio, dropout) for _ in range(layers)]
        )
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, D)

    def forward(self, points):  # (B, T, P, 3)
        b, t, p, _ = points.shape
        valid = (points.abs().amax((2, 3)) > 0).to(points.dtype)  # (B, T)
        v4 = valid.view(b, t, 1, 1)
        count = (valid.sum(1) * p).clamp(min=1).view(b, 1, 1, 1)
        centre = (points * v4).sum((1, 2), keepdim=True) / count
        xyz = ((points - centre) * v4).reshape(b * t, p, 3)
        c1, f1 = self.sa1(xyz, None)
        c2, f2 = self.sa2(c1, f1)
        frame = self.global_mlp(torch.cat([c2, f2], -1)).amax(1)  # (B*T, C)
        h = self.embed(frame.view(b, t, -1)) + self.pos_embedding[:t]
        h = self.dropout(h)
        padding = valid == 0
        for layer in self.layers:
            h = layer(h, padding)
        per_time = self.head(self.norm(h))
        return per_time.mean(1), per_time


# ------------------------------------------------------------------------------ heads, model


class ProjectionHead(nn.Module):
    def __init__(self, d, hidden, out):
        super().__init__()
        self.linear = nn.Linear(d, hidden, bias=False)
        self.norm = nn.BatchNorm1d(hidden)
        self.output = nn.Linear(hidden, out)

    def forward(self, z):
        raw = self.output(F.relu(self.norm(self.linear(z))))
        return raw, F.normalize(raw, dim=-1, eps=1e-12)


class Rcmcl(nn.Module):
    def __init__(self, preset):
        super().__init__()
        cfg = PRESETS[preset]
        data = cfg["data"]
        self.skeleton = SkeletonEncoder(**cfg["skeleton"])
        self.rgbd = RgbdEncoder(**cfg["rgbd"])
        self.points = PointEncoder(**cfg["point"])
        self.heads = nn.ModuleList([ProjectionHead(D, cfg["proj_hidden"], PROJ_DIM) for _ in range(3)])
        self.fusion_head = ProjectionHead(D, cfg["proj_hidden"], PROJ_DIM)
        dims = [D] + cfg["decoder_hidden"]
        dec = []
        for a, b in zip(dims, dims[1:]):
            dec += [nn.Linear(a, b), nn.ReLU()]
        self.out_shape = (data["frames"], data["bodies"], JOINTS, 3)
        dec.append(nn.Linear(dims[-1], data["frames"] * data["bodies"] * JOINTS * 3))
        self.decoder = nn.Sequential(*dec)
        self.gate = nn.ModuleList([nn.Linear(D, 1) for _ in range(3)])
        self.classifier = nn.Linear(D, CLASSES)

    def parts(self):
        return {
            "encoder.skeleton": self.skeleton, "encoder.rgbd": self.rgbd,
            "encoder.points": self.points, "head": nn.ModuleList([self.heads, self.fusion_head]),
            "decoder": self.decoder, "gate": self.gate, "classifier": self.classifier,
        }

    def encode(self, view):
        rgb, depth, skel, pts = view
        return [self.rgbd(rgb, depth)[0], self.skeleton(skel)[0], self.points(pts)[0]]

    def fuse(self, z, presence):
        g = [torch.sigmoid(self.gate[i](z[i])) * presence[:, i : i + 1] for i in range(3)]
        num = sum(gi * zi for gi, zi in zip(g, z))
        den = sum(g).clamp(min=1e-30)
        return num / den


def infonce(a, b, tau):
    s = a @ b.t() / tau
    target = torch.arange(a.shape[0], device=a.device)
    return (F.cross_entropy(s, target) + F.cross_entropy(s.t(), target)) / 2


def barlow_twins(z1, z2, lam):
    n = z1.shape[0]

    def standardise(z):
        return (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + BARLOW_EPS)

    c = standardise(z1).t() @ standardise(z2) / n
    on = (torch.diagonal(c) - 1).pow(2).sum()
    off = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
    return on + lam * off


def mask_skeleton(x, gen):
    """Per sample, round(0.3 J) joints in every frame and round(0.2 T) frames set to 0."""
    b, t, m, j, _ = x.shape
    hj = min(max(round(JOINT_RATIO * j), 1), max(j - 1, 1))
    ht = min(max(round(FRAME_RATIO * t), 1), max(t - 1, 1))
    keep = torch.ones(b, t, m, j, 1)
    for s in range(b):
        joints = torch.randperm(j, generator=gen)[:hj]
        frames = torch.randperm(t, generator=gen)[:ht]
        keep[s, :, :, joints] = 0
        keep[s, frames] = 0
    return x * keep.to(x.device)


def drop_presence(b, gen):
    """(B, 3): each sensor of each sample dropped with probability 0.3, one random one kept."""
    gone = torch.rand(b, 3, generator=gen) < FUSION_DROP
    keep = torch.randint(0, 3, (b,), generator=gen)
    all_gone = gone.all(1)
    gone[all_gone, keep[all_gone]] = False
    return (~gone).float()


def loss_total(model, v1, v2, gen):
    z1 = model.encode(v1)
    p1 = [model.heads[i](z1[i]) for i in range(3)]
    h = [p[1] for p in p1]
    cm = infonce(h[0], h[1], TAU) + infonce(h[0], h[2], TAU) + infonce(h[1], h[2], TAU)
    z2 = model.encode(v2)
    p2 = [model.heads[i](z2[i]) for i in range(3)]
    im = sum(barlow_twins(p1[i][0], p2[i][0], BARLOW_LAMBDA) for i in range(3))
    clean_skel = v1[2]
    masked = mask_skeleton(clean_skel, gen)
    zs_masked = model.skeleton(masked)[0]
    recon = model.decoder(zs_masked).view(clean_skel.shape[0], *model.out_shape)
    deg = F.mse_loss(recon, clean_skel)
    presence = drop_presence(clean_skel.shape[0], gen).to(clean_skel.device)
    fused = model.fuse([z2[0], zs_masked, z2[2]], presence)
    hf = model.fusion_head(fused)[1]
    fusion = sum(infonce(hf, h[i], TAU) for i in range(3)) / 3
    w = WEIGHTS
    return w["cm"] * cm + w["im"] * im + w["deg"] * deg + w["fusion"] * fusion


def make_view(cfg, batch, gen, device):
    d = cfg["data"]
    t, s, p, m = d["frames"], d["size"], d["points"], d["bodies"]

    def u(shape, lo, hi):
        return (torch.rand(shape, generator=gen) * (hi - lo) + lo).to(device)

    return (
        u((batch, t, 3, s, s), 0.0, 1.0),
        u((batch, t, 1, s, s), 1.5, 4.0),
        u((batch, t, m, JOINTS, 3), -0.8, 0.8),
        u((batch, t, p, 3), -1.0, 1.0),
    )


def proc_status(key):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def reset_peak_rss():
    """Resets VmHWM to the current RSS (Linux: echo 5 > /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def emit(**kw):
    print(json.dumps(kw), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--expect-params", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(args.seed)
    cfg = PRESETS[args.preset]
    model = Rcmcl(args.preset).to(device)
    model.train()
    parts = {k: sum(p.numel() for p in m.parameters()) for k, m in model.parts().items()}
    total_params = sum(p.numel() for p in model.parameters())
    emit(
        kind="setup", torch=torch.__version__, device=str(device)
        if device.type == "cpu" else torch.cuda.get_device_name(device),
        threads=torch.get_num_threads(), preset=args.preset, batch=args.batch,
        params=total_params, parts=parts,
    )
    if args.expect_params is not None and args.expect_params != total_params:
        print(
            f"parameter count mismatch: ours {args.expect_params}, torch {total_params} ({parts})",
            file=sys.stderr,
        )
        sys.exit(3)

    gen = torch.Generator().manual_seed(args.seed)
    v1 = make_view(cfg, args.batch, gen, device)
    v2 = make_view(cfg, args.batch, gen, device)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    sync()
    base_rss = proc_status("VmRSS")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base_gpu = torch.cuda.memory_allocated(device)
    reset = reset_peak_rss()
    times, losses = [], []
    cpu_start = None
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            cpu_start = time.process_time()
        t0 = time.perf_counter()
        loss = loss_total(model, v1, v2, gen)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        sync()
        if step >= args.warmup:
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    out = dict(
        kind="result", step_seconds=times, median_s=med, min_s=min(times), max_s=max(times),
        samples_per_s=args.batch / med, losses=losses,
        cpu_s_per_step=(time.process_time() - cpu_start) / args.steps,
    )
    if device.type == "cuda":
        out.update(
            peak_bytes=torch.cuda.max_memory_allocated(device) - base_gpu,
            peak_total_bytes=torch.cuda.max_memory_allocated(device),
            peak_kind="cuda max_memory_allocated (delta over the model and inputs)",
        )
    else:
        hwm = proc_status("VmHWM")
        out.update(
            peak_bytes=None if hwm is None or base_rss is None else hwm - base_rss,
            peak_total_bytes=hwm,
            peak_kind="VmHWM - VmRSS before the steps" + ("" if reset else " (HWM not reset)"),
        )
    emit(**out)


if __name__ == "__main__":
    main()
