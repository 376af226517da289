#!/usr/bin/env bash
# session 19, call E: independent consumer warpgroups (each the whole 64-key softmax, P in registers as the
# values' A operand; no shared P, no barrier between them), producer as call C. The op tests on cpu + cuda
# (sparse MLA on every path, the DSA backward), the sparse MLA benchmark with its
# probes, and Fig. 3 (dsa-cost).
set -uo pipefail
export DSV32_FIXTURES=$PWD/tmp/fixtures
mkdir -p ../shared 2>/dev/null && ln -sfn "$PWD/tmp/fixtures" ../shared/fixtures 2>/dev/null
t0=$(date +%s)
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
DSV32_TEST_DEVICES=cpu,cuda timeout 150 node --import ./dist/src/backend/cuda/index.js --test --test-reporter=tap dist/test/tensor/sparse-mla.test.js dist/test/tensor/sparse-mla-backward.test.js > $OUT/t-mla.log 2>&1
echo "sparse-mla + backward tests cpu+cuda rc $? $(grep -E '^# (pass|fail|skipped)' $OUT/t-mla.log | tr '\n' ' ') [$(( $(date +%s)-t0 ))s]"
grep -E '^\s*not ok|relative error|AssertionError' $OUT/t-mla.log | head -12
timeout 120 node dist/bench/sparse-mla.js --out $OUT/bench-mla.json > $OUT/bench-mla.log 2>&1
echo "bench sparse-mla rc $? [$(( $(date +%s)-t0 ))s]"
tail -12 $OUT/bench-mla.log
timeout 90 node dist/bench/dsa-cost.js --csv $OUT/fig3.csv > $OUT/dsa-cost.log 2>&1
echo "dsa-cost rc $? [$(( $(date +%s)-t0 ))s]"
tail -12 $OUT/dsa-cost.log
