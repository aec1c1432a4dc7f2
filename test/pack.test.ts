/**
 * What an npm user gets: `npm pack`, install the tarball into a fresh project, import the
 * package by name there and run a call on every build.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, expect, it } from "vitest";

const root = fileURLToPath(new URL("..", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "batchnorm-wasm-pack-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const run = (cmd: string, args: string[], cwd: string) => execFileSync(cmd, args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });

it("installs from the packed tarball and runs in a fresh project", () => {
  const listing = JSON.parse(run("npm", ["pack", "--json", "--pack-destination", dir], root)) as { filename: string; files: { path: string }[] }[];
  const files = listing[0].files.map((f) => f.path);
  for (const b of ["scalar", "simd", "simd-threads"]) expect(files).toContain(`pkg/${b}/batchnorm_bg.wasm`);
  expect(files).toContain("dist/index.d.ts");
  expect(files.some((f) => /^pkg\/simd-threads\/snippets\/.*workerHelpers\.js$/.test(f))).toBe(true);
  expect(files.some((f) => f.startsWith("crates/") || f.startsWith("test/"))).toBe(false);

  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }));
  run("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", join(dir, listing[0].filename)], dir);
  writeFileSync(
    join(dir, "use.mjs"),
    `import { init, batchNormTrain } from "batchnorm-wasm";
     const info = await init({ build: process.argv[2] });
     const { mean, invStd } = batchNormTrain(Float32Array.of(1, 2, 3, 5), [2, 2]);
     console.log(JSON.stringify({ info, mean: Array.from(mean), invStd: Array.from(invStd) }));`,
  );
  for (const build of ["scalar", "simd", "simd-threads"]) {
    const out = JSON.parse(run("node", ["use.mjs", build], dir));
    expect(out.info.build).toBe(build);
    // channels [1, 3] and [2, 5]: means 2 and 3.5, biased variances 1 and 2.25
    expect(out.mean).toEqual([2, 3.5]);
    expect(out.invStd[0]).toBeCloseTo(1 / Math.sqrt(1 + 1e-5), 6);
    expect(out.invStd[1]).toBeCloseTo(1 / Math.sqrt(2.25 + 1e-5), 6);
  }
});
