#!/usr/bin/env bash
# System packages the project needs (Debian): OpenBLAS for the CPU GEMM fast path, bubblewrap for the
# sandbox, redis-server for the job-queue tests. Idempotent; skips apt when everything is present.
set -euo pipefail
pkgs=(libopenblas0-pthread bubblewrap redis-server xz-utils)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
