#!/usr/bin/env bash
# session 18, call 9 (an H200 if lent): the indexer at s_q 4096, Fig. 3, and the mid config against the official model
set -uo pipefail
t0=$(date +%s)
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader
timeout 120 node dist/bench/dsa-indexer.js --full --out $OUT/bench-indexer-full.json > $OUT/bench-indexer-full.log 2>&1; echo "indexer --full rc $? [$(( $(date +%s)-t0 ))s]"
grep -A7 "## topkSelect" $OUT/bench-indexer-full.log | tail -3; grep -A7 "## indexerLogits" $OUT/bench-indexer-full.log | tail -5
timeout 150 node dist/bench/dsa-cost.js --csv $OUT/fig3.csv > $OUT/dsa-cost.log 2>&1; echo "dsa-cost rc $? [$(( $(date +%s)-t0 ))s]"
grep -A8 "^| context | prefill DSA" $OUT/dsa-cost.log | head -8; grep "^ratio at" $OUT/dsa-cost.log
M=/tmp/dsv32-mid
timeout 100 python3 tmp/reference/bench_ref.py --config tmp/reference/configs/mid.json --device cuda --prefill '' --decode-ctx '' --dump $M > $OUT/ref-dump.log 2>&1; echo "dump rc $? [$(( $(date +%s)-t0 ))s]"
timeout 120 python3 tmp/reference/bench_ref.py --load $M --device cuda --prefill 16384 --decode-ctx 8192,32768 --steps 16 > $OUT/model-ref.jsonl 2> $OUT/model-ref.err; echo "reference rc $? [$(( $(date +%s)-t0 ))s]"
grep -v '"setup"' $OUT/model-ref.jsonl | cut -c1-230
timeout 60 node dist/bench/model-speed.js --model $M --device cuda --attention mqa --prefill 16384 --decode-ctx '' > $OUT/model-ours.jsonl 2>&1; echo "ours prefill rc $? [$(( $(date +%s)-t0 ))s]"
cat $OUT/model-ours.jsonl | cut -c1-230
for P in 8192 32768; do
  timeout 80 node dist/bench/engine.js --device cuda --model $M --numerics bf16 --batches 1 --prompt $P --gen 64 --cuda-graphs on > $OUT/engine-$P.jsonl 2>&1; echo "engine $P rc $? [$(( $(date +%s)-t0 ))s]"
  cut -c1-420 $OUT/engine-$P.jsonl
done
