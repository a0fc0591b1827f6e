// The public API, and the API key. With keys configured, the collector answers 401 to a
// request without one; the explorer then asks for a key once, keeps it in sessionStorage
// (or localStorage when "remember" is ticked) and sends it as `Authorization: Bearer` on
// every request — the live stream included, which is read with fetch() rather than
// EventSource so that the key never goes into a URL.

const KEY_NAME = "flowscope.apiKey";

export class AuthError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function storages() {
  const out = [];
  try { out.push(window.sessionStorage); } catch { /* storage disabled */ }
  try { out.push(window.localStorage); } catch { /* storage disabled */ }
  return out;
}

export function getKey() {
  for (const st of storages()) {
    const v = st.getItem(KEY_NAME);
    if (v) return v;
  }
  return null;
}

export function setKey(key, remember) {
  forgetKey();
  const [session, local] = storages();
  (remember && local ? local : session)?.setItem(KEY_NAME, key);
}

export function forgetKey() {
  for (const st of storages()) st.removeItem(KEY_NAME);
}

function headers(extra) {
  const h = { Accept: "application/json", ...(extra || {}) };
  const key = getKey();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

/** "/api/v1/runs" + {flow: "x", attr: ["a:b", "c:d"]} -> URL string (arrays repeat the name). */
export function url(path, params) {
  const u = new URL(path, window.location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    if (v === undefined || v === null || v === "") continue;
    for (const one of Array.isArray(v) ? v : [v]) if (one !== "") u.searchParams.append(k, one);
  }
  return u.pathname + u.search;
}

async function failure(resp) {
  let message = `${resp.status} ${resp.statusText}`;
  try {
    const body = await resp.json();
    if (body && body.error) message = body.error;
  } catch { /* not JSON */ }
  if (resp.status === 401 || resp.status === 403) return new AuthError(resp.status, message);
  return new ApiError(resp.status, message);
}

/** GET a JSON document of the API; throws AuthError (401/403) or ApiError. */
export async function get(path, params, { signal } = {}) {
  const resp = await fetch(url(path, params), { headers: headers(), signal, cache: "no-store" });
  if (!resp.ok) throw await failure(resp);
  return resp.json();
}

export async function getText(path, params, { signal } = {}) {
  const resp = await fetch(url(path, params), { headers: headers({ Accept: "text/plain" }), signal });
  if (!resp.ok) throw await failure(resp);
  return resp.text();
}

/** Does this key read? Resolves true/false; other failures throw. */
export async function tryKey(key) {
  const resp = await fetch(url("/api/v1/runs", { limit: 1 }), {
    headers: { Accept: "application/json", Authorization: `Bearer ${key}` }, cache: "no-store",
  });
  if (resp.ok) return { ok: true };
  const err = await failure(resp);
  if (err instanceof AuthError) return { ok: false, message: err.message };
  throw err;
}

/**
 * Server-sent events of `path`, read with fetch: calls onEvent({event, data}) per event
 * until the stream ends or `signal` aborts. Resolves when the server closes the stream.
 */
export async function stream(path, params, onEvent, { signal } = {}) {
  const resp = await fetch(url(path, params), {
    headers: headers({ Accept: "text/event-stream" }), signal, cache: "no-store",
  });
  if (!resp.ok) throw await failure(resp);
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
      let event = "message";
      const data = [];
      for (const line of block.split(/\r?\n/)) {
        if (line.startsWith(":")) continue;
        const i = line.indexOf(":");
        const field = i < 0 ? line : line.slice(0, i);
        const val = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
        if (field === "event") event = val;
        else if (field === "data") data.push(val);
      }
      if (!data.length) continue;
      let parsed;
      try {
        parsed = JSON.parse(data.join("\n"));
      } catch {
        parsed = data.join("\n");
      }
      onEvent({ event, data: parsed });
    }
  }
}
