// The page's main thread: controls, live plots and status. Training runs in Web Workers
// (train-worker.js, one replica each) made a process group here; rank 0 streams progress
// through comlink. This thread only draws, so it stays responsive.
import { wrap, proxy } from "comlink";
import { COLORS, drawLegend, drawPanel } from "./plot.js";
import { startReplicas, trainAll } from "./group.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
for (const k of ["steps", "batch", "seed", "lr", "workers"]) if (params.has(k)) $(k).value = params.get(k);
for (const k of ["compare"]) if (params.has(k)) $(k).checked = params.get(k) === "1";
/** "auto" (shared memory when the page is cross-origin isolated), "shared" or "message". */
const transport = params.get("transport") ?? "auto";
/** A fault drill for the tests: `drill=terminate` ends the last worker (a plain
 * `worker.terminate()`) once training runs; the other ranks must fail, not hang. Once. */
let drill = params.get("drill");

/** What the end-to-end test reads. */
const state = (window.__mnist = {
  state: "loading", info: null, summary: null, error: null,
  draws: 0, ticks: 0, maxTickGapMs: 0,
});

// ---- main-thread responsiveness: a 50 ms timer, its longest gap measured while training ----
// A timer, not a requestAnimationFrame loop: a perpetual animation makes the browser render
// 60 frames a second, and on a 2-core machine those frames' threads (renderer, compositor)
// take CPU from the training workers. Measured in headless Chromium, 2 workers, 1000 steps,
// 6 alternating runs of each page: 368 -> 399 steps/s over the whole training, 409 -> 455
// in its steady part (one worker: ~300 either way). Frames are requested only when there is
// something new to draw, and the status line below changes twice a second.
let lastTick = 0;
const spin = "◐◓◑◒";
setInterval(() => {
  const now = performance.now();
  if (state.state === "training" && lastTick) state.maxTickGapMs = Math.max(state.maxTickGapMs, now - lastTick);
  lastTick = now;
  state.ticks++;
  if (state.ticks % 10 === 0) {
    $("spinner").textContent = spin[(state.ticks / 10) % 4];
    $("ticks").textContent = `longest 50 ms-timer gap ${state.maxTickGapMs.toFixed(0)} ms, ${state.draws} plot frames`;
  }
}, 50);

let drawRequested = false;
/** Draws the plots in the next frame (once, however often it is called before then). */
function requestDraw() {
  if (drawRequested) return;
  drawRequested = true;
  requestAnimationFrame(() => {
    drawRequested = false;
    state.draws++;
    draw();
  });
}
requestDraw(); // the empty axes

// ---- the workers: a process group of `n` replicas, rebuilt when n changes ----
let current; // { n, group, replicas, info }
async function replicas(n) {
  if (current?.n === n && !current.group.broken) return current;
  current?.group.dispose();
  current = undefined;
  const makeWorkers = () => Array.from({ length: n }, () => {
    const w = new Worker(new URL("./train-worker.js", import.meta.url), { type: "module" });
    w.addEventListener("error", (e) => fail(e.message || "a training worker failed"));
    return w;
  });
  const cores = navigator.hardwareConcurrency || 2;
  // Kernel threads per replica: the cores shared out (the replicas are the parallelism).
  const started = await startReplicas(makeWorkers, wrap, { init: { threads: Math.max(1, Math.floor(cores / n)) }, transport });
  current = { n, ...started };
  state.info = { ...started.info, workers: n, transport: started.group.transport, tries: started.tries };
  $("build").textContent = `${started.info.build} (${started.info.threads} thread${started.info.threads === 1 ? "" : "s"})`;
  $("isolated").textContent = String(started.info.crossOriginIsolated);
  $("group").textContent = `${n} worker${n === 1 ? "" : "s"}, ${started.group.transport === "shared" ? "SharedArrayBuffer + Atomics" : "MessagePorts"}`;
  return current;
}

function fail(e) {
  state.state = "error";
  // Firefox's `stack` lists only the frames; Chromium's starts with "Name: message".
  state.error = e?.stack && !e.stack.startsWith(String(e)) ? `${e}\n${e.stack}` : String(e?.stack ?? e);
  $("message").textContent = state.error;
  $("start").disabled = false;
  $("stop").disabled = true;
}

// ---- plot data ----
const LABELS = { bn: "with BN", plain: "without BN" };
let curves = {};
let xMax = 600;

function reset(keys, steps) {
  curves = Object.fromEntries(keys.map((k) => [k, { ema: null, emaAcc: null, loss: [], acc: [], test: [] }]));
  xMax = steps;
  requestDraw();
}

function onEvents(events) {
  if (drill === "terminate" && current?.n > 1) {
    drill = null;
    current.group.workers[current.n - 1].terminate();
  }
  let last; // the text shows the batch's last step only (one DOM update per batch)
  for (const e of events) {
    if (e.type === "step") {
      for (const [k, r] of Object.entries(e.results)) {
        const c = curves[k];
        c.ema = c.ema === null ? r.loss : 0.95 * c.ema + 0.05 * r.loss;
        c.emaAcc = c.emaAcc === null ? r.acc : 0.95 * c.emaAcc + 0.05 * r.acc;
        c.loss.push([e.step, c.ema]);
        c.acc.push([e.step, c.emaAcc]);
      }
      last = e;
    } else if (e.type === "eval") {
      curves[e.variant].test.push([e.step, e.acc]);
      $("testacc").textContent = Object.entries(curves)
        .filter(([, c]) => c.test.length)
        .map(([k, c]) => `${(100 * c.test[c.test.length - 1][1]).toFixed(1)}% (${LABELS[k]})`).join(", ");
    }
  }
  if (last) {
    $("step").textContent = `${last.step} / ${xMax}`;
    $("sps").textContent = Object.entries(last.results).map(([k, r]) => `${r.stepsPerSec.toFixed(0)} (${LABELS[k]})`).join(", ");
  }
  requestDraw();
}

function draw() {
  const canvas = $("plot");
  const dpr = window.devicePixelRatio || 1;
  const W = 960, H = 360;
  if (canvas.width !== W * dpr) { canvas.width = W * dpr; canvas.height = H * dpr; }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, W, H);
  const entries = Object.entries(curves);
  // Loss axis: 0 to the highest smoothed loss seen, rounded up to a half.
  const top = Math.min(6, Math.max(1, ...entries.flatMap(([, c]) => c.loss.slice(0, 20).map((p) => Math.ceil(p[1] * 2) / 2))));
  const every = top > 3 ? 1 : 0.5;
  drawPanel(ctx, { x: 0, y: 0, w: W / 2, h: H - 28 }, {
    title: "Training loss (EMA) per step", xMax, yMin: 0, yMax: top,
    yTicks: Array.from({ length: Math.floor(top / every) + 1 }, (_, i) => i * every),
    series: entries.map(([k, c]) => ({ color: COLORS[k], points: c.loss })),
  });
  drawPanel(ctx, { x: W / 2, y: 0, w: W / 2, h: H - 28 }, {
    title: "Accuracy per step: training (EMA), test (dots)", xMax, yMin: 0, yMax: 1, yTicks: [0, 0.2, 0.4, 0.6, 0.8, 1],
    format: (v) => `${Math.round(v * 100)}%`,
    series: entries.flatMap(([k, c]) => [
      { color: COLORS[k], points: c.acc },
      { color: COLORS[k], points: c.test, dash: [4, 4], dots: true },
    ]),
  });
  drawLegend(ctx, 48, H - 12, [
    { color: COLORS.bn, label: "with BN" + (Number($("workers").value) > 1 ? " (SyncBatchNorm)" : " (BatchNorm1d)") },
    ...(curves.plain || !entries.length ? [{ color: COLORS.plain, label: "without BN" }] : []),
    { color: "#6b7280", label: "test accuracy", dash: [4, 4] },
  ]);
}

// ---- controls ----
async function start() {
  const options = {
    steps: Number($("steps").value), batch: Number($("batch").value), seed: Number($("seed").value),
    lr: Number($("lr").value), compare: $("compare").checked, workers: Number($("workers").value),
  };
  reset(options.compare ? ["bn", "plain"] : ["bn"], options.steps);
  $("start").disabled = true;
  $("stop").disabled = false;
  $("message").textContent = "";
  $("testacc").textContent = "–";
  state.summary = null;
  state.maxTickGapMs = state.draws = 0;
  lastTick = 0;
  state.state = "training";
  try {
    const { replicas: ranks } = await replicas(options.workers);
    state.summary = await trainAll(ranks, options, proxy(onEvents));
    state.state = "done";
    $("step").textContent = `${state.summary.steps} / ${options.steps} (done)`;
  } catch (e) {
    fail(e);
    return;
  }
  $("start").disabled = false;
  $("stop").disabled = true;
  requestDraw();
}

$("start").addEventListener("click", () => void start());
// Rank 0 decides when to stop (and tells the others at the next step).
$("stop").addEventListener("click", () => void current?.replicas[0].stop());

try {
  await replicas(Number($("workers").value));
  state.state = "ready";
  if (params.get("autostart") === "1") void start();
} catch (e) {
  fail(e);
}
