#!/usr/bin/env bash
# session 18, call 4: actQuant NaN sign fix; top-k with the one-scan compaction alone, against the old kernel in the same call
set -uo pipefail
export DSV32_FIXTURES=$PWD/tmp/fixtures
t0=$(date +%s)
DSV32_TEST_DEVICES=cpu,cuda timeout 200 node --import ./dist/src/backend/cuda/index.js --test --test-reporter=tap dist/test/tensor/*.test.js > $OUT/t-tensor.log 2>&1
echo "tensor suite cpu+cuda rc $? $(grep -E '^# (pass|fail|skipped)' $OUT/t-tensor.log | tr '\n' ' ') [$(( $(date +%s)-t0 ))s]"
grep -E '^\s*not ok' $OUT/t-tensor.log | head
mkdir -p /tmp/old && tar xJf .gpu/dist-old.tar.xz -C /tmp/old
for r in 1 2; do
  timeout 90 node dist/bench/dsa-indexer.js --out $OUT/bench-new-$r.json > $OUT/bench-new-$r.log 2>&1; echo "bench new rc $? [$(( $(date +%s)-t0 ))s]"
  grep -A4 "## topkSelect" $OUT/bench-new-$r.log | tail -2
  timeout 90 node /tmp/old/dist/bench/dsa-indexer.js --no-torch > $OUT/bench-old-$r.log 2>&1; echo "bench old rc $? [$(( $(date +%s)-t0 ))s]"
  grep -A4 "## topkSelect" $OUT/bench-old-$r.log | tail -2
done
