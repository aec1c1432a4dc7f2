// Run by test/init.test.ts as a process of its own: load simd-threads, run a kernel big
// enough for the pool, and end. The process must exit by itself (an idle pool must not
// keep it alive).
import { init, batchNormTrain } from "../../dist/index.js";

const { build, threads } = await init({ build: "simd-threads", threads: 2 });
batchNormTrain(new Float32Array(1 << 21).map((_, i) => i % 7), [64, 32, 1024]);
console.log(`done ${build} ${threads}`);
