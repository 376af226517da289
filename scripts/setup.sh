#!/usr/bin/env bash
# Set-up on a fresh Debian machine, and a no-op when it is already done (`npm start` and `npm test` run it
# first): system packages (skipped when all present), `npm ci` (skipped while node_modules was installed
# from this very package-lock.json), then the TypeScript build (incremental: quick when nothing changed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-system.sh
stamp=node_modules/.dsv32-installed
lock=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock" ]; then
  echo "setup: installing npm dependencies (npm ci)" >&2
  npm ci --no-audit --no-fund
  echo "$lock" > "$stamp"
fi
# tsc is incremental: a few seconds when nothing changed, so the build always runs (a stale dist/ is worse)
npm run --silent build
