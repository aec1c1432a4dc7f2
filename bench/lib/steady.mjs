/**
 * The first step of the steady part of a training of `steps` steps: V8 compiles the
 * step's code during the first few hundred steps, so the steady part starts after 400
 * (after half of a shorter training).
 */
export function steadyFrom(steps) {
  return Math.min(400, steps >> 1);
}

/**
 * Steps per second over steps `from + 1 .. end` of a training, from its per-step times
 * (ms): the speed once V8 has compiled the step's code.
 */
export function steadyStepsPerSec(stepMs, from) {
  const tail = stepMs.slice(from);
  return (1000 * tail.length) / tail.reduce((a, b) => a + b, 0);
}
