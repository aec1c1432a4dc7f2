#!/usr/bin/env bash
# The main job: install what is missing, build, run the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
node examples/demo.mjs
