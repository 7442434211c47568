// Talking to the service: every data request carries the token in its Authorization header; event streams are
// opened with a single-use ticket, so the token never appears in a URL.

const TOKEN_KEY = "miner-token";

export const token = () => sessionStorage.getItem(TOKEN_KEY);
export const setToken = (value) => sessionStorage.setItem(TOKEN_KEY, value);
export const forgetToken = () => sessionStorage.removeItem(TOKEN_KEY);

// An error answer of the service: `error` is its code (schema/errors.py), `details` the fields a 422 names.
export class ApiError extends Error {
  constructor(status, body) {
    super(body.message || `HTTP ${status}`);
    this.status = status;
    this.error = body.error || "http_error";
    this.details = body.details || [];
  }
}

export async function api(method, path, body, extraHeaders = {}) {
  const headers = { ...extraHeaders, Authorization: `Bearer ${token()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const answer = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await answer.text();
  let parsed;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = { message: text };
  }
  if (!answer.ok) throw new ApiError(answer.status, parsed || {});
  return { data: parsed, text };
}

export const get = async (path) => (await api("GET", path)).data;

const TERMINAL = ["finished", "failed", "cancelled"];
const RETRY_MS = 1000;

// Follow a job's events: `onEvent(event)` once per seq, in order. After a dropped connection it reconnects with
// `since` = the last seq seen, so no event is missed or repeated. Returns `stop()`.
export function follow(jobId, onEvent, onEnd) {
  let lastSeq = 0;
  let socket = null;
  let stopped = false;

  async function connect() {
    if (stopped) return;
    let ticket;
    try {
      ({ ticket } = (await api("POST", "/v1/ws-ticket")).data);
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) return onEnd({ refused: error.message });
      return setTimeout(connect, RETRY_MS);
    }
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const query = new URLSearchParams({ since: String(lastSeq), ticket });
    socket = new WebSocket(`${scheme}://${location.host}/v1/jobs/${encodeURIComponent(jobId)}/events?${query}`);
    socket.onmessage = (message) => {
      const event = JSON.parse(message.data);
      if (event.seq <= lastSeq) return;
      lastSeq = event.seq;
      onEvent(event);
    };
    socket.onclose = (close) => {
      socket = null;
      if (stopped) return;
      if (close.code >= 4400 && close.code < 4500 && close.code !== 4429) return onEnd({ refused: close.reason });
      if (close.code === 1000) return onEnd({});
      setTimeout(connect, RETRY_MS);  // dropped, the service failed (1011) or too busy (4429): resume from lastSeq
    };
  }

  connect();
  return () => {
    stopped = true;
    if (socket) socket.close();
  };
}

export const isTerminal = (status) => TERMINAL.includes(status);
