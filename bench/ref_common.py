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
