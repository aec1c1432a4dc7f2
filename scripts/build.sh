#!/usr/bin/env bash
# Builds everything the package ships: pkg/ (three wasm builds) and dist/ (TypeScript).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${BN_SKIP_SETUP:-0}" = 1 ] || bash scripts/setup.sh
bash scripts/build-wasm.sh
npx tsc -p tsconfig.json
