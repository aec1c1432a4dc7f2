/**
 * The docs' code against the package's types: every ```ts / ```js block of README.md and
 * docs/*.md and every `@example` in the doc comments (what TypeDoc publishes) type-checks
 * against dist/index.d.ts, with the package's names it uses imported and its free data
 * (`x`, `weight`) as `any` (see snippets.ts). A renamed function, a removed option, a
 * method that no longer exists or a wrong argument count in the docs fails here.
 */
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { checkSnippets, exampleSnippets, markdownSnippets, tsFiles, type Snippet } from "./snippets.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const markdown = ["README.md", ...fs.readdirSync(path.join(root, "docs")).filter((f) => f.endsWith(".md")).map((f) => `docs/${f}`)];
const snippets: Snippet[] = [
  ...markdown.flatMap((f) => markdownSnippets(root, f)),
  ...tsFiles(root, "ts").flatMap((f) => exampleSnippets(root, f)),
];

describe("the docs' code type-checks against the package", () => {
  const reports = checkSnippets(snippets, path.join(root, "dist/index.d.ts"));

  it("finds the snippets (README, the guides, the doc comments' examples)", () => {
    expect(snippets.filter((s) => s.where.startsWith("README.md")).length).toBeGreaterThanOrEqual(2);
    expect(snippets.filter((s) => s.where.startsWith("docs/")).length).toBeGreaterThanOrEqual(8);
    expect(snippets.filter((s) => s.where.startsWith("ts/")).length).toBeGreaterThanOrEqual(25);
  });

  it.each(reports.map((r) => [r.where, r] as const))("%s", (_where, r) => {
    expect(r.errors).toEqual([]);
  });
});
