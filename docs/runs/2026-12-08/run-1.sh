#!/usr/bin/env bash
# session 24, call 1: MoE training on the tensor cores (commit 8bfe28b: bf16 copies of the expert masters,
# dW on grouped_matmul_dw_tc_*, `moe-dw`). Carry .gpu from `bash scripts/gpu-carry.sh --pack tmp/mini/pack`
# at the commit to test; a .gpu/dist-new.tar.xz, if present, replaces the dist/ the command line unpacked
# (so that run-2.sh can keep an older build in .gpu/dist.tar.xz). The MoE op tests on cpu + cuda (every path, the
# new dW kernel at awkward shapes), the mid config's sparse-stage step (three timed steps) with the MoE
# tensor-core kernels on (`all`: the forward/dx default and the new dW kernel, `moe-dw`, off by default until
# this round checks it) and off (DSV32_CUDA_GEMM without `moe`), the MoE bench at the mid
# config's shapes (gate projection forward + backward, tensor cores against SIMT).
# (This replaced the first version, the DSA benchmark rows of 2026-12-07-late/run-3.sh, before it ran.)
set -uo pipefail
export DSV32_FIXTURES=$PWD/tmp/fixtures
t0=$(date +%s)
L=285
left() { [ $(( $(date +%s) - t0 )) -lt $(( L - $1 )) ]; }
el() { echo "[$(( $(date +%s)-t0 ))s]"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
[ -f .gpu/dist-new.tar.xz ] && { rm -rf dist; tar xJf .gpu/dist-new.tar.xz; echo "unpacked dist-new $(el)"; }
timeout 90 node --test dist/test/tensor/moe.test.js > $OUT/tests-moe.txt 2>&1
echo "moe tests rc $? $(el)"; grep -E "^# (tests|pass|fail|skipped)" $OUT/tests-moe.txt; grep -E "^not ok" -A3 $OUT/tests-moe.txt | head -20
ALL_BUT_MOE=indexer,indexer-mma,mla,mla-fused,mla-flash,mla-split,mla-wg,mla-bwd,mla-bwd-flash,indexer-train,indexer-kl-flash,indexer-scores-flash,moe-gemv
for mode in tc simt; do
  left 60 || break
  if [ $mode = tc ]; then g=all; else g=$ALL_BUT_MOE; fi
  DSV32_CUDA_GEMM=$g timeout 70 node dist/bench/train-step.js --device cuda --shape mid --numerics bf16 --batch 2 --seq 4096 --steps 3 --phases sparse > $OUT/mid-$mode.txt 2>&1
  echo "mid sparse (MoE $mode) rc $? $(el)"; grep -E "ms/step|Error" $OUT/mid-$mode.txt | cut -c1-200
done
if left 30; then
  timeout $(( L - $(date +%s) + t0 - 5 )) node dist/bench/moe.js --dim 2048 --inter 512 --experts 32 --k 4 --groups 8 --topk-groups 4 --tokens 2048,8192,64 --out $OUT/moe.json > $OUT/moe.txt 2>&1
  echo "moe bench rc $? $(el)"; grep -E "^\|" $OUT/moe.txt | cut -c1-250
fi
echo "done $(el)"
