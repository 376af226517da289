#!/usr/bin/env bash
# session 18, call 8: dsv32-mini's architecture at 8K / 32K / 64K: the engine's CUDA-graph decode (TPOT) and
# prefill (TTFT of one prompt), and the chunked prefill again with a warm-up context first
set -uo pipefail
t0=$(date +%s)
M=/tmp/mini64k
timeout 120 python3 tmp/reference/bench_ref.py --config bench/configs/dsv32-mini-64k.json --device cuda --prefill '' --decode-ctx '' --dump $M > $OUT/dump.log 2>&1; echo "dump rc $? [$(( $(date +%s)-t0 ))s]"
for P in 8192 32768 65536; do
  timeout 120 node dist/bench/engine.js --device cuda --model $M --numerics bf16 --batches 1 --prompt $P --gen 64 --cuda-graphs on > $OUT/engine-$P.jsonl 2> $OUT/engine-$P.err; echo "engine prompt $P rc $? [$(( $(date +%s)-t0 ))s]"
  cat $OUT/engine-$P.jsonl; tail -n 2 $OUT/engine-$P.err
done
timeout 150 node dist/bench/model-speed.js --model $M --device cuda --attention mqa --prefill '' --decode-ctx 4096,8192,32768,65536 --steps 16 > $OUT/mini-mqa.jsonl 2> $OUT/mini-mqa.err; echo "model-speed mqa rc $? [$(( $(date +%s)-t0 ))s]"
cat $OUT/mini-mqa.jsonl; tail -n 2 $OUT/mini-mqa.err
