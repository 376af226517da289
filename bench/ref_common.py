# Shared by the PyTorch reference scripts (bench/*_ref.py, imported through the script's own folder on
# sys.path): the CUDA-event timing they all use, as the TypeScript benches time themselves (bench/harness.ts).
import torch


def cuda_median(fn, reps, warm, burst=1):
    """Median over `reps` samples of the device ms per call, after `warm` warm-up calls; each sample is a
    burst of `burst` back-to-back calls between two CUDA events (the kernels' time, not the host's
    dispatch gap between an event and a lone launch)."""
    for _ in range(warm):
        fn()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    ts = []
    for _ in range(reps):
        s.record()
        for _ in range(burst):
            fn()
        e.record(); e.synchronize()
        ts.append(s.elapsed_time(e) / burst)
    ts.sort()
    return ts[len(ts) // 2]


def first_sdpa_backend(q, k, v, scale, mask=None):
    """The first of flash, efficient, cuDNN that runs SDPA on these inputs alone: (name, fn) with fn one
    timed call under that backend restriction (it must hold at every call, not only the first), or
    (None, why each failed)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    errs = []
    for name, be in (('flash', SDPBackend.FLASH_ATTENTION), ('efficient', SDPBackend.EFFICIENT_ATTENTION), ('cudnn', SDPBackend.CUDNN_ATTENTION)):
        def fn(be=be):
            with sdpa_kernel([be]):
                return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
        try:
            fn()
            torch.cuda.synchronize()
            return name, fn
        except Exception as ex:  # noqa: BLE001 — record why and try the next backend
            errs.append(f'{name}: {str(ex).splitlines()[0][:160]}')
    return None, '; '.join(errs)
