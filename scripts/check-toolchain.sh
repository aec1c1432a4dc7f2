#!/usr/bin/env bash
# Every external tool the build and the tests call, resolved to its file (and every symlink
# on the way), must come from:
#   - a Debian package that scripts/setup.sh installs (APT_PACKAGES, BROWSER_PACKAGES), or
#   - setup.sh itself (wasm-bindgen built into $TOOLS_ROOT; wasm-opt from `npm ci`), or
#   - the machine image, as README's prerequisites say (Node.js with npm; rustup's cargo,
#     which builds wasm-bindgen-cli).
# So a tool that only a hand install provides fails here, in CI, instead of on a user's
# fresh machine (as rust-lld did: a Recommends that --no-install-recommends skips).
# Run by test/toolchain.test.ts. TOOLCHAIN_CHECK_PACKAGES replaces the list of allowed
# packages (the test uses it to show that a missing package is caught).
set -uo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/toolchain.env
source scripts/toolchain.env
allowed=" ${TOOLCHAIN_CHECK_PACKAGES:-$APT_PACKAGES $BROWSER_PACKAGES} "
failures=0

# The Debian package that owns a path ("" if none). Debian 12 merged /bin into /usr/bin,
# and dpkg knows some files only by their /bin or /lib name.
owner() {
  local p=$1 o
  o=$(dpkg -S "$p" 2>/dev/null | head -n1 | cut -d: -f1)
  [ -z "$o" ] && [ "${p#/usr/}" != "$p" ] && o=$(dpkg -S "/${p#/usr/}" 2>/dev/null | head -n1 | cut -d: -f1)
  printf '%s' "$o"
}

# Every symlink on the way to $1, then the file it finally is.
hops() {
  local rest=${1#/} part cur=""
  local IFS=/
  for part in $rest; do
    cur="$cur/$part"
    if [ -L "$cur" ]; then
      printf '%s\n' "$cur"
      cur=$(readlink -f "$cur")
    fi
  done
  printf '%s\n' "$(readlink -f "$1")"
}

fail() {
  printf 'FAIL %-13s %s\n' "$1" "$2"
  failures=$((failures + 1))
}

# A tool that must come from a Debian package setup.sh installs.
from_apt() {
  local name=$1 path=$2 hop pkg pkgs=""
  if [ ! -e "$path" ]; then fail "$name" "$path does not exist (run scripts/setup.sh --browser)"; return; fi
  while IFS= read -r hop; do
    pkg=$(owner "$hop")
    if [ -z "$pkg" ]; then fail "$name" "$hop belongs to no Debian package (installed by hand?)"; return; fi
    if [ "${allowed#* "$pkg" }" = "$allowed" ]; then
      fail "$name" "$hop comes from Debian package '$pkg', which scripts/setup.sh does not install: add it to scripts/toolchain.env"
      return
    fi
    case " $pkgs " in *" $pkg "*) ;; *) pkgs="$pkgs $pkg" ;; esac
  done < <(hops "$path")
  printf 'ok   %-13s %s <- Debian:%s\n' "$name" "$path" "$pkgs"
}

# 1. Debian packages.
from_apt rustc "$RUSTC"
from_apt cargo "$CARGO"
from_apt "wasm linker" "$WASM_LINKER"
# -Zbuild-std compiles std from the sources in rustc's sysroot.
from_apt "std sources" "$("$RUSTC" --print sysroot 2>/dev/null)/lib/rustlib/src/rust/library/std/src/lib.rs"
from_apt chromium "$CHROMIUM"
from_apt firefox "$FIREFOX"

# 2. Built by setup.sh: wasm-bindgen-cli at the crate's exact version, under $TOOLS_ROOT.
if [ -x "$WASM_BINDGEN" ] && "$WASM_BINDGEN" --version | grep -qx "wasm-bindgen $WASM_BINDGEN_VERSION"; then
  printf 'ok   %-13s %s <- built by setup.sh (cargo install wasm-bindgen-cli %s)\n' wasm-bindgen "$WASM_BINDGEN" "$WASM_BINDGEN_VERSION"
else
  fail wasm-bindgen "$WASM_BINDGEN is missing or not version $WASM_BINDGEN_VERSION (run scripts/setup.sh)"
fi

# 3. From `npm ci` (setup.sh): wasm-opt is binaryen's, locked in package-lock.json.
wasm_opt=$(readlink -f node_modules/.bin/wasm-opt 2>/dev/null)
if [ -n "$wasm_opt" ] && [ "${wasm_opt#"$PWD/node_modules/binaryen/"}" != "$wasm_opt" ] &&
  grep -q '"node_modules/binaryen"' package-lock.json; then
  printf 'ok   %-13s %s <- npm ci (binaryen, package-lock.json)\n' wasm-opt "${wasm_opt#"$PWD/"}"
else
  fail wasm-opt "node_modules/.bin/wasm-opt is not binaryen's from npm ci (got '${wasm_opt:-nothing}')"
fi

# 4. The machine image (README's prerequisites): reported, and they must run.
for tool in node npm cargo; do  # cargo here: rustup's, on PATH (builds wasm-bindgen-cli)
  if p=$(command -v "$tool") && "$tool" --version >/dev/null 2>&1; then
    printf 'ok   %-13s %s <- machine image (%s)\n' "host $tool" "$p" "$("$tool" --version 2>/dev/null | head -n1)"
  else
    fail "$tool" "not found: README's prerequisites (Node.js >= 20 with npm, rustup's Rust) are missing"
  fi
done

if [ "$failures" -gt 0 ]; then
  echo "check-toolchain: $failures tool(s) do not come from what scripts/setup.sh installs"
  exit 1
fi
echo "check-toolchain: every tool comes from setup.sh or the machine image"
