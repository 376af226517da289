# PyTorch reference for bench/cuda-bench.ts, run in the same command on the same GPU: bf16 GEMM at the
# DeepSeek-V3 (671B) linear shapes, device-to-device copy bandwidth, and the memory-bound ops the CUDA
# backend fuses. CUDA events, warm-up, median of repeats, random (never zero) inputs. Prints JSON.
import json, sys, torch

torch.manual_seed(0)
dev = 'cuda'

def med(fn, reps=20, warm=3):
    for _ in range(warm):
        fn()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    ts = []
    for _ in range(reps):
        s.record(); fn(); e.record(); e.synchronize()
        ts.append(s.elapsed_time(e))
    ts.sort()
    return ts[len(ts) // 2]

out = {'device': torch.cuda.get_device_name(), 'torch': torch.__version__, 'gemm': {}, 'mem': {}}
NK = [(7168, 2048), (2048, 7168), (18432, 7168), (24576, 1536), (32768, 512)]
for M in (1, 16, 128, 4096):
    for N, K in NK:
        x = torch.randn(M, K, device=dev, dtype=torch.bfloat16)
        w = torch.randn(N, K, device=dev, dtype=torch.bfloat16)
        ms = med(lambda: torch.matmul(x, w.t()))
        out['gemm'][f'{M}x{N}x{K}'] = ms
        del x, w

nbytes = 1 << 30
a = torch.randn(nbytes // 2, device=dev, dtype=torch.bfloat16)
b = torch.empty_like(a)
out['mem']['copy_ms'] = med(lambda: b.copy_(a))
out['mem']['copy_bytes'] = 2 * nbytes
rows, D = (256 << 20) // 2 // 7168, 7168
x = torch.randn(rows, D, device=dev, dtype=torch.bfloat16)
y = torch.randn(rows, D, device=dev, dtype=torch.bfloat16)
w = torch.randn(D, device=dev, dtype=torch.bfloat16)
out['mem']['add_ms'] = med(lambda: torch.add(x, y))
out['mem']['rmsnorm_ms'] = med(lambda: torch.nn.functional.rms_norm(x, (D,), w, 1e-6))
out['mem']['softmax_ms'] = med(lambda: torch.softmax(x, -1))
out['mem']['swiglu_ms'] = med(lambda: torch.nn.functional.silu(x) * y)
out['mem']['rows'], out['mem']['D'] = rows, D
json.dump(out, sys.stdout)
