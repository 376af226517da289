#!/usr/bin/env bash
# The GPU side of dsv32-mini's GRPO stage and of the stabilizer ablation (docs/rl.md), run from the
# repository root of a device machine with what scripts/gpu-carry.sh staged in .gpu/ (dist, gpu-cli.mjs,
# the model as <name>.tar.xz, the environment as <name>.tar.xz) and node from .device/:
#   source .device/bootstrap.sh; OUT=... MODEL=dsv32-mini-nomtp ENV=arithmetic-s11 RUN_SECONDS=540 \
#     [CONFIG=models/dsv32-mini/recipe/grpo.json] [SOLO_SECONDS=60] [RUNS="all no-kl-unbiased no-opsm no-routing no-mask"] [SHIP=all] bash scripts/device-rl.sh
# Every run is `dsv32 rl` on models/dsv32-mini/recipe/grpo.json (its model and env, and its evaluation where
# it uses the env's directory, pointed at the carried copies) with one switch changed:
#   all             every stabilizer on (this run is the recipe's GRPO stage)
#   no-kl-unbiased  use_unbiased_kl false: the KL term's plain k3 instead of Eq. 7's r·k3
#   no-opsm         use_opsm false
#   no-routing      use_rollout_routing_replay false (the routes are still recorded and compared)
#   no-mask         use_sampling_mask false: π_θ and π_old over the full vocabulary
# SOLO_SECONDS: `all` first runs alone (its rollout and training tokens/s uncontended), then every run of
# RUNS runs at once, one process each, sharing the GPU, until RUN_SECONDS (from the start of this script)
# are nearly spent (as many at once as the GPU's memory holds: RUN_GIB, default 22, each). Each process checkpoints and stops on --max-seconds, so a later call on the same warm
# machine continues every run (tmp/gpu stays while the machine is held). The logs (rl.jsonl, and eval.jsonl
# where the config evaluates) come back as $OUT/rl-logs.tgz; SHIP=<run> also quantizes that run's latest checkpoint into $OUT/policy (FP8 shards
# ≤ 15 MiB, config, index: a run returns at most 8 files).
set -uo pipefail
: "${OUT:?set OUT to the folder whose files come back}"
: "${MODEL:?set MODEL to the carried model directory name (.gpu/MODEL.tar.xz)}"
: "${ENV:?set ENV to the carried environment directory name (.gpu/ENV.tar.xz)}"
T0=$(date +%s)
el() { echo $(( $(date +%s) - T0 )); }
RUN_SECONDS=${RUN_SECONDS:-540}
CONFIG=${CONFIG:-models/dsv32-mini/recipe/grpo.json}
SOLO_SECONDS=${SOLO_SECONDS:-0}
RUNS=${RUNS:-all no-kl-unbiased no-opsm no-routing no-mask}
G=tmp/gpu
L=/tmp/dsv32-rl-logs
mkdir -p $G/runs $L "$OUT"
[ -d dist/src ] || tar xJf .gpu/dist.tar.xz
cp .gpu/gpu-cli.mjs dist/gpu-cli.mjs
for d in "$MODEL" "$ENV"; do
  [ -e $G/$d ] && continue
  [ -f .gpu/$d.tar.xz ] || { echo "device-rl: .gpu/$d.tar.xz is missing (scripts/gpu-carry.sh --model/--env)" >&2; exit 2; }
  tar xJf .gpu/$d.tar.xz -C $G
done
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
echo "setup done at $(el) s"

override() {
  case $1 in
    all) echo '{}' ;;
    no-kl-unbiased) echo '{"use_unbiased_kl": false}' ;;
    no-opsm) echo '{"use_opsm": false}' ;;
    no-routing) echo '{"use_rollout_routing_replay": false}' ;;
    no-mask) echo '{"use_sampling_mask": false}' ;;
    *) echo "device-rl: RUNS: unknown run '$1' (expected all, no-kl-unbiased, no-opsm, no-routing, no-mask)" >&2; exit 2 ;;
  esac
}
for r in $RUNS; do
  o=$(override $r) || exit 2
  node -e 'const fs=require("fs"); const [base,out,model,env,dir,over]=process.argv.slice(1); const c=JSON.parse(fs.readFileSync(base,"utf8")); if (c.eval && c.eval.path===c.env.path) c.eval.path=env; c.model=model; c.env.path=env; c.out=dir; Object.assign(c, JSON.parse(over)); fs.writeFileSync(out, JSON.stringify(c, null, 1))' \
    $CONFIG $G/cfg-$r.json $G/$MODEL $G/$ENV $G/runs/$r "$o"
done

# one run, in the background, until `until` seconds after T0 less a step's margin; its output appended to $L/<run>.log
launch() {
  local r=$1 until=$2 margin=$3
  local secs=$(( until - $(el) - margin ))
  [ $secs -ge 5 ] || { echo "$r: no time left"; return 0; }
  echo "== $r: from $(el) s for ≤ $secs s (+ its last step) ==" >> $L/$r.log
  node dist/gpu-cli.mjs rl --config $G/cfg-$r.json --max-seconds $secs --no-progress >> $L/$r.log 2>&1 &
  echo "$! $r" >> $L/pids
}
report() { # the last line of each run's log, and its step count
  for r in $RUNS; do
    printf '%-15s %3s steps  %s\n' "$r" "$(cat $G/runs/$r/rl.jsonl 2>/dev/null | wc -l)" "$(grep -v '^    at ' $L/$r.log 2>/dev/null | tail -1 | cut -c1-150)"
  done
}
pack() {
  for r in $RUNS; do
    cp $G/runs/$r/rl.jsonl $L/$r.jsonl 2>/dev/null
    cp $G/runs/$r/eval.jsonl $L/$r.eval.jsonl 2>/dev/null
  done
  tar czf "$OUT/rl-logs.tgz" -C "$(dirname $L)" "$(basename $L)"
}

# wait for the background runs; past `deadline` seconds after T0 kill them (each loses only its step in
# flight: the checkpoints stay) so that the logs are packed before the call's limit
settle() {
  while [ -n "$(jobs -pr)" ]; do
    if [ $(el) -ge $1 ]; then echo "killing the runs still going at $(el) s"; kill $(jobs -pr) 2>/dev/null; sleep 3; break; fi
    sleep 3
  done
  wait
}
# each process's GPU memory every 5 s (nvidia-smi's per-process use: the caching allocator's high-water
# mark); not a job of this shell, so settle() does not wait for it
( while true; do nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits 2>/dev/null | sed "s/^/$(date +%s), /" >> $L/gpu-mem.csv; sleep 5; done ) &
MEMPID=$!
disown $MEMPID
mempeak() { # the peak MiB of each run's processes, this call
  [ -f $L/pids ] && [ -f $L/gpu-mem.csv ] || return 0
  while read -r pid r; do
    printf '%-15s peak %6s MiB (pid %s)\n' "$r" "$(awk -F', *' -v p=$pid '$2 == p && $3 > m { m = $3 } END { print m + 0 }' $L/gpu-mem.csv)" "$pid"
  done < $L/pids
}
if [ "$SOLO_SECONDS" -gt 0 ] && ! [ -f $G/runs/all/latest ]; then
  launch all $SOLO_SECONDS 0
  settle $(( SOLO_SECONDS + 120 ))
  echo "solo done at $(el) s"; report; mempeak
  # a run that cannot finish one step alone will not finish one beside four others
  [ -f $G/runs/all/latest ] || { echo "device-rl: the solo run made no checkpoint; stopping"; kill $MEMPID; pack; exit 1; }
fi
# every run at once; the margin leaves time for the step running at the deadline, the checkpoint, the pack
# as many runs as the GPU's memory holds at RUN_GIB each (without micro-batches a run of recipe/grpo.json
# held 20 GiB on an H100 and 29–33 GiB on an H200 when 5 at once ran out of memory on both; the recipe's
# micro_batch_size 4 should need far less: mempeak prints what each run held); the rest wait for another call
mem=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits 2>/dev/null | head -1)
par=$(( (${mem:-81920} / 1024 - 6) / ${RUN_GIB:-22} )); [ $par -ge 1 ] || par=1
n=0
for r in $RUNS; do
  n=$((n + 1))
  if [ $n -le $par ]; then launch $r $RUN_SECONDS 100; else echo "$r: not started ($par runs fit this GPU's memory)"; fi
done
settle $(( RUN_SECONDS + 15 ))
echo "runs stopped at $(el) s"
kill $MEMPID 2>/dev/null
report
mempeak
pack
if [ -n "${SHIP:-}" ] && [ -f $G/runs/$SHIP/latest ]; then
  rm -rf $G/fp8 "$OUT/policy"
  node dist/gpu-cli.mjs quantize --model $G/runs/$SHIP/$(cat $G/runs/$SHIP/latest) --out $G/fp8 --shard-mb 15 | tail -1
  mkdir -p "$OUT/policy"
  cp $G/fp8/*.safetensors $G/fp8/config.json $G/fp8/model.safetensors.index.json "$OUT/policy/"
  echo "$SHIP $(cat $G/runs/$SHIP/latest)" > "$OUT/policy/shipped.txt"
fi
echo "== end at $(el) s"
