#!/usr/bin/env bash
# session 18, call 1: the fused FP8 indexer on hardware: tests (3 paths vs cpu), speed vs torch, model+engine with all GEMM paths, sampling tests
set -uo pipefail
export DSV32_FIXTURES=$PWD/tmp/fixtures
mkdir -p ../shared 2>/dev/null && ln -sfn "$PWD/tmp/fixtures" ../shared/fixtures 2>/dev/null
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader
t0=$(date +%s)
DSV32_TEST_DEVICES=cpu,cuda timeout 140 node --import ./dist/src/backend/cuda/index.js --test --test-reporter=tap dist/test/tensor/dsa-indexer.test.js > $OUT/t-indexer.log 2>&1
echo "indexer tests rc $? $(grep -E '^# (pass|fail|skipped)' $OUT/t-indexer.log | tr '\n' ' ') [$(( $(date +%s)-t0 ))s]"
grep -E '^\s*not ok' $OUT/t-indexer.log | head; grep -B2 -A25 -E '^\s+not ok' $OUT/t-indexer.log | grep -E "error|expected|actual|message|diag|max" | head -30
timeout 150 node dist/bench/dsa-indexer.js --out $OUT/bench-indexer.json > $OUT/bench-indexer.log 2>&1; echo "bench rc $? [$(( $(date +%s)-t0 ))s]"
tail -40 $OUT/bench-indexer.log
DSV32_CUDA_GEMM=all timeout 170 node --test --test-reporter=tap --test-name-pattern="cuda|CUDA" dist/test/model/devices.test.js dist/test/model/ragged.test.js dist/test/engine/engine-model.test.js dist/test/engine/engine-graphs.test.js > $OUT/t-model.log 2>&1
echo "model/engine all-gemm rc $? $(grep -E '^# (pass|fail|skipped)' $OUT/t-model.log | tr '\n' ' ') [$(( $(date +%s)-t0 ))s]"
grep -E '^\s*not ok' $OUT/t-model.log | head
DSV32_TEST_DEVICES=cpu,cuda timeout 100 node --import ./dist/src/backend/cuda/index.js --test --test-reporter=tap dist/test/tensor/pick.test.js dist/test/cuda/ops.test.js > $OUT/t-pick.log 2>&1
echo "pick+ops rc $? $(grep -E '^# (pass|fail|skipped)' $OUT/t-pick.log | tr '\n' ' ') [$(( $(date +%s)-t0 ))s]"
grep -E '^\s*not ok' $OUT/t-pick.log | head
