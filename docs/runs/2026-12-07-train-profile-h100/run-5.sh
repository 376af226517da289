#!/usr/bin/env bash
# session 21, calls 5–6: this session's training changes against its starting point on the same card, one
# process after the other: dist-base/ is the build of 3c3c390 (the session's first commit), dist/ this one.
# The changed ops' tests on cpu + cuda first; then bench/train-step.js for both builds, alternating, on the
# mid config (mid.json: bf16, B 2 × S 4096) and dsv32-mini's config (pretrain B 32 × S 512, DSA B 8 × S 2048);
# then the memory-bound kernels beside torch (bench/cuda-bench.js with bench/cuda_ref.py).
set -uo pipefail
export DSV32_FIXTURES=$PWD/tmp/fixtures
mkdir -p ../shared 2>/dev/null && ln -sfn "$PWD/tmp/fixtures" ../shared/fixtures 2>/dev/null
t0=$(date +%s)
L=${LIMIT:-500}
left() { [ $(( $(date +%s) - t0 )) -lt $(( L - $1 )) ]; }
D=docs/runs/2026-12-07-train-profile-h100
ln -sfn ../dist/node_modules dist-base/node_modules
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
DSV32_TEST_DEVICES=cpu,cuda timeout 200 node --import ./dist/src/backend/cuda/index.js --test --test-reporter=tap dist/test/cuda/train.test.js dist/test/cuda/ops.test.js dist/test/tensor/norm-rope-hadamard.test.js dist/test/tensor/dtype.test.js dist/test/tensor/sparse-mla-backward.test.js dist/test/tensor/indexer-train.test.js dist/test/model/dense-attention.test.js dist/test/tensor/grad-core.test.js > $OUT/tests.txt 2>&1
echo "tests cpu+cuda rc $? $(grep -E '^# (pass|fail|skipped)' $OUT/tests.txt | tr '\n' ' ') [$(( $(date +%s)-t0 ))s]"
grep -E '^\s*not ok|AssertionError|Error:' $OUT/tests.txt | head -12
run() { # build name timeout args...
  local b=$1 name=$2 to=$3; shift 3
  timeout $to node $b/bench/train-step.js --device cuda "$@" > $OUT/$name-$b.txt 2>&1
  echo "$name $b rc $? [$(( $(date +%s)-t0 ))s]"; grep -E "ms/step|Error" $OUT/$name-$b.txt | cut -c1-330
}
for b in dist-base dist; do left 150 && run $b mid 110 --shape small --config $D/mid.json --numerics bf16 --batch 2 --seq 4096 --steps 3; done
for b in dist-base dist; do left 100 && run $b mini-pre 60 --config models/dsv32-mini/config.json --numerics bf16 --batch 32 --seq 512 --steps 5 --phases pretrain; done
for b in dist-base dist; do left 100 && run $b mini-dsa 70 --config models/dsv32-mini/config.json --numerics bf16 --batch 8 --seq 2048 --steps 5 --phases warmup,sparse; done
if left 130; then
  timeout 120 python3 bench/cuda_ref.py > $OUT/torch.json 2> $OUT/torch.err; echo "cuda_ref rc $? [$(( $(date +%s)-t0 ))s]"
  timeout 150 node dist/bench/cuda-bench.js --torch $OUT/torch.json --out $OUT/cuda-bench.json > $OUT/cuda-bench.txt 2>&1; echo "cuda-bench rc $? [$(( $(date +%s)-t0 ))s]"
  grep -E "softmax|copy|add bf16|rmsnorm|swiglu" $OUT/cuda-bench.txt
fi
echo "done [$(( $(date +%s)-t0 ))s]"
