#!/usr/bin/env bash
# dsv32-mini from nothing to the shipped FP8 checkpoint, every step a dsv32 command (models/dsv32-mini/
# README.md is the model card). Run from the repository root after `npm start`/`npm test` built dist/:
#   bash scripts/train-mini.sh            # work files under tmp/mini (the recipe configs name these paths)
#   bash scripts/train-mini.sh --data-only   # corpus, tokenizer and packs only (e.g. to carry to a GPU machine)
# Every step is resumable: a built corpus, tokenizer or pack is reused when it is up to date, a training
# stage continues from its latest checkpoint (a stage stops after the config's maxSeconds — one GPU
# command's budget — and this script simply runs it again until it reports "done"). Training runs on the
# GPU when one is usable (config device "auto"), else on the CPU (very slowly at this size).
set -euo pipefail
case "${1:-}" in ''|--data-only) ;; *) echo "train-mini: unknown argument '$1' (expected none, or --data-only)" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."
W=tmp/mini
R=models/dsv32-mini/recipe
dsv32() { node dist/src/cli/main.js "$@"; }
mkdir -p $W
# 1. data: the pretraining corpus (text + synthetic chat), its tokenizer, the packs; the SFT corpus is
#    chat only, from another seed (different problems; the held-out 5% of arithmetic never appears)
#    (passkey: retrieval practice, documents of 512–8192 characters with a key to recall, for the
#    long-context evaluation of docs/dsa-reproduction.md)
dsv32 data build --out $W/corpus --seed 0 --sources sotu,moby-dick,arithmetic,tool-chat,env-trajectories,passkey \
  --max-bytes 40000000 --weights arithmetic=40,tool-chat=10,env-trajectories=4,sotu=11,moby-dick=1.2,passkey=3
# the tokenizer is the model's vocabulary: kept once trained (delete it to train another)
[ -f $W/tokenizer.json ] || dsv32 data tokenizer --corpus $W/corpus --vocab 8192 --out $W/tokenizer.json
# a pack is rebuilt when its corpus or the tokenizer changed (pack.json records both hashes)
packed() { [ -f "$2/pack.json" ] && node -e 'const f=require("fs"), h=require("crypto").createHash("sha256"); const p=JSON.parse(f.readFileSync(process.argv[1]+"/pack.json","utf8")); process.exit(p.corpusSha256===JSON.parse(f.readFileSync(process.argv[2]+"/manifest.json","utf8")).corpusSha256 && p.tokenizerSha256===h.update(f.readFileSync(process.argv[3])).digest("hex")?0:1)' "$2" "$1" $W/tokenizer.json; }
pack() { packed "$1" "$2" || { rm -rf "$2"; dsv32 data pack --corpus "$1" --tokenizer $W/tokenizer.json --out "$2"; }; }
pack $W/corpus $W/pack
dsv32 data build --out $W/corpus-sft --seed 1 --sources arithmetic,tool-chat --max-bytes 12000000 --weights arithmetic=3,tool-chat=1
pack $W/corpus-sft $W/pack-sft
[ "${1:-}" = --data-only ] && { echo "train-mini: data ready in $W (pack, pack-sft)"; exit 0; }
# 2. training: dense pretraining, DSA continued pre-training (dense warm-up, then sparse), SFT (GRPO: step 4)
for stage in pretrain dsa sft; do
  while :; do
    out=$(dsv32 train $stage --config $R/$stage.json --no-progress) || { echo "train-mini: dsv32 train $stage failed" >&2; exit 1; }
    echo "$out"
    grep -q '^done at' <<<"$out" && break
  done
done
# 3. the SFT model in the shipped form: FP8 e4m3 linears with 128×128 block scales, shards of ≤ 16 MB
last=$W/runs/sft
[ -f $W/sft-fp8/config.json ] || dsv32 quantize --model $last/$(cat $last/latest) --out $W/sft-fp8
# 4. GRPO (recipe/grpo.json, docs/rl.md) on the arithmetic family, 256 training and 64 held-out problems,
#    from the SFT model without its MTP layer (GRPO trains the main model only); the policy then gets the
#    SFT model's MTP layer back
[ -f $W/envs/arithmetic-s11/manifest.json ] || dsv32 env generate arithmetic --seed 11 --tasks 320 --out $W/envs/arithmetic-s11
[ -f $W/sft-nomtp/config.json ] || node scripts/mtp-layers.mjs strip --model $W/sft-fp8 --out $W/sft-nomtp
node -e 'const fs=require("fs"); const [base,out,model,env,dir]=process.argv.slice(1); const c=JSON.parse(fs.readFileSync(base,"utf8")); if (c.eval && c.eval.path===c.env.path) c.eval.path=env; c.model=model; c.env.path=env; c.out=dir; fs.writeFileSync(out, JSON.stringify(c, null, 1))' \
  $R/grpo.json $W/grpo.json $W/sft-nomtp $W/envs/arithmetic-s11 $W/runs/grpo
while :; do
  out=$(dsv32 rl --config $W/grpo.json --max-seconds 540 --no-progress) || { echo "train-mini: dsv32 rl failed" >&2; exit 1; }
  echo "$out"
  grep -q '^done at' <<<"$out" && break
done
rm -rf $W/grpo-fp8 $W/shipped
dsv32 quantize --model $W/runs/grpo/$(cat $W/runs/grpo/latest) --out $W/grpo-fp8
node scripts/mtp-layers.mjs attach --model $W/grpo-fp8 --mtp-from $W/sft-fp8 --out $W/shipped
# the model card (README.md) and the recipe stay; the checkpoint's files are replaced
M=models/dsv32-mini
rm -f $M/*.safetensors $M/model.safetensors.index.json $M/config.json $M/tokenizer.json
cp $W/shipped/* $M/
echo "train-mini: models/dsv32-mini written; evaluate with: node dist/bench/arithmetic-eval.js --n 20"
