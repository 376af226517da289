# PyTorch dense reference for bench/dsa-cost.ts (issue 11, Fig. 3 at the paper's dimensions), run by it in
# the same command on the same GPU. Reads {contexts, s_q, b, h, d, dv} as JSON on stdin, prints JSON on
# stdout: per context the CUDA-event median ms of torch scaled_dot_product_attention at the absorbed-MQA
# shapes (bf16), with the backend that ran (flash takes head dims <= 256, so at d = 576 it is normally the
# memory-efficient one; cudnn is tried last):
#   prefill  q [1, h, s_q, d] at the END of a context of L keys, one shared key/value head ([1, 1, L, d] /
#            [1, 1, L, dv], expanded to h heads), causal bottom-right (query i sees keys <= L - s_q + i) via
#            torch.nn.attention.bias.causal_lower_right; without that API the mask is left out (recorded:
#            at most s_q / 2L more work than causal).
#   decode   b sequences of L keys, one query each: the h heads of the query fold into h query rows of the
#            one shared head, q [b, 1, h, d], k [b, 1, L, d], v [b, 1, L, dv], no mask (exact for decode).
# Inputs are random. A case that fails records its error instead of a time.
import json, os, sys
import torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ref_common import cuda_median, first_sdpa_backend  # noqa: E402

req = json.load(sys.stdin)
dev = 'cuda'
torch.manual_seed(0)
sq, b, h, d, dv = req['s_q'], req['b'], req['h'], req['d'], req['dv']
scale = d ** -0.5


def err(ex):
    return str(ex).splitlines()[0][:200]


out = {'device': torch.cuda.get_device_name(), 'torch': torch.__version__, 'prefill': [], 'decode': []}
for L in req['contexts']:
    row = {'context': L, 's_q': sq, 'h': h}
    try:
        q = torch.randn(1, h, sq, d, device=dev, dtype=torch.bfloat16)
        kv = torch.randn(1, 1, L, d, device=dev, dtype=torch.bfloat16)
        k = kv.expand(1, h, L, d)
        v = kv[..., :dv].expand(1, h, L, dv)
        try:
            from torch.nn.attention.bias import causal_lower_right
            mask, row['mask'] = causal_lower_right(sq, L), 'causal_lower_right'
        except Exception:  # noqa: BLE001
            mask, row['mask'] = None, 'none (no causal_lower_right in this torch)'
        name, fn = first_sdpa_backend(q, k, v, scale, mask)
        if name:
            row['backend'] = name
            row['sdpa_ms'] = cuda_median(fn, 3, 1)
        else:
            row['error'] = fn
        del q, kv, k, v
    except Exception as ex:  # noqa: BLE001
        row['error'] = err(ex)
    torch.cuda.empty_cache()
    out['prefill'].append(row)

    row = {'context': L, 'b': b, 'h': h}
    try:
        q = torch.randn(b, 1, h, d, device=dev, dtype=torch.bfloat16)
        k = torch.randn(b, 1, L, d, device=dev, dtype=torch.bfloat16)
        v = k[..., :dv]
        name, fn = first_sdpa_backend(q, k, v, scale)
        if name:
            row['backend'] = name
            row['sdpa_ms'] = cuda_median(fn, 5, 1)
        else:
            row['error'] = fn
        del q, k, v
    except Exception as ex:  # noqa: BLE001
        row['error'] = err(ex)
    torch.cuda.empty_cache()
    out['decode'].append(row)

print(json.dumps(out))
