#!/usr/bin/env bash
# session 18, call 5: the tensor suite (cpu + cuda, fixtures linked) after the actQuant NaN rule, and the CUDA suite
set -uo pipefail
export DSV32_FIXTURES=$PWD/tmp/fixtures
mkdir -p ../shared 2>/dev/null && ln -sfn "$PWD/tmp/fixtures" ../shared/fixtures 2>/dev/null
t0=$(date +%s)
DSV32_TEST_DEVICES=cpu,cuda timeout 200 node --import ./dist/src/backend/cuda/index.js --test --test-reporter=tap dist/test/tensor/*.test.js > $OUT/t-tensor.log 2>&1
echo "tensor suite cpu+cuda rc $? $(grep -E '^# (pass|fail|skipped)' $OUT/t-tensor.log | tr '\n' ' ') [$(( $(date +%s)-t0 ))s]"
grep -E '^\s*not ok' $OUT/t-tensor.log | head
DSV32_CUDA_STRESS=100 timeout 240 node --test --test-reporter=tap dist/test/cuda/*.test.js > $OUT/t-cuda.log 2>&1
echo "cuda suite rc $? $(grep -E '^# (pass|fail|skipped)' $OUT/t-cuda.log | tr '\n' ' ') [$(( $(date +%s)-t0 ))s]"
grep -E '^\s*not ok' $OUT/t-cuda.log | head
timeout 120 node --test --test-reporter=tap --test-name-pattern="cuda|CUDA" dist/test/model/devices.test.js dist/test/model/ragged.test.js > $OUT/t-model.log 2>&1
echo "model cuda rc $? $(grep -E '^# (pass|fail|skipped)' $OUT/t-model.log | tr '\n' ' ') [$(( $(date +%s)-t0 ))s]"
grep -E '^\s*not ok' $OUT/t-model.log | head
