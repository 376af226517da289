# PyTorch references for bench/sparse-mla.ts, run in the same command on the same GPU (issue 11, sparse
# MLA rows of the benchmark table). Reads the shapes as JSON on stdin, prints JSON on stdout. Times, with
# CUDA events (median of bursts, as bench/cuda_ref.py does):
#   - sparse MLA in plain torch at the same shapes: gather the k selected latent rows per query, two
#     batched matmuls and a softmax (bf16, f32 softmax), chunked over queries to bound memory;
#   - the dense baseline: torch scaled_dot_product_attention at the equivalent absorbed-MQA shapes
#     (q [1, h, s_q, 576], one shared key/value head of 576/512 dims broadcast to h heads, no mask: each
#     query sees all s_kv keys), with the backend that accepts d = 576 (flash takes d ≤ 256) recorded,
#     and the same dense attention as chunked cuBLAS matmuls (always runs);
#   - FlashMLA's sparse kernels when the flash_mla package is importable (it is not installed by default).
# Inputs are random and never zero; indices are distinct per row.
import json, os, sys
import torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ref_common import cuda_median, first_sdpa_backend  # noqa: E402

req = json.load(sys.stdin)
dev = 'cuda'
torch.manual_seed(0)


def med(fn, reps=5, warm=1, burst=1):
    return cuda_median(fn, reps, warm, burst)


def rand_indices(rows, k, n):
    # distinct per row: the first k of a random permutation score (argsort of uniform noise is O(n) memory per row; chunk)
    out = torch.empty(rows, k, dtype=torch.int32, device=dev)
    step = max(1, (1 << 27) // max(n, 1))
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        out[r0:r1] = torch.rand(r1 - r0, n, device=dev).topk(k, dim=-1).indices.int()
    return out


def sparse_torch(q, kv, idx, scale, dv=512, chunk=256):
    # q [s_q, h, 576] bf16, kv [s_kv, 576] bf16, idx [s_q, k] → out [s_q, h, 512]
    outs = []
    for q0 in range(0, q.shape[0], chunk):
        qc = q[q0:q0 + chunk]
        g = kv[idx[q0:q0 + chunk].long()]                      # [c, k, 576]
        s = torch.bmm(qc, g.transpose(1, 2)).float() * scale   # [c, h, k]
        p = torch.softmax(s, dim=-1).to(q.dtype)
        outs.append(torch.bmm(p, g[:, :, :dv]))                # [c, h, 512]
    return torch.cat(outs)


def dense_matmul(q, kv, scale, dv=512):
    # the same dense attention as two cuBLAS matmuls per chunk of queries (the model's MQA form):
    # scores [c·h, s_kv] = q·kvᵀ (bf16), f32 softmax, out = p·kv[:, :dv]; chunks keep the scores ≤ ~2 GB
    sq, h, d = q.shape
    skv = kv.shape[0]
    c = max(1, (1 << 31) // (h * skv * 6))
    kt = kv.t()
    v = kv[:, :dv]
    for q0 in range(0, sq, c):
        qc = q[q0:q0 + c].reshape(-1, d)
        p = torch.softmax((qc @ kt).float() * scale, dim=-1).to(q.dtype)
        (p @ v).view(-1, h, dv)


def dense_sdpa(q, k, v, scale):
    # q [1, h, s_q, 576], k [1, 1, s_kv, 576], v [1, 1, s_kv, 512]: the latent row is every head's key
    h = q.shape[1]
    return first_sdpa_backend(q, k.expand(1, h, -1, -1), v.expand(1, h, -1, -1), scale)


try:
    import flash_mla  # type: ignore
except Exception:  # noqa: BLE001
    flash_mla = None

out = {'device': torch.cuda.get_device_name(), 'torch': torch.__version__, 'flash_mla': flash_mla is not None, 'prefill': [], 'decode': []}
D, DV = 576, 512
for p in req.get('prefill', []):
    sq, skv, k, h = p['s_q'], p['s_kv'], p['k'], p['h']
    scale = D ** -0.5
    q = torch.randn(sq, h, D, device=dev, dtype=torch.bfloat16)
    kv = torch.randn(skv, D, device=dev, dtype=torch.bfloat16)
    idx = rand_indices(sq, k, skv)
    row = dict(p)
    flops = 2 * sq * h * k * (D + DV)
    try:
        ms = med(lambda: sparse_torch(q, kv, idx, scale), reps=3)
        row['torch_sparse_ms'] = ms; row['torch_sparse_tflops'] = flops / ms / 1e9
    except Exception as ex:  # noqa: BLE001
        row['torch_sparse_error'] = str(ex).splitlines()[0][:200]
    torch.cuda.empty_cache()
    if flash_mla is not None and hasattr(flash_mla, 'flash_mla_sparse_fwd'):
        try:
            ms = med(lambda: flash_mla.flash_mla_sparse_fwd(q, kv.view(skv, 1, D), idx.view(sq, 1, k), scale, DV))
            row['flashmla_ms'] = ms; row['flashmla_tflops'] = flops / ms / 1e9
        except Exception as ex:  # noqa: BLE001
            row['flashmla_error'] = str(ex).splitlines()[0][:200]
    try:
        qd = q.transpose(0, 1).unsqueeze(0)
        name, fn = dense_sdpa(qd, kv.view(1, 1, skv, D), kv[:, :DV].contiguous().view(1, 1, skv, DV), scale)
        if name:
            ms = med(fn, reps=3)
            row['dense_sdpa_backend'] = name; row['dense_sdpa_ms'] = ms
            row['dense_sdpa_tflops'] = 2 * sq * h * skv * (D + DV) / ms / 1e9
        else:
            row['dense_sdpa_error'] = fn
    except Exception as ex:  # noqa: BLE001
        row['dense_sdpa_error'] = str(ex).splitlines()[0][:200]
    try:
        ms = med(lambda: dense_matmul(q, kv, scale), reps=3)
        row['dense_matmul_ms'] = ms
        row['dense_matmul_tflops'] = 2 * sq * h * skv * (D + DV) / ms / 1e9
    except Exception as ex:  # noqa: BLE001
        row['dense_matmul_error'] = str(ex).splitlines()[0][:200]
    out['prefill'].append(row)
    del q, kv, idx
    torch.cuda.empty_cache()

for p in req.get('decode', []):
    b, sq, h, k, ctx = p['b'], p['s_q'], p['h'], p['k'], p['ctx']
    scale = D ** -0.5
    q = torch.randn(b * sq, h, D, device=dev, dtype=torch.bfloat16)
    kv = torch.randn(b * ctx, D, device=dev, dtype=torch.bfloat16)
    # each query selects k distinct positions of its own sequence
    idx = rand_indices(b * sq, k, ctx) + (torch.arange(b * sq, device=dev, dtype=torch.int32) // sq * ctx)[:, None]
    row = dict(p)
    flops = 2 * b * sq * h * k * (D + DV)
    try:
        ms = med(lambda: sparse_torch(q, kv, idx, scale, chunk=64), reps=10, burst=3)
        row['torch_sparse_bf16_ms'] = ms; row['torch_sparse_bf16_tflops'] = flops / ms / 1e9
    except Exception as ex:  # noqa: BLE001
        row['torch_sparse_error'] = str(ex).splitlines()[0][:200]
    out['decode'].append(row)
    del q, kv, idx
    torch.cuda.empty_cache()

print(json.dumps(out))
