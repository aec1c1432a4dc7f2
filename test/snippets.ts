/**
 * The code the docs show users, type-checked against the built package (docs.test.ts):
 * every ```ts / ```js block of README.md and docs/*.md, and every `@example` in the
 * package's doc comments (what TypeDoc publishes).
 *
 * Snippets are fragments: they use data they do not define (`x`, `weight`, `shape`) and
 * often the package's names without importing them. So each snippet is checked as a module
 * with, in front of it, an import from "batchnorm-wasm" of every package export it uses
 * without defining, and `any` declarations for its other free names. A free name that the
 * snippet calls or constructs (`layerNorm(...)`, `new Foo()`) and that the package does not
 * export is reported instead of declared: that is how a renamed or removed API shows up
 * (a few stand-ins for the user's own functions excepted: `STAND_INS`).
 */
import fs from "node:fs";
import path from "node:path";
import ts from "typescript";

export interface Snippet {
  /** Where it is: `docs/guide.md:79` (the fence's line) or `ts/layers/fold.ts:40` (`@example`'s line). */
  where: string;
  lang: "ts" | "js";
  code: string;
}

/** The ```ts / ```js blocks of a Markdown file. */
export function markdownSnippets(root: string, file: string): Snippet[] {
  const lines = fs.readFileSync(path.join(root, file), "utf8").split("\n");
  const out: Snippet[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^\s*```(ts|typescript|js|javascript)\s*$/.exec(lines[i]);
    if (!open) continue;
    let j = i + 1;
    while (j < lines.length && !/^\s*```/.test(lines[j])) j++;
    out.push({ where: `${file}:${i + 1}`, lang: open[1].startsWith("t") ? "ts" : "js", code: lines.slice(i + 1, j).join("\n") });
    i = j;
  }
  return out;
}

/** The `@example` blocks of the doc comments of a TypeScript file (fences removed). */
export function exampleSnippets(root: string, file: string): Snippet[] {
  const lines = fs.readFileSync(path.join(root, file), "utf8").split("\n");
  const out: Snippet[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!/^\s*\*\s*@example\s*$/.test(lines[i])) continue;
    const body: string[] = [];
    let j = i + 1;
    // Up to the comment's end or its next tag.
    for (; j < lines.length && !/^\s*\*\//.test(lines[j]) && !/^\s*\*\s*@\w/.test(lines[j]); j++) {
      const text = lines[j].replace(/^\s*\* ?/, "");
      if (!/^\s*```/.test(text)) body.push(text);
    }
    out.push({ where: `${file}:${i + 1}`, lang: "ts", code: body.join("\n") });
    i = j - 1;
  }
  return out;
}

/** The `.ts` files under `dir` (relative to `root`), recursively. */
export function tsFiles(root: string, dir: string): string[] {
  return fs.readdirSync(path.join(root, dir), { withFileTypes: true }).flatMap((e) => {
    const rel = `${dir}/${e.name}`;
    if (e.isDirectory()) return tsFiles(root, rel);
    return e.name.endsWith(".ts") && !e.name.endsWith(".d.ts") ? [rel] : [];
  });
}

/** A snippet's problems: TypeScript's errors, and calls of names the package does not export. */
export interface SnippetReport {
  where: string;
  errors: string[];
}

/**
 * Functions the docs call as stand-ins for the user's own code ("your optimiser"): free
 * names that are called, yet not the package's.
 */
const STAND_INS = new Set(["sgdStep", "rowsOfBatch"]);

const FREE_NAME = new Set([2304, 2552, 18004]); // "Cannot find name", "...Did you mean", shorthand property without a value

/** The name a free-name diagnostic is about (undefined for any other diagnostic). */
function freeName(d: ts.Diagnostic): string | undefined {
  return FREE_NAME.has(d.code) ? /'([^']+)'/.exec(ts.flattenDiagnosticMessageText(d.messageText, " "))?.[1] : undefined;
}

/** Type-checks `snippets` against the declarations at `types` (the package's index.d.ts). */
export function checkSnippets(snippets: Snippet[], types: string): SnippetReport[] {
  const exported = packageExports(types);
  const options: ts.CompilerOptions = {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ES2022,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    lib: ["lib.es2022.d.ts", "lib.dom.d.ts", "lib.esnext.disposable.d.ts"],
    types: ["node"],
    noEmit: true,
    skipLibCheck: true,
    allowJs: true,
    checkJs: true,
    paths: { "batchnorm-wasm": [types] },
  };
  const dir = path.dirname(types);
  const states = snippets.map((s, k) => ({
    s,
    file: path.join(dir, `__snippet_${k}.${s.lang === "ts" ? "ts" : "mjs"}`),
    free: new Set<string>(),
    unknownCalls: new Set<string>(),
    head: "",
    diagnostics: [] as readonly ts.Diagnostic[],
  }));
  // Compile all snippets together, add the free names each one reports, and again, until
  // no snippet reports a new one (each round can only reveal names the last one hid).
  for (let round = 0; round < 8; round++) {
    const texts = new Map<string, string>();
    for (const st of states) {
      const fromPackage = [...st.free].filter((n) => exported.has(n));
      const other = [...st.free].filter((n) => !exported.has(n) && !st.unknownCalls.has(n));
      const declare = (n: string) => (st.s.lang === "ts" ? `declare const ${n}: any;` : `/** @type {any} */ var ${n};`);
      st.head = (fromPackage.length ? `import { ${fromPackage.join(", ")} } from "batchnorm-wasm";\n` : "") + other.map(declare).join("\n") + "\n";
      texts.set(st.file, `${st.head}${st.s.code}\nexport {};\n`);
    }
    const host = ts.createCompilerHost(options);
    const { getSourceFile, fileExists, readFile } = host;
    host.getSourceFile = (f, lang, ...rest) => (texts.has(f) ? ts.createSourceFile(f, texts.get(f)!, lang, true) : getSourceFile(f, lang, ...rest));
    host.fileExists = (f) => texts.has(f) || fileExists(f);
    host.readFile = (f) => texts.get(f) ?? readFile(f);
    const program = ts.createProgram([...texts.keys()], options, host);
    let grew = false;
    for (const st of states) {
      const sf = program.getSourceFile(st.file)!;
      st.diagnostics = [...program.getSyntacticDiagnostics(sf), ...program.getSemanticDiagnostics(sf)];
      for (const d of st.diagnostics) {
        const name = freeName(d);
        if (!name || st.free.has(name)) continue;
        st.free.add(name);
        if (!exported.has(name) && !STAND_INS.has(name) && isCallee(sf, d.start!)) st.unknownCalls.add(name);
        grew = true;
      }
    }
    if (!grew) break;
  }
  return states.map((st) => {
    const headLines = st.head.split("\n").length - 1;
    const errors = st.diagnostics
      .filter((d) => !FREE_NAME.has(d.code) || st.unknownCalls.has(freeName(d) ?? ""))
      .map((d) => {
        const line = d.file ? d.file.getLineAndCharacterOfPosition(d.start!).line - headLines + 1 : 0;
        const what = FREE_NAME.has(d.code) ? "called, but not exported by batchnorm-wasm nor defined in the snippet: " : "";
        return `snippet line ${line}: TS${d.code} ${what}${ts.flattenDiagnosticMessageText(d.messageText, " ")}`;
      });
    return { where: st.s.where, errors };
  });
}

/** Whether the identifier at `pos` is what a call or `new` expression calls. */
function isCallee(sf: ts.SourceFile, pos: number): boolean {
  let found = false;
  const visit = (n: ts.Node): void => {
    if (found || pos < n.getFullStart() || pos >= n.getEnd()) return;
    if ((ts.isCallExpression(n) || ts.isNewExpression(n)) && ts.isIdentifier(n.expression) && n.expression.getStart(sf) === pos) {
      found = true;
      return;
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return found;
}

/** The names `types` (a module's .d.ts) exports. */
function packageExports(types: string): Set<string> {
  const program = ts.createProgram([types], { skipLibCheck: true, noEmit: true });
  const checker = program.getTypeChecker();
  const module = checker.getSymbolAtLocation(program.getSourceFile(types)!)!;
  return new Set(checker.getExportsOfModule(module).map((s) => s.name));
}
