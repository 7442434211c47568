// A finished job's result: verdict and evidence, the strategy in words, candles with its trades (train and
// holdout shaded), equity and drawdown, train vs holdout metrics, folds, baselines, and the JSON to download.

import { api, get } from "./api.js";
import { candleChart, formatNumber, formatTime, lineChart } from "./charts.js";
import { fixed, h, table } from "./ui.js";

const CANDLE_POINTS = 1200;

const drawdown = (equity) => {
  let peak = -Infinity;
  return equity.map((v) => {
    peak = Math.max(peak, v);
    return (v / peak - 1) * 100;
  });
};

const zip = (times, values) => times.map((t, i) => [t, values[i]]);

function markers(backtests) {
  return backtests.flatMap(({ trades }) => trades.flatMap((t) => [
    { time: t.entry_time, price: t.entry_price, kind: "entry", title: `entry ${formatTime(t.entry_time)} at ${t.entry_price}` },
    { time: t.exit_time, price: t.exit_price, kind: "exit",
      title: `exit ${formatTime(t.exit_time)} at ${t.exit_price} (${t.exit_reason}), PnL ${t.pnl.toFixed(2)}` },
  ]));
}

function equityCaption(name, equity) {
  const values = equity.equity;
  return h("span", { class: `equity-range ${name}`, "data-first": values[0], "data-last": values[values.length - 1] },
    `${name}: ${formatNumber(values[0])} → ${formatNumber(values[values.length - 1])}`);
}

function metricsTable(result) {
  const names = [...new Set(Object.keys(result.train.metrics).concat(Object.keys(result.holdout?.metrics || {})))];
  return table(["metric", "train", "holdout"], names.map((name) => [name, formatNumber(result.train.metrics[name]),
    result.holdout ? formatNumber(result.holdout.metrics[name]) : "–"]), { id: "metrics" });
}

function evidence(result) {
  const v = result.validation;
  const b = result.baselines;
  return h("div", {},
    h("p", { id: "verdict", class: `verdict ${v.verdict}` }, `Verdict: ${v.verdict.replace("_", " ")}`),
    h("p", { id: "evidence" }, v.evidence),
    table(["", ""], [
      ["p-value", fixed(v.p_value)], ["shuffled copies searched", String(v.permutations)],
      ["their best fitness", v.copies_best_fitness.map((f) => f.toFixed(3)).join(", ") || "–"],
      ["strategies tried", v.strategies_tried.toLocaleString("en")],
      ["meets min trades", v.meets_min_trades ? "yes" : "no"],
      ["profitable in training, after costs", v.profitable_in_training === null ? "–" : v.profitable_in_training ? "yes" : "no"],
      ["deflated Sharpe", fixed(v.deflated_sharpe)],
      ["buy and hold, train", `${b.buy_and_hold_train_pct.toFixed(2)} %`],
      ["buy and hold, holdout", b.buy_and_hold_holdout_pct === null ? "–" : `${b.buy_and_hold_holdout_pct.toFixed(2)} %`],
      ["best of random strategies", fixed(b.random_best_fitness)],
    ], { class: "evidence" }),
    h("h4", {}, `Folds: ${result.profitable_folds} of ${result.folds.length} profitable`),
    table(["from", "to", "bars", "trades", "return %", "score"], result.folds.map((f) => [formatTime(f.start_time),
      formatTime(f.end_time), String(f.bars), String(f.metrics.trades), fixed(f.metrics.return_pct, 2),
      fixed(f.score)])));
}

function downloadButton(id, text) {
  return h("button", { type: "button", id: "download", onclick: () => {
    const link = h("a", { href: URL.createObjectURL(new Blob([text], { type: "application/json" })),
      download: `result-${id}.json` });
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 1000);  // once the download has started
  } }, "Download result JSON");
}

export async function showResult(container, id) {
  const { data: result, text } = await api("GET", `/v1/jobs/${encodeURIComponent(id)}/result`);
  const parts = [result.train, result.holdout].filter(Boolean);
  const times = parts.flatMap((p) => p.equity.time);
  const query = new URLSearchParams({ points: CANDLE_POINTS, start: times[0], end: times[times.length - 1] });
  const candles = await get(`/v1/datasets/${encodeURIComponent(result.dataset)}/candles?${query}`);
  const regions = parts.map((p, i) => ({ from: p.equity.time[0], to: p.equity.time[p.equity.time.length - 1],
    cls: i ? "holdout" : "train", label: i ? "holdout" : "train" }));
  const candleBox = h("div", { id: "candle-chart" });
  const equityBox = h("div", { id: "equity-chart" });
  const drawdownBox = h("div", { id: "drawdown-chart" });
  const names = ["train", "holdout"];
  container.replaceChildren(h("section", { class: "card" },
    h("h2", {}, "Result"), downloadButton(id, text),
    h("p", { id: "strategy", class: "strategy" }, result.strategy),
    evidence(result),
    h("h3", {}, `Candles and trades (${candles.step} bars per candle)`), candleBox,
    h("h3", {}, "Equity"), h("p", {}, parts.map((p, i) => equityCaption(names[i], p.equity))), equityBox,
    h("h3", {}, "Drawdown %"), drawdownBox,
    h("h3", {}, "Train vs holdout"), metricsTable(result)));
  candleChart(candleBox, candles, { regions, markers: markers(parts) });
  lineChart(equityBox, parts.map((p, i) => ({ name: names[i], cls: names[i],
    points: zip(p.equity.time, p.equity.equity) })), { xFormat: (t) => formatTime(t).slice(0, 10) });
  lineChart(drawdownBox, parts.map((p, i) => ({ name: names[i], cls: names[i], area: true,
    points: zip(p.equity.time, drawdown(p.equity.equity)) })), { height: 140, xFormat: (t) => formatTime(t).slice(0, 10) });
}
