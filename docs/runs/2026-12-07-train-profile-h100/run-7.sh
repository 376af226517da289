#!/usr/bin/env bash
# session 21, call 7: RMSNorm's output pass in 16-byte vectors. The norm and softmax tests on cpu + cuda,
# the memory-bound kernels beside torch (bench/cuda-bench.js with bench/cuda_ref.py), and the mid config's
# training step as in call 3 (--shape mid: no MTP layer) for the changes since call 3.
set -uo pipefail
t0=$(date +%s)
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
DSV32_TEST_DEVICES=cpu,cuda timeout 120 node --import ./dist/src/backend/cuda/index.js --test --test-reporter=tap dist/test/tensor/norm-rope-hadamard.test.js dist/test/tensor/grad-core.test.js dist/test/cuda/ops.test.js > $OUT/tests.txt 2>&1
echo "tests cpu+cuda rc $? $(grep -E '^# (pass|fail|skipped)' $OUT/tests.txt | tr '\n' ' ') [$(( $(date +%s)-t0 ))s]"
grep -E '^\s*not ok|AssertionError|Error:' $OUT/tests.txt | head -12
timeout 120 python3 bench/cuda_ref.py > $OUT/torch.json 2> $OUT/torch.err; echo "cuda_ref rc $? [$(( $(date +%s)-t0 ))s]"
timeout 150 node dist/bench/cuda-bench.js --torch $OUT/torch.json --out $OUT/cuda-bench.json > $OUT/cuda-bench.txt 2>&1; echo "cuda-bench rc $? [$(( $(date +%s)-t0 ))s]"
grep -E "softmax|copy|rmsnorm|swiglu|add bf16" $OUT/cuda-bench.txt
timeout 120 node dist/bench/train-step.js --device cuda --shape mid --numerics bf16 --batch 2 --seq 4096 --steps 3 > $OUT/mid.txt 2>&1
echo "mid rc $? [$(( $(date +%s)-t0 ))s]"; grep -E "ms/step|Error" $OUT/mid.txt | cut -c1-330
echo "done [$(( $(date +%s)-t0 ))s]"
