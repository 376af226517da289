#!/usr/bin/env bash
# session 23, call 1 (build e8dfa4b or later): the new one-pass indexer scores kernels
# (kernels/indexer_scores_flash.cu, off by default: the tests' 'flash' path turns them on) and the
# refactored one-pass MLA backward (tile_dq / tile_dg) with the DSA training ops' tests on cpu + cuda; the
# DSA training-op benchmark (16-head indexer scores rows new, torch in the same command); the mid config's
# sparse-stage step with the default paths and with every path on (DSV32_CUDA_GEMM=all = the defaults +
# indexer-scores-flash); then every CUDA-capable test file while time is left (the last whole-suite GPU
# run was 2026-12-06 15:28), and the sparse step profiled with every op synchronised.
set -uo pipefail
export DSV32_FIXTURES=$PWD/tmp/fixtures
t0=$(date +%s)
L=${LIMIT:-570}
left() { [ $(( $(date +%s) - t0 )) -lt $(( L - $1 )) ]; }
el() { echo "[$(( $(date +%s)-t0 ))s]"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
T="node --import ./dist/src/backend/cuda/index.js --test --test-reporter=tap"
DSV32_TEST_DEVICES=cpu,cuda timeout 120 $T dist/test/tensor/indexer-train.test.js dist/test/tensor/sparse-mla-backward.test.js dist/test/tensor/sparse-mla.test.js > $OUT/tests-dsa.txt 2>&1
echo "dsa tests cpu+cuda rc $? $(grep -E '^# (pass|fail|skipped)' $OUT/tests-dsa.txt | tr '\n' ' ') $(el)"
grep -E '^\s*not ok|relative error|Error:' $OUT/tests-dsa.txt | head -12
left 450 && { timeout 110 node dist/bench/dsa-train.js --out $OUT/dsa-train.json > $OUT/dsa-train.txt 2>&1; echo "dsa-train rc $? $(el)"; grep -E "16 |h 16|H 16" $OUT/dsa-train.txt | cut -c1-150; }
for mode in default all; do
  left 330 || break
  if [ $mode = all ]; then export DSV32_CUDA_GEMM=all; fi
  timeout 80 node dist/bench/train-step.js --device cuda --shape mid --numerics bf16 --batch 2 --seq 4096 --steps 3 --phases sparse > $OUT/mid-$mode.txt 2>&1
  echo "mid sparse ($mode) rc $? $(el)"; grep -E "ms/step|Error" $OUT/mid-$mode.txt | cut -c1-200
  unset DSV32_CUDA_GEMM
done
if left 150; then
  files=$(ls dist/test/cuda/*.test.js dist/test/tensor/*.test.js dist/test/model/*.test.js dist/test/engine/*.test.js dist/test/train/*.test.js)
  DSV32_TEST_DEVICES=cpu,cuda timeout $(( L - 90 - ($(date +%s) - t0) )) $T $files > $OUT/tests-all.txt 2>&1
  echo "all tests cpu+cuda rc $? $(grep -E '^# (tests|pass|fail|skipped|cancelled)' $OUT/tests-all.txt | tr '\n' ' ') $(el)"
  grep -E '^\s*not ok' $OUT/tests-all.txt | head -20
fi
left 75 && { DSV32_CUDA_GEMM=all timeout 70 node dist/bench/train-step.js --device cuda --shape mid --numerics bf16 --batch 2 --seq 4096 --steps 1 --phases sparse --profile > $OUT/mid-profile.txt 2>&1; echo "mid profile rc $? $(el)"; grep -E "^[a-zA-Z]+ +[0-9]+ +[0-9.]+ " $OUT/mid-profile.txt | head -14 | cut -c1-110; }
echo "done $(el)"
