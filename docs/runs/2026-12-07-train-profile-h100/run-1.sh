#!/usr/bin/env bash
# session 21, call 1: where a training step's time goes. bench/train-step.js on the mid config (issue 12's
# training figure: bf16, B 2 × S 4096) and on dsv32-mini's config (its pretrain and sparse-stage shapes),
# each phase's timed steps, then one step with every op synchronised (--profile), into one file per run.
set -uo pipefail
t0=$(date +%s)
L=${LIMIT:-500}
left() { [ $(( $(date +%s) - t0 )) -lt $(( L - $1 )) ]; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
run() { # name timeout args...
  local name=$1 to=$2; shift 2
  timeout $to node dist/bench/train-step.js --device cuda "$@" > $OUT/$name.txt 2>&1
  echo "$name rc $? [$(( $(date +%s)-t0 ))s]"; grep -E "ms/step|one step with|^shape|Error" $OUT/$name.txt | cut -c1-400
}
left 120 && run mid 200 --shape mid --numerics bf16 --batch 2 --seq 4096 --steps 2 --profile
left 100 && run mini-pre 120 --config models/dsv32-mini/config.json --numerics bf16 --batch 32 --seq 512 --steps 3 --phases pretrain --profile
left 100 && run mini-dsa 120 --config models/dsv32-mini/config.json --numerics bf16 --batch 8 --seq 2048 --steps 3 --phases warmup,sparse --profile
echo "done [$(( $(date +%s)-t0 ))s]"
