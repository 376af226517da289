#!/usr/bin/env bash
# session 22, call 2: issue 11's kernel table on this card, each reference in the same command — the
# indexer logits and top-k (dsa-indexer --full, torch), sparse MLA prefill and decode (sparse-mla, torch),
# and Fig. 3 at the paper's dimensions (dsa-cost). Later steps start only while their time is left.
set -uo pipefail
t0=$(date +%s)
L=${LIMIT:-560}
left() { [ $(( $(date +%s) - t0 )) -lt $(( L - $1 )) ]; }
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv,noheader
timeout 200 node dist/bench/sparse-mla.js --out $OUT/bench-mla.json > $OUT/bench-mla.txt 2>&1
echo "sparse-mla rc $? [$(( $(date +%s)-t0 ))s]"; tail -16 $OUT/bench-mla.txt
left 150 && { timeout 150 node dist/bench/dsa-indexer.js --full --out $OUT/bench-indexer.json > $OUT/bench-indexer.txt 2>&1; echo "dsa-indexer --full rc $? [$(( $(date +%s)-t0 ))s]"; grep -A9 "## indexerLogits\|## topkSelect" $OUT/bench-indexer.txt | head -30; }
left 100 && { timeout 100 node dist/bench/dsa-cost.js --csv $OUT/fig3.csv > $OUT/dsa-cost.txt 2>&1; echo "dsa-cost rc $? [$(( $(date +%s)-t0 ))s]"; tail -14 $OUT/dsa-cost.txt; }
echo "done [$(( $(date +%s)-t0 ))s]"
