// The calling thread's CPU time, so that work can be told apart from waiting and from
// other processes taking the cores (Linux only).
import { readFileSync } from "node:fs";

/**
 * CPU milliseconds this thread has run (/proc/thread-self/schedstat, nanoseconds;
 * /proc/thread-self/stat only counts 10 ms ticks), or NaN where /proc is missing.
 */
export function threadCpuMs() {
  try {
    return Number(readFileSync("/proc/thread-self/schedstat", "utf8").split(" ")[0]) / 1e6;
  } catch {
    return NaN;
  }
}
