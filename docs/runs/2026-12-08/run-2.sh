#!/usr/bin/env bash
# session 24, call 2: docs/dsa-repro/mini-4k — dsv32-mini's dense pretraining at S 512, the dense extension
# to S 4096, then the dense and the DSA continuations at S 4096 (64 main-model steps each, 4 × 4096 tokens
# a step), held-out loss and passkey retrieval at 512–4096 tokens: every passkey length inside the context
# both continuations trained at (mini-long's DSA model fell behind only at 4096, past its 2048).
# Carries .gpu/pack.tar.xz (scripts/gpu-carry.sh --pack tmp/mini/pack).
set -uo pipefail
t0=$(date +%s)
el() { echo "[$(( $(date +%s)-t0 ))s]"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
cp .gpu/gpu-cli.mjs dist/gpu-cli.mjs
mkdir -p tmp/mini && tar xJf .gpu/pack.tar.xz -C tmp/mini
W=tmp/dsa-repro/mini-4k
DSV32_CLI=dist/gpu-cli.mjs timeout ${LIMIT:-565} bash scripts/dsa-repro.sh mini-4k --trials 8 > $OUT/repro.txt 2>&1
echo "dsa-repro mini-4k rc $? $(el)"
grep -E "^done at|held-out|^\|" $OUT/repro.txt | cut -c1-200 | tail -30
for r in dense dsa ext; do [ -f $W/$r/train.jsonl ] && cp $W/$r/train.jsonl $OUT/$r.jsonl; done
[ -f tmp/dsa-repro/mini/pretrain/train.jsonl ] && cp tmp/dsa-repro/mini/pretrain/train.jsonl $OUT/pretrain.jsonl
cp $W/losses.txt $W/passkey.txt $W/passkey-dense.json $W/passkey-dsa.json $OUT/ 2>/dev/null
echo "done $(el)"
