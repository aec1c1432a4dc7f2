/**
 * A rank's side of a process group: {@link joinProcessGroup} (call it once in each worker
 * that a {@link ProcessGroup} was created with) returns a {@link Communicator} with the
 * collectives, in the spirit of `torch.distributed`.
 *
 * ```ts
 * // replica.js, a module worker (browser) or worker_threads worker (Node)
 * import { init, joinProcessGroup } from "batchnorm-wasm";
 * await init();
 * const comm = await joinProcessGroup();
 * const g = new Float32Array([comm.rank]);
 * await comm.allReduce(g);          // g[0] = 0 + 1 + ... + (worldSize - 1), on every rank
 * ```
 * @module
 */
import { InvalidArgumentError } from "../engine/errors.js";
import { checkOptionKeys } from "../engine/validate.js";
import { isNode } from "../engine/loader.js";
import { WorkerError } from "./remote.js";
import { segmentOf, type CollectiveBuffer, type ReduceOp } from "./collective.js";
import { HELLO, webLocks, type ToCoordinator, type ToRank, type TransportName } from "./group-protocol.js";
import { SharedTransport } from "./transport-shared.js";
import { MessageTransport, type PortLike } from "./transport-message.js";

/**
 * One rank of a process group. Collectives run one at a time in call order (a call made
 * while another is pending waits for it) and every rank must make the same calls in the
 * same order. Each rejects with `WorkerError` once the group is broken (a rank died, the
 * group was disposed, a collective timed out), with `CollectiveMismatchError` when the
 * ranks made different calls, and with `CollectiveTimeoutError` after `timeoutMs`.
 */
export class Communicator {
  /** This rank: 0 .. worldSize - 1 (the index of its worker in `ProcessGroup.create`). */
  readonly rank: number;
  /** Number of ranks in the group. */
  readonly worldSize: number;
  /** `"shared"` (SharedArrayBuffer + Atomics) or `"message"` (MessagePorts). */
  readonly transport: TransportName;
  readonly #impl: SharedTransport | MessageTransport;
  readonly #control: PortLike;
  #queue: Promise<unknown> = Promise.resolve();
  #reason?: string;

  /**
   * Built by {@link joinProcessGroup}; not for direct use.
   * @internal
   */
  constructor(init: Extract<ToRank, { t: "init" }>, control: PortLike) {
    this.rank = init.rank;
    this.worldSize = init.worldSize;
    this.transport = init.transport;
    this.#control = control;
    const tellCoordinator = (reason: string) => control.postMessage({ t: "broken", reason } satisfies ToCoordinator);
    this.#impl =
      init.transport === "shared"
        ? new SharedTransport(init.shared!, init.rank, init.timeoutMs, init.spinMs, tellCoordinator)
        : new MessageTransport(init.rank, init.worldSize, init.ports!, init.timeoutMs, tellCoordinator);
    control.addEventListener("message", (e) => {
      const m = e.data as ToRank;
      if (m.t === "abort") {
        this.#reason ??= m.reason;
        if (this.#impl instanceof MessageTransport) this.#impl.abort(m.reason);
      }
    });
  }

  /** Why the group is broken, or `undefined` while it works. */
  get broken(): string | undefined {
    return this.#impl.aborted() ?? this.#reason;
  }

  /** Runs collectives one after another, each after the previous settled. */
  #serial<T>(f: () => T | Promise<T>): Promise<T> {
    const run = this.#queue.then(() => {
      const why = this.broken;
      if (why) throw new WorkerError(why.startsWith("the process group is broken") ? why : `the process group is broken: ${why}`);
      return f();
    });
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /**
   * Replaces `buf` on every rank with the element-wise sum over ranks (or the mean), summed
   * in rank order in float64: every rank gets the same bits. Resolves to `buf`.
   */
  async allReduce<T extends CollectiveBuffer>(buf: T, opts: { op?: ReduceOp } = {}): Promise<T> {
    checkBuffer("allReduce", buf);
    const mean = isMean("allReduce", opts);
    return this.#serial(async () => {
      await this.#impl.allReduce(buf, mean);
      return buf;
    });
  }

  /**
   * This rank's segment `[lo, hi)` of a buffer of `length` elements, as
   * {@link Communicator.reduceScatter} and {@link Communicator.allGatherSegments} split it:
   * contiguous, in rank order, sizes differing by at most one.
   * @example
   * const [lo, hi] = comm.segment(grads.length); // rank 1 of 2, 10 elements: [5, 10)
   */
  segment(length: number): [number, number] {
    if (!Number.isSafeInteger(length) || length < 0) throw new InvalidArgumentError(`segment length must be an integer >= 0, got ${String(length)}`);
    return segmentOf(length, this.rank, this.worldSize);
  }

  /**
   * The reduction of `allReduce`, delivered in pieces: afterwards `buf`'s elements in this
   * rank's {@link Communicator.segment} hold the sum over ranks (or the mean), with the
   * bits `allReduce` gives them; the rest of `buf` is left as it was. With
   * {@link Communicator.allGatherSegments} it splits work that every rank would otherwise
   * repeat (PyTorch's `reduce_scatter_tensor`, and ZeRO's sharded optimizer step).
   * Resolves to `buf`.
   * @example
   * await comm.reduceScatter(grads);              // my segment: the summed gradients
   * const [lo, hi] = comm.segment(grads.length);
   * for (let i = lo; i < hi; i++) params[i] -= lr * grads[i];
   * await comm.allGatherSegments(params);         // every rank: every updated segment
   */
  async reduceScatter<T extends CollectiveBuffer>(buf: T, opts: { op?: ReduceOp } = {}): Promise<T> {
    checkBuffer("reduceScatter", buf);
    const mean = isMean("reduceScatter", opts);
    return this.#serial(async () => {
      await this.#impl.reduceScatter(buf, mean);
      return buf;
    });
  }

  /**
   * Every rank contributes its {@link Communicator.segment} of `buf`; afterwards every
   * rank's `buf` holds every rank's segment (PyTorch's `all_gather_into_tensor`, in
   * place). Resolves to `buf`.
   */
  async allGatherSegments<T extends CollectiveBuffer>(buf: T): Promise<T> {
    checkBuffer("allGatherSegments", buf);
    return this.#serial(async () => {
      await this.#impl.allGatherSegments(buf);
      return buf;
    });
  }

  /** Copies rank `root`'s `buf` into every other rank's `buf`. Resolves to `buf`. */
  async broadcast<T extends CollectiveBuffer>(buf: T, root = 0): Promise<T> {
    checkBuffer("broadcast", buf);
    if (!Number.isSafeInteger(root) || root < 0 || root >= this.worldSize) {
      throw new InvalidArgumentError(`broadcast root must be a rank in [0, ${this.worldSize - 1}], got ${String(root)}`);
    }
    return this.#serial(async () => {
      await this.#impl.broadcast(buf, root);
      return buf;
    });
  }

  /** Every rank's `buf` (all of the same length and type), indexed by rank. */
  async allGather<T extends CollectiveBuffer>(buf: T): Promise<T[]> {
    checkBuffer("allGather", buf);
    return this.#serial(async () => (await this.#impl.allGather(buf)) as T[]);
  }

  /** Resolves once every rank has called `barrier()`. */
  async barrier(): Promise<void> {
    return this.#serial(() => this.#impl.barrier());
  }
}

/** Checks a reducing collective's options: whether its `op` is `"mean"` (else `"sum"`). */
function isMean(what: string, opts: { op?: ReduceOp }): boolean {
  checkOptionKeys(what, opts, ["op"]);
  const op = opts.op ?? "sum";
  if (op !== "sum" && op !== "mean") throw new InvalidArgumentError(`${what} op must be "sum" or "mean", got ${JSON.stringify(op)}`);
  return op === "mean";
}

function checkBuffer(what: string, buf: unknown): void {
  if (!(buf instanceof Float32Array || buf instanceof Float64Array)) {
    throw new InvalidArgumentError(`${what} needs a Float32Array or Float64Array`);
  }
}

/**
 * Joins the process group that the parent thread is creating with this worker
 * (`ProcessGroup.create`, before or after this call), and returns this rank's
 * {@link Communicator}. Call it once, from a worker. Until the parent answers it posts a
 * join request (`{ "batchnorm-wasm/process-group": true, port }`) on the worker's channel
 * every 100 ms; your own message handlers on the parent side may see and ignore them.
 */
export async function joinProcessGroup(): Promise<Communicator> {
  const parent = await parentEndpoint();
  // The join request goes out again every 100 ms until the coordinator answers: one sent
  // before the parent called ProcessGroup.create (nobody listening yet) is lost. Each
  // request hands over its own port; the coordinator answers on the first it receives.
  const asked: PortLike[] = [];
  let resend: ReturnType<typeof setInterval> | undefined;
  const answer = new Promise<{ init: Extract<ToRank, { t: "init" }>; control: PortLike }>((resolve) => {
    const ask = () => {
      const { port1, port2 } = new MessageChannel();
      const control = port1 as unknown as PortLike;
      control.addEventListener("message", (e) => {
        const m = e.data as ToRank;
        if (m.t === "init") resolve({ init: m, control });
      });
      control.start?.();
      asked.push(control);
      parent.postMessage({ [HELLO]: true, port: port2 }, [port2 as unknown as Transferable]);
    };
    ask();
    resend = setInterval(ask, 100);
  });
  const { init, control } = await answer;
  clearInterval(resend);
  for (const p of asked) if (p !== control) p.close();
  const comm = new Communicator(init, control);
  const locks = webLocks();
  if (init.lock && locks) {
    // Held until this worker ends: the coordinator's request for it is granted then.
    await new Promise<void>((held) => void locks.request(init.lock!, {}, () => (held(), new Promise(() => {}))));
  }
  control.postMessage({ t: "joined" } satisfies ToCoordinator);
  return comm;
}

async function parentEndpoint(): Promise<{ postMessage(m: unknown, t: Transferable[]): void }> {
  if (isNode) {
    const { parentPort } = await import("node:worker_threads");
    if (!parentPort) throw new InvalidArgumentError("joinProcessGroup() must be called in a worker");
    return parentPort as unknown as { postMessage(m: unknown, t: Transferable[]): void };
  }
  const g = globalThis as { postMessage?: unknown; document?: unknown };
  if (g.document !== undefined || typeof g.postMessage !== "function") throw new InvalidArgumentError("joinProcessGroup() must be called in a worker");
  return globalThis as unknown as { postMessage(m: unknown, t: Transferable[]): void };
}
