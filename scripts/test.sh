#!/usr/bin/env bash
# The test command (README, .ci/run): installs what is missing, builds, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --browser
BN_SKIP_SETUP=1 bash scripts/build.sh

echo "== Rust kernel tests, native: single-threaded, then with rayon"
cargo test -p batchnorm-core
cargo test -p batchnorm-core --features parallel

echo "== Benchmark harness smoke run (correctness only, no timing asserts)"
node bench/run.mjs --smoke
node bench/norms.mjs --smoke > /dev/null   # fails if a peer disagrees with our forward output

echo "== API reference (TypeDoc into docs/api, warnings fail)" && npm run docs
# Last, so its summary closes the output.
echo "== TypeScript tests: every wasm build, conformance, properties, errors, modules, workers, process groups, Chromium and Firefox, examples, packed tarball"
npx vitest run
