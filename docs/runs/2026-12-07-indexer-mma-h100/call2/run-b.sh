#!/usr/bin/env bash
# session 18, call 2: the fused indexer at the shape, Fig. 3 with it, and the mid model with it on vs off
set -uo pipefail
export DSV32_FIXTURES=$PWD/tmp/fixtures
t0=$(date +%s)
timeout 170 node dist/bench/dsa-indexer.js --full --out $OUT/bench-indexer-full.json > $OUT/bench-indexer-full.log 2>&1; echo "indexer --full rc $? [$(( $(date +%s)-t0 ))s]"
grep -A8 "## indexerLogits" $OUT/bench-indexer-full.log
DSV32_CUDA_GEMM=all timeout 170 node dist/bench/dsa-cost.js > $OUT/dsa-cost-mma.log 2>&1; echo "dsa-cost (all paths) rc $? [$(( $(date +%s)-t0 ))s]"
tail -30 $OUT/dsa-cost-mma.log
M=/tmp/dsv32-mid
timeout 120 python3 tmp/reference/bench_ref.py --config tmp/reference/configs/mid.json --device cuda --prefill '' --decode-ctx '' --dump $M > $OUT/ref-dump.log 2>&1; echo "dump rc $? [$(( $(date +%s)-t0 ))s]"
for g in default all; do
  if [ $g = all ]; then export DSV32_CUDA_GEMM=all; else unset DSV32_CUDA_GEMM; fi
  timeout 75 node dist/bench/model-speed.js --model $M --device cuda --attention mqa --prefill 4096,16384 --decode-ctx '' > $OUT/model-$g.jsonl 2> $OUT/model-$g.err; echo "model $g rc $? [$(( $(date +%s)-t0 ))s]"
  cat $OUT/model-$g.jsonl
done
