/**
 * The MessagePort transport of a process group, for pages that are not cross-origin
 * isolated (no `SharedArrayBuffer`): every pair of ranks has a `MessageChannel`. In every
 * collective each rank sends its descriptor (and its data where the collective needs it)
 * to every other rank and waits for one message from each; ports keep order, so the k-th
 * message from a peer belongs to the k-th collective. The reduction then runs on every
 * rank over the same values in rank order, so every rank gets the same bits.
 *
 * No wait is unbounded: each collective has a deadline, and an abort from the coordinator
 * (a rank died) rejects the pending one.
 * @module
 */
import { WorkerError } from "./remote.js";
import {
  CollectiveTimeoutError, Op, checkSameCall, descriptorOf, reduceInto, segmentOf,
  type CollectiveBuffer, type Descriptor,
} from "./collective.js";

/** What a rank sends to each peer per collective. */
interface Packet {
  d: Descriptor;
  data?: CollectiveBuffer;
}

/** A port as both platforms have it (browser MessagePort, Node worker_threads MessagePort). */
export interface PortLike {
  postMessage(m: unknown, transfer?: Transferable[]): void;
  addEventListener(type: "message", f: (e: { data: unknown }) => void): void;
  start?(): void;
  close(): void;
}

/** One rank's end of the MessagePort transport. */
export class MessageTransport {
  /** Received packets not yet consumed, per peer. */
  readonly #inbox: Packet[][];
  #wake?: () => void;
  #broken?: WorkerError;

  constructor(
    readonly rank: number,
    readonly worldSize: number,
    /** ports[r]: the port to rank r (undefined for this rank). */
    readonly ports: readonly (PortLike | undefined)[],
    readonly timeoutMs: number,
    readonly onTimeout: (reason: string) => void,
  ) {
    this.#inbox = ports.map(() => []);
    ports.forEach((p, r) => {
      if (!p) return;
      p.addEventListener("message", (e) => {
        this.#inbox[r].push(e.data as Packet);
        this.#wake?.();
      });
      p.start?.();
    });
  }

  /** Rejects the pending collective and every later one. */
  abort(reason: string): void {
    this.#broken ??= new WorkerError(`the process group is broken: ${reason}`);
    this.#wake?.();
  }

  aborted(): string | undefined {
    return this.#broken?.message;
  }

  close(): void {
    for (const p of this.ports) p?.close();
  }

  /** Sends `mine` to every peer and returns every rank's packet, in rank order. */
  async #exchange(mine: Packet, withData: (peer: number) => boolean): Promise<Packet[]> {
    if (this.#broken) throw this.#broken;
    this.ports.forEach((p, r) => p?.postMessage(withData(r) ? mine : { d: mine.d }));
    const deadline = performance.now() + this.timeoutMs;
    const ready = () => this.#inbox.every((q, r) => r === this.rank || q.length > 0);
    while (!ready()) {
      if (this.#broken) throw this.#broken;
      const left = deadline - performance.now();
      if (left <= 0) {
        const reason = `rank ${this.rank} waited ${this.timeoutMs} ms for the other ranks to join a collective`;
        this.abort(reason);
        this.onTimeout(reason);
        throw new CollectiveTimeoutError(`${reason}; the group is now broken`);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = undefined;
    }
    if (this.#broken) throw this.#broken;
    const all = this.#inbox.map((q, r) => (r === this.rank ? mine : q.shift()!));
    checkSameCall(all.map((p) => p.d), this.rank);
    return all;
  }

  async barrier(): Promise<void> {
    await this.#exchange({ d: descriptorOf(Op.barrier, undefined) }, () => false);
  }

  async allReduce(buf: CollectiveBuffer, mean: boolean): Promise<void> {
    const all = await this.#exchange({ d: descriptorOf(mean ? Op.allReduceMean : Op.allReduceSum, buf), data: buf }, () => true);
    reduceInto(buf, all.map((p) => p.data!), 0, buf.length, mean);
  }

  /** Every rank sends its whole buffer (each needs a different part) and reduces its segment. */
  async reduceScatter(buf: CollectiveBuffer, mean: boolean): Promise<void> {
    const all = await this.#exchange({ d: descriptorOf(mean ? Op.reduceScatterMean : Op.reduceScatterSum, buf), data: buf }, () => true);
    const [lo, hi] = segmentOf(buf.length, this.rank, this.worldSize);
    reduceInto(buf, all.map((p) => p.data!), lo, hi, mean);
  }

  /** Every rank sends a copy of its own segment (a view would send its whole buffer). */
  async allGatherSegments(buf: CollectiveBuffer): Promise<void> {
    const [lo, hi] = segmentOf(buf.length, this.rank, this.worldSize);
    const all = await this.#exchange({ d: descriptorOf(Op.allGatherSegments, buf), data: buf.slice(lo, hi) }, () => true);
    all.forEach((p, r) => {
      if (r !== this.rank) buf.set(p.data!, segmentOf(buf.length, r, this.worldSize)[0]);
    });
  }

  async broadcast(buf: CollectiveBuffer, root: number): Promise<void> {
    const all = await this.#exchange({ d: descriptorOf(Op.broadcast, buf, root), data: this.rank === root ? buf : undefined }, () => this.rank === root);
    if (this.rank !== root) buf.set(all[root].data!);
  }

  async allGather(buf: CollectiveBuffer): Promise<CollectiveBuffer[]> {
    const all = await this.#exchange({ d: descriptorOf(Op.allGather, buf), data: buf }, () => true);
    return all.map((p, r) => (r === this.rank ? buf.slice() : p.data!));
  }
}
