#!/usr/bin/env bash
# session 24, call 1 (what 2026-12-07-late call 1 skipped for time): the DSA training-op benchmark (the 16-head indexer
# scores rows: gemm path against the one-pass kernels), then the mid config's sparse-stage step with the
# one-pass scores kernels off and on, three timed steps each, one process after the other on one card.
set -uo pipefail
export DSV32_FIXTURES=$PWD/tmp/fixtures
t0=$(date +%s)
L=${LIMIT:-200}
left() { [ $(( $(date +%s) - t0 )) -lt $(( L - $1 )) ]; }
el() { echo "[$(( $(date +%s)-t0 ))s]"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
timeout 90 node dist/bench/dsa-train.js --no-torch --out $OUT/dsa-train.json > $OUT/dsa-train.txt 2>&1
echo "dsa-train rc $? $(el)"; grep -E "H 16|h 16" $OUT/dsa-train.txt | cut -c1-130
OFF=indexer,indexer-mma,mla,mla-fused,mla-flash,mla-split,mla-wg,mla-bwd,mla-bwd-flash,indexer-train,indexer-kl-flash,moe,moe-gemv
for mode in off on; do
  left 45 || break
  if [ $mode = off ]; then g=$OFF; else g=all; fi
  DSV32_CUDA_GEMM=$g timeout 70 node dist/bench/train-step.js --device cuda --shape mid --numerics bf16 --batch 2 --seq 4096 --steps 3 --phases sparse > $OUT/mid-$mode.txt 2>&1
  echo "mid sparse (scores one-pass $mode) rc $? $(el)"; grep -E "ms/step|Error" $OUT/mid-$mode.txt | cut -c1-200
done
echo "done $(el)"
