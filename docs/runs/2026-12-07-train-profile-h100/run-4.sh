#!/usr/bin/env bash
# session 21, call 4: after RMSNorm's register levels and maskedSoftmax (scale, causal mask, softmax, lse in one
# pass): the changed ops' tests on cpu + cuda, call 1's training steps again (mid config bf16 B 2 × S 4096;
# dsv32-mini's pretrain and DSA shapes, 5 timed steps each), and the memory-bound kernels beside torch.
set -uo pipefail
export DSV32_FIXTURES=$PWD/tmp/fixtures
mkdir -p ../shared 2>/dev/null && ln -sfn "$PWD/tmp/fixtures" ../shared/fixtures 2>/dev/null
t0=$(date +%s)
L=${LIMIT:-500}
left() { [ $(( $(date +%s) - t0 )) -lt $(( L - $1 )) ]; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
DSV32_TEST_DEVICES=cpu,cuda timeout 200 node --import ./dist/src/backend/cuda/index.js --test --test-reporter=tap dist/test/cuda/train.test.js dist/test/cuda/ops.test.js dist/test/tensor/norm-rope-hadamard.test.js dist/test/tensor/dtype.test.js dist/test/tensor/sparse-mla-backward.test.js dist/test/tensor/indexer-train.test.js dist/test/model/dense-attention.test.js dist/test/tensor/grad-core.test.js > $OUT/tests.txt 2>&1
echo "tests cpu+cuda rc $? $(grep -E '^# (pass|fail|skipped)' $OUT/tests.txt | tr '\n' ' ') [$(( $(date +%s)-t0 ))s]"
grep -E '^\s*not ok|AssertionError|Error:' $OUT/tests.txt | head -12
run() { # name timeout args...
  local name=$1 to=$2; shift 2
  timeout $to node dist/bench/train-step.js --device cuda "$@" > $OUT/$name.txt 2>&1
  echo "$name rc $? [$(( $(date +%s)-t0 ))s]"; grep -E "ms/step|one step with|^shape|Error" $OUT/$name.txt | cut -c1-400
}
left 120 && run mid 200 --shape mid --numerics bf16 --batch 2 --seq 4096 --steps 3 --profile
left 100 && run mini-pre 120 --config models/dsv32-mini/config.json --numerics bf16 --batch 32 --seq 512 --steps 5 --phases pretrain
left 100 && run mini-dsa 120 --config models/dsv32-mini/config.json --numerics bf16 --batch 8 --seq 2048 --steps 5 --phases warmup,sparse
if left 150; then
  timeout 120 python3 bench/cuda_ref.py > $OUT/torch.json 2> $OUT/torch.err; echo "cuda_ref rc $? [$(( $(date +%s)-t0 ))s]"
  timeout 150 node dist/bench/cuda-bench.js --torch $OUT/torch.json --out $OUT/cuda-bench.json > $OUT/cuda-bench.txt 2>&1; echo "cuda-bench rc $? [$(( $(date +%s)-t0 ))s]"
  grep -E "softmax|copy|add bf16|rmsnorm" $OUT/cuda-bench.txt
fi
echo "done [$(( $(date +%s)-t0 ))s]"
