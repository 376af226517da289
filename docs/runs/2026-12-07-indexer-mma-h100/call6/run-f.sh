#!/usr/bin/env bash
# session 18, call 6: issue 12's decode targets with the fused indexer on by default: the official model's
# batch-1 decode at 8K and 32K against our engine's CUDA-graph decode, and the eager step's roofline ratio
set -uo pipefail
t0=$(date +%s)
M=/tmp/dsv32-mid
timeout 120 python3 tmp/reference/bench_ref.py --config tmp/reference/configs/mid.json --device cuda --prefill '' --decode-ctx '' --dump $M > $OUT/ref-dump.log 2>&1; echo "dump rc $? [$(( $(date +%s)-t0 ))s]"
timeout 150 python3 tmp/reference/bench_ref.py --load $M --device cuda --prefill '' --decode-ctx 8192,32768 --steps 16 > $OUT/model-ref.jsonl 2> $OUT/model-ref.err; echo "reference rc $? [$(( $(date +%s)-t0 ))s]"
grep -v '"setup"' $OUT/model-ref.jsonl; tail -n 2 $OUT/model-ref.err
for P in 8192 32768; do
  timeout 100 node dist/bench/engine.js --device cuda --model $M --numerics bf16 --batches 1 --prompt $P --gen 64 --cuda-graphs on > $OUT/engine-$P.jsonl 2> $OUT/engine-$P.err; echo "engine prompt $P rc $? [$(( $(date +%s)-t0 ))s]"
  cat $OUT/engine-$P.jsonl; tail -n 2 $OUT/engine-$P.err
done
timeout 90 node dist/bench/model-speed.js --model $M --device cuda --prefill '' --decode-ctx 8192,32768 --steps 16 > $OUT/model-ours.jsonl 2> $OUT/model-ours.err; echo "model-speed decode rc $? [$(( $(date +%s)-t0 ))s]"
cat $OUT/model-ours.jsonl; tail -n 2 $OUT/model-ours.err
