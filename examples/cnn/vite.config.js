// Vite config for the CNN page: `npm run cnn:dev`, or `npm run cnn:build` then
// `npm run cnn:preview`. The MNIST example's config with this folder as the root: the same
// digits (/mnist.bin), the package aliased to the repository's dist/, module workers, and
// COOP/COEP headers so the training worker gets the simd-threads build.
import { fileURLToPath } from "node:url";
import { mergeConfig } from "vite";
import mnistConfig from "../mnist/vite.config.js";

export default mergeConfig(mnistConfig, { root: fileURLToPath(new URL(".", import.meta.url)) });
