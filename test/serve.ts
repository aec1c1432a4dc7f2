/**
 * A tiny static server for browser tests: serves the repository root on 127.0.0.1, with
 * or without the COOP/COEP headers that make a page cross-origin isolated (required for
 * SharedArrayBuffer, hence for the threads build). Like any dev server it maps bare
 * imports of the package's dependencies to files in node_modules.
 */
import { createServer, type Server } from "node:http";
import { readFile } from "node:fs/promises";
import { extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const TYPES: Record<string, string> = {
  ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm", ".json": "application/json",
};
const BARE: Record<string, string> = {
  "wasm-feature-detect": "/node_modules/wasm-feature-detect/dist/esm/index.js",
  comlink: "/node_modules/comlink/dist/esm/comlink.mjs",
};

export async function serve(isolated: boolean): Promise<{ url: string; close: () => Promise<void> }> {
  const server: Server = createServer(async (req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname));
    const file = join(root, path);
    if (!file.startsWith(root)) return void res.writeHead(403).end();
    try {
      let body: Buffer | string = await readFile(file);
      if (extname(file) === ".js") {
        body = body.toString("utf8").replace(/from\s+"([^"./][^"]*)"/g, (m, spec: string) => (BARE[spec] ? `from "${BARE[spec]}"` : m));
      }
      const headers: Record<string, string> = { "content-type": TYPES[extname(file)] ?? "application/octet-stream" };
      if (isolated) {
        headers["cross-origin-opener-policy"] = "same-origin";
        headers["cross-origin-embedder-policy"] = "require-corp";
      }
      res.writeHead(200, headers).end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise((r) => server.close(() => r())) };
}
