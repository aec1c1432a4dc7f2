/**
 * The messages between a process group's coordinator (the thread that created the
 * workers) and its ranks, and the platform differences of workers and ports.
 *
 * Joining: the rank posts `{ [HELLO]: true, port }` on its worker's own channel, handing
 * over a private port; everything else goes over that port, so the group never mixes
 * with the user's own messages (comlink or others) on the worker's channel.
 * @module
 */
import type { SharedLayout } from "./transport-shared.js";
import type { PortLike } from "./transport-message.js";

/** The key of the join request a rank posts on its worker's channel. */
export const HELLO = "batchnorm-wasm/process-group";

/** Which transport a group uses. */
export type TransportName = "shared" | "message";

/** Coordinator to rank. */
export type ToRank =
  | {
      t: "init";
      rank: number;
      worldSize: number;
      transport: TransportName;
      timeoutMs: number;
      /** Shared memory: how long a rank polls at a barrier before it sleeps (ms). */
      spinMs: number;
      shared?: SharedLayout;
      /** ports[r]: the port to rank r (message transport). */
      ports?: (PortLike | undefined)[];
      /** Web Locks name this rank holds while alive (browsers), so its death can be seen. */
      lock?: string;
    }
  | { t: "abort"; reason: string };

/** Rank to coordinator. */
export type ToCoordinator = { t: "joined" } | { t: "broken"; reason: string };

/** Whether this realm can share memory with its workers (and let them block on it). */
export function canShareMemory(): boolean {
  if (typeof SharedArrayBuffer === "undefined" || typeof Atomics === "undefined") return false;
  const g = globalThis as { crossOriginIsolated?: boolean; process?: { versions?: { node?: string } } };
  return typeof g.process?.versions?.node === "string" || g.crossOriginIsolated === true;
}

/** The Web Locks API, where it exists (browsers; not Node 20). */
export function webLocks(): { request: (name: string, opts: object, f: () => unknown) => Promise<unknown> } | undefined {
  const nav = (globalThis as { navigator?: { locks?: unknown } }).navigator;
  return nav?.locks as ReturnType<typeof webLocks>;
}
