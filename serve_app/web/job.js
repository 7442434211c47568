// One job: live progress from its event stream (progress bar, best fitness per generation, evaluations per
// second), then its result.

import { api, follow, get } from "./api.js";
import { formatTime, lineChart } from "./charts.js";
import { showResult } from "./result.js";
import { describe, h } from "./ui.js";

const RATE_WINDOW_S = 10;  // evaluations per second over the last this many seconds of events

// What the events say so far; `apply` folds one event in.
class Live {
  constructor() {
    this.best = [];  // [generation, best fitness so far], one per generation_best event
    this.generations = 0;
    this.population = 0;
    this.generation = 0;  // generations completed
    this.evaluated = new Map();  // generation -> genomes evaluated in it
    this.samples = [];  // [event time, genomes evaluated since the start]
    this.validation = null;  // {done, total} once validation has started
    this.ended = null;  // the terminal event's type
    this.paused = null;  // why the job is paused (a full disk, every worker refusing work), null while it is not
  }

  apply(event) {
    const d = event.data;
    if (event.type === "job_started") [this.generations, this.population] = [d.generations, d.population];
    else if (event.type === "batch_evaluated") this.count(event.time, d.generation, d.evaluated);
    else if (event.type === "generation_best") {
      // an epoch's generations are told together when its last island is back: each is whole by then
      this.count(event.time, d.generation, this.population);
      this.generation = d.generation + 1;
      this.best.push([d.generation, d.best_fitness_so_far]);
    } else if (event.type === "validation_started") this.validation = { done: 0, total: d.searches };
    else if (event.type === "validation_search_finished") this.validation = { done: d.done, total: d.total };
    else if (event.type === "paused") this.paused = d.reason;
    else if (event.type === "resumed") this.paused = null;
    else if (["finished", "failed", "cancelled"].includes(event.type)) [this.ended, this.paused] = [event.type, null];
  }

  count(time, generation, evaluated) {
    this.evaluated.set(generation, evaluated);
    let sum = 0;
    for (const n of this.evaluated.values()) sum += n;
    this.samples.push([time, sum]);
  }

  rate() {
    const last = this.samples[this.samples.length - 1];
    const first = last && this.samples.find(([t]) => t >= last[0] - RATE_WINDOW_S);
    return last && last[0] > first[0] ? (last[1] - first[1]) / (last[0] - first[0]) : null;
  }
}

export function showJob(view, id) {
  const path = `/v1/jobs/${encodeURIComponent(id)}`;
  const title = h("h2", {}, `Job ${id}`);
  const facts = h("p", { class: "facts" });
  const status = h("p", { class: "error", role: "alert" });
  const pausedNote = h("p", { id: "paused", class: "paused", role: "status", hidden: true });
  const bar = h("progress", { id: "job-progress", max: 1, value: 0 });
  const progressText = h("span", { id: "progress-text" });
  const rateText = h("span", { id: "rate" });
  const chart = h("div", { id: "fitness-chart" });
  const cancel = h("button", { type: "button", id: "cancel-job", hidden: true }, "Cancel job");
  const result = h("div", { id: "result" });
  view.replaceChildren(h("section", { class: "card" }, title, facts, cancel, status, pausedNote,
    h("div", { class: "progress-line" }, bar, progressText, rateText),
    h("h3", {}, "Best fitness per generation"), chart), result);
  const live = new Live();

  function render() {
    const { generation, generations, validation } = live;
    pausedNote.hidden = live.paused === null;
    pausedNote.textContent = live.paused === null ? "" : `Paused: ${live.paused}`;
    if (validation) {
      [bar.max, bar.value] = [validation.total, validation.done];
      progressText.textContent = `validation search ${validation.done} of ${validation.total}`;
    } else {
      const current = live.evaluated.get(generation) || 0;
      [bar.max, bar.value] = [Math.max(1, generations), generation + (live.population ? current / live.population : 0)];
      progressText.textContent = `generation ${generation} of ${generations}`;
    }
    const rate = live.rate();
    rateText.textContent = rate === null ? "" : ` · ${rate.toFixed(1)} evaluations/s`;
    lineChart(chart, [{ name: "best fitness so far", cls: "fitness", points: live.best }], { dots: true });
  }

  async function loadFacts() {
    const job = await get(path);
    const s = job.spec;
    facts.textContent = `${job.status} · ${s.dataset} · population ${s.population} · ${s.generations} generations`
      + ` · risk ${s.risk} · seed ${s.seed} · created ${formatTime(job.created_at)}`;
    cancel.hidden = ["finished", "failed", "cancelled"].includes(job.status);
    return job;
  }

  cancel.addEventListener("click", async () => {
    try {
      await api("DELETE", path);
      cancel.hidden = true;
      facts.textContent = `cancelling · ${facts.textContent}`;
    } catch (error) {
      status.textContent = describe(error);
    }
  });

  async function ended({ refused }) {
    if (refused) status.textContent = `event stream refused: ${refused}`;
    try {
      const job = await loadFacts();
      if (job.status === "finished") await showResult(result, id);
      else if (job.error) status.textContent = job.error;
    } catch (error) {
      status.textContent = describe(error);
    }
  }

  loadFacts().catch((error) => { status.textContent = describe(error); });
  return follow(id, (event) => {
    live.apply(event);
    render();
    if (event.type === "paused" || event.type === "resumed") loadFacts().catch(() => {});  // the status it shows
  }, ended);
}
