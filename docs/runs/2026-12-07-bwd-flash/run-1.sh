#!/usr/bin/env bash
# session 22, call 1: the one-pass sparse MLA backward for few heads (kernels/sparse_mla_bwd_flash.cu).
# Its op tests on cpu + cuda (every backward path, each with its own forward), the DSA training-op
# benchmark with torch in the same command (now also at 16 heads: the gemm path against the one-pass
# kernel, with a probe: the kernel without its dkv atomics), and the mid config's sparse-stage training
# step with the kernel off (DSV32_CUDA_GEMM listing every path but mla-bwd-flash), then on, one process
# after the other on this card; then the sparse MLA forward tests (its index preamble is now shared).
set -uo pipefail
export DSV32_FIXTURES=$PWD/tmp/fixtures
t0=$(date +%s)
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
DSV32_TEST_DEVICES=cpu,cuda timeout 200 node --import ./dist/src/backend/cuda/index.js --test --test-reporter=tap dist/test/tensor/sparse-mla-backward.test.js > $OUT/tests.txt 2>&1
echo "tests cpu+cuda rc $? $(grep -E '^# (pass|fail|skipped)' $OUT/tests.txt | tr '\n' ' ') [$(( $(date +%s)-t0 ))s]"
grep -E '^\s*not ok|AssertionError|relative error|Error:' $OUT/tests.txt | head -12
OFF=indexer,indexer-mma,mla,mla-fused,mla-flash,mla-split,mla-wg,mla-bwd,indexer-train,moe,moe-gemv
for mode in off on; do
  if [ $mode = off ]; then export DSV32_CUDA_GEMM=$OFF; else unset DSV32_CUDA_GEMM; fi
  timeout 150 node dist/bench/train-step.js --device cuda --shape mid --numerics bf16 --batch 2 --seq 4096 --steps 3 --phases sparse > $OUT/mid-$mode.txt 2>&1
  echo "mid sparse, one-pass backward $mode: rc $? [$(( $(date +%s)-t0 ))s]"; grep -E "ms/step|Error" $OUT/mid-$mode.txt | cut -c1-330
done
unset DSV32_CUDA_GEMM
timeout 240 node dist/bench/dsa-train.js --out $OUT/dsa-train.json > $OUT/dsa-train.txt 2>&1
echo "dsa-train rc $? [$(( $(date +%s)-t0 ))s]"; grep -E "sparse MLA|torch|\|---" $OUT/dsa-train.txt | head -12
DSV32_TEST_DEVICES=cpu,cuda timeout 100 node --import ./dist/src/backend/cuda/index.js --test --test-reporter=tap dist/test/tensor/sparse-mla.test.js > $OUT/tests-fwd.txt 2>&1
echo "forward tests cpu+cuda rc $? $(grep -E '^# (pass|fail|skipped)' $OUT/tests-fwd.txt | tr '\n' ' ') [$(( $(date +%s)-t0 ))s]"
grep -E '^\s*not ok|AssertionError|relative error|Error:' $OUT/tests-fwd.txt | head -6
echo "done [$(( $(date +%s)-t0 ))s]"
