// Cluster: every node with its CPUs, workers and evaluations; evaluations per second from successive polls.

import { get } from "./api.js";
import { every, h, table } from "./ui.js";

const POLL_MS = 2000;

export function showCluster(view) {
  const summary = h("p", { id: "cluster-summary" });
  const nodes = h("div", { id: "nodes" });
  const evaluators = h("div", { id: "evaluators" });
  const status = h("p", { class: "error", role: "alert" });
  view.replaceChildren(h("section", { class: "card" }, h("h2", {}, "Cluster"), summary, nodes, status),
    h("section", { class: "card" }, h("h2", {}, "Evaluators"), evaluators));
  let previous = new Map();  // node_id -> {evaluations, at}: the last poll, for the rate

  async function poll() {
    const cluster = await get("/v1/cluster");
    const now = performance.now();
    const rows = cluster.nodes.map((node) => {
      const before = previous.get(node.node_id);
      const rate = before ? (node.evaluations - before.evaluations) / ((now - before.at) / 1000) : null;
      return [node.label || "–", node.address, String(node.cpus), node.alive ? "alive" : "lost", String(node.workers),
        node.evaluations.toLocaleString("en"), rate === null ? "…" : rate.toFixed(1)];
    });
    previous = new Map(cluster.nodes.map((node) => [node.node_id, { evaluations: node.evaluations, at: now }]));
    summary.textContent = `${cluster.nodes.length} nodes, ${cluster.workers} workers ready`
      + (cluster.pending_workers ? `, ${cluster.pending_workers} pending` : "");
    nodes.replaceChildren(table(["node", "address", "CPUs", "state", "workers", "evaluations", "evaluations/s"], rows,
      { class: "nodes" }));
  }

  get("/v1/evaluators").then((list) => evaluators.replaceChildren(table(["name", "version", "default", "builtin"],
    list.map((e) => [e.name, e.version, e.default ? "default" : "", e.builtin ? "yes" : "no"]))))
    .catch((error) => { evaluators.textContent = error.message; });
  return every(POLL_MS, poll, status);
}
