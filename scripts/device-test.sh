#!/usr/bin/env bash
# The one script a GPU run executes, from the repository root, with a prebuilt dist/ (tsc output and
# dist/kernels/*.cubin) and node_modules holding koffi. Nothing is compiled here except the cuBLASLt
# constants, which are generated from this machine's cublasLt.h (a C probe built with its cc).
#   OUT=/some/dir bash scripts/device-test.sh [tests|bench|all|model|train|gemm]
# (gemm: the DSA ops' tests on each CUDA path, the model's and the engine's CUDA tests with every GEMM path
#  on (DSV32_CUDA_GEMM=all: the fused wgmma indexer included), and bench/dsa-train.ts; train: NUMERICS=bf16 and DSV32_CUDA_GEMM pass through)
# (model: the official reference and bench/model-speed.ts + bench/engine.ts on the mid config's random weights;
#  needs a copy of ../shared/reference in tmp/reference, carried; PART=ref|ours splits it over two calls)
# Logs and JSON go to $OUT; a short table is printed last.
set -uo pipefail
what=${1:-all}
case "$what" in tests|bench|all|model|train|gemm) ;; *) echo "device-test: unknown mode '$what' (expected tests, bench, all, model, train or gemm)" >&2; exit 2 ;; esac
OUT=${OUT:-/tmp/dsv32-device-out}
mkdir -p "$OUT"
if ! command -v node >/dev/null 2>&1 && [ -f .device/bootstrap.sh ]; then source .device/bootstrap.sh; fi
command -v node >/dev/null || { echo "device-test: node not found (run ../shared/device/prepare.sh and carry .device)"; exit 2; }
[ -d dist/kernels ] || { echo "device-test: dist/kernels missing: run npm run build && npm run kernels before carrying dist"; exit 2; }
echo "== $(date -u +%FT%TZ) node $(node -v)"
# Golden fixtures: the tests read ../shared/fixtures relative to the repository root. A GPU machine
# without that checkout gets them from a copy carried in tmp/fixtures (git-ignored); see docs/gpu.md.
if [ ! -d ../shared/fixtures ] && [ -d tmp/fixtures ]; then
  mkdir -p ../shared 2>/dev/null && ln -sfn "$PWD/tmp/fixtures" ../shared/fixtures 2>/dev/null \
    || echo "device-test: cannot link ../shared/fixtures (parent not writable); fixture tests will skip or fail"
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv,noheader 2>&1 | head -2

# cuBLASLt constants from the real header here; the .ts comes back to be committed, the .js twin is used now
GEN_HOST_NOTE="the H200 test machine ($(date -u +%F))" node scripts/gen-cuda-consts.mjs --lib cublaslt \
  --out "$OUT/cublaslt-consts.ts" --js-out dist/src/backend/cuda/cublaslt-consts.js 2>&1 | tee "$OUT/gen.log"

summary=()
if [ "$what" = all ] || [ "$what" = tests ]; then
  # the stress test repeats the ops that once failed intermittently (DSV32_CUDA_STRESS rounds)
  DSV32_CUDA_STRESS=${DSV32_CUDA_STRESS:-300} timeout 240 node --test --test-reporter=tap dist/test/cuda/*.test.js $(ls dist/test/mock/*.test.js 2>/dev/null) > "$OUT/test-cuda.log" 2>&1
  summary+=("cuda tests: $(grep -E '^# (pass|fail|skipped)' "$OUT/test-cuda.log" | tr '\n' ' ')")
  # the kernel-vs-cpu suite again, fresh random inputs each time (intermittent failures show up here)
  for i in $(seq 1 "${DSV32_OPS_REPEAT:-3}"); do
    timeout 120 node --test --test-reporter=tap dist/test/cuda/ops.test.js > "$OUT/test-ops-$i.log" 2>&1
    summary+=("ops repeat $i: $(grep -E '^# (pass|fail)' "$OUT/test-ops-$i.log" | tr '\n' ' ')")
  done
  # the backend-agnostic tensor suite with 'cuda' registered: tests written per device run on both
  DSV32_TEST_DEVICES=cpu,cuda timeout 150 node --import ./dist/src/backend/cuda/index.js --test --test-reporter=tap dist/test/tensor/*.test.js > "$OUT/test-tensor.log" 2>&1
  summary+=("tensor tests (cpu+cuda): $(grep -E '^# (pass|fail|skipped)' "$OUT/test-tensor.log" | tr '\n' ' ')")
  # the one model path on cuda (weights, caches, every step there) against the official goldens, and its
  # ragged engine-shaped steps against each sequence alone
  [ -d tmp/fixtures ] && export DSV32_FIXTURES=${DSV32_FIXTURES:-$PWD/tmp/fixtures}
  timeout 200 node --test --test-reporter=tap --test-name-pattern="on cuda" dist/test/model/devices.test.js dist/test/model/ragged.test.js > "$OUT/test-model.log" 2>&1
  summary+=("model device tests: $(grep -E '^# (pass|fail|skipped)' "$OUT/test-model.log" | tr '\n' ' ')")
fi
if [ "$what" = all ] || [ "$what" = bench ]; then
  PYTHONUNBUFFERED=1 timeout 150 python3 bench/cuda_ref.py > "$OUT/torch-ref.json" 2> "$OUT/torch-ref.err" || echo "torch reference failed: $(tail -3 "$OUT/torch-ref.err")"
  timeout 150 node dist/bench/cuda-bench.js --torch "$OUT/torch-ref.json" --out "$OUT/bench-cuda.json" > "$OUT/bench.log" 2>&1 || echo "bench exited $?"
fi
if [ "$what" = all ] || [ "$what" = train ]; then
  # one dsv32-mini training step per phase, timed, then again with every op timed (docs/gpu.md's profile)
  node -e 'const c=require("./models/dsv32-mini/recipe/pretrain.json").model.config; require("fs").writeFileSync("/tmp/dsv32-mini-config.json", JSON.stringify(c))'
  tag=${NUMERICS:-f32}-gemm-${DSV32_CUDA_GEMM:-default}
  prof=$([ "${PROFILE:-1}" = 1 ] && echo --profile)
  timeout 120 node dist/bench/train-step.js --config /tmp/dsv32-mini-config.json --device cuda --numerics ${NUMERICS:-f32} --batch 32 --seq 512 --steps 2 $prof --phases pretrain > "$OUT/profile-pretrain-$tag.txt" 2>&1
  timeout 150 node dist/bench/train-step.js --config /tmp/dsv32-mini-config.json --device cuda --numerics ${NUMERICS:-f32} --batch 8 --seq 2048 --steps 2 $prof --phases warmup,sparse > "$OUT/profile-dsa-$tag.txt" 2>&1
  summary+=("train steps (dsv32-mini, $tag): $(grep -hE '^(pretrain|warmup|sparse) ' "$OUT"/profile-*-$tag.txt | tr -s ' ' | tr '\n' ';')")
fi
if [ "$what" = gemm ]; then
  # each path of every DSA op against the CPU backend (the test bodies set each path: test/tensor/gemm-paths.ts,
  # and the indexer's three in dsa-indexer.test.ts)
  DSV32_TEST_DEVICES=cpu,cuda timeout 200 node --import ./dist/src/backend/cuda/index.js --test --test-reporter=tap \
    dist/test/tensor/sparse-mla-backward.test.js dist/test/tensor/indexer-train.test.js dist/test/tensor/sparse-mla.test.js dist/test/tensor/dsa-indexer.test.js > "$OUT/test-gemm-ops.log" 2>&1
  summary+=("DSA ops, each path (cpu+cuda): $(grep -E '^# (pass|fail|skipped)' "$OUT/test-gemm-ops.log" | tr '\n' ' ')")
  # the model against the goldens and the engine, on cuda, with every GEMM path on (the fused indexer included)
  [ -d tmp/fixtures ] && export DSV32_FIXTURES=${DSV32_FIXTURES:-$PWD/tmp/fixtures}
  DSV32_CUDA_GEMM=all timeout 240 node --test --test-reporter=tap --test-name-pattern="cuda|CUDA" dist/test/model/devices.test.js dist/test/model/ragged.test.js \
    dist/test/engine/engine-model.test.js dist/test/engine/engine-graphs.test.js > "$OUT/test-gemm-model.log" 2>&1
  summary+=("model + engine on cuda, DSV32_CUDA_GEMM=all: $(grep -E '^# (pass|fail|skipped)' "$OUT/test-gemm-model.log" | tr '\n' ' ')")
  timeout 200 node dist/bench/dsa-train.js --out "$OUT/dsa-train.json" > "$OUT/dsa-train.log" 2>&1 || echo "dsa-train bench exited $?"
  cat "$OUT/dsa-train.log"
fi
if [ "$what" = model ] && [ -d tmp/reference ]; then
  # whole-model speed on the same random weights: the official reference dumps the mid config as a Hugging
  # Face checkpoint (bf16), then both run prefill and decode on it (bench/model-speed.ts has the JSON lines);
  # then decode at batch 1, 16 and 64: the reference's loop (--batch B, context DECODE_B) against our engine
  # (bench/engine.ts: B requests of DECODE_B-token prompts, GEN tokens each (128: at B 64 the engine's
  # chunked prefills interleave with the first decodes, so short generations understate its decode rate),
  # graphs off and on). PART=ref|ours|all splits it
  # over two calls on a warm machine (the dump in /tmp stays).
  M=/tmp/dsv32-mid
  part=${PART:-all}
  [ -f $M/config.json ] || timeout 200 python3 tmp/reference/bench_ref.py --config tmp/reference/configs/mid.json --device cuda \
    --prefill '' --decode-ctx '' --dump $M > "$OUT/ref-dump.log" 2>&1
  if [ "$part" != ours ]; then
    timeout 200 python3 tmp/reference/bench_ref.py --load $M --device cuda --prefill ${PREFILL:-1024,4096} --decode-ctx ${DECODE:-1024,8192} \
      --steps 16 > "$OUT/model-ref.jsonl" 2> "$OUT/model-ref.err"
    for B in 16 64; do
      timeout 150 python3 tmp/reference/bench_ref.py --load $M --device cuda --batch $B --prefill '' --decode-ctx ${DECODE_B:-1024} \
        --steps 16 >> "$OUT/model-ref.jsonl" 2>> "$OUT/model-ref.err"
    done
    summary+=("reference: $(grep -c what "$OUT/model-ref.jsonl" 2>/dev/null) lines")
    grep -v '"setup"' "$OUT/model-ref.jsonl" 2>/dev/null; tail -n 3 "$OUT/model-ref.err"
  fi
  if [ "$part" != ref ]; then
    timeout 200 node dist/bench/model-speed.js --model $M --device cuda --prefill ${PREFILL:-1024,4096} --decode-ctx ${DECODE:-1024,8192} \
      --steps 16 --profile > "$OUT/model-ours.jsonl" 2> "$OUT/model-ours.err"
    # the absorbed (MQA) form the engine runs, where the line above runs the reference's MHA prefill
    timeout 120 node dist/bench/model-speed.js --model $M --device cuda --attention mqa --prefill ${PREFILL:-1024,4096} --decode-ctx '' \
      --profile >> "$OUT/model-ours.jsonl" 2> "$OUT/model-ours-mqa.err"
    timeout 240 node dist/bench/engine.js --device cuda --model $M --numerics bf16 --batches 1,16,64 --prompt ${DECODE_B:-1024} --gen ${GEN:-128} \
      --cuda-graphs both > "$OUT/engine-mid.jsonl" 2> "$OUT/engine-mid.err"
    summary+=("ours: $(grep -c what "$OUT/model-ours.jsonl" 2>/dev/null) model lines, $(grep -c . "$OUT/engine-mid.jsonl" 2>/dev/null) engine lines")
    cat "$OUT/model-ours.jsonl" "$OUT/engine-mid.jsonl" 2>/dev/null; tail -n 3 "$OUT/engine-mid.err"
  fi
fi
echo "== failures"
grep -E '^not ok|^\s+not ok' "$OUT"/test-*.log 2>/dev/null | head -40
grep -h -B2 -A12 -E '^\s+not ok' "$OUT"/test-cuda.log "$OUT"/test-ops-*.log 2>/dev/null | grep -E "error:|message|expected|actual|not ok" | head -60
grep -h -E "diagnosis:|re-run on the same|rows off by" "$OUT"/test-*.log 2>/dev/null | head -40
echo "== bench"
cat "$OUT/bench.log" 2>/dev/null
echo "== summary"
printf '%s\n' "${summary[@]}"
