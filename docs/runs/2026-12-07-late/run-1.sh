#!/usr/bin/env bash
# session 23, call 1: every CUDA-capable test on cpu + cuda after 94637b3 (bf16_score_x: the DSA kernels'
# scaled-score rounding in one place, not yet run on a GPU; the last whole-suite GPU run was 2026-12-06
# 15:28), then the mid config's sparse-stage step with the one-pass KL kernel on (untimed last session),
# plainly and with every op synchronised (--profile: where the step's time goes now).
set -uo pipefail
export DSV32_FIXTURES=$PWD/tmp/fixtures
t0=$(date +%s)
L=${LIMIT:-560}
left() { [ $(( $(date +%s) - t0 )) -lt $(( L - $1 )) ]; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
files=$(ls dist/test/cuda/*.test.js dist/test/tensor/*.test.js dist/test/model/*.test.js dist/test/engine/*.test.js dist/test/train/*.test.js)
DSV32_TEST_DEVICES=cpu,cuda timeout 330 node --import ./dist/src/backend/cuda/index.js --test --test-reporter=tap $files > $OUT/tests.txt 2>&1
echo "tests cpu+cuda rc $? $(grep -E '^# (tests|pass|fail|skipped|cancelled)' $OUT/tests.txt | tr '\n' ' ') [$(( $(date +%s)-t0 ))s]"
grep -E '^\s*not ok' $OUT/tests.txt | head -20
grep -B2 -A12 -E '^\s*not ok' $OUT/tests.txt | grep -E 'error:|Error|expected|actual|relative' | head -20
left 100 && { timeout 120 node dist/bench/train-step.js --device cuda --shape mid --numerics bf16 --batch 2 --seq 4096 --steps 3 --phases sparse --profile > $OUT/mid.txt 2>&1; echo "mid sparse rc $? [$(( $(date +%s)-t0 ))s]"; grep -E "ms/step|Error|^[a-zA-Z]+ +[0-9]+ +[0-9.]+ " $OUT/mid.txt | cut -c1-160 | head -30; }
echo "done [$(( $(date +%s)-t0 ))s]"
