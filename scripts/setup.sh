#!/usr/bin/env bash
# Installs what building and testing need, each step skipped when already done
# (idempotent; caches: apt, ~/.cache/batchnorm-wasm for wasm-bindgen-cli, node_modules).
#   scripts/setup.sh            toolchain + npm dependencies
#   scripts/setup.sh --browser  also Debian's chromium and firefox-esr, for the browser tests
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/toolchain.env
source scripts/toolchain.env

want_browser=0
[ "${1:-}" = "--browser" ] && want_browser=1

SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

# 1. Debian packages: the wasm-capable rustc (rustc-web 1.96 from the security archive),
#    std sources for -Zbuild-std, lld; chromium and firefox-esr for browser tests.
packages="$APT_PACKAGES"
[ $want_browser = 1 ] && packages="$packages $BROWSER_PACKAGES"
missing=""
for p in $packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "setup: installing Debian packages:$missing"
  $SUDO apt-get update -q
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing
fi

# 2. wasm-bindgen-cli, the exact version of the wasm-bindgen crate (built from crates.io
#    with the host's rustup toolchain; GitHub release binaries are out of reach).
if ! "$WASM_BINDGEN" --version 2>/dev/null | grep -qx "wasm-bindgen $WASM_BINDGEN_VERSION"; then
  echo "setup: building wasm-bindgen-cli $WASM_BINDGEN_VERSION (a few minutes, once)"
  cargo install wasm-bindgen-cli --version "=$WASM_BINDGEN_VERSION" --locked --root "$TOOLS_ROOT"
fi

# 3. npm dependencies, exactly as locked.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund
fi
