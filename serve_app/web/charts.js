// Small SVG charts: lines (optionally filled down to zero) and candles with trade markers. Plain SVG, so each
// point, candle and marker is an element a test (or a person with devtools) can count and inspect.

const NS = "http://www.w3.org/2000/svg";
const WIDTH = 900;
const PAD = { left: 64, right: 12, top: 10, bottom: 24 };

export function svgElement(tag, attrs = {}, parent = null) {
  const node = document.createElementNS(NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (parent) parent.appendChild(node);
  return node;
}

// [lowest, highest] of the finite values, widened by `margin` of the range (a single value by 1 each way).
function extent(values, margin = 0.04) {
  let low = Infinity;
  let high = -Infinity;
  for (const v of values) {
    if (Number.isFinite(v)) {
      low = Math.min(low, v);
      high = Math.max(high, v);
    }
  }
  if (low === Infinity) return [0, 1];
  if (low === high) return [low - 1, high + 1];
  const pad = (high - low) * margin;
  return [low - pad, high + pad];
}

function ticks([low, high], count) {
  const raw = (high - low) / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw);
  const first = Math.ceil(low / step) * step;
  const out = [];
  for (let v = first; v <= high; v += step) out.push(v);
  return out;
}

export function formatNumber(v) {
  if (typeof v !== "number" || !Number.isFinite(v)) return "–";
  return Math.abs(v) >= 1e4 ? v.toFixed(0) : Number(v.toPrecision(4)).toString();
}
export const formatTime = (seconds) => new Date(seconds * 1000).toISOString().slice(0, 16).replace("T", " ");

// An empty chart: axes and grid for the given domains; returns the svg and the scales.
function frame(container, height, xDomain, yDomain, xFormat) {
  const svg = svgElement("svg", { viewBox: `0 0 ${WIDTH} ${height}`, class: "chart", role: "img" });
  container.replaceChildren(svg);
  const [x0, x1] = xDomain;
  const [y0, y1] = yDomain;
  const x = (v) => PAD.left + ((v - x0) / (x1 - x0 || 1)) * (WIDTH - PAD.left - PAD.right);
  const y = (v) => height - PAD.bottom - ((v - y0) / (y1 - y0 || 1)) * (height - PAD.top - PAD.bottom);
  const axes = svgElement("g", { class: "axes" }, svg);
  for (const v of ticks(yDomain, 4)) {
    svgElement("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: y(v), y2: y(v), class: "grid" }, axes);
    svgElement("text", { x: PAD.left - 6, y: y(v) + 4, class: "tick y" }, axes).textContent = formatNumber(v);
  }
  for (const v of ticks(xDomain, 5)) {
    svgElement("text", { x: x(v), y: height - 6, class: "tick x" }, axes).textContent = xFormat(v);
  }
  return { svg, x, y };
}

// series: [{name, cls, points: [[x, y], ...], area: bool}]; one <circle class="point"> per point when `dots`.
export function lineChart(container, series, { height = 220, xFormat = formatNumber, dots = false } = {}) {
  const all = series.flatMap((s) => s.points);
  const ys = all.map((p) => p[1]).concat(series.some((s) => s.area) ? [0] : []);
  const { svg, x, y } = frame(container, height, extent(all.map((p) => p[0]), 0), extent(ys), xFormat);
  for (const s of series) {
    const group = svgElement("g", { class: `series ${s.cls}`, "data-name": s.name }, svg);
    if (!s.points.length) continue;
    const path = s.points.map((p, i) => `${i ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join("");
    if (s.area) {
      const last = s.points[s.points.length - 1];
      svgElement("path", { d: `${path}L${x(last[0])},${y(0)}L${x(s.points[0][0])},${y(0)}Z`, class: "area" }, group);
    }
    svgElement("path", { d: path, class: "line" }, group);
    if (dots) {
      for (const p of s.points) svgElement("circle", { cx: x(p[0]), cy: y(p[1]), r: 3, class: "point" }, group);
    }
  }
  return svg;
}

// The bucket a time falls in: the last candle starting at or before it.
function bucketOf(times, t) {
  let low = 0;
  let high = times.length - 1;
  while (low < high) {
    const mid = (low + high + 1) >> 1;
    if (times[mid] <= t) low = mid;
    else high = mid - 1;
  }
  return low;
}

// candles: the columns of GET /v1/datasets/{name}/candles; regions: [{from, to, cls, label}] by time;
// markers: [{time, price, kind: "entry" | "exit", title}], one <path class="marker entry|exit"> each.
export function candleChart(container, candles, { regions = [], markers = [], height = 360 } = {}) {
  const n = candles.time.length;
  const prices = candles.low.concat(candles.high, markers.map((m) => m.price));
  const { svg, x, y } = frame(container, height, [0, n], extent(prices),
    (i) => formatTime(candles.time[Math.min(n - 1, Math.max(0, Math.round(i)))]).slice(0, 10));
  const band = svgElement("g", { class: "regions" }, svg);
  for (const r of regions) {
    const from = x(bucketOf(candles.time, r.from));
    const to = x(bucketOf(candles.time, r.to) + 1);
    svgElement("rect", { x: from, width: Math.max(1, to - from), y: PAD.top, height: height - PAD.top - PAD.bottom,
      class: `region ${r.cls}` }, band);
    svgElement("text", { x: from + 6, y: PAD.top + 14, class: "region-label" }, band).textContent = r.label;
  }
  const width = Math.max(1, x(1) - x(0));
  const body = svgElement("g", { class: "candles" }, svg);
  for (let i = 0; i < n; i += 1) {
    const up = candles.close[i] >= candles.open[i];
    const g = svgElement("g", { class: up ? "candle up" : "candle down" }, body);
    const mid = x(i + 0.5);
    svgElement("line", { x1: mid, x2: mid, y1: y(candles.high[i]), y2: y(candles.low[i]) }, g);
    const top = y(Math.max(candles.open[i], candles.close[i]));
    const bottom = y(Math.min(candles.open[i], candles.close[i]));
    svgElement("rect", { x: mid - width * 0.4, width: width * 0.8, y: top, height: Math.max(0.5, bottom - top) }, g);
  }
  const marks = svgElement("g", { class: "markers" }, svg);
  for (const m of markers) {
    const cx = x(bucketOf(candles.time, m.time) + 0.5);
    const cy = y(m.price);
    const d = m.kind === "entry" ? `M${cx},${cy}l-5,9h10z` : `M${cx},${cy}l-5,-9h10z`;
    const mark = svgElement("path", { d, class: `marker ${m.kind}`, "data-time": m.time }, marks);
    svgElement("title", {}, mark).textContent = m.title;
  }
  return svg;
}
