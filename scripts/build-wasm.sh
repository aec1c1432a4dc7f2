#!/usr/bin/env bash
# Builds the three wasm flavours into pkg/<flavour>/ (generated, not committed):
#   scalar        wasm32 MVP + default features, no SIMD     (engines without simd128)
#   simd          +simd128                                   (the default everywhere)
#   simd-threads  +simd128 +atomics, shared memory, rayon    (cross-origin isolated pages, Node)
#
# Why a script and not wasm-pack: wasm-pack refuses to build unless the sysroot holds a
# prebuilt wasm32 std (lib/rustlib/wasm32-unknown-unknown), which it fetches with rustup.
# Here the only wasm-capable compiler is Debian's rustc-web, whose sysroot has no wasm32
# std: std is compiled from source with -Zbuild-std (from rust-web-src, no network), a
# flag wasm-pack does not manage. The steps are wasm-pack's: cargo build, wasm-bindgen
# (--target web), wasm-opt -O3.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=scripts/toolchain.env
source scripts/toolchain.env

# Debian's wasm-capable rustc/cargo and linker, called by the paths toolchain.env names
# (rustup's shims come first on PATH), so the tools scripts/check-toolchain.sh checks are
# the tools the build runs.
export RUSTC
export RUSTC_BOOTSTRAP=1   # -Zbuild-std on a stable compiler
WASM_OPT="$ROOT/node_modules/.bin/wasm-opt"
PROFILE=${BN_PROFILE:-release}

# wasm-bindgen-rayon's worker script loads the glue with `import('../../..')`, a directory
# import only bundlers resolve. Point it at the glue file itself so the same script works
# in browsers without a bundler, in bundlers, and in Node worker_threads. Fails loudly if
# a new wasm-bindgen-rayon changes the line.
patch_worker_helpers() {
  local f
  for f in "$1"/snippets/wasm-bindgen-rayon-*/src/workerHelpers.js; do
    [ -e "$f" ] || return 0
    grep -q "import('../../..')" "$f" || { echo "workerHelpers.js changed upstream: $f" >&2; exit 1; }
    sed -i "s#import('../../..')#import('../../../batchnorm.js')#" "$f"
  done
}

build() {
  local name=$1 features=$2 rustflags=$3 optflags=$4 level=${5:--O3}
  local target_dir="$ROOT/target/wasm-$name"
  echo "== wasm build: $name"
  RUSTFLAGS="-C linker=$WASM_LINKER $rustflags" CARGO_TARGET_DIR="$target_dir" "$CARGO" build \
    -p batchnorm-wasm --lib --target wasm32-unknown-unknown --profile "$PROFILE" \
    -Zbuild-std=std,panic_abort ${features:+--features "$features"} --quiet
  local raw="$target_dir/wasm32-unknown-unknown/$PROFILE/batchnorm_wasm.wasm"
  rm -rf "pkg/$name"
  "$WASM_BINDGEN" "$raw" --target web --out-dir "pkg/$name" --out-name batchnorm
  patch_worker_helpers "pkg/$name"
  if [ "$PROFILE" = release ]; then
    # shellcheck disable=SC2086
    "$WASM_OPT" "$level" $optflags "pkg/$name/batchnorm_bg.wasm" -o "pkg/$name/batchnorm_bg.wasm"
  fi
  echo "   pkg/$name/batchnorm_bg.wasm: $(wc -c < "pkg/$name/batchnorm_bg.wasm") bytes"
}

BASE_OPT="--enable-bulk-memory --enable-sign-ext --enable-mutable-globals --enable-nontrapping-float-to-int --enable-reference-types --enable-multivalue"
# Inline a function that has one caller only when it is small. By default wasm-opt inlines
# every such function whatever its size, and in the single-threaded builds (where each
# kernel closure has one call site) that merged the elementwise kernels of every layout and
# fusion flag into one function of ~70,000 instructions. V8 allocates registers poorly in a
# function that size: the channels-last row loops reloaded their row pointers from the
# stack every step (perf), and the same loops ran 0.84-0.90x the time once the function
# was split (docs/performance.md, session 11). 500 keeps small helpers inlined.
BASE_OPT+=" --one-caller-inline-max-function-size=500"

build scalar "" "-C target-feature=-simd128" "$BASE_OPT"
build simd "" "-C target-feature=+simd128" "$BASE_OPT --enable-simd"
# Shared memory: atomics + bulk-memory, memory imported (so workers share it), the TLS
# exports wasm-bindgen's thread support needs, and a 2 GiB ceiling (shared memories must
# declare one; browsers reserve it as address space, not RAM).
THREAD_FLAGS="-C target-feature=+simd128,+atomics,+bulk-memory,+mutable-globals"
THREAD_FLAGS+=" -C link-arg=--shared-memory -C link-arg=--import-memory -C link-arg=--max-memory=2147483648"
THREAD_FLAGS+=" -C link-arg=--export=__wasm_init_tls -C link-arg=--export=__tls_size"
THREAD_FLAGS+=" -C link-arg=--export=__tls_align -C link-arg=--export=__tls_base"
# -O2, not -O3, for this build: with binaryen 132, -O3 (not -O1/-O2) yields a module whose
# rayon pool deadlocks in ThreadPoolBuilder::build_global (main thread waits for workers
# that never report primed). Reproduce: scripts/build-wasm.sh with level -O3, then
# `node examples/demo.mjs` hangs after init. -O2 is verified by the threads test suite.
build simd-threads threads "$THREAD_FLAGS" "$BASE_OPT --enable-simd --enable-threads" -O2
