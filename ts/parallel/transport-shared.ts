/**
 * The shared-memory transport of a process group: one `SharedArrayBuffer` that every rank
 * maps, `Atomics` for the barrier. A collective is a sequence of phases; in each, every
 * rank writes its part into its own slot, arrives at a barrier, then reads what it needs.
 * Slots come in two sets used alternately: a rank writes a set again only after passing
 * the first barrier of the other set's use, which every rank reaches only once it
 * finished reading this set. So one barrier per phase suffices, and no lock is ever taken.
 *
 * Large all-reduces (more than {@link SMALL} elements) add a second barrier per chunk:
 * each rank reduces one segment (reduce-scatter) into slot 0, then all copy slot 0.
 * Small ones skip it: every rank reduces everything itself, in the same order.
 *
 * A rank that reaches a barrier first polls the arrival count for up to `spinMs` before it
 * sleeps in `Atomics.wait`: waking a sleeping thread took 36-66 us (median) on a 2-core VM,
 * paid at every barrier where a rank slept (see {@link DEFAULT_SPIN_MS}).
 *
 * No wait is unbounded: the poll is bounded by `spinMs`, and every `Atomics.wait` has a
 * time slice, after which the rank re-checks the abort word (set by the coordinator when a
 * rank dies, or by a rank that timed out) and its deadline.
 * @module
 */
import { WorkerError } from "./remote.js";
import {
  CollectiveTimeoutError, Op, checkSameCall, descriptorOf, reduceInto, segmentOf,
  type CollectiveBuffer, type Descriptor,
} from "./collective.js";

// Control words (Int32 indices).
const ABORT = 0; // 0: healthy; otherwise an abort code (AbortCode)
const ABORT_RANK = 1; // the rank the abort is about
const ARRIVALS = 2; // barrier arrivals, monotonic (wraps at 2^32)
const DESC = 8; // per parity, per rank: op, bytes, length, root
const DESC_INTS = 4;

/** Why a group was aborted (stored in the abort word). */
export const AbortCode = { died: 1, disposed: 2, timedOut: 3 } as const;

/** All-reduces up to this many elements skip the reduce-scatter phase. */
export const SMALL = 4096;
/**
 * How long a rank polls at a barrier before it sleeps, by default (ms). A rank that had
 * gone to sleep woke 36-66 us (median; p90 up to 121 us) after the notify on a 2-core VM.
 * Data-parallel MNIST on 2 workers (6 barriers a step, ~3.5 ms apart) against 1 worker,
 * paired rounds of 1,000 steps: 0.2 ms beat the old ~15 us poll in 20 of 27 rounds, by
 * +0.05 in the whole-run ratio on average (rounds spread 0.8-1.9x on that noisy host);
 * a 3 ms poll lost to 0.2 ms in the steady part in all 5 of its rounds, holding a core
 * that V8's compile and GC threads then took from the rank still working. With 4 ranks
 * on 2 cores, polling lost outright (1.11x sleeping at once, 0.90x at 0.2 ms), hence no
 * poll by default when there are more ranks than cores. docs/data-parallel.md, session 20.
 */
export const DEFAULT_SPIN_MS = 0.2;
/** Polls between two reads of the clock while spinning (~0.5 us of Atomics.load). */
const POLLS_PER_CLOCK = 64;
const SLICE_MS = 100; // longest single Atomics.wait

export interface SharedLayout {
  sab: SharedArrayBuffer;
  worldSize: number;
  slotBytes: number;
}

/** The shared buffer for a group: control words, then 2 x worldSize slots. */
export function createSharedLayout(worldSize: number, slotBytes: number): SharedLayout {
  const ctlBytes = align(4 * (DESC + 2 * worldSize * DESC_INTS), 64);
  return { sab: new SharedArrayBuffer(ctlBytes + 2 * worldSize * slotBytes), worldSize, slotBytes };
}

function align(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

/**
 * Whether the arrival count `v` has reached `target`, across its wrap at 2^32. A function
 * of module scope, not a closure per barrier: V8 specialised `#spin` on the first closure
 * it was passed and deoptimised at the next (`node --trace-deopt`: "wrong call target").
 */
function reached(v: number, target: number): boolean {
  return ((v - target) | 0) >= 0;
}

/** Marks the group aborted and wakes every rank waiting at the barrier. */
export function abortShared(sab: SharedArrayBuffer, code: number, rank: number): void {
  const ctl = new Int32Array(sab, 0, DESC);
  if (Atomics.compareExchange(ctl, ABORT, 0, code) !== 0) return; // the first reason wins
  Atomics.store(ctl, ABORT_RANK, rank);
  Atomics.notify(ctl, ARRIVALS);
}

/** The reason a rank blocked on shared memory can read: the abort word carries a code and a rank, not text. */
export function abortMessage(code: number, rank: number): string {
  switch (code) {
    case AbortCode.died: return `rank ${rank} died (crashed, exited or was terminated)`;
    case AbortCode.disposed: return "the group was disposed";
    case AbortCode.timedOut: return `rank ${rank} timed out waiting for a collective`;
    default: return `aborted (code ${code})`;
  }
}

/** One rank's end of the shared-memory transport. */
export class SharedTransport {
  readonly #ctl: Int32Array;
  readonly #slots: ArrayBuffer | SharedArrayBuffer;
  readonly #slotsAt: number;
  readonly #slotBytes: number;
  /** Barriers passed (each rank passes the same ones). */
  #phase = 0;
  /** Slot-set uses: set `#uses & 1` is the next one to write. */
  #uses = 0;

  constructor(
    readonly layout: SharedLayout,
    readonly rank: number,
    readonly timeoutMs: number,
    /** How long to poll at a barrier before sleeping (ms). */
    readonly spinMs: number,
    /** Called (once) when this rank times out, so the coordinator can tell everyone. */
    readonly onTimeout: (reason: string) => void,
  ) {
    const { sab, worldSize, slotBytes } = layout;
    this.#ctl = new Int32Array(sab, 0, DESC + 2 * worldSize * DESC_INTS);
    this.#slotsAt = align(4 * (DESC + 2 * worldSize * DESC_INTS), 64);
    this.#slots = sab;
    this.#slotBytes = slotBytes;
  }

  get worldSize(): number {
    return this.layout.worldSize;
  }

  /** The abort reason, if the group was aborted. */
  aborted(): string | undefined {
    const code = Atomics.load(this.#ctl, ABORT);
    return code === 0 ? undefined : abortMessage(code, Atomics.load(this.#ctl, ABORT_RANK));
  }

  #slot(parity: number, rank: number, bytes: number, length: number): CollectiveBuffer {
    const at = this.#slotsAt + (parity * this.worldSize + rank) * this.#slotBytes;
    return bytes === 8 ? new Float64Array(this.#slots, at, length) : new Float32Array(this.#slots, at, length);
  }

  /** Elements of this type per slot. */
  #chunk(bytes: number): number {
    return Math.floor(this.#slotBytes / bytes);
  }

  #writeDescriptor(parity: number, d: Descriptor): void {
    const at = DESC + (parity * this.worldSize + this.rank) * DESC_INTS;
    this.#ctl[at] = d.op;
    this.#ctl[at + 1] = d.bytes;
    this.#ctl[at + 2] = d.length;
    this.#ctl[at + 3] = d.root;
  }

  #checkDescriptors(parity: number): void {
    const all: Descriptor[] = [];
    for (let r = 0; r < this.worldSize; r++) {
      const at = DESC + (parity * this.worldSize + r) * DESC_INTS;
      all.push({ op: this.#ctl[at], bytes: this.#ctl[at + 1], length: this.#ctl[at + 2], root: this.#ctl[at + 3] });
    }
    checkSameCall(all, this.rank);
  }

  /** Waits until every rank has arrived at this phase's barrier. */
  #arrive(): void {
    const ctl = this.#ctl;
    this.#phase++;
    const target = Math.imul(this.#phase, this.worldSize);
    if (reached(Atomics.add(ctl, ARRIVALS, 1) + 1, target)) {
      Atomics.notify(ctl, ARRIVALS);
      return;
    }
    if (this.#spin(target)) return;
    const deadline = performance.now() + this.timeoutMs;
    for (;;) {
      const v = Atomics.load(ctl, ARRIVALS);
      if (reached(v, target)) return;
      const why = this.aborted();
      if (why) throw new WorkerError(`the process group is broken: ${why}`);
      const left = deadline - performance.now();
      if (left <= 0) {
        const reason = `rank ${this.rank} waited ${this.timeoutMs} ms for the other ranks to join a collective`;
        abortShared(this.layout.sab, AbortCode.timedOut, this.rank);
        this.onTimeout(reason);
        throw new CollectiveTimeoutError(`${reason}; the group is now broken`);
      }
      Atomics.wait(ctl, ARRIVALS, v, Math.min(left, SLICE_MS));
    }
  }

  /**
   * Polls the arrival count for up to `spinMs` (at most `timeoutMs`); true once it reached `target`.
   * Stops early, false, when the group is aborted: the caller's wait loop reports it.
   */
  #spin(target: number): boolean {
    if (!(this.spinMs > 0)) return false;
    const ctl = this.#ctl;
    const until = performance.now() + Math.min(this.spinMs, this.timeoutMs);
    do {
      for (let i = 0; i < POLLS_PER_CLOCK; i++) if (reached(Atomics.load(ctl, ARRIVALS), target)) return true;
    } while (Atomics.load(ctl, ABORT) === 0 && performance.now() < until);
    return false;
  }

  /** Starts a phase: this rank's descriptor (first phase of a call) and part, then the barrier. */
  #phaseStart(d: Descriptor | undefined, write?: (parity: number) => void): number {
    const parity = this.#uses++ & 1;
    if (d) this.#writeDescriptor(parity, d);
    write?.(parity);
    this.#arrive();
    if (d) this.#checkDescriptors(parity);
    return parity;
  }

  barrier(): void {
    this.#phaseStart(descriptorOf(Op.barrier, undefined));
  }

  allReduce(buf: CollectiveBuffer, mean: boolean): void {
    const N = this.worldSize;
    const bytes = buf.BYTES_PER_ELEMENT;
    const step = this.#chunk(bytes);
    let d: Descriptor | undefined = descriptorOf(mean ? Op.allReduceMean : Op.allReduceSum, buf);
    for (let lo = 0; lo < buf.length || d; lo += step) {
      const m = Math.min(step, buf.length - lo);
      const part = buf.subarray(lo, lo + m);
      const parity = this.#phaseStart(d, (p) => this.#slot(p, this.rank, bytes, m).set(part));
      d = undefined;
      const slots = Array.from({ length: N }, (_, r) => this.#slot(parity, r, bytes, m));
      if (m <= SMALL) {
        reduceInto(part, slots, 0, m, mean);
        continue;
      }
      // Reduce-scatter into slot 0 (each rank its own segment), then everyone copies it.
      const seg = Math.ceil(m / N);
      reduceInto(slots[0], slots, Math.min(m, this.rank * seg), Math.min(m, (this.rank + 1) * seg), mean);
      this.#arrive();
      part.set(slots[0]);
    }
  }

  /**
   * Every rank writes its buffer into its slot, chunk by chunk, except its own segment
   * (which only it reads, from its buffer); after each chunk's barrier a rank reduces the
   * part of the chunk inside its own segment, into its buffer. One barrier per chunk (the
   * all-reduce's large path has two, and copies everything in and out).
   */
  reduceScatter(buf: CollectiveBuffer, mean: boolean): void {
    const N = this.worldSize;
    const bytes = buf.BYTES_PER_ELEMENT;
    const step = this.#chunk(bytes);
    const [mine, end] = segmentOf(buf.length, this.rank, N);
    let d: Descriptor | undefined = descriptorOf(mean ? Op.reduceScatterMean : Op.reduceScatterSum, buf);
    for (let lo = 0; lo < buf.length || d; lo += step) {
      const m = Math.min(step, buf.length - lo);
      const part = buf.subarray(lo, lo + m);
      // This rank's segment inside the chunk, relative to the chunk: [a, b).
      const a = Math.min(Math.max(mine, lo), lo + m) - lo, b = Math.min(Math.max(end, lo), lo + m) - lo;
      const parity = this.#phaseStart(d, (p) => {
        const slot = this.#slot(p, this.rank, bytes, m);
        slot.set(part.subarray(0, a));
        slot.set(part.subarray(b), b);
      });
      d = undefined;
      if (a < b) reduceInto(part, Array.from({ length: N }, (_, r) => (r === this.rank ? part : this.#slot(parity, r, bytes, m))), a, b, mean);
    }
  }

  /** Every rank writes its own segment into its slot; after the barrier each copies the others'. */
  allGatherSegments(buf: CollectiveBuffer): void {
    const N = this.worldSize;
    const bytes = buf.BYTES_PER_ELEMENT;
    const step = this.#chunk(bytes);
    let d: Descriptor | undefined = descriptorOf(Op.allGatherSegments, buf);
    for (let lo = 0; lo < buf.length || d; lo += step) {
      const m = Math.min(step, buf.length - lo);
      const part = buf.subarray(lo, lo + m);
      // The part of rank r's segment inside this chunk, relative to the chunk.
      const inChunk = (r: number) => segmentOf(buf.length, r, N).map((i) => Math.min(Math.max(i, lo), lo + m) - lo);
      const parity = this.#phaseStart(d, (p) => {
        const [a, b] = inChunk(this.rank);
        this.#slot(p, this.rank, bytes, m).set(part.subarray(a, b), a);
      });
      d = undefined;
      for (let r = 0; r < N; r++) {
        const [a, b] = inChunk(r);
        if (r !== this.rank && a < b) part.set(this.#slot(parity, r, bytes, m).subarray(a, b), a);
      }
    }
  }

  broadcast(buf: CollectiveBuffer, root: number): void {
    const bytes = buf.BYTES_PER_ELEMENT;
    const step = this.#chunk(bytes);
    let d: Descriptor | undefined = descriptorOf(Op.broadcast, buf, root);
    for (let lo = 0; lo < buf.length || d; lo += step) {
      const m = Math.min(step, buf.length - lo);
      const part = buf.subarray(lo, lo + m);
      const parity = this.#phaseStart(d, (p) => {
        if (this.rank === root) this.#slot(p, root, bytes, m).set(part);
      });
      d = undefined;
      if (this.rank !== root) part.set(this.#slot(parity, root, bytes, m));
    }
  }

  allGather(buf: CollectiveBuffer): CollectiveBuffer[] {
    const bytes = buf.BYTES_PER_ELEMENT;
    const step = this.#chunk(bytes);
    const out = Array.from({ length: this.worldSize }, () => (bytes === 8 ? new Float64Array(buf.length) : new Float32Array(buf.length)));
    let d: Descriptor | undefined = descriptorOf(Op.allGather, buf);
    for (let lo = 0; lo < buf.length || d; lo += step) {
      const m = Math.min(step, buf.length - lo);
      const parity = this.#phaseStart(d, (p) => this.#slot(p, this.rank, bytes, m).set(buf.subarray(lo, lo + m)));
      d = undefined;
      out.forEach((o, r) => o.set(this.#slot(parity, r, bytes, m), lo));
    }
    return out;
  }
}
