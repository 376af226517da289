#!/usr/bin/env bash
# session 19, call E: independent consumer warpgroups (each the whole 64-key softmax, P in registers as the values' A operand; no shared P, no barrier between them) (producer as call C; the stage released before the
# next tile's scores) and call B's producer, no rescale when α = 1; the op tests on cpu + cuda; the sparse
# MLA benchmark with its two prefill probes (every entry a hole but the last; every entry one row).
set -uo pipefail
export DSV32_FIXTURES=$PWD/tmp/fixtures
mkdir -p ../shared 2>/dev/null && ln -sfn "$PWD/tmp/fixtures" ../shared/fixtures 2>/dev/null
t0=$(date +%s)
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
DSV32_TEST_DEVICES=cpu,cuda timeout 150 node --import ./dist/src/backend/cuda/index.js --test --test-reporter=tap dist/test/tensor/sparse-mla.test.js > $OUT/t-mla.log 2>&1
echo "sparse-mla tests cpu+cuda rc $? $(grep -E '^# (pass|fail|skipped)' $OUT/t-mla.log | tr '\n' ' ') [$(( $(date +%s)-t0 ))s]"
grep -E '^\s*not ok|relative error|AssertionError' $OUT/t-mla.log | head -12
timeout 240 node dist/bench/sparse-mla.js --out $OUT/bench-mla.json > $OUT/bench-mla.log 2>&1
echo "bench sparse-mla rc $? [$(( $(date +%s)-t0 ))s]"
cat $OUT/bench-mla.log | tail -16
