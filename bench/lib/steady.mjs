/**
 * Steps per second over steps `from + 1 .. end` of a training, from its per-step times
 * (ms): the speed once V8 has compiled the step's code, which it does during the first
 * few hundred steps.
 */
export function steadyStepsPerSec(stepMs, from) {
  const tail = stepMs.slice(from);
  return (1000 * tail.length) / tail.reduce((a, b) => a + b, 0);
}
