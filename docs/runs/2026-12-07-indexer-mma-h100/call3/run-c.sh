#!/usr/bin/env bash
# session 18, call 3: the new top-k kernel (tests, kernel-alone time, old build's bench in the same call), and the
# whole tensor suite + model/engine CUDA tests with the fused indexer on by default
set -uo pipefail
export DSV32_FIXTURES=$PWD/tmp/fixtures
mkdir -p ../shared 2>/dev/null && ln -sfn "$PWD/tmp/fixtures" ../shared/fixtures 2>/dev/null
t0=$(date +%s)
DSV32_TEST_DEVICES=cpu,cuda timeout 120 node --import ./dist/src/backend/cuda/index.js --test --test-reporter=tap dist/test/tensor/dsa-indexer.test.js > $OUT/t-indexer.log 2>&1
echo "indexer+topk tests rc $? $(grep -E '^# (pass|fail|skipped)' $OUT/t-indexer.log | tr '\n' ' ') [$(( $(date +%s)-t0 ))s]"
grep -E '^\s*not ok' $OUT/t-indexer.log | head; grep -A20 -E '^\s+not ok' $OUT/t-indexer.log | grep -E "error|differ|expected|actual" | head -10
timeout 120 node dist/bench/dsa-indexer.js --out $OUT/bench-new.json > $OUT/bench-new.log 2>&1; echo "bench new rc $? [$(( $(date +%s)-t0 ))s]"
grep -A5 "## topkSelect" $OUT/bench-new.log
mkdir -p /tmp/old && tar xJf .gpu/dist-old.tar.xz -C /tmp/old
timeout 90 node /tmp/old/dist/bench/dsa-indexer.js --no-torch > $OUT/bench-old.log 2>&1; echo "bench old build rc $? [$(( $(date +%s)-t0 ))s]"
grep -A5 "## topkSelect" $OUT/bench-old.log
DSV32_TEST_DEVICES=cpu,cuda timeout 200 node --import ./dist/src/backend/cuda/index.js --test --test-reporter=tap dist/test/tensor/*.test.js > $OUT/t-tensor.log 2>&1
echo "tensor suite cpu+cuda rc $? $(grep -E '^# (pass|fail|skipped)' $OUT/t-tensor.log | tr '\n' ' ') [$(( $(date +%s)-t0 ))s]"
grep -E '^\s*not ok' $OUT/t-tensor.log | head
timeout 170 node --test --test-reporter=tap --test-name-pattern="cuda|CUDA" dist/test/model/devices.test.js dist/test/model/ragged.test.js dist/test/engine/engine-model.test.js dist/test/engine/engine-graphs.test.js > $OUT/t-model.log 2>&1
echo "model/engine cuda (defaults) rc $? $(grep -E '^# (pass|fail|skipped)' $OUT/t-model.log | tr '\n' ' ') [$(( $(date +%s)-t0 ))s]"
grep -E '^\s*not ok' $OUT/t-model.log | head
