// Building blocks of the views: elements from a tag and properties, tables, errors shown where they belong.

import { ApiError } from "./api.js";

export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  node.append(...children.flat().filter((c) => c !== null && c !== undefined));
  return node;
}

// rows: arrays of cells (text or nodes); one <tr> each under a header row.
export function table(headers, rows, props = {}) {
  return h("table", props,
    h("thead", {}, h("tr", {}, headers.map((name) => h("th", {}, name)))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((cell) => h("td", {}, cell))))));
}

export const fixed = (value, digits = 3) => (value === null || value === undefined ? "–" : value.toFixed(digits));

// Poll `step` every `periodMs` until the returned function is called; a failed poll is shown in `status`.
export function every(periodMs, step, status) {
  let timer = null;
  let stopped = false;
  async function tick() {
    try {
      await step();
      status.textContent = "";
    } catch (error) {
      status.textContent = describe(error);
    }
    if (!stopped) timer = setTimeout(tick, periodMs);
  }
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

export function describe(error) {
  if (error instanceof ApiError && error.status === 401) window.dispatchEvent(new Event("token-refused"));
  return error instanceof ApiError ? `${error.error}: ${error.message}` : `the service did not answer (${error.message})`;
}
