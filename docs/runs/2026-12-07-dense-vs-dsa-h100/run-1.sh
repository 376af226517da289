#!/usr/bin/env bash
# session 20, call 1: dense attention on the inference path (causalSelect, StepOptions.dense). The new op's
# and the dense model's tests on cpu + cuda; dsv32-mini's architecture (random weights, positions to
# 69 632) at 8K / 32K / 64K, DSA against dense attention on the same weights and kernels, MQA form for both:
# the engine's one-prompt TTFT and CUDA-graph TPOT, and the chunked prefill (model-speed); then Fig. 3
# (dsa-cost) with the shipped wgmma sparse MLA kernel.
set -uo pipefail
export DSV32_FIXTURES=$PWD/tmp/fixtures
mkdir -p ../shared 2>/dev/null && ln -sfn "$PWD/tmp/fixtures" ../shared/fixtures 2>/dev/null
t0=$(date +%s)
L=${LIMIT:-500}  # the call's time limit (s): the later steps start only while their time is left
left() { [ $(( $(date +%s) - t0 )) -lt $(( L - $1 )) ]; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
DSV32_TEST_DEVICES=cpu,cuda timeout 150 node --import ./dist/src/backend/cuda/index.js --test --test-reporter=tap dist/test/tensor/dsa-indexer.test.js dist/test/model/dense-attention.test.js dist/test/engine/engine-model.test.js > $OUT/t-dense.log 2>&1
echo "tests cpu+cuda rc $? $(grep -E '^# (pass|fail|skipped)' $OUT/t-dense.log | tr '\n' ' ') [$(( $(date +%s)-t0 ))s]"
grep -E '^\s*not ok|AssertionError|Error:' $OUT/t-dense.log | head -12
M=/tmp/mini64k
timeout 120 python3 tmp/reference/bench_ref.py --config bench/configs/dsv32-mini-64k.json --device cuda --prefill '' --decode-ctx '' --dump $M > $OUT/dump.log 2>&1; echo "dump rc $? [$(( $(date +%s)-t0 ))s]"
for P in 8192 32768 65536; do
  for K in dsa dense; do
    left 200 || { echo "skip engine $K $P: time"; continue; }
    flag=$([ $K = dense ] && echo --dense)
    timeout 90 node dist/bench/engine.js --device cuda --model $M --numerics bf16 --attention mqa --batches 1 --prompt $P --gen 64 --cuda-graphs on $flag > $OUT/engine-$K-$P.jsonl 2> $OUT/engine-$K-$P.err
    echo "engine $K prompt $P rc $? [$(( $(date +%s)-t0 ))s]"
    cat $OUT/engine-$K-$P.jsonl | cut -c1-900; tail -n 2 $OUT/engine-$K-$P.err
  done
done
for K in dsa dense; do
  left 160 || { echo "skip model-speed $K: time"; continue; }
  flag=$([ $K = dense ] && echo --dense)
  timeout 80 node dist/bench/model-speed.js --model $M --device cuda --attention mqa --prefill '' --decode-ctx 4096,8192,32768,65536 --steps 16 $flag > $OUT/speed-$K.jsonl 2> $OUT/speed-$K.err
  echo "model-speed $K rc $? [$(( $(date +%s)-t0 ))s]"
  cat $OUT/speed-$K.jsonl; tail -n 2 $OUT/speed-$K.err
done
left 80 && { timeout 60 node dist/bench/dsa-cost.js --csv $OUT/fig3.csv > $OUT/dsa-cost.log 2>&1; echo "dsa-cost rc $? [$(( $(date +%s)-t0 ))s]"; tail -14 $OUT/dsa-cost.log; }
echo "done [$(( $(date +%s)-t0 ))s]"
