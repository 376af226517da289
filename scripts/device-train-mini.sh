#!/usr/bin/env bash
# The GPU side of dsv32-mini's training (models/dsv32-mini/README.md), run from the repository root of a
# device machine with what scripts/gpu-carry.sh staged in .gpu/ (dist, gpu-cli.mjs, pack.tar.xz,
# pack-sft.tar.xz) and node from .device/:
#   source .device/bootstrap.sh; OUT=... STAGE_SECONDS=pretrain=300,dsa=120,sft=100 [CONTINUE_PARTIAL=1] \
#     [STAGES=pretrain,dense,dsa,sft] bash scripts/device-train-mini.sh
# STAGES (default pretrain,dsa,sft) may add `dense`: the dense control of docs/dsa-reproduction.md
# (recipe/dense.json, `dsv32 train pretrain` continued from the pretraining run at the DSA stage's
# sequence length, as many steps as its sparse stage); it is compared, not shipped.
# Each stage runs `dsv32 train <stage>` again and again (each a fresh process: it resumes from the stage's
# latest checkpoint) until it reports "done" or its share of STAGE_SECONDS is spent; the machine keeps
# tmp/mini between calls while it stays warm, so a later call continues. After each stage the latest
# checkpoint is quantized (FP8, shards ≤ 15 MiB: a run returns at most 8 files of ≤ 16 MiB) into $OUT/mini
# (with its tokenizer.json: a complete model directory) and the logs into $OUT/logs.tgz, so whatever the
# run reached comes back even if it is cut short.
set -uo pipefail
: "${OUT:?set OUT to the folder whose files come back}"
T0=$(date +%s)
el() { echo $(( $(date +%s) - T0 )); }
L=/tmp/dsv32-mini-logs
mkdir -p $L tmp/mini "$OUT"
[ -d dist/src ] || tar xJf .gpu/dist.tar.xz
cp .gpu/gpu-cli.mjs dist/gpu-cli.mjs
for p in pack pack-sft; do [ -f tmp/mini/$p/pack.json ] || tar xJf .gpu/$p.tar.xz -C tmp/mini; done
R=${RECIPE:-models/dsv32-mini/recipe}
declare -A budget=([pretrain]=300 [dense]=60 [dsa]=120 [sft]=100)
IFS=',' read -ra kv <<< "${STAGE_SECONDS:-}"
for x in "${kv[@]}"; do [ -n "$x" ] && budget[${x%%=*}]=${x#*=}; done
IFS=',' read -ra stages <<< "${STAGES:-pretrain,dsa,sft}"
for st in "${stages[@]}"; do
  case "$st" in pretrain|dense|dsa|sft) ;; *) echo "device-train-mini: STAGES: unknown stage '$st' (expected pretrain, dense, dsa, sft)" >&2; exit 2 ;; esac
done
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
ship() { # the stage's latest checkpoint → FP8 in $OUT/mini, and the logs
  local d=tmp/mini/runs/$1
  [ -f $d/latest ] || return 0
  rm -rf tmp/mini/fp8
  node dist/gpu-cli.mjs quantize --model $d/$(cat $d/latest) --out tmp/mini/fp8 --shard-mb 15 | tail -1
  rm -rf "$OUT/mini" && mkdir -p "$OUT/mini"
  cp tmp/mini/fp8/*.safetensors tmp/mini/fp8/config.json tmp/mini/fp8/model.safetensors.index.json tmp/mini/fp8/tokenizer.json "$OUT/mini/"
  for s in pretrain dense dsa sft; do cp tmp/mini/runs/$s/train.jsonl $L/$s.jsonl 2>/dev/null; done
  echo "$1 $(cat $d/latest)" > $L/shipped.txt
  tar czf "$OUT/logs.tgz" -C "$(dirname $L)" "$(basename $L)"
}
for st in "${stages[@]}"; do
  kind=$st; [ $st = dense ] && kind=pretrain
  s0=$(date +%s)
  done_=0
  fails=0
  while [ $(( $(date +%s) - s0 )) -lt ${budget[$st]} ]; do
    # this process stops (checkpointed) when the stage's budget is spent, and checkpoints every ≤ 20 steps
    # so a process that dies loses little (neither changes the run's identity: resume stays exact)
    rem=$(( ${budget[$st]} - ($(date +%s) - s0) ))
    node -e 'const fs=require("fs"); const c=JSON.parse(fs.readFileSync(process.argv[1],"utf8")); c.maxSeconds=Number(process.argv[3]); c.saveEvery=Math.min(c.saveEvery??100,20); fs.writeFileSync(process.argv[2],JSON.stringify(c))' $R/$st.json /tmp/dsv32-mini-$st.json $rem
    # the log is appended across processes (and calls, while the machine stays warm): read only this
    # process's lines, so an earlier process's "done" cannot stand for a failed one
    seen=$(cat $L/$st.log 2>/dev/null | wc -l)
    node dist/gpu-cli.mjs train $kind --config /tmp/dsv32-mini-$st.json --no-progress >> $L/$st.log 2>&1
    rc=$?
    last=$(tail -n +$((seen + 1)) $L/$st.log | grep -E '^(done|stopped) at' | tail -1)
    echo "$st: rc $rc, $last ($(el) s)"
    if grep -q '^done at' <<< "$last"; then done_=1; break; fi
    if [ $rc -ne 0 ]; then
      tail -n +$((seen + 1)) $L/$st.log | grep -v '^    at ' | tail -3
      # a failure that repeats from the same checkpoint will repeat again: stop instead of looping
      fails=$((fails + 1)); [ $fails -ge 2 ] && { echo "$st: failed twice, stopping"; break; }
    else fails=0; fi
  done
  # the dense control is not shipped; its log comes back with the others
  if [ $st = dense ]; then cp tmp/mini/runs/dense/train.jsonl $L/dense.jsonl 2>/dev/null; tar czf "$OUT/logs.tgz" -C "$(dirname $L)" "$(basename $L)"; else ship $st; fi
  if [ $done_ -ne 1 ]; then
    echo "$st not finished within its ${budget[$st]} s: run this again to continue"
    # CONTINUE_PARTIAL=1: the next stage starts from this stage's latest checkpoint anyway (model.init
    # names the run directory); the default stops, so that the recipe's stages run in full
    [ "${CONTINUE_PARTIAL:-0}" = 1 ] && [ -f tmp/mini/runs/$st/latest ] || break
  fi
done
echo "== end at $(el) s"
