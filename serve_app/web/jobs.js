// Jobs: the submit form (the API's fields and limits; a 422 is shown next to its field), the table, cancel.

import { ApiError, api, get, isTerminal } from "./api.js";
import { describe, every, fixed, h } from "./ui.js";

const POLL_MS = 2000;
const VERDICTS_FETCHED = 20;  // finished jobs whose verdict the table looks up (one result request each, once)

// [name, label, input properties]; blank means the service's default. Limits as in docs/api.md (JobSpec).
const FIELDS = [
  ["population", "Population", { type: "number", min: 4, max: 20000, step: 1, value: 40 }],
  ["generations", "Generations", { type: "number", min: 1, max: 10000, step: 1, value: 8 }],
  ["seed", "Seed", { type: "number", min: 0, step: 1, value: 1 }],
  ["holdout_fraction", "Holdout fraction", { type: "number", min: 0, max: 0.5, step: 0.05, placeholder: "0.2" }],
  ["folds", "Folds", { type: "number", min: 1, max: 20, step: 1, placeholder: "4" }],
  ["min_trades", "Min trades", { type: "number", min: 0, max: 10000, step: 1, placeholder: "30" }],
  ["permutations", "Permutations", { type: "number", min: 0, max: 999, step: 1, placeholder: "19" }],
  ["islands", "Islands", { type: "number", min: 1, max: 64, step: 1, placeholder: "4" }],
  ["costs.fee_bps", "Fee (bps)", { type: "number", min: 0, max: 1000, step: "any", placeholder: "default" }],
  ["costs.slippage_bps", "Slippage (bps)", { type: "number", min: 0, max: 1000, step: "any", placeholder: "default" }],
  ["costs.initial_cash", "Initial cash", { type: "number", min: 1, step: "any", placeholder: "default" }],
  ["evaluator", "Evaluator", { type: "text", placeholder: "default" }],
];

function field(name, label, control) {
  return h("label", { class: "field" }, label, control, h("span", { class: "field-error", "data-for": name }));
}

function buildForm(onSubmitted) {
  const dataset = h("select", { name: "dataset", required: true });
  const risk = h("select", { name: "risk" }, ["LOW", "MEDIUM", "HIGH"].map((r) => h("option", { value: r }, r)));
  risk.value = "MEDIUM";
  const formError = h("p", { class: "error", role: "alert" });
  const form = h("form", { id: "submit-job", noValidate: true },
    h("div", { class: "fields" }, field("dataset", "Dataset", dataset), field("risk", "Risk", risk),
      FIELDS.map(([name, label, props]) => field(name, label, h("input", { name, ...props })))),
    h("button", { type: "submit" }, "Submit job"), formError);
  get("/v1/datasets").then((list) => {
    dataset.replaceChildren(...list.map((d) => h("option", { value: d.name }, `${d.name} (${d.candles} candles)`)));
  }).catch((error) => { formError.textContent = describe(error); });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    for (const span of form.querySelectorAll(".field-error")) span.textContent = "";
    formError.textContent = "";
    const spec = { dataset: dataset.value, risk: risk.value };
    for (const [name, , props] of FIELDS) {
      const raw = form.elements[name].value.trim();
      if (raw === "") continue;
      const value = props.type === "number" ? Number(raw) : raw;
      const [group, key] = name.split(".");
      if (key) spec[group] = { ...spec[group], [key]: value };
      else spec[name] = value;
    }
    try {
      const headers = { "Idempotency-Key": crypto.randomUUID() };
      const { data } = await api("POST", "/v1/jobs", spec, headers);
      onSubmitted(data.id);
    } catch (error) {
      showErrors(form, formError, error);
    }
  });
  return form;
}

// Each 422 detail next to its field; a refusal naming a field in words ("population 30000 is over ...") too.
function showErrors(form, formError, error) {
  const byField = new Map();
  if (error instanceof ApiError) {
    for (const d of error.details) byField.set(d.field, d.message);
    const named = error.message.split(" ")[0];
    if (!error.details.length && form.querySelector(`[data-for="${named}"]`)) byField.set(named, error.message);
  }
  for (const [name, message] of byField) {
    const span = form.querySelector(`[data-for="${name}"]`);
    if (span) span.textContent = message;
    else formError.textContent += `${name}: ${message} `;
  }
  if (!byField.size) formError.textContent = describe(error);
}

function progressCell(job) {
  const p = job.progress;
  const validating = p.validation_searches > 0 && p.generation >= p.generations;
  const [done, total, words] = validating
    ? [p.validation_done, p.validation_searches, `validation ${p.validation_done}/${p.validation_searches}`]
    : [p.generation, p.generations, `generation ${p.generation}/${p.generations}`];
  return h("span", { class: "progress-cell" }, h("progress", { max: total, value: done }), ` ${words}`);
}

export function showJobs(view) {
  const rows = h("tbody");
  const status = h("p", { class: "error", role: "alert" });
  const verdicts = new Map();  // job id -> verdict of its (unchanging) result
  const form = buildForm((id) => { location.hash = `#/jobs/${encodeURIComponent(id)}`; });
  view.replaceChildren(
    h("section", { class: "card" }, h("h2", {}, "Submit a job"), form),
    h("section", { class: "card" }, h("h2", {}, "Jobs"), status,
      h("table", { id: "jobs" }, h("thead", {}, h("tr", {}, ["job", "dataset", "status", "progress", "best fitness",
        "verdict", ""].map((name) => h("th", {}, name)))), rows)));

  async function cancel(id) {
    try {
      await api("DELETE", `/v1/jobs/${encodeURIComponent(id)}`);
    } catch (error) {
      status.textContent = describe(error);
    }
  }

  async function poll() {
    const jobs = await get("/v1/jobs?limit=50");
    const lookups = jobs.filter((j) => j.status === "finished" && !verdicts.has(j.id)).slice(0, VERDICTS_FETCHED);
    await Promise.all(lookups.map(async (j) => {
      verdicts.set(j.id, (await get(`/v1/jobs/${encodeURIComponent(j.id)}/result`)).validation.verdict);
    }));
    rows.replaceChildren(...jobs.map((job) => h("tr", { "data-id": job.id, "data-status": job.status },
      h("td", {}, h("a", { href: `#/jobs/${encodeURIComponent(job.id)}` }, job.id.slice(0, 8))),
      h("td", {}, job.spec.dataset),
      h("td", { class: `status ${job.status}` }, job.status),
      h("td", {}, progressCell(job)),
      h("td", {}, fixed(job.best?.fitness)),
      h("td", { class: "verdict" }, verdicts.get(job.id) || ""),
      h("td", {}, isTerminal(job.status) ? "" : h("button", { type: "button", class: "cancel",
        onclick: () => cancel(job.id) }, "Cancel")))));
  }
  return every(POLL_MS, poll, status);
}
