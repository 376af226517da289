#!/usr/bin/env bash
# session 18, call 7: dsv32-mini's architecture (random weights, positions to 69 632) at 8K / 32K / 64K context:
# the context's chunked prefill and batch-1 decode, the reference's attention forms and the engine's MQA form
set -uo pipefail
t0=$(date +%s)
M=/tmp/mini64k
timeout 120 python3 tmp/reference/bench_ref.py --config bench/configs/dsv32-mini-64k.json --device cuda --prefill '' --decode-ctx '' --dump $M > $OUT/dump.log 2>&1; echo "dump rc $? [$(( $(date +%s)-t0 ))s]"
for a in auto mqa; do
  timeout 200 node dist/bench/model-speed.js --model $M --device cuda --attention $a --prefill '' --decode-ctx 8192,32768,65536 --steps 16 > $OUT/mini-$a.jsonl 2> $OUT/mini-$a.err; echo "model-speed $a rc $? [$(( $(date +%s)-t0 ))s]"
  cat $OUT/mini-$a.jsonl; tail -n 3 $OUT/mini-$a.err
done
