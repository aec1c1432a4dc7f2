/**
 * Loading the best wasm build for this engine, once.
 *
 * Three builds ship in `pkg/`: `scalar` (any WebAssembly engine), `simd` (simd128) and
 * `simd-threads` (simd128 + shared memory + a rayon pool in workers). `init()` picks the
 * best one the environment supports, with wasm-feature-detect:
 * - `simd-threads` needs wasm threads, a `SharedArrayBuffer`, and a context where
 *   blocking is allowed: Node (the pool runs in worker_threads), or a *Web Worker* of a
 *   cross-origin isolated page. A browser's main thread may not block (`Atomics.wait`
 *   throws there), so it gets `simd`: run heavy work in a worker (see the README).
 * - `simd` needs simd128; otherwise `scalar`.
 * @module
 */
import { simd as hasSimd, threads as hasThreads } from "wasm-feature-detect";
import { PoolStart, type PoolWorkerClass } from "./pool-worker.js";
import { InvalidOptionError, StateError } from "./errors.js";
import { checkOptionKeys, optionKeys } from "./validate.js";

/** A wasm build of the kernels. */
export type BuildName = "scalar" | "simd" | "simd-threads";

/**
 * Options of {@link init} and {@link createEngine}.
 *
 * @example
 * ```ts
 * await init({ build: "simd", threads: 1 }); // force the single-threaded SIMD build
 * ```
 */
export interface InitOptions {
  /** Which build to load; `"auto"` (default) picks the best supported one. */
  build?: BuildName | "auto";
  /** Size of the rayon pool for `simd-threads` (default: the number of logical cores). */
  threads?: number;
}

/** The keys of {@link InitOptions} (for checks where init options pass through, e.g. to workers). */
export const INIT_KEYS = optionKeys<InitOptions>({ build: true, threads: true });

/** What `init()` loaded. */
export interface InitResult {
  /** The build that was loaded. */
  build: BuildName;
  /** Threads the kernels may use (1 unless `simd-threads`). */
  threads: number;
}

/** The raw exports of a build's wasm-bindgen glue (pointers are byte offsets). */
export interface Glue {
  default(input?: unknown): Promise<{ memory: WebAssembly.Memory }>;
  alloc_f32(len: number): number;
  alloc_f32_scratch(len: number): number;
  free_f32(ptr: number, len: number): void;
  build_name(): string;
  thread_count(): number;
  set_min_parallel_elems(n: number): void;
  min_parallel_elems(): number;
  train_forward(
    x: number, y: number, outer: number, channels: number, inner: number,
    weight: number, bias: number, runningMean: number, runningVar: number,
    momentum: number, convention: number, eps: number, saveMean: number, saveInvStd: number,
    relu?: boolean, z?: number, mask?: number,
  ): void;
  eval_forward(
    x: number, y: number, outer: number, channels: number, inner: number,
    weight: number, bias: number, runningMean: number, runningVar: number, eps: number,
    relu?: boolean, z?: number, mask?: number,
  ): void;
  /**
   * Through a fused ReLU when `mask` (the forward's bit mask) or `y` (its output) is
   * non-zero; writes `dz` when non-zero.
   */
  backward(
    dy: number, x: number, dx: number, outer: number, channels: number, inner: number,
    weight: number, mean: number, invStd: number, dWeight: number, dBias: number, training: boolean,
    y?: number, dz?: number, mask?: number,
  ): void;
  /** Words of a fused ReLU's bit mask (batchnorm-core's passes/mask.rs). */
  relu_mask_words(outer: number, channels: number, inner: number): number;
  initThreadPool?(threads: number): Promise<unknown>;
  // Pieces of a training step for data-parallel training (f64 vectors: `alloc_f32(2n)`).
  moments(x: number, outer: number, channels: number, inner: number, out: number): void;
  normalize_f64_mean(
    x: number, y: number, outer: number, channels: number, inner: number,
    weight: number, bias: number, meanF64: number, invStd: number, relu?: boolean, z?: number, mask?: number,
  ): void;
  grad_sums(dy: number, x: number, outer: number, channels: number, inner: number, mean: number, out: number, y?: number, mask?: number): void;
  backward_apply(
    dy: number, x: number, dx: number, outer: number, channels: number, inner: number,
    weight: number, mean: number, invStd: number, sums: number, count: number, y?: number, dz?: number, mask?: number,
  ): void;
  update_running(runningMean: number, runningVar: number, channels: number, stats: number, count: number, momentum: number, convention: number): void;
  /** Merges the moments of a piece of a reduction segment into f64 `[count, mean, m2]` per channel (the streamed training forward). */
  moments_accumulate(x: number, outer: number, channels: number, inner: number, state: number): void;
  /** Merges a segment's `[count, mean, m2]` state into the total, as `moments` combines its segments. */
  moments_merge(total: number, segment: number, channels: number): void;
  /** Outer units per reduction segment: `moments` and `grad_sums` combine these in order, on any number of threads. */
  reduction_segment_len(outer: number, channels: number, inner: number): number;
  /** Elements up to which the row kernels treat their data as cache-resident (`passes::CACHED_ELEMS`). */
  cached_elems(): number;
  /** Rows per moments block of channels-last data with `channels` channels. */
  moment_block_rows(channels: number): number;
  /** Feeds a piece of dy and x (gated by y when non-zero) into a gradient-sums state (the streamed backward). */
  grad_sums_accumulate(dy: number, x: number, outer: number, channels: number, inner: number, mean: number, state: number, y: number): void;
  /** f64 slots per channel of a grad_sums_accumulate state. */
  grad_sums_state_len(): number;
  /** A grad_sums_accumulate state's sums over one segment, written as f64 `[sum_dy.., sum_dy_xmu..]`. */
  grad_sums_finish(state: number, outer: number, channels: number, inner: number, mean: number, out: number): void;
}

/** A loaded build: its exports and its memory. */
export interface Engine {
  /**
   * The build's raw wasm-bindgen exports (byte-offset pointers; not a public API).
   * @internal
   */
  glue: Glue;
  /** The build's linear memory, where every {@link WasmTensor} of this engine lives. */
  memory: WebAssembly.Memory;
  /** Which build this is. */
  build: BuildName;
  /** Threads its kernels may use (1 unless `simd-threads`). */
  threads: number;
  /**
   * `simd-threads` only: the `simd` build, which runs the calls that take and return plain
   * arrays only and reduce nothing (eval) in unshared memory. V8 copies into and out of
   * shared memory several times slower than unshared (a 25 MB tensor through the 128 KiB
   * windows of the time, on an earlier VM: 1.5 against 0.64 ms in, 1.24 against 0.28 ms
   * out), and those copies are most of such a call. (With today's 1 MiB windows the
   * project's current VM copies into shared memory as fast: docs/performance.md, session
   * 17.) Elementwise results are the same bits on both builds.
   * @internal
   */
  unshared?: Engine;
}

// Literal import() paths so bundlers see and split each build.
const glueOf: Record<BuildName, () => Promise<unknown>> = {
  scalar: () => import("../../pkg/scalar/batchnorm.js"),
  simd: () => import("../../pkg/simd/batchnorm.js"),
  "simd-threads": () => import("../../pkg/simd-threads/batchnorm.js"),
};
const wasmUrlOf: Record<BuildName, () => URL> = {
  scalar: () => new URL("../../pkg/scalar/batchnorm_bg.wasm", import.meta.url),
  simd: () => new URL("../../pkg/simd/batchnorm_bg.wasm", import.meta.url),
  "simd-threads": () => new URL("../../pkg/simd-threads/batchnorm_bg.wasm", import.meta.url),
};

const BUILDS: readonly BuildName[] = ["scalar", "simd", "simd-threads"];

let engine: Engine | undefined;
let loading: Promise<InitResult> | undefined;

export const isNode = typeof process !== "undefined" && typeof process.versions?.node === "string";
/** A browser window's main thread, where blocking on a lock is forbidden. */
const isBrowserMainThread = typeof window !== "undefined" && typeof document !== "undefined";

/** The builds this environment can run, best last. */
export async function supportedBuilds(): Promise<BuildName[]> {
  const out: BuildName[] = ["scalar"];
  if (!(await hasSimd())) return out;
  out.push("simd");
  const isolated = isNode || (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === true;
  if ((await hasThreads()) && typeof SharedArrayBuffer !== "undefined" && isolated && !isBrowserMainThread) {
    out.push("simd-threads");
  }
  return out;
}

/** The machine's logical cores (Node), or what the browser reports (4 where it does not). */
export async function logicalCores(): Promise<number> {
  if (isNode) {
    const os = await import("node:os");
    return os.availableParallelism?.() ?? os.cpus().length;
  }
  return (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency ?? 4;
}

/**
 * Loads a wasm build (the best supported one by default). Call once before anything
 * else; later calls return what is loaded. Asking for a different build or thread count
 * after one is loaded throws: tensors belong to one build's memory.
 */
export async function init(opts: InitOptions = {}): Promise<InitResult> {
  checkOptionKeys("init", opts, INIT_KEYS);
  const want = opts.build ?? "auto";
  if (want !== "auto" && !BUILDS.includes(want)) {
    throw new InvalidOptionError(`build must be one of ${BUILDS.join(", ")} or "auto", got ${JSON.stringify(want)}`);
  }
  if (opts.threads !== undefined && !(Number.isSafeInteger(opts.threads) && opts.threads >= 1)) {
    throw new InvalidOptionError(`threads must be a positive integer, got ${String(opts.threads)}`);
  }
  loading ??= load(want, opts.threads).catch((e: unknown) => {
    loading = undefined; // a failed load may be retried
    throw e;
  });
  const r = await loading;
  const threadsDiffer = opts.threads !== undefined && r.build === "simd-threads" && r.threads !== opts.threads;
  if ((want !== "auto" && r.build !== want) || threadsDiffer) {
    throw new StateError(
      `batchnorm-wasm is already initialised with ${r.build} (${r.threads} threads); ` +
        `it cannot switch to ${want} (${opts.threads ?? "default"} threads) in the same realm`,
    );
  }
  return r;
}

async function load(want: BuildName | "auto", threads: number | undefined): Promise<InitResult> {
  engine = await createEngine(want, threads);
  return { build: engine.build, threads: engine.threads };
}

// One instance per build: a wasm-bindgen glue module holds its instance in module state,
// and the module is a singleton of this realm, so loading a build twice would hand back
// the same instance (and a second thread pool could not start).
const engines = new Map<BuildName, Promise<Engine>>();

/**
 * Loads a build as an engine of its own (its own memory and, for `simd-threads`, its own
 * pool), beside the one `init()` loaded. Benchmarks and tests use it to compare builds
 * in one process. Each build loads once per realm: asking again returns the same engine,
 * and asking for another pool size of a loaded `simd-threads` throws {@link StateError}.
 */
export async function createEngine(want: BuildName | "auto" = "auto", threads?: number): Promise<Engine> {
  const supported = await supportedBuilds();
  const build = want === "auto" ? supported[supported.length - 1] : want;
  if (!BUILDS.includes(build)) {
    throw new InvalidOptionError(`build must be one of ${BUILDS.join(", ")} or "auto", got ${JSON.stringify(want)}`);
  }
  if (!supported.includes(build)) {
    throw new InvalidOptionError(`build "${build}" is not supported here (supported: ${supported.join(", ")})`);
  }
  let loading = engines.get(build);
  if (!loading) {
    loading = instantiate(build, threads);
    engines.set(build, loading);
    loading.catch(() => engines.delete(build)); // a failed load may be retried
  }
  const e = await loading;
  if (build === "simd-threads" && threads !== undefined && e.threads !== threads) {
    throw new StateError(`simd-threads is already loaded with ${e.threads} threads in this realm; it cannot also run ${threads}`);
  }
  return e;
}

async function instantiate(build: BuildName, threads: number | undefined): Promise<Engine> {
  const glue = (await importGlue(build)) as Glue;
  const input = isNode ? { module_or_path: await (await import("node:fs/promises")).readFile(wasmUrlOf[build]()) } : undefined;
  const { memory } = await glue.default(input);
  if (build !== "simd-threads") return { glue, memory, build, threads: glue.thread_count() };
  await startPool(glue, threads ?? (await logicalCores()));
  return { glue, memory, build, threads: glue.thread_count(), unshared: await createEngine("simd") };
}

/**
 * Imports a build's glue. The threads glue statically imports wasm-bindgen-rayon's worker
 * script, which at module evaluation listens for messages on `self`; Node's main thread
 * has no `self`, so it gets an inert EventTarget for the duration of the import.
 */
async function importGlue(build: BuildName): Promise<unknown> {
  const g = globalThis as { self?: unknown };
  if (build !== "simd-threads" || g.self !== undefined) return glueOf[build]();
  g.self = new EventTarget();
  try {
    return await glueOf[build]();
  } finally {
    delete g.self;
  }
}

async function startPool(glue: Glue, n: number): Promise<void> {
  // wasm-bindgen-rayon spawns `new Worker(url, { type: "module" })` for each pool thread.
  // For exactly the spawning call, `Worker` is a constructor that watches each worker it
  // makes (pool-worker.ts: an error while a pool worker starts rejects init() instead of
  // leaving it pending). Node has no Web Worker: there it makes worker_threads-backed
  // ones (node-worker.ts). A variable specifier keeps bundlers from pulling that
  // Node-only module (it imports node:worker_threads) into browser bundles; Node
  // resolves it relative to this file.
  const shim = "./node-worker.js";
  const Base = isNode
    ? ((await import(/* @vite-ignore */ /* webpackIgnore: true */ shim)) as typeof import("./node-worker.js")).NodeWebWorker
    : (globalThis as unknown as { Worker: PoolWorkerClass }).Worker;
  const pool = new PoolStart(Base);
  const g = globalThis as { Worker?: unknown };
  const saved = g.Worker;
  g.Worker = pool.workerClass;
  let started: Promise<unknown>;
  try {
    // startWorkers constructs every Worker synchronously before its first await.
    started = glue.initThreadPool!(n);
  } finally {
    g.Worker = saved;
  }
  try {
    await Promise.race([started, pool.failed]);
  } finally {
    pool.settle();
  }
}

/** The loaded build; throws {@link StateError} before `init()` has finished. */
export function getEngine(): Engine {
  if (!engine) throw new StateError("batchnorm-wasm is not initialised: call `await init()` first");
  return engine;
}

/** What is loaded, or `undefined` before `init()`. */
export function loaded(): InitResult | undefined {
  return engine && { build: engine.build, threads: engine.threads };
}

/**
 * Tensors with fewer elements than this run single-threaded in the `simd-threads` build
 * (default 2^20 = 1,048,576; other builds are always single-threaded). The best value
 * depends on the machine: measured here, two threads paid off only from a few MiB on a
 * 2-core VM, earlier on 16 cores. `node scripts/thread-scaling.mjs` measures yours.
 */
export function setParallelThreshold(elems: number, engine: Engine = getEngine()): void {
  if (!Number.isSafeInteger(elems) || elems < 0) {
    throw new InvalidOptionError(`the parallel threshold must be a non-negative integer, got ${String(elems)}`);
  }
  engine.glue.set_min_parallel_elems(elems);
}

/** The current parallel threshold (see {@link setParallelThreshold}). */
export function parallelThreshold(engine: Engine = getEngine()): number {
  return engine.glue.min_parallel_elems();
}
