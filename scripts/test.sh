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
node bench/channels.mjs --smoke > /dev/null

echo "== Type check of the package and its tests together (tsconfig.test.json)" && npx tsc -p tsconfig.test.json
echo "== API reference (TypeDoc into docs/api, warnings fail)" && npm run docs
# Last, so their summaries close the output. The browser end-to-end files run on their own,
# one at a time, after the rest: the data-parallel pages keep two ranks busy on a 2-core
# machine, and with another test file beside them shared-memory collectives stalled for
# tens of seconds (a Firefox run of 100 steps took > 40 s instead of 2.5 s).
E2E="test/browser.test.ts test/mnist-e2e.test.ts test/cnn-e2e.test.ts"
echo "== TypeScript tests: every wasm build, conformance, properties, errors, modules, workers, process groups, examples, packed tarball"
# shellcheck disable=SC2086
npx vitest run $(printf -- '--exclude %s ' $E2E)
echo "== Browser end-to-end tests, one file at a time: Chromium and Firefox"
# shellcheck disable=SC2086
npx vitest run --no-file-parallelism $E2E
