# PyTorch reference for bench/dsa-indexer.ts, run by it in the same command on the same GPU:
#   - torch.topk(x, 2048) (sorted and unsorted) at [64, 9295] and [4096, 131072] (the anchor);
#   - the indexer logits computed the plain way in torch (bf16 matmul of the decoded e4m3 values, relu,
#     weighted head sum, key scale; queries in chunks so the [chunk, H, Tk] scores fit), and DeepGEMM's
#     fp8_mqa_logits when the deep_gemm package happens to be installed.
# CUDA events, warm-up, median of bursts (as bench/cuda-bench.ts). Input (stdin, JSON):
#   {"topk": [[R, N, k], ...], "logits": [[s_q, s_kv, H], ...], "reps": n}
# Prints JSON: {"device", "torch", "topk": {"RxN/k": {"sorted": ms, "unsorted": ms}}, "logits": {...}}.
import json, os, sys, torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ref_common import cuda_median  # noqa: E402

cfg = json.load(sys.stdin)
dev = 'cuda'
torch.manual_seed(0)
REPS = int(cfg.get('reps', 20))

def med(fn, reps=REPS, warm=3, burst=5):
    return cuda_median(fn, reps, warm, burst)

out = {'device': torch.cuda.get_device_name(), 'torch': torch.__version__, 'topk': {}, 'logits': {}}
for R, N, k in cfg.get('topk', []):
    x = torch.randn(R, N, device=dev, dtype=torch.float32)
    out['topk'][f'{R}x{N}/{k}'] = {
        'sorted': med(lambda: torch.topk(x, k, dim=-1, sorted=True)),
        'unsorted': med(lambda: torch.topk(x, k, dim=-1, sorted=False)),
    }
    del x

try:
    import deep_gemm  # noqa: F401
    have_dg = hasattr(deep_gemm, 'fp8_mqa_logits')
except Exception:
    have_dg = False
out['deep_gemm'] = have_dg

for sq, skv, H in cfg.get('logits', []):
    D = 128
    q = (torch.randn(sq, H, D, device=dev) * 0.5).to(torch.float8_e4m3fn)
    k = (torch.randn(skv, D, device=dev) * 0.5).to(torch.float8_e4m3fn)
    ks = torch.rand(skv, device=dev) + 0.01
    w = torch.randn(sq, H, device=dev)
    qb = q.to(torch.bfloat16)
    kb = k.to(torch.bfloat16)
    chunk = max(1, (1 << 30) // (H * skv * 4))  # ≤ 1 GiB of f32 scores per chunk
    res = torch.empty(sq, skv, device=dev)

    def plain():
        for i in range(0, sq, chunk):
            s = torch.matmul(qb[i:i + chunk].reshape(-1, D), kb.t()).float().view(-1, H, skv)
            res[i:i + chunk] = (s.relu_() * w[i:i + chunk, :, None]).sum(1) * ks
    entry = {'torch_plain': med(plain, reps=max(3, REPS // 4), warm=1, burst=1)}
    if have_dg:
        ksr = torch.zeros(sq, dtype=torch.int32, device=dev)
        ker = torch.full((sq,), skv, dtype=torch.int32, device=dev)
        try:
            entry['deep_gemm'] = med(lambda: deep_gemm.fp8_mqa_logits(q, (k, ks), w, ksr, ker), reps=max(3, REPS // 4), warm=1, burst=1)
        except Exception as ex:  # signature differs between versions
            entry['deep_gemm_error'] = str(ex)[:200]
    out['logits'][f'{sq}x{skv}x{H}'] = entry
    del q, k, ks, w, qb, kb, res
    torch.cuda.empty_cache()

print(json.dumps(out))
