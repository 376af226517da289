# PyTorch reference for bench/cuda-bench.ts, run in the same command on the same GPU: bf16 GEMM at the
# DeepSeek-V3 (671B) linear shapes, device-to-device copy bandwidth, and the memory-bound ops the CUDA
# backend fuses. CUDA events, warm-up, median of repeats, random (never zero) inputs. Prints JSON.
import json, os, sys, torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ref_common import cuda_median  # noqa: E402

torch.manual_seed(0)
dev = 'cuda'

def med(fn, reps=20, warm=3, burst=10):
    # median over reps of the device time per call, each sample a burst of back-to-back calls between
    # two events (as bench/cuda-bench.ts does): the kernels' time, not the host dispatch gap
    return cuda_median(fn, reps, warm, burst)

out = {'device': torch.cuda.get_device_name(), 'torch': torch.__version__, 'gemm': {}, 'mem': {}}


def adamw_ms():
    # torch.optim.AdamW(fused=True) on one 16 M-element f32 parameter (bench/cuda-bench.ts 'adamw f32 16M':
    # the same size, betas and weight decay; 7 x 4 bytes moved per element)
    n = 16 << 20
    p = torch.nn.Parameter(torch.randn(n, device=dev))
    p.grad = torch.randn(n, device=dev)
    opt = torch.optim.AdamW([p], lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    opt.step()  # creates the state
    ms = med(opt.step)
    del p, opt
    return ms


# `--only adamw`: that case alone, as `node dist/bench/cuda-bench.js --only adamw` runs it
if sys.argv[1:] == ['--only', 'adamw']:
    out['mem']['adamw_ms'] = adamw_ms()
    json.dump(out, sys.stdout)
    sys.exit(0)

NK = [(7168, 2048), (2048, 7168), (18432, 7168), (24576, 1536), (32768, 512)]
for M in (1, 16, 128, 4096):
    for N, K in NK:
        # rotate weight copies spanning >= 160 MB so small-M calls read HBM, not L2 (as cuda-bench.ts does)
        x = torch.randn(M, K, device=dev, dtype=torch.bfloat16)
        copies = max(1, min(8, -(-(160 << 20) // (N * K * 2))))
        ws = [torch.randn(N, K, device=dev, dtype=torch.bfloat16) for _ in range(copies)]
        turn = [0]
        def step():
            w = ws[turn[0] % copies]; turn[0] += 1
            torch.matmul(x, w.t())
        ms = med(step, 20 if M >= 4096 else 60, 5)
        out['gemm'][f'{M}x{N}x{K}'] = ms
        del x, ws

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
out['mem']['softmax_bwd_ms'] = med(lambda: torch._softmax_backward_data(y, x, -1, torch.bfloat16))
out['mem']['swiglu_ms'] = med(lambda: torch.nn.functional.silu(x) * y)
out['mem']['rows'], out['mem']['D'] = rows, D
del x, y, a, b
out['mem']['adamw_ms'] = adamw_ms()

# FP8 at M=4096, N=7168, K=2048 through torch._scaled_mm: per-tensor, and DeepSeek block scaling where this
# torch accepts it (1x128 activation scales, 128x128 weight scales); each layout tried is recorded.
fp8 = {}
try:
    M, N, K = 4096, 7168, 2048
    a8 = (torch.randn(M, K, device=dev) * 40).to(torch.float8_e4m3fn)
    b8 = (torch.randn(N, K, device=dev) * 40).to(torch.float8_e4m3fn)
    one = torch.tensor(1.0, device=dev)
    fp8['tensor_ms'] = med(lambda: torch._scaled_mm(a8, b8.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16))
    tries = {
        'sa (M,K/128) outer-major, sb (N/128,K/128)': (torch.ones(K // 128, M, device=dev).t(), torch.ones(N // 128, K // 128, device=dev)),
        'sa (M,K/128) outer-major, sb (K/128,N/128)': (torch.ones(K // 128, M, device=dev).t(), torch.ones(K // 128, N // 128, device=dev)),
        'sa (M,K/128) outer-major, sb (N/128,K/128) outer-major': (torch.ones(K // 128, M, device=dev).t(), torch.ones(K // 128, N // 128, device=dev).t()),
    }
    fp8['block_tries'] = {}
    for name, (sa, sb) in tries.items():
        try:
            torch._scaled_mm(a8, b8.t(), scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16)
            ms = med(lambda: torch._scaled_mm(a8, b8.t(), scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16))
            fp8['block_tries'][name] = ms
            fp8.setdefault('block_ms', ms)
        except Exception as e:
            fp8['block_tries'][name] = str(e).splitlines()[0][:200]
except Exception as e:
    fp8['error'] = str(e).splitlines()[0][:300]
out['fp8'] = fp8
json.dump(out, sys.stdout)
