#!/usr/bin/env bash
# session 22, call 3 (run-2.sh never ran: five starts refused; what is left of the device budget asks for a
# shorter call): the one-pass backward as refactored (products16x8, load_head_rows) and the sparse KL's
# one-pass kernel (kernels/indexer_kl_flash.cu, new): the DSA training ops' tests and the sparse MLA
# forward's on cpu + cuda, the DSA training-op benchmark with the torch reference, then the mid config's
# sparse-stage step while time is left.
set -uo pipefail
export DSV32_FIXTURES=$PWD/tmp/fixtures
t0=$(date +%s)
L=${LIMIT:-330}
left() { [ $(( $(date +%s) - t0 )) -lt $(( L - $1 )) ]; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
DSV32_TEST_DEVICES=cpu,cuda timeout 120 node --import ./dist/src/backend/cuda/index.js --test --test-reporter=tap dist/test/tensor/sparse-mla-backward.test.js dist/test/tensor/indexer-train.test.js dist/test/tensor/sparse-mla.test.js > $OUT/tests.txt 2>&1
echo "tests cpu+cuda rc $? $(grep -E '^# (pass|fail|skipped)' $OUT/tests.txt | tr '\n' ' ') [$(( $(date +%s)-t0 ))s]"
grep -E '^\s*not ok|AssertionError|relative error|Error:' $OUT/tests.txt | head -12
left 120 && { timeout 150 node dist/bench/dsa-train.js --out $OUT/dsa-train.json > $OUT/dsa-train.txt 2>&1; echo "dsa-train rc $? [$(( $(date +%s)-t0 ))s]"; cut -c1-150 $OUT/dsa-train.txt | head -30; }
left 70 && { timeout 80 node dist/bench/train-step.js --device cuda --shape mid --numerics bf16 --batch 2 --seq 4096 --steps 3 --phases sparse > $OUT/mid.txt 2>&1; echo "mid sparse rc $? [$(( $(date +%s)-t0 ))s]"; grep -E "ms/step|Error" $OUT/mid.txt | cut -c1-330; }
echo "done [$(( $(date +%s)-t0 ))s]"
