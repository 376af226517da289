#!/usr/bin/env bash
# session 22, call 3: issue 12's model figures on this card — the mid config (mid.json) against the official
# PyTorch model on the same random weights (bench_ref.py: prefill 16K, decode at 8K and 32K; ours:
# model-speed's prefill and the engine's CUDA-graph decode), then the training step (all three phases).
set -uo pipefail
t0=$(date +%s)
L=${LIMIT:-560}
left() { [ $(( $(date +%s) - t0 )) -lt $(( L - $1 )) ]; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
M=/tmp/dsv32-mid
timeout 100 python3 tmp/reference/bench_ref.py --config tmp/reference/configs/mid.json --device cuda --prefill '' --decode-ctx '' --dump $M > $OUT/ref-dump.txt 2>&1; echo "dump rc $? [$(( $(date +%s)-t0 ))s]"
timeout 130 python3 tmp/reference/bench_ref.py --load $M --device cuda --prefill 16384 --decode-ctx 8192,32768 --steps 16 > $OUT/model-ref.jsonl 2> $OUT/model-ref.err; echo "reference rc $? [$(( $(date +%s)-t0 ))s]"
grep -v '"setup"' $OUT/model-ref.jsonl | cut -c1-200
timeout 60 node dist/bench/model-speed.js --model $M --device cuda --attention mqa --prefill 16384 --decode-ctx '' > $OUT/model-ours.jsonl 2>&1; echo "ours prefill rc $? [$(( $(date +%s)-t0 ))s]"
cut -c1-230 $OUT/model-ours.jsonl
for P in 8192 32768; do
  left 150 || { echo "skip engine $P: time"; continue; }
  timeout 80 node dist/bench/engine.js --device cuda --model $M --numerics bf16 --batches 1 --prompt $P --gen 64 --cuda-graphs on > $OUT/engine-$P.jsonl 2>&1; echo "engine $P rc $? [$(( $(date +%s)-t0 ))s]"
  cut -c1-420 $OUT/engine-$P.jsonl
done
left 130 && { timeout 130 node dist/bench/train-step.js --device cuda --shape mid --numerics bf16 --batch 2 --seq 4096 --steps 3 > $OUT/mid.txt 2>&1; echo "train mid rc $? [$(( $(date +%s)-t0 ))s]"; grep -E "ms/step|Error" $OUT/mid.txt | cut -c1-330; }
echo "done [$(( $(date +%s)-t0 ))s]"
