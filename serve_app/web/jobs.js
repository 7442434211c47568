// Jobs: the submit form (the API's fields and limits; a 422 is shown next to its field), the table, cancel.

import { ApiError, api, get, isTerminal } from "./api.js";
import { describe, every, fixed, h } from "./ui.js";

const POLL_MS = 2000;
const VERDICTS_FETCHED = 20;  // finished jobs whose verdict the table looks up (one result request each, once)

// [name, label]. Each field's bounds, default and meaning come from GET /v1/job-spec: the job spec's one definition,
// with this service's limits and default costs. A blank field takes the default, shown as its placeholder.
const FIELDS = [
  ["population", "Population"], ["generations", "Generations"], ["seed", "Seed"],
  ["holdout_fraction", "Holdout fraction"], ["folds", "Folds"], ["min_trades", "Min trades"],
  ["permutations", "Permutations"], ["islands", "Islands"], ["costs.fee_bps", "Fee (bps)"],
  ["costs.slippage_bps", "Slippage (bps)"], ["costs.initial_cash", "Initial cash"], ["evaluator", "Evaluator"],
];

function field(name, label, control) {
  return h("label", { class: "field" }, label, control, h("span", { class: "field-error", "data-for": name }));
}

// A JSON-schema property as an <input>'s attributes.
function inputFor(name, property) {
  const numeric = property.type === "integer" || property.type === "number";
  const props = { name, type: numeric ? "number" : "text", title: property.description ?? "",
    placeholder: property.default === null || property.default === undefined ? "default" : String(property.default) };
  if (numeric) {
    props.step = property.type === "integer" ? 1 : "any";
    if (property.minimum !== undefined) props.min = property.minimum;
    if (property.maximum !== undefined) props.max = property.maximum;
  }
  return h("input", props);
}

function specField(schema, name) {
  const [group, key] = name.split(".");
  return key ? schema.$defs.Costs.properties[key] : schema.properties[group];
}

function buildForm(onSubmitted) {
  const dataset = h("select", { name: "dataset", required: true });
  const risk = h("select", { name: "risk" });
  const fields = h("div", { class: "fields" }, field("dataset", "Dataset", dataset), field("risk", "Risk", risk));
  const formError = h("p", { class: "error", role: "alert" });
  const form = h("form", { id: "submit-job", noValidate: true }, fields, h("button", { type: "submit" }, "Submit job"),
    formError);
  get("/v1/datasets").then((list) => {
    dataset.replaceChildren(...list.map((d) => h("option", { value: d.name }, `${d.name} (${d.candles} candles)`)));
  }).catch((error) => { formError.textContent = describe(error); });
  get("/v1/job-spec").then((schema) => {
    risk.replaceChildren(...schema.$defs.RiskLevel.enum.map((r) => h("option", { value: r }, r)));
    risk.value = schema.properties.risk.default;
    fields.append(...FIELDS.map(([name, label]) => field(name, label, inputFor(name, specField(schema, name)))));
  }).catch((error) => { formError.textContent = describe(error); });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    for (const span of form.querySelectorAll(".field-error")) span.textContent = "";
    formError.textContent = "";
    const spec = { dataset: dataset.value };
    if (risk.value) spec.risk = risk.value;
    for (const [name] of FIELDS) {
      const input = form.elements[name];
      const raw = input ? input.value.trim() : "";
      if (raw === "") continue;
      const value = input.type === "number" ? Number(raw) : raw;
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
