#!/usr/bin/env bash
# session 19, call B: the wgmma sparse MLA kernel with the producer loading indices a tile ahead, the FP8 rows decoded by the hardware conversions, and the next tile's scores issued behind the values — the op tests on cpu + cuda (every path,
# the wgmma kernel split and unsplit), the DSA backward tests, the model's CUDA tests; then the issue 11
# sparse MLA benchmark (torch in the same command) and Fig. 3.
set -uo pipefail
export DSV32_FIXTURES=$PWD/tmp/fixtures
mkdir -p ../shared 2>/dev/null && ln -sfn "$PWD/tmp/fixtures" ../shared/fixtures 2>/dev/null
t0=$(date +%s)
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
DSV32_TEST_DEVICES=cpu,cuda timeout 150 node --import ./dist/src/backend/cuda/index.js --test --test-reporter=tap dist/test/tensor/sparse-mla.test.js dist/test/tensor/sparse-mla-backward.test.js > $OUT/t-mla.log 2>&1
echo "sparse-mla tests cpu+cuda rc $? $(grep -E '^# (pass|fail|skipped)' $OUT/t-mla.log | tr '\n' ' ') [$(( $(date +%s)-t0 ))s]"
grep -E '^\s*not ok|relative error|AssertionError' $OUT/t-mla.log | head -12
timeout 120 node --test --test-reporter=tap --test-name-pattern="cuda|CUDA" dist/test/model/devices.test.js dist/test/model/ragged.test.js > $OUT/t-model.log 2>&1
echo "model cuda rc $? $(grep -E '^# (pass|fail|skipped)' $OUT/t-model.log | tr '\n' ' ') [$(( $(date +%s)-t0 ))s]"
timeout 200 node dist/bench/sparse-mla.js --out $OUT/bench-mla.json > $OUT/bench-mla.log 2>&1
echo "bench sparse-mla rc $? [$(( $(date +%s)-t0 ))s]"
cat $OUT/bench-mla.log | tail -14
timeout 150 node dist/bench/dsa-cost.js --csv $OUT/fig3.csv > $OUT/dsa-cost.log 2>&1
echo "dsa-cost rc $? [$(( $(date +%s)-t0 ))s]"
tail -12 $OUT/dsa-cost.log
