// The page's main thread: controls, live plots and status. Training runs in a Web Worker
// (train-worker.js) through comlink; this thread only draws, so it stays responsive.
import { wrap, proxy } from "comlink";
import { COLORS, drawLegend, drawPanel } from "./plot.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
for (const k of ["steps", "batch", "seed", "lr"]) if (params.has(k)) $(k).value = params.get(k);
for (const k of ["compare", "pool"]) if (params.has(k)) $(k).checked = params.get(k) === "1";

/** What the end-to-end test reads. */
const state = (window.__mnist = {
  state: "loading", info: null, summary: null, error: null,
  frames: 0, maxFrameGapMs: 0, ticks: 0, maxTickGapMs: 0,
});

// ---- main-thread responsiveness: an animation and two counters, gaps measured while training ----
let lastFrame = 0, lastTick = 0;
const spin = "◐◓◑◒";
function frame(t) {
  if (state.state === "training" && lastFrame) state.maxFrameGapMs = Math.max(state.maxFrameGapMs, t - lastFrame);
  lastFrame = t;
  state.frames++;
  if (state.frames % 8 === 0) {
    $("spinner").textContent = spin[(state.frames / 8) % 4];
    $("frames").textContent = `${state.frames} frames, longest gap ${state.maxFrameGapMs.toFixed(0)} ms`;
  }
  if (dirty) draw();
  requestAnimationFrame(frame);
}
requestAnimationFrame(frame);
setInterval(() => {
  const now = performance.now();
  if (state.state === "training" && lastTick) state.maxTickGapMs = Math.max(state.maxTickGapMs, now - lastTick);
  lastTick = now;
  state.ticks++;
}, 50);

// ---- the worker ----
const worker = new Worker(new URL("./train-worker.js", import.meta.url), { type: "module" });
const trainer = wrap(worker);
worker.addEventListener("error", (e) => fail(e.message || "the training worker failed to start"));

function fail(e) {
  state.state = "error";
  state.error = String(e?.stack ?? e);
  $("message").textContent = state.error;
  $("start").disabled = false;
  $("stop").disabled = true;
}

// ---- plot data ----
const LABELS = { bn: "with BN", plain: "without BN" };
let curves = {};
let xMax = 600;
let dirty = true;

function reset(keys, steps) {
  curves = Object.fromEntries(keys.map((k) => [k, { ema: null, emaAcc: null, loss: [], acc: [], test: [] }]));
  xMax = steps;
  dirty = true;
}

function onEvents(events) {
  for (const e of events) {
    if (e.type === "step") {
      for (const [k, r] of Object.entries(e.results)) {
        const c = curves[k];
        c.ema = c.ema === null ? r.loss : 0.95 * c.ema + 0.05 * r.loss;
        c.emaAcc = c.emaAcc === null ? r.acc : 0.95 * c.emaAcc + 0.05 * r.acc;
        c.loss.push([e.step, c.ema]);
        c.acc.push([e.step, c.emaAcc]);
      }
      $("step").textContent = `${e.step} / ${xMax}`;
      $("sps").textContent = Object.entries(e.results).map(([k, r]) => `${r.stepsPerSec.toFixed(0)} (${LABELS[k]})`).join(", ");
    } else if (e.type === "eval") {
      curves[e.variant].test.push([e.step, e.acc]);
      $("testacc").textContent = Object.entries(curves)
        .filter(([, c]) => c.test.length)
        .map(([k, c]) => `${(100 * c.test[c.test.length - 1][1]).toFixed(1)}% (${LABELS[k]})`).join(", ");
    }
  }
  dirty = true;
}

function draw() {
  dirty = false;
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
    { color: COLORS.bn, label: "with BN" + ($("pool").checked ? " (BatchNormPool)" : " (BatchNorm1d)") },
    ...(curves.plain || !entries.length ? [{ color: COLORS.plain, label: "without BN" }] : []),
    { color: "#6b7280", label: "test accuracy", dash: [4, 4] },
  ]);
}

// ---- controls ----
async function start() {
  const options = {
    steps: Number($("steps").value), batch: Number($("batch").value), seed: Number($("seed").value),
    lr: Number($("lr").value), compare: $("compare").checked, pool: $("pool").checked,
  };
  reset(options.compare ? ["bn", "plain"] : ["bn"], options.steps);
  $("start").disabled = true;
  $("stop").disabled = false;
  $("message").textContent = "";
  $("testacc").textContent = "–";
  state.summary = null;
  state.maxFrameGapMs = state.maxTickGapMs = 0;
  lastFrame = lastTick = 0;
  state.state = "training";
  try {
    state.summary = await trainer.train(options, proxy(onEvents));
    state.state = "done";
    $("step").textContent = `${state.summary.steps} / ${options.steps} (done)`;
    if (state.summary.pool) {
      const p = state.summary.pool;
      $("build").textContent += `; pool: ${p.workers} workers × ${p.build} (${p.threads} thread${p.threads === 1 ? "" : "s"})`;
    }
  } catch (e) {
    fail(e);
    return;
  }
  $("start").disabled = false;
  $("stop").disabled = true;
  dirty = true;
}

$("start").addEventListener("click", () => void start());
$("stop").addEventListener("click", () => void trainer.stop());

try {
  state.info = await trainer.init();
  $("build").textContent = `${state.info.build} (${state.info.threads} thread${state.info.threads === 1 ? "" : "s"})`;
  $("isolated").textContent = String(state.info.crossOriginIsolated);
  state.state = "ready";
  if (params.get("autostart") === "1") void start();
} catch (e) {
  fail(e);
}
