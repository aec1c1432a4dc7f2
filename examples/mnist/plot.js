// Minimal canvas line charts for the page (no dependencies).
export const COLORS = { bn: "#2563eb", plain: "#ea580c" };

/**
 * Draws one panel. `series`: [{ color, points: [[x, y]...], dash?, dots? }].
 */
export function drawPanel(ctx, { x, y, w, h }, { title, xMax, yMin, yMax, yTicks, series, format = (v) => v.toFixed(1) }) {
  const pad = { l: 48, r: 18, t: 28, b: 30 };
  const px = (v) => x + pad.l + (v / xMax) * (w - pad.l - pad.r);
  const py = (v) => y + pad.t + (1 - (Math.min(Math.max(v, yMin), yMax) - yMin) / (yMax - yMin)) * (h - pad.t - pad.b);
  ctx.save();
  ctx.font = "600 14px system-ui, sans-serif";
  ctx.fillStyle = "#1d2330";
  ctx.textBaseline = "alphabetic";
  ctx.fillText(title, x + pad.l, y + 18);
  ctx.font = "12px system-ui, sans-serif";
  ctx.strokeStyle = "#e5e7eb";
  ctx.fillStyle = "#6b7280";
  ctx.lineWidth = 1;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const t of yTicks) {
    ctx.beginPath();
    ctx.moveTo(px(0), py(t));
    ctx.lineTo(px(xMax), py(t));
    ctx.stroke();
    ctx.fillText(format(t), px(0) - 6, py(t));
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (let i = 0; i <= 4; i++) {
    const v = Math.round((xMax * i) / 4);
    ctx.fillText(String(v), px(v), y + h - pad.b + 6);
  }
  for (const s of series) {
    if (!s.points.length) continue;
    ctx.strokeStyle = ctx.fillStyle = s.color;
    ctx.lineWidth = 2;
    ctx.setLineDash(s.dash ?? []);
    ctx.beginPath();
    s.points.forEach(([a, b], i) => (i ? ctx.lineTo(px(a), py(b)) : ctx.moveTo(px(a), py(b))));
    ctx.stroke();
    if (s.dots) for (const [a, b] of s.points) { ctx.beginPath(); ctx.arc(px(a), py(b), 3.5, 0, 2 * Math.PI); ctx.fill(); }
  }
  ctx.restore();
}

/** A legend row at (x, y): [{ color, label, dash? }]. */
export function drawLegend(ctx, x, y, items) {
  ctx.save();
  ctx.font = "12px system-ui, sans-serif";
  ctx.textBaseline = "middle";
  for (const it of items) {
    ctx.strokeStyle = it.color;
    ctx.lineWidth = 2;
    ctx.setLineDash(it.dash ?? []);
    ctx.beginPath();
    ctx.moveTo(x, y);
    ctx.lineTo(x + 22, y);
    ctx.stroke();
    ctx.fillStyle = "#1d2330";
    ctx.fillText(it.label, x + 28, y);
    x += 40 + ctx.measureText(it.label).width;
  }
  ctx.restore();
}
