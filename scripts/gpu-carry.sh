#!/usr/bin/env bash
# Stage what a GPU run carries (the device machine has no Node.js, no network, and a run carries at most
# 64 MiB of ignored files), into .gpu/ (git-ignored through .git/info/exclude):
#   .gpu/dist.tar.xz   dist/ built from a clean checkout of HEAD (tsc + the sm_90a cubins) with the
#                      production node_modules the GPU-side commands import (koffi, zod, commander,
#                      cli-progress and its deps, @huggingface/tokenizers, and for rl's environments
#                      better-sqlite3's addon and ajv): ≈ 3.3 MB
#   .gpu/gpu-cli.mjs   a dsv32 entry with only train, quantize and rl (the full CLI imports the server's
#                      and the queue's packages, which are not carried)
#   .gpu/<name>.tar.xz each pack directory given with --pack (dsv32 data pack output), each model or
#                      environment directory given with --model / --env (unpacks to tmp/gpu/<name>),
#                      compressed
# Node itself comes from ../shared/device/prepare.sh (.device/, ≈ 25 MB). Then, for example:
#   run(carry: [".device", ".gpu"], command: "source .device/bootstrap.sh; bash scripts/device-train-mini.sh")
#   bash scripts/gpu-carry.sh [--pack tmp/mini/pack --pack tmp/mini/pack-sft] [--model DIR] [--env DIR] [--server]
# --server adds fastify and prom-client with their dependency closure (≈ 2 MB compressed) for the HTTP server
# benchmarks (bench/serve-load.ts with --skip-tokenizer).
# The better-sqlite3 addon is this machine's build: the node in .device/ must be the same version (it is:
# prepare.sh stages this machine's node).
set -euo pipefail
cd "$(dirname "$0")/.."
packs=()
dirs=()
server=0
while [ $# -gt 0 ]; do
  case "$1" in
    --pack) packs+=("$2"); shift 2 ;;
    --model)
      [ -f "$2/config.json" ] || { echo "gpu-carry: --model $2: no config.json there (expected a model directory)" >&2; exit 2; }
      dirs+=("$2"); shift 2 ;;
    --env)
      [ -f "$2/manifest.json" ] || { echo "gpu-carry: --env $2: no manifest.json there (expected an environment directory)" >&2; exit 2; }
      dirs+=("$2"); shift 2 ;;
    --server) server=1; shift ;;
    *) echo "gpu-carry: unknown argument $1 (expected --pack DIR, --model DIR, --env DIR or --server)" >&2; exit 2 ;;
  esac
done
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
wt=$(mktemp -d /tmp/dsv32-gpu-wt.XXXXXX)
stage=$(mktemp -d /tmp/dsv32-gpu-stage.XXXXXX)
trap 'git worktree remove --force "$wt" >/dev/null 2>&1 || true; rm -rf "$stage"' EXIT
git worktree add --detach "$wt" HEAD >/dev/null
ln -s "$PWD/node_modules" "$wt/node_modules"
(cd "$wt" && npx tsc -p tsconfig.json && node scripts/build-kernels.mjs > /dev/null)
mkdir -p "$stage/dist/node_modules" .gpu
cp -r "$wt/dist/src" "$wt/dist/test" "$wt/dist/bench" "$wt/dist/kernels" "$stage/dist/"
for m in koffi @koromix zod commander cli-progress string-width emoji-regex is-fullwidth-code-point strip-ansi ansi-regex @huggingface \
  ajv fast-deep-equal fast-uri json-schema-traverse require-from-string bindings file-uri-to-path; do
  cp -r "node_modules/$m" "$stage/dist/node_modules/"
done
# better-sqlite3: its JavaScript and the built addon only (not the 25 MB of SQLite sources and objects)
mkdir -p "$stage/dist/node_modules/better-sqlite3/build/Release"
cp -r node_modules/better-sqlite3/lib node_modules/better-sqlite3/package.json "$stage/dist/node_modules/better-sqlite3/"
cp node_modules/better-sqlite3/build/Release/better_sqlite3.node "$stage/dist/node_modules/better-sqlite3/build/Release/"
rm -rf "$stage/dist/node_modules/ajv/lib" && find "$stage/dist/node_modules/ajv" \( -name '*.d.ts' -o -name '*.map' \) -delete
# only the glibc x64 koffi build, zod without its sources and typings: the carry stays small
rm -rf "$stage/dist/node_modules/@koromix/koffi-linux-x64/musl_x64" "$stage/dist/node_modules/zod/src"
find "$stage/dist/node_modules/zod" \( -name '*.d.ts' -o -name '*.d.cts' -o -name '*.d.mts' -o -name '*.map' \) -delete
if [ "$server" = 1 ]; then
  # every package fastify and prom-client load, found as Node resolves them (nested copies keep their paths)
  node -e '
    const { dirname, join, relative } = require("node:path");
    const { existsSync, readFileSync } = require("node:fs");
    const seen = new Set();
    const walk = (name, from) => {
      let p = require.resolve(name, { paths: [from] });
      while (!existsSync(join(p, "package.json")) || !p.endsWith(name)) p = dirname(p);
      if (seen.has(p)) return;
      seen.add(p);
      for (const d of Object.keys(JSON.parse(readFileSync(join(p, "package.json"), "utf8")).dependencies ?? {})) walk(d, p);
    };
    for (const m of ["fastify", "prom-client"]) walk(m, process.cwd());
    console.log([...seen].map((d) => relative(join(process.cwd(), "node_modules"), d)).join("\n"));
  ' | while read -r m; do mkdir -p "$stage/dist/node_modules/$(dirname "$m")" && cp -r "node_modules/$m" "$stage/dist/node_modules/$m"; done
fi
# written aside, then renamed: a run that starts meanwhile carries the previous archive whole, never half of this one
tar -C "$stage" -cJf .gpu/dist.tar.xz.part dist && mv .gpu/dist.tar.xz.part .gpu/dist.tar.xz
cat > .gpu/gpu-cli.mjs <<'JS'
// dsv32 train, quantize and rl without the CLI's other dependencies (copied into dist/ on the GPU machine)
import { Command } from 'commander';
import { register as train } from './src/cli/train.js';
import { register as quantize } from './src/cli/quantize.js';
import { register as rl } from './src/cli/rl.js';
import { runProgram } from './src/cli/run.js';
const p = new Command('dsv32');
train(p);
quantize(p);
rl(p);
await runProgram(p); // as the full CLI: an error of ours is one line, not a stack trace
JS
for p in "${packs[@]}"; do
  [ -f "$p/pack.json" ] || { echo "gpu-carry: --pack $p: no pack.json there (expected a dsv32 data pack directory)" >&2; exit 2; }
  tar -C "$(dirname "$p")" -cJf ".gpu/$(basename "$p").tar.xz" "$(basename "$p")"
done
for d in "${dirs[@]}"; do
  tar -C "$(dirname "$d")" -cf - "$(basename "$d")" | xz -9 -T0 > ".gpu/$(basename "$d").tar.xz"
done
# node without its symbol table: 21.9 MB compressed instead of 24.2, the margin that lets the tracked
# sources stay in the working tree during a call (docs/gpu.md)
if [ -f .device/node.xz ] && command -v file > /dev/null && command -v strip > /dev/null; then
  bin=$(mktemp /tmp/dsv32-node.XXXXXX)
  xz -dc .device/node.xz > "$bin"
  if file "$bin" | grep -q 'not stripped'; then
    strip "$bin" && chmod +x "$bin" && "$bin" -e 0
    xz -9 -T0 -c "$bin" > .device/node.xz.new && mv .device/node.xz.new .device/node.xz
    echo "gpu-carry: .device/node.xz stripped of its symbols ($(du -h .device/node.xz | cut -f1))"
  fi
  rm -f "$bin"
fi
du -sh .gpu/* | sed 's/^/gpu-carry: /'
