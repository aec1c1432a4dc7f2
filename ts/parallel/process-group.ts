/**
 * {@link ProcessGroup}: the thread that starts N workers makes them one group. Each
 * worker calls `joinProcessGroup()` and gets its rank's `Communicator` (allReduce,
 * broadcast, allGather, barrier, reduceScatter, allGatherSegments), in the spirit of
 * `torch.distributed`.
 *
 * ```ts
 * const workers = [0, 1].map(() => new Worker(new URL("./replica.js", import.meta.url), { type: "module" }));
 * const group = await ProcessGroup.create(workers);   // rank i = workers[i]
 * // ... talk to the workers as usual (postMessage, comlink) ...
 * group.dispose();                                      // terminates the workers
 * ```
 *
 * Transport: a `SharedArrayBuffer` with `Atomics.wait`/`notify` where this realm can
 * share memory (Node; cross-origin isolated pages), otherwise a `MessageChannel` between
 * every pair of ranks. Same API and same results either way.
 *
 * Faults: the group watches its workers. When one dies (crashes, exits, or is terminated
 * through {@link ProcessGroup.terminate} / `dispose`; in browsers also a plain
 * `worker.terminate()`, seen through the Web Locks API), the group is broken: every
 * rank's pending and later collectives reject with `WorkerError` (shared memory: within
 * one 100 ms wait slice; ports: at once). A broken group cannot be repaired; dispose it
 * and create a new one with new workers.
 * @module
 */
import { InvalidArgumentError, InvalidOptionError } from "../engine/errors.js";
import { checkOptionKeys, optionKeys } from "../engine/validate.js";
import { WorkerError } from "./remote.js";
import { logicalCores } from "../engine/loader.js";
import { AbortCode, DEFAULT_SPIN_MS, abortShared, createSharedLayout, type SharedLayout } from "./transport-shared.js";
import { HELLO, canShareMemory, webLocks, type ToCoordinator, type ToRank, type TransportName } from "./group-protocol.js";
import type { PortLike } from "./transport-message.js";

/** A browser `Worker` or a Node `worker_threads` `Worker`. */
export type WorkerLike =
  | {
      /** Posts a message to the worker. */
      postMessage(m: unknown, t?: Transferable[]): void;
      /** Ends the worker (on `dispose()`). */
      terminate(): unknown;
      /** Listens to the worker's events (messages, errors). */
      addEventListener(t: string, f: (e: never) => void): void;
    }
  | {
      /** Posts a message to the worker. */
      postMessage(m: unknown, t?: readonly unknown[]): void;
      /** Ends the worker (on `dispose()`). */
      terminate(): unknown;
      /** Listens to the worker's events (messages, errors, exit). */
      on(t: string, f: (...a: never[]) => void): unknown;
    };

/** Options of {@link ProcessGroup.create}. */
export interface ProcessGroupOptions {
  /** `"auto"` (default): shared memory where possible, otherwise MessagePorts. */
  transport?: TransportName | "auto";
  /** How long a collective waits for the other ranks before failing (default 120 000 ms). */
  timeoutMs?: number;
  /** How long each worker has to call `joinProcessGroup()` (default 60 000 ms). */
  joinTimeoutMs?: number;
  /** Bytes per rank per chunk of the shared-memory transport (default 1 MiB; multiple of 8). */
  slotBytes?: number;
  /**
   * Shared memory: how long a rank that reaches a collective first polls for the others
   * before it sleeps (0: sleep at once). Polling answers in a microsecond where waking a
   * sleeping thread takes tens; it occupies a core meanwhile. Default: 0.2 ms, or 0 when
   * the group has more ranks than the machine has logical cores (the cores are then
   * needed by the ranks still working).
   */
  spinMs?: number;
}

const OPTION_KEYS = optionKeys<ProcessGroupOptions>({ transport: true, timeoutMs: true, joinTimeoutMs: true, slotBytes: true, spinMs: true });

/** One worker, as the coordinator sees it. */
interface Member {
  worker: WorkerLike;
  port?: PortLike;
  stopWatching: () => void;
}

/**
 * A group of workers for data-parallel training, as seen from the thread that started
 * them: creates the group, watches the workers, breaks the group when one dies, and ends
 * them on `dispose()`. The workers run the collectives (see `joinProcessGroup`).
 * @example
 * const workers = [0, 1].map(() => new Worker(new URL("./replica.js", import.meta.url), { type: "module" }));
 * const group = await ProcessGroup.create(workers);
 * try {
 *   // ... train (your own messages to the workers) ...
 * } finally {
 *   group.dispose();
 * }
 */
export class ProcessGroup {
  /** Number of ranks (workers). */
  readonly worldSize: number;
  /** `"shared"` (SharedArrayBuffer + Atomics) or `"message"` (MessagePorts). */
  readonly transport: TransportName;
  /** How long a rank polls at a shared-memory barrier before it sleeps (ms; see {@link ProcessGroupOptions.spinMs}). */
  readonly spinMs: number;
  readonly #members: Member[];
  readonly #shared?: SharedLayout;
  readonly #locks = new AbortController();
  #broken?: WorkerError;
  #disposed = false;

  private constructor(members: Member[], transport: TransportName, shared: SharedLayout | undefined, spinMs: number) {
    this.worldSize = members.length;
    this.transport = transport;
    this.spinMs = spinMs;
    this.#members = members;
    this.#shared = shared;
  }

  /**
   * Makes `workers` a group (rank i = `workers[i]`); each must call `joinProcessGroup()`.
   * Resolves once every rank has joined. If a worker dies or does not join in time, every
   * worker is terminated and the promise rejects with `WorkerError`.
   */
  static async create(workers: readonly WorkerLike[], opts: ProcessGroupOptions = {}): Promise<ProcessGroup> {
    checkOptionKeys("ProcessGroup.create", opts, OPTION_KEYS);
    const want = opts.transport ?? "auto";
    if (want !== "auto" && want !== "shared" && want !== "message") {
      throw new InvalidOptionError(`transport must be "auto", "shared" or "message", got ${JSON.stringify(want)}`);
    }
    if (want === "shared" && !canShareMemory()) {
      throw new InvalidOptionError(`transport "shared" needs SharedArrayBuffer and a cross-origin isolated page (or Node)`);
    }
    const timeoutMs = milliseconds("timeoutMs", opts.timeoutMs ?? 120_000);
    const joinTimeoutMs = milliseconds("joinTimeoutMs", opts.joinTimeoutMs ?? 60_000);
    const givenSpinMs = opts.spinMs === undefined ? undefined : milliseconds("spinMs", opts.spinMs, true);
    const slotBytes = opts.slotBytes ?? 1 << 20;
    if (!Number.isSafeInteger(slotBytes) || slotBytes < 8 || slotBytes % 8 !== 0) {
      throw new InvalidOptionError(`slotBytes must be a positive multiple of 8, got ${String(slotBytes)}`);
    }
    if (!Array.isArray(workers) || workers.length < 1) throw new InvalidArgumentError("ProcessGroup.create needs a non-empty array of workers");
    // More ranks than cores: a polling rank would hold a core that a working rank needs.
    const spinMs = givenSpinMs ?? (workers.length <= (await logicalCores()) ? DEFAULT_SPIN_MS : 0);
    const transport: TransportName = want === "auto" ? (canShareMemory() ? "shared" : "message") : want;
    const N = workers.length;
    const shared = transport === "shared" ? createSharedLayout(N, slotBytes) : undefined;

    // Every worker's private control port (its join request), or its death.
    const members: Member[] = [];
    const deaths: Array<(reason: string) => void> = [];
    let group: ProcessGroup | undefined;
    const died = (rank: number, reason: string) => {
      if (group) group.#abort(rank, AbortCode.died, reason);
      else deaths[rank]?.(reason);
    };
    const ports = workers.map((w, rank) => {
      let stopWatching = () => {};
      const port = new Promise<PortLike>((resolve, reject) => {
        deaths[rank] = (reason) => reject(new WorkerError(`rank ${rank} ${reason} before joining the group`));
        stopWatching = watch(w, (data) => {
          const m = data as { [HELLO]?: boolean; port?: PortLike } | null;
          if (!(m && typeof m === "object" && m[HELLO] === true && m.port)) return;
          if (members[rank].port) m.port.close(); // a repeated request: the first one is answered
          else resolve((members[rank].port = m.port));
        }, (reason) => died(rank, reason));
      });
      members.push({ worker: w, stopWatching });
      return port;
    });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new WorkerError(`not every worker called joinProcessGroup() within ${joinTimeoutMs} ms`)), joinTimeoutMs);
    });
    try {
      const controls = await Promise.race([Promise.all(ports), timeout]);
      controls.forEach((p, r) => (members[r].port = p));
      const meshes = transport === "message" ? mesh(N) : undefined;
      const id = `batchnorm-wasm-group-${Date.now()}-${Math.random().toString(36).slice(2)}`;
      const locks = webLocks();
      const joined = controls.map((port, rank) => new Promise<void>((resolve) => {
        port.addEventListener("message", (e) => {
          const m = e.data as ToCoordinator;
          if (m.t === "joined") resolve();
          else if (m.t === "broken" && group) group.#abort(rank, AbortCode.timedOut, m.reason);
        });
        port.start?.();
        const init: ToRank = {
          t: "init", rank, worldSize: N, transport, timeoutMs, spinMs, shared,
          ports: meshes?.[rank], lock: locks ? `${id}-${rank}` : undefined,
        };
        port.postMessage(init, (meshes?.[rank].filter((p) => p !== undefined) ?? []) as unknown as Transferable[]);
      }));
      await Promise.race([Promise.all(joined), timeout]);
      group = new ProcessGroup(members, transport, shared, spinMs);
      if (locks) {
        // Granted when rank r's worker ends (it holds the lock while alive).
        members.forEach((_, r) => void locks.request(`${id}-${r}`, { signal: group!.#locks.signal }, () => group!.#abort(r, AbortCode.died, "ended")).catch(() => {}));
      }
      return group;
    } catch (e) {
      for (const m of members) {
        m.stopWatching();
        m.port?.close();
        m.worker.terminate();
      }
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Why the group is broken (a `WorkerError`), or `undefined` while it works. */
  get broken(): WorkerError | undefined {
    return this.#broken;
  }

  /** The workers, by rank (talk to them as usual; terminate them through the group). */
  get workers(): readonly WorkerLike[] {
    return this.#members.map((m) => m.worker);
  }

  /** Breaks the group: every rank's pending and later collectives reject with WorkerError. */
  #abort(rank: number, code: number, what: string): void {
    if (this.#broken) return;
    const reason = code === AbortCode.disposed ? "the group was disposed" : code === AbortCode.timedOut ? what : `rank ${rank} ${what}`;
    this.#broken = new WorkerError(`the process group is broken: ${reason}`);
    if (this.#shared) abortShared(this.#shared.sab, code, rank);
    for (const m of this.#members) {
      try {
        m.port?.postMessage({ t: "abort", reason } satisfies ToRank);
      } catch {
        // a closed port: that rank is gone anyway
      }
    }
  }

  /** Terminates rank `rank`'s worker (fault drills, or to stop one rank); breaks the group. */
  terminate(rank: number, reason = "was terminated"): void {
    const m = this.#members[rank];
    if (!m) throw new InvalidArgumentError(`no rank ${rank} in a group of ${this.worldSize}`);
    this.#abort(rank, AbortCode.died, reason);
    m.worker.terminate();
  }

  /** Breaks the group (if it is not) and terminates every worker. Idempotent. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#abort(0, AbortCode.disposed, "");
    this.#locks.abort();
    for (const m of this.#members) {
      m.stopWatching();
      m.port?.close();
      m.worker.terminate();
    }
  }

  /** `using group = await ProcessGroup.create(...)` disposes it at the end of the scope. */
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** `v` as an option in milliseconds: a finite number, above zero (or at least zero with `orZero`). */
function milliseconds(name: string, v: unknown, orZero = false): number {
  if (typeof v !== "number" || !Number.isFinite(v) || !(orZero ? v >= 0 : v > 0)) {
    throw new InvalidOptionError(`${name} must be ${orZero ? "a number of milliseconds >= 0" : "a positive number of milliseconds"}, got ${String(v)}`);
  }
  return v;
}

/** ports[i][j]: rank i's end of the channel between ranks i and j. */
function mesh(n: number): (PortLike | undefined)[][] {
  const ports: (PortLike | undefined)[][] = Array.from({ length: n }, () => Array<PortLike | undefined>(n).fill(undefined));
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const { port1, port2 } = new MessageChannel();
      ports[i][j] = port1 as unknown as PortLike;
      ports[j][i] = port2 as unknown as PortLike;
    }
  }
  return ports;
}

/** Listens to a worker's messages and its death; returns a function that stops listening. */
function watch(w: WorkerLike, onMessage: (data: unknown) => void, onDeath: (reason: string) => void): () => void {
  if ("on" in w) {
    const node = w as unknown as { on(t: string, f: (...a: unknown[]) => void): void; off(t: string, f: (...a: unknown[]) => void): void };
    const msg = (d: unknown) => onMessage(d);
    const err = (e: unknown) => onDeath(`crashed: ${(e as Error)?.message ?? String(e)}`);
    const exit = (code: unknown) => onDeath(`exited (code ${String(code)})`);
    node.on("message", msg);
    node.on("error", err);
    node.on("exit", exit);
    return () => {
      node.off("message", msg);
      node.off("error", err);
      node.off("exit", exit);
    };
  }
  const web = w as unknown as { addEventListener(t: string, f: (e: never) => void): void; removeEventListener(t: string, f: (e: never) => void): void };
  const msg = (e: { data: unknown }) => onMessage(e.data);
  const err = (e: { message?: string }) => onDeath(`crashed: ${e.message ?? "an uncaught error"}`);
  web.addEventListener("message", msg);
  web.addEventListener("error", err);
  return () => {
    web.removeEventListener("message", msg);
    web.removeEventListener("error", err);
  };
}
