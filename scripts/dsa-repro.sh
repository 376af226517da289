#!/usr/bin/env bash
# The paper's DSA claim at small scale, as docs/dsa-reproduction.md's Run 3 sets it up (its recipe:
# docs/dsa-repro/RECIPE/*.json):
#   1. dense pretraining at a short context;
#   2. a dense context extension to the long context L — the paper's dense model was already trained at
#      128K, so the switch to sparse attention is not also the first sight of long positions;
#   3. from that one checkpoint, two continuations over the same number of main-model tokens:
#        dense: dense attention;
#        dsa:   the dense warm-up (main model frozen, indexers on the KL to the head-summed attention),
#               then the sparse stage (top-k attention; LM loss for the main model, the indexers' KL over
#               the selected keys). Its cosine schedule's own warm-up spans the DSA warm-up, so the sparse
#               stage runs the dense continuation's learning rates step for step.
#   4. held-out LM loss of both (each run's last eval line: the same validation rows), and passkey
#      retrieval (the mini recipes only): the dense model with dense attention, the DSA model with sparse attention.
# usage (from the repository root, after the build and `bash scripts/train-mini.sh --data-only`):
#   bash scripts/dsa-repro.sh mini [--trials N]    # GPU when usable (~6 min on an H200)
#   bash scripts/dsa-repro.sh mini-long            # both continuations twice as long (128 main-model steps)
#   bash scripts/dsa-repro.sh mini-4k              # mini with the extension and both continuations at S 4096
#                                                  # (4 rows a step: the same tokens), so every passkey length is in context
#   bash scripts/dsa-repro.sh toy                  # the 2.67 M-parameter model on the CPU (~30 min, 2 cores)
#   bash scripts/dsa-repro.sh toy-long             # toy's two continuations twice as long, from toy's extension
# Every stage resumes from its checkpoint when run again; a finished stage is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
recipe=${1:-}
[ -n "$recipe" ] && [ -f "docs/dsa-repro/$recipe/dsa.json" ] || { echo "dsa-repro: the first argument must name a recipe of docs/dsa-repro ($(ls docs/dsa-repro | tr '\n' ' ')), got '${recipe}'" >&2; exit 2; }
trials=8
if [ $# -ge 2 ]; then
  [ "$2" = --trials ] && [ $# -eq 3 ] && [[ "$3" =~ ^[1-9][0-9]*$ ]] || { echo "dsa-repro: after the recipe only --trials N (a positive integer) is accepted" >&2; exit 2; }
  trials=$3
fi
R=docs/dsa-repro/$recipe
W=tmp/dsa-repro/$recipe
[ -f tmp/mini/pack/pack.json ] || { echo "dsa-repro: tmp/mini/pack/pack.json is missing: run 'bash scripts/train-mini.sh --data-only' first" >&2; exit 1; }
[ -f "${DSV32_CLI:-dist/src/cli/main.js}" ] || { echo "dsa-repro: ${DSV32_CLI:-dist/src/cli/main.js} is missing: build first (npm run build)" >&2; exit 1; }
# DSV32_CLI: the dsv32 entry (default dist/src/cli/main.js; on a device machine .gpu/gpu-cli.mjs copied to
# dist/gpu-cli.mjs by scripts/gpu-carry.sh, which carries only what training needs)
dsv32() { node "${DSV32_CLI:-dist/src/cli/main.js}" "$@"; }
stage() { # STAGE NAME: run docs/dsa-repro/RECIPE/NAME.json to its end (each invocation stops after maxSeconds)
  while :; do
    out=$(dsv32 train "$1" --config "$R/$2.json" --no-progress) || { echo "dsa-repro: dsv32 train $1 --config $R/$2.json failed" >&2; exit 1; }
    echo "$out" | tail -1
    grep -q '^done at' <<<"$out" && break
  done
}
stage pretrain pretrain
stage pretrain ext
stage pretrain dense
stage dsa dsa
# the held-out LM loss of each continuation's last evaluation (dense attention for dense, sparse for dsa):
# the same validation rows, which the data seed picks (the extension's, another seed, are not comparable)
node -e '
  const fs = require("fs");
  const last = (run) => fs.readFileSync(run + "/train.jsonl", "utf8").trim().split("\n").map((l) => JSON.parse(l)).filter((r) => r.phase === "eval").pop();
  const [W] = process.argv.slice(1);
  const r = {};
  for (const run of ["dense", "dsa"]) { const e = last(W + "/" + run); r[run] = { step: e.step, val_lm: e.val_lm, val_indexer: e.val_indexer }; }
  r.gap = r.dsa.val_lm / r.dense.val_lm - 1;
  console.log(JSON.stringify(r));
  console.log(`held-out LM loss: dense continuation ${r.dense.val_lm.toFixed(4)}, DSA ${r.dsa.val_lm.toFixed(4)}: DSA is ${(100 * r.gap).toFixed(2)}% ${r.gap >= 0 ? "worse" : "better"}`);
' "$W" | tee "$W/losses.txt"
if [[ "$recipe" == mini* ]]; then
  pk="--lengths 512,1024,2048,4096 --depths 0,0.25,0.5,0.75,1 --trials $trials --seed 1"
  node dist/bench/passkey.js --model "$W/dense" $pk --attention dense --json "$W/passkey-dense.json" | tee "$W/passkey.txt"
  node dist/bench/passkey.js --model "$W/dsa" $pk --attention sparse --json "$W/passkey-dsa.json" | tee -a "$W/passkey.txt"
fi
