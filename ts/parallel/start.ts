/**
 * {@link startWithDeadlines}: start workers and wait until they are ready, with a deadline
 * per try and fresh workers for the next try.
 *
 * Why: Firefox (153 ESR, measured here: about one page load in 20 under load, in
 * test/mnist-e2e.test.ts) now and then blocks a worker for good inside `new Worker()`,
 * which `init()` of the `simd-threads` build calls to start its thread pool. Nothing in
 * that worker runs again, so it cannot report anything; only the thread that started it
 * can notice, by a deadline, and start another. A fresh worker starts normally.
 * @module
 */
import { InvalidArgumentError, WorkerError } from "../engine/errors.js";

/** One try: a promise that resolves once the workers are ready, and how to give them up. */
export interface StartAttempt<T> {
  /** Resolves once this try's workers are ready (with what the caller keeps of them). */
  ready: Promise<T>;
  /** Ends this try's workers (it missed its deadline, or failed). */
  abandon(): void;
}

/** Deadlines of successive tries (ms): generous, as a normal start takes well under a second. */
export const START_DEADLINES_MS: readonly number[] = [10_000, 20_000, 40_000];

/**
 * Runs `attempt()` and waits for its `ready`; a try that misses its deadline is abandoned
 * and a new one started, up to one try per deadline. A try that fails (its `ready`
 * rejects) is abandoned and its error thrown: errors are not retried, only silence is.
 * After the last deadline, rejects with {@link WorkerError}. An empty list, or a deadline
 * that is not a finite number > 0, rejects with {@link InvalidArgumentError} before any
 * try starts.
 *
 * @example
 * // Start a worker that runs `await init()` (through comlink), in Firefox too:
 * import { wrap } from "comlink";
 * const api = await startWithDeadlines(() => {
 *   const w = new Worker(new URL("./my-worker.js", import.meta.url), { type: "module" });
 *   const remote = wrap<{ init(): Promise<unknown> }>(w);
 *   return { ready: remote.init().then(() => remote), abandon: () => w.terminate() };
 * });
 */
export async function startWithDeadlines<T>(attempt: () => StartAttempt<T>, deadlinesMs: readonly number[] = START_DEADLINES_MS): Promise<T> {
  // A bad list is the caller's mistake, named before any worker is started.
  if (deadlinesMs.length === 0 || !deadlinesMs.every((ms) => Number.isFinite(ms) && ms > 0)) {
    throw new InvalidArgumentError(`startWithDeadlines needs one or more deadlines, each a finite number of ms > 0; got [${deadlinesMs.join(", ")}]`);
  }
  for (const ms of deadlinesMs) {
    const a = attempt();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<typeof LATE>((resolve) => (timer = setTimeout(() => resolve(LATE), ms)));
    try {
      const r = await Promise.race([a.ready, late]);
      if (r !== LATE) return r as T;
    } catch (e) {
      a.abandon();
      throw e;
    } finally {
      clearTimeout(timer);
    }
    a.abandon();
    a.ready.catch(() => {}); // the abandoned try may still reject (its workers were ended)
  }
  throw new WorkerError(
    `the workers were not ready after ${deadlinesMs.length} tries (deadlines ${deadlinesMs.join(", ")} ms); ` +
      "a worker blocked or silent since it started",
  );
}

const LATE = Symbol("late");
