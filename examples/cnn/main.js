// The CNN page: starts the training worker, runs what a button (or ?autostart=compare|sweep)
// asks for, and redraws the chart (svg.js) from the worker's events a few times a second.
// window.__cnn exposes the state to the end-to-end test (test/cnn-e2e.test.ts).
import { proxy, wrap } from "comlink";
import { startWithDeadlines } from "batchnorm-wasm";
import { compareSvg, sweepSvg } from "./svg.js";

const $ = (id) => document.getElementById(id);
const state = (window.__cnn = { state: "loading", error: null, info: null, summary: null, svg: null });
let worker; // the training worker's comlink proxy, once it has loaded batchnorm-wasm

function fail(e) {
  state.state = "error";
  // Firefox's `stack` lists only the frames; Chromium's starts with "Name: message".
  state.error = e?.stack && !e.stack.startsWith(String(e)) ? `${e}\n${e.stack}` : String(e?.stack ?? e);
  $("error").textContent = state.error;
}

function buttons(running) {
  $("compare").disabled = $("sweep").disabled = running;
  $("stop").disabled = !running;
}

async function run(kind) {
  const options = {
    steps: Number($("steps").value), seed: Number($("seed").value), lr: Number($("lr").value),
    lrs: $("lrs").value.split(",").map(Number),
  };
  const draw = kind === "sweep" ? sweepSvg : compareSvg;
  let progress = null, dirty = false;
  const redraw = () => {
    if (dirty && progress) $("chart").innerHTML = state.svg = draw(progress);
    dirty = false;
  };
  const timer = setInterval(redraw, 250);
  const t0 = performance.now();
  state.state = "training";
  buttons(true);
  try {
    const summary = await worker.run(kind, options, proxy((e) => {
      if (e.type === "start") {
        progress = { config: e.config, steps: e.config.steps, runs: e.runs.map((r) => ({ ...r, losses: [], divergedAt: null })) };
      } else {
        e.losses.forEach((l, i) => l === undefined || progress.runs[i].losses.push(l));
        e.divergedAt.forEach((d, i) => (progress.runs[i].divergedAt = d));
        $("status").textContent = `step ${e.step} / ${options.steps}, ${((performance.now() - t0) / 1000).toFixed(0)} s`;
      }
      dirty = true;
    }));
    clearInterval(timer);
    progress = summary;
    dirty = true;
    redraw();
    $("results").textContent = summary.runs.map((r) =>
      `lr ${String(r.lr).padEnd(5)} ${r.label.padEnd(10)}  test accuracy ${(100 * r.testAcc).toFixed(1).padStart(5)}%  ` +
      `${r.divergedAt === null ? "" : `diverged at step ${r.divergedAt}  `}${r.stepsPerSec.toFixed(1)} steps/s`).join("\n");
    $("status").textContent = `done: ${summary.steps} steps in ${((performance.now() - t0) / 1000).toFixed(1)} s`;
    state.summary = { ...summary, runs: summary.runs.map(({ losses, ...r }) => r) };
    state.state = "done";
  } catch (e) {
    clearInterval(timer);
    fail(e);
  } finally {
    buttons(false);
  }
}

try {
  // A worker that has not loaded batchnorm-wasm by a deadline is ended and another started
  // (Firefox can block a worker for good as it starts the simd-threads pool).
  ({ worker, info: state.info } = await startWithDeadlines(() => {
    const w = new Worker(new URL("./train-worker.js", import.meta.url), { type: "module" });
    const api = wrap(w);
    return { ready: api.init().then((info) => ({ worker: api, info })), abandon: () => w.terminate() };
  }));
  const { build, threads, crossOriginIsolated } = state.info;
  $("info").textContent = `batchnorm-wasm in the worker: ${build}, ${threads} thread${threads === 1 ? "" : "s"}` +
    (crossOriginIsolated ? "" : " (page not cross-origin isolated: no threads)");
  $("compare").onclick = () => run("compare");
  $("sweep").onclick = () => run("sweep");
  $("stop").onclick = () => worker.stop();
  const q = new URLSearchParams(location.search);
  for (const k of ["steps", "seed", "lr", "lrs"]) if (q.has(k)) $(k).value = q.get(k);
  state.state = "ready";
  buttons(false);
  if (q.get("autostart") === "compare" || q.get("autostart") === "sweep") await run(q.get("autostart"));
} catch (e) {
  fail(e);
}
