#!/usr/bin/env bash
# The main job: install what is missing, build, run the demo, then train a small network
# on MNIST with and without batch norm (same seed) and print the test accuracies.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
node examples/demo.mjs
echo
node examples/mnist/train-node.mjs
