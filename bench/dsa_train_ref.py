# PyTorch references for bench/dsa-train.ts, run in the same command on the same GPU (issue 11 §5). Reads
# the shapes as JSON on stdin ({mla: {s_q, s_kv, k, h}, idx: {s_q, k, dense_q, dense_kv, h}}), prints JSON
# with median CUDA-event milliseconds. Plain torch autograd at the same shapes, bf16 with f32 softmax:
#   mla_bwd_ms          sparse MLA: gather the k selected rows per query, scores, softmax, P·V; the
#                       backward's time = (forward + backward) − forward, chunked over queries
#   mla16_bwd_ms        the same at the few-head shape req['mla16'] (when given)
#   idx_sparse_fwd/bwd  Σ_h w·relu(q·k) over the gathered selected keys (bwd: grads of q, k, w)
#   idx_dense_fwd/bwd   the same over all keys with the causal mask (−inf above the diagonal)
#   kl_sparse_ms        the KL target p = normalize(Σ_h exp(s − lse)) recomputed from q/kv/lse, KL against
#                       log_softmax(I), forward + backward to I
#   kl_dense_ms         the same over the dense causal ranges of idx_dense (dense_q queries over dense_kv keys)
# Not run on the machine this was written on (no torch, no GPU there); it is the comparator for the H200 run.
import json, os, sys
import torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ref_common import cuda_median  # noqa: E402

req = json.load(sys.stdin)
dev = 'cuda'
torch.manual_seed(0)
D, DV, DI = 576, 512, 128


def med(fn, reps=5, warm=1):
    return cuda_median(fn, reps, warm)


def distinct(rows, k, n):
    return torch.stack([torch.randperm(n, device=dev)[:k] for _ in range(rows)]).long()


out = {}
CH = 512
scale = D ** -0.5


def mla_bwd_ms(m):
    sq, skv, k, h = m['s_q'], m['s_kv'], m['k'], m['h']
    q = torch.randn(sq, h, D, device=dev, dtype=torch.bfloat16, requires_grad=True)
    kv = torch.randn(skv, D, device=dev, dtype=torch.bfloat16, requires_grad=True)
    idx = distinct(sq, k, skv)
    g = torch.randn(sq, h, DV, device=dev, dtype=torch.bfloat16)

    def mla(backward):
        for c0 in range(0, sq, CH):
            qc = q[c0:c0 + CH]
            kg = kv[idx[c0:c0 + CH]]  # [c, k, D]
            s = torch.einsum('chd,ckd->chk', qc, kg).float() * scale
            p = torch.softmax(s, -1).to(torch.bfloat16)
            o = torch.einsum('chk,ckd->chd', p, kg[..., :DV])
            if backward:
                o.backward(g[c0:c0 + CH])

    with torch.no_grad():
        fwd = med(lambda: mla(False))
    return med(lambda: mla(True)) - fwd


out['mla_bwd_ms'] = mla_bwd_ms(req['mla'])
if 'mla16' in req:
    out['mla16_bwd_ms'] = mla_bwd_ms(req['mla16'])

x = req['idx']
sq, k, h, nq, T = x['s_q'], x['k'], x['h'], x['dense_q'], x['dense_kv']
qi = torch.randn(sq, h, DI, device=dev, dtype=torch.bfloat16, requires_grad=True)
ki = torch.randn(T, DI, device=dev, dtype=torch.bfloat16, requires_grad=True)
wi = (torch.randn(sq, h, device=dev) * 0.1).requires_grad_(True)
sel = distinct(sq, k, T)


def scores_sparse():
    l = torch.einsum('qhd,qkd->qhk', qi, ki[sel]).float()
    return (torch.relu(l) * wi[:, :, None]).sum(1)


gs = torch.randn(sq, k, device=dev)
with torch.no_grad():
    out['idx_sparse_fwd_ms'] = med(scores_sparse)
out['idx_sparse_bwd_ms'] = med(lambda: scores_sparse().backward(gs)) - out['idx_sparse_fwd_ms']
T0 = T - nq
mask = torch.arange(T, device=dev)[None, :] > (T0 + torch.arange(nq, device=dev))[:, None]


def scores_dense():
    l = torch.einsum('qhd,td->qht', qi[:nq], ki).float()
    return ((torch.relu(l) * wi[:nq, :, None]).sum(1)).masked_fill(mask, float('-inf'))


gd = torch.randn(nq, T, device=dev).masked_fill(mask, 0)
with torch.no_grad():
    out['idx_dense_fwd_ms'] = med(scores_dense)
out['idx_dense_bwd_ms'] = med(lambda: scores_dense().backward(gd)) - out['idx_dense_fwd_ms']

hm = req['mla']['h']
qm = torch.randn(sq, hm, D, device=dev, dtype=torch.bfloat16)
kvm = torch.randn(T, D, device=dev, dtype=torch.bfloat16)
I = torch.randn(sq, k, device=dev, requires_grad=True)
with torch.no_grad():
    lse = torch.cat([torch.logsumexp(torch.einsum('chd,ckd->chk', qm[c0:c0 + CH], kvm[sel[c0:c0 + CH]]).float() * scale, -1) for c0 in range(0, sq, CH)])


def kl():
    tot = 0
    for c0 in range(0, sq, CH):
        with torch.no_grad():
            s = torch.einsum('chd,ckd->chk', qm[c0:c0 + CH], kvm[sel[c0:c0 + CH]]).float() * scale
            a = torch.exp(s - lse[c0:c0 + CH, :, None]).sum(1)
            p = a / a.sum(-1, keepdim=True)
        lq = torch.log_softmax(I[c0:c0 + CH], -1)
        tot = tot + (p * (torch.log(p.clamp_min(1e-38)) - lq)).sum()
    tot.backward()


out['kl_sparse_ms'] = med(kl)
CHD = 128
Id = torch.randn(nq, T, device=dev).masked_fill(mask, float('-inf')).requires_grad_(True)
with torch.no_grad():
    lsed = torch.cat([torch.logsumexp((torch.einsum('chd,td->cht', qm[c0:c0 + CHD], kvm).float() * scale).masked_fill(mask[c0:c0 + CHD, None, :], float('-inf')), -1)
                      for c0 in range(0, nq, CHD)])


def kl_dense():
    tot = 0
    for c0 in range(0, nq, CHD):
        mk = mask[c0:c0 + CHD]
        with torch.no_grad():
            s = torch.einsum('chd,td->cht', qm[c0:c0 + CHD], kvm).float() * scale
            a = torch.exp(s - lsed[c0:c0 + CHD, :, None]).sum(1).masked_fill(mk, 0)
            p = a / a.sum(-1, keepdim=True)
        lq = torch.log_softmax(Id[c0:c0 + CHD], -1).masked_fill(mk, 0)  # p = 0 there: 0·(log p − 0), not 0·∞
        tot = tot + (p * (torch.log(p.clamp_min(1e-38)) - lq)).sum()
    tot.backward()


out['kl_dense_ms'] = med(kl_dense)
out['device'] = torch.cuda.get_device_name()
out['torch'] = torch.__version__
print(json.dumps(out))
