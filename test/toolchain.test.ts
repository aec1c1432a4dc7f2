/**
 * Every tool the build and the tests call comes from what scripts/setup.sh installs (or the
 * machine image): scripts/check-toolchain.sh resolves each to its file and asks dpkg who
 * owns it. A hand-installed dependency fails here instead of on a user's fresh machine.
 */
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { expect, it } from "vitest";

const root = fileURLToPath(new URL("..", import.meta.url));
const check = (env: Record<string, string> = {}) =>
  spawnSync("bash", ["scripts/check-toolchain.sh"], { cwd: root, encoding: "utf8", env: { ...process.env, ...env } });

it("every tool of the build and the tests comes from setup.sh's packages, setup.sh itself or the image", () => {
  const r = check();
  expect(r.stdout, r.stdout + r.stderr).toMatch(/every tool comes from setup.sh or the machine image/);
  expect(r.status).toBe(0);
  for (const tool of ["rustc", "cargo", "wasm linker", "std sources", "chromium", "firefox", "wasm-bindgen", "wasm-opt", "host node"]) {
    expect(r.stdout).toMatch(new RegExp(`^ok +${tool} `, "m"));
  }
});

it("a tool from a package setup.sh does not install fails the check (rust-lld without rust-web-llvm)", () => {
  const r = check({ TOOLCHAIN_CHECK_PACKAGES: "rustc-web cargo-web rust-web-src lld-22 chromium firefox-esr" });
  expect(r.status).toBe(1);
  expect(r.stdout).toMatch(/FAIL wasm linker +\/usr\/bin\/rust-lld comes from Debian package 'rust-web-llvm', which scripts\/setup.sh does not install/);
});
