#!/usr/bin/env bash
# One-shot set-up on a fresh Debian machine: system packages, npm dependencies, TypeScript build.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-system.sh
npm ci
npm run build
