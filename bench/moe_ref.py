# PyTorch reference for bench/moe.ts's grouped GEMMs (the MoE expert projections), same shapes, same GPU:
# x [T·k, dim] (rows sorted by expert) times W [E, F, dim]ᵀ per expert segment, bf16 in, bf16 out.
#   grouped_mm: torch._grouped_mm (PyTorch's own grouped GEMM, CUTLASS on sm_90), W passed as [E, dim, F]
#               column-major (W.transpose(-2, -1) of the nn.Linear stack), offsets = segment ends (i32)
#   loop:       one torch.mm per non-empty segment, what a Python MoE does (the official model's loop)
# Segment sizes: T·k expert ids drawn uniformly (seed 0), sorted: a balanced routing like bench/moe.ts's
# random gate. CUDA-event medians (ref_common.cuda_median). One JSON line per T on stdout.
#   python3 bench/moe_ref.py [--tokens 512,2048,16384] [--dim 2048] [--inter 512] [--experts 32] [--k 4]
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ref_common import cuda_median  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument('--tokens', default='512,2048,16384')
ap.add_argument('--dim', type=int, default=2048)
ap.add_argument('--inter', type=int, default=512)
ap.add_argument('--experts', type=int, default=32)
ap.add_argument('--k', type=int, default=4)
a = ap.parse_args()
dev = 'cuda'
g = torch.Generator(device='cpu').manual_seed(0)
E, D, F, K = a.experts, a.dim, a.inter, a.k
wg = (torch.randn(E, F, D, generator=g) * D ** -0.5).to(dev, torch.bfloat16)
wd = (torch.randn(E, D, F, generator=g) * F ** -0.5).to(dev, torch.bfloat16)
for T in [int(t) for t in a.tokens.split(',') if t]:
    M = T * K
    ids = torch.randint(E, (M,), generator=g).sort().values
    counts = torch.bincount(ids, minlength=E)
    ends = torch.cumsum(counts, 0).to(torch.int32).to(dev)
    starts = torch.cumsum(counts, 0) - counts
    segs = [(e, int(starts[e]), int(counts[e])) for e in range(E) if counts[e] > 0]  # (expert, first row, rows)
    x = torch.randn(M, D, generator=g).to(dev, torch.bfloat16)
    h = torch.randn(M, F, generator=g).to(dev, torch.bfloat16)
    line = {'impl': 'torch', 'tokens': T, 'rows': M, 'dim': D, 'inter': F, 'experts': E, 'k': K}
    flops = 2 * M * F * D
    for name, inp, w in (('gateUp', x, wg), ('down', h, wd)):
        wt = w.transpose(-2, -1)
        try:
            y = torch._grouped_mm(inp, wt, offs=ends)
            ref = torch.cat([inp[s:s + c] @ w[e].t() for e, s, c in segs])
            err = (y.float() - ref.float()).abs().max().item()
            ms = cuda_median(lambda: torch._grouped_mm(inp, wt, offs=ends), 20, 3, 5)
            line[f'{name}GroupedMs'] = round(ms, 4)
            line[f'{name}GroupedTflops'] = round(flops / ms / 1e9, 2)
            line[f'{name}GroupedMaxDiffVsLoop'] = err
        except Exception as ex:  # noqa: BLE001 — report it in the line and keep the loop's figure
            line[f'{name}GroupedError'] = str(ex).splitlines()[0][:200]
        def loop(inp=inp, w=w):
            for e, s, c in segs:
                torch.mm(inp[s:s + c], w[e].t())
        ms = cuda_median(loop, 20, 3, 1)
        line[f'{name}LoopMs'] = round(ms, 4)
        line[f'{name}LoopTflops'] = round(flops / ms / 1e9, 2)
    print(json.dumps(line), flush=True)
