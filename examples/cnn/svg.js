// SVG charts of the CNN example, as strings: the same code draws the page (innerHTML) and
// the file the Node CLI writes (docs/cnn-lr.svg). No dependencies.

const COLORS = { true: "#1f77b4", false: "#d62728" }; // with BN, without BN
const esc = (s) => String(s).replace(/[<>&"]/g, (c) => `&#${c.charCodeAt(0)};`);
const fmt = (v) => (Math.abs(v) >= 1 || v === 0 ? String(+v.toFixed(2)) : String(+v.toPrecision(2)));

/** Moving mean over the last `w` values (a readable training-loss curve). */
export function smooth(values, w = 10) {
  let sum = 0;
  return values.map((v, i) => {
    sum += v - (i >= w ? values[i - w] : 0);
    return sum / Math.min(i + 1, w);
  });
}

/** One chart: axes, ticks, and polylines of [x, y] points mapped into a box at (x0, y0). */
function chart({ x0, y0, w, h, title, xs, ys, xLog = false, xTicks, yTicks, lines, marks = [] }) {
  const tx = (v) => x0 + (w * ((xLog ? Math.log(v) : v) - (xLog ? Math.log(xs[0]) : xs[0]))) / ((xLog ? Math.log(xs[1]) : xs[1]) - (xLog ? Math.log(xs[0]) : xs[0]));
  const ty = (v) => y0 + h - (h * (Math.min(Math.max(v, ys[0]), ys[1]) - ys[0])) / (ys[1] - ys[0]); // clipped to the box
  const out = [`<text x="${x0 + w / 2}" y="${y0 - 8}" text-anchor="middle" font-weight="bold">${esc(title)}</text>`,
    `<rect x="${x0}" y="${y0}" width="${w}" height="${h}" fill="none" stroke="#999"/>`];
  for (const v of xTicks) out.push(`<text x="${tx(v).toFixed(1)}" y="${y0 + h + 14}" text-anchor="middle">${fmt(v)}</text>`);
  for (const v of yTicks) {
    out.push(`<line x1="${x0}" x2="${x0 + w}" y1="${ty(v).toFixed(1)}" y2="${ty(v).toFixed(1)}" stroke="#eee"/>`);
    out.push(`<text x="${x0 - 4}" y="${(ty(v) + 4).toFixed(1)}" text-anchor="end">${fmt(v)}</text>`);
  }
  for (const l of lines) {
    const pts = l.points.filter(([, y]) => Number.isFinite(y)).map(([x, y]) => `${tx(x).toFixed(1)},${ty(y).toFixed(1)}`);
    if (pts.length) out.push(`<polyline points="${pts.join(" ")}" fill="none" stroke="${l.color}" stroke-width="1.5"${l.dots ? "" : ' stroke-linejoin="round"'}/>`);
    if (l.dots) for (const p of pts) out.push(`<circle cx="${p.split(",")[0]}" cy="${p.split(",")[1]}" r="3" fill="${l.color}"/>`);
  }
  for (const m of marks) out.push(`<text x="${tx(m.x).toFixed(1)}" y="${(ty(m.y) + 4).toFixed(1)}" text-anchor="middle" fill="${m.color}" font-weight="bold">×</text>`);
  return out.join("");
}

function svg(width, height, body) {
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">` +
    `<rect width="100%" height="100%" fill="white"/>${body}</svg>`;
}

function legend(x, y) {
  return [true, false].map((bn, i) =>
    `<line x1="${x}" x2="${x + 20}" y1="${y + 16 * i}" y2="${y + 16 * i}" stroke="${COLORS[bn]}" stroke-width="2"/>` +
    `<text x="${x + 26}" y="${y + 16 * i + 4}">${bn ? "with BatchNorm2d" : "without batch norm"}</text>`).join("");
}

/** A training-loss panel: one smoothed curve per run, an × where a run diverged. */
function lossPanel(runs, steps, box) {
  return chart({
    ...box, xs: [1, Math.max(2, steps)], ys: [0, 2.5], xTicks: [1, Math.max(2, steps)], yTicks: [0, 1, 2],
    lines: runs.map((r) => ({ color: COLORS[r.bn], points: smooth(r.losses).map((v, i) => [i + 1, v]) })),
    marks: runs.filter((r) => r.divergedAt !== null).map((r) => ({ x: r.divergedAt, y: 2.5, color: COLORS[r.bn] })),
  });
}

/** Training loss with and without BN (the result of train(), or progress so far). */
export function compareSvg({ runs, steps }) {
  return svg(460, 260, lossPanel(runs, steps, { x0: 40, y0: 30, w: 400, h: 190, title: `training loss (mean of 10 batches), lr ${runs[0].lr}` }) + legend(260, 50));
}

/**
 * The learning-rate experiment (the result of lrSweep(), or progress so far): final test
 * accuracy against the learning rate, and the training-loss curves at each rate.
 */
export function sweepSvg({ runs, steps, config }) {
  const lrs = config.lrs;
  const acc = [true, false].map((bn) => ({
    color: COLORS[bn], dots: true,
    points: runs.filter((r) => r.bn === bn && r.testAcc !== undefined).map((r) => [r.lr, r.testAcc]),
  }));
  const pw = 150, gap = 30, width = 40 + lrs.length * (pw + gap);
  let body = chart({
    x0: 50, y0: 30, w: width - 300, h: 170, title: `test accuracy after ${steps} steps (1000 test digits)`,
    xs: [lrs[0], lrs[lrs.length - 1]], xLog: true, ys: [0, 1], xTicks: lrs, yTicks: [0, 0.25, 0.5, 0.75, 1], lines: acc,
  }) + legend(width - 220, 60);
  body += `<text x="${width - 220}" y="${120}">${esc(`batch ${config.batch}, SGD momentum ${config.momentum}, seed ${config.seed}`)}</text>`;
  body += `<text x="${width - 220}" y="${136}">accuracy 0.1 = chance level</text>`;
  if (runs.some((r) => r.divergedAt !== null)) body += `<text x="${width - 220}" y="${152}">× : loss diverged (> 1000)</text>`;
  lrs.forEach((lr, i) => {
    const box = { x0: 40 + i * (pw + gap), y0: 250, w: pw, h: 120, title: `lr ${lr}: training loss` };
    body += lossPanel(runs.filter((r) => r.lr === lr), steps, box);
  });
  body += `<text x="${width / 2}" y="${400}" text-anchor="middle">step</text>`;
  return svg(width, 410, body);
}
