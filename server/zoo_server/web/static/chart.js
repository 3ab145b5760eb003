// A line chart as inline SVG: a job's loss or accuracy per epoch. No chart library: a few
// polylines, two axes and a legend are all it takes.

import { h } from "./dom.js";

const W = 340;
const H = 190;
const PAD = { left: 40, right: 10, top: 22, bottom: 26 };

function niceRange(values, floorZero) {
  let low = Math.min(...values);
  let high = Math.max(...values);
  if (floorZero) low = Math.min(0, low);
  if (high - low < 1e-9) { high += 0.5; low -= floorZero ? 0 : 0.5; }
  return [low, high];
}

// series: [{ name, points: [[x, y], ...], dashed }]; returns an <svg>.
export function lineChart(title, series, { yMin = null, yMax = null, xLabel = "epoch" } = {}) {
  const drawn = series.filter((s) => s.points.length);
  const xs = drawn.flatMap((s) => s.points.map((p) => p[0]));
  const ys = drawn.flatMap((s) => s.points.map((p) => p[1]));
  const summary = drawn.map((s) => {
    const last = s.points[s.points.length - 1];
    return `${s.name} ${last[1].toFixed(4)} at ${xLabel} ${last[0]}`;
  }).join("; ");
  const svg = h("svg:svg", {
    class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": `${title}: ${summary || "no epochs yet"}`,
  });
  svg.append(h("svg:text", { x: PAD.left, y: 13, "font-weight": "600" }, title));
  const [x0, x1] = xs.length ? [Math.min(1, ...xs), Math.max(2, ...xs)] : [1, 2];
  let [y0, y1] = ys.length ? niceRange(ys, yMin === 0) : [0, 1];
  if (yMin !== null) y0 = Math.min(y0, yMin);
  if (yMax !== null) y1 = Math.max(y1, yMax);
  const px = (x) => PAD.left + ((x - x0) / (x1 - x0)) * (W - PAD.left - PAD.right);
  const py = (y) => H - PAD.bottom - ((y - y0) / (y1 - y0)) * (H - PAD.top - PAD.bottom);
  svg.append(
    h("svg:line", { class: "axis", x1: PAD.left, y1: H - PAD.bottom, x2: W - PAD.right, y2: H - PAD.bottom }),
    h("svg:line", { class: "axis", x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: H - PAD.bottom }),
  );
  for (const y of [y0, (y0 + y1) / 2, y1]) {
    svg.append(h("svg:text", { x: PAD.left - 4, y: py(y) + 3, "text-anchor": "end" },
      Math.abs(y) >= 10 ? y.toFixed(0) : y.toFixed(2)));
  }
  const step = Math.max(1, Math.ceil((x1 - x0) / 8));
  for (let x = Math.ceil(x0); x <= x1; x += step) {
    svg.append(h("svg:text", { x: px(x), y: H - PAD.bottom + 13, "text-anchor": "middle" }, x));
  }
  svg.append(h("svg:text", { x: W - PAD.right, y: H - 3, "text-anchor": "end" }, xLabel));
  if (!drawn.length) {
    svg.append(h("svg:text", { x: (PAD.left + W - PAD.right) / 2, y: H / 2, "text-anchor": "middle" },
      `waiting for the first ${xLabel}`));
  }
  drawn.forEach((s, i) => {
    const colour = i % 2;
    const points = s.points.map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(" ");
    svg.append(h("svg:polyline", {
      class: `series-${colour}${s.dashed ? " dashed" : ""}`, points, fill: "none", "stroke-width": 2,
    }));
    for (const [x, y] of s.points) {
      svg.append(h("svg:circle", { class: `dot-${colour}`, cx: px(x), cy: py(y), r: 2.5 }));
    }
    const lx = W - PAD.right - 150 + (i % 2) * 75;
    const ly = 13 + Math.floor(i / 2) * 11;
    svg.append(
      h("svg:line", { class: `series-${colour}${s.dashed ? " dashed" : ""}`, x1: lx, y1: ly - 3,
        x2: lx + 14, y2: ly - 3, "stroke-width": 2 }),
      h("svg:text", { x: lx + 17, y: ly }, s.name),
    );
  });
  return svg;
}
