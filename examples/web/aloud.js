// @ts-check
// aloud.js: a small dependency-free client for aloud's events tier.
//
//   import { aloudFetch } from "/aloud/aloud.js";
//   const call = aloudFetch("/sim/v1/chat/completions", {
//     body: { model: "sim-reasoner", stream: true, messages: [...] },
//     onProgress(p) { status.textContent = `${p.label} (${Math.round(p.elapsed_ms / 1000)} s)`; },
//     onDelta(text) { answer.textContent += text; },
//     onDone(d) { ... d.timings.first_token_ms ... },
//     onResult(r) { ... r.body ... },      // a non-streaming call, wrapped
//     onError(e) { ... e.status, e.message, e.type, e.body ... },  // the upstream's own words
//     onCancel() { ... },                   // the user's call.cancel(): not an error
//   });
//   call.cancel();                          // aborts the request; nothing is ever re-POSTed
//
// After a failure `aloud.done` still arrives, with `phase: "error"`: don't show it as finished.
//
// When the stream ends (or is cancelled) it sends what the user saw — first progress painted,
// first token painted, done, abandoned — with navigator.sendBeacon to
// /aloud/v1/requests/{id}/timings (pass `beacon: false` to opt out).
//
// It POSTs once with fetch and `Aloud-Progress: events`, reads the SSE stream, and calls the
// callbacks. It never retries by itself: a retried model call is a second generation.
//
// When aloud has client tokens (`[server] client_tokens_env`), pass `token`: the request sends
// it in `Aloud-Token`, and the beacon as `?access_token=` (sendBeacon cannot set headers).
// `watchProgress` and `sendFeedback` take the same `token` for the side channel and feedback:
//
//   const es = watchProgress(requestId, { token, onProgress(p) { ... } });  // an EventSource
//   await sendFeedback(requestId, { score: 1 }, { token });
//
// Once aloud has enough history for the route and model, `onProgress(p)` also gets the ETA:
// `p.fraction` (0-1, never back, below 1 until done), `p.etaMs`, `p.etaFirstTokenMs`,
// `p.etaBasis` (see `withEta`). `progressBar(fill)` draws it: `onProgress: (p) => bar.update(p)`,
// `onDone: () => bar.done()`.

/**
 * `aloud.progress`: sent on every phase change, every new heading and every heartbeat.
 * @typedef {object} AloudProgress
 * @property {number} v
 * @property {string} request_id
 * @property {number} seq
 * @property {number} elapsed_ms
 * @property {string} phase  accepted, connecting, queued, waiting, thinking, tool, generating, done, error
 * @property {number} phase_elapsed_ms
 * @property {string} label
 * @property {"model" | "aloud"} label_from  a heading the model wrote, or aloud's status text
 * @property {Record<string, number>} counters
 */

/**
 * `aloud.done`: the last event. `phase` is "done" after a success and "error" after a failure.
 * @typedef {object} AloudDone
 * @property {number} v
 * @property {string} request_id
 * @property {number} seq
 * @property {string} phase
 * @property {number | null} status  the upstream's status
 * @property {{upstream_headers_ms: number | null, first_byte_ms: number | null, first_token_ms: number | null, total_ms: number}} timings
 * @property {Record<string, number>} counters
 * @property {{input?: number, output?: number, reasoning?: number} | null} usage
 */

/**
 * `aloud.result`: a non-streaming answer, wrapped; the body as `body` (JSON), `body_text` or
 * `body_base64`.
 * @typedef {object} AloudResult
 * @property {number} status
 * @property {Record<string, string>} headers
 * @property {unknown} [body]
 * @property {string} [body_text]
 * @property {string} [body_base64]
 */

/**
 * A failure: `aloud.error`, a refusal before the stream started, or a network failure.
 * @typedef {object} AloudError
 * @property {number} status  the upstream's status (or aloud's own: 502, 504...); 0 for a network failure
 * @property {string} message  the upstream's own message when it sent one, else aloud's
 * @property {string | null} [type]  the upstream's error type (`rate_limit_error`, `RESOURCE_EXHAUSTED`)
 * @property {string} [code]  aloud's cause (`upstream_status`, `idle_timeout`, ..., docs/protocol.md);
 *   `refused` for an answer that was not a stream, `network` when fetch failed
 * @property {unknown} [body]  the upstream's error body
 */

/**
 * @typedef {object} AloudFetchOptions
 * @property {unknown} [body]  JSON-encoded unless a string
 * @property {string} [method]
 * @property {Record<string, string>} [headers]
 * @property {string} [requestId]
 * @property {string} [token]
 * @property {boolean} [beacon]  false: never send the timings beacon
 * @property {(p: AloudProgress) => void} [onProgress]
 * @property {(text: string) => void} [onDelta]
 * @property {(name: string, data: any) => void} [onEvent]  the upstream's own events
 * @property {(r: AloudResult) => void} [onResult]
 * @property {(e: AloudError) => void} [onError]
 * @property {() => void} [onCancel]
 * @property {(d: AloudDone) => void} [onDone]
 */

/** Makes an id for Aloud-Request-Id (16-64 chars of [A-Za-z0-9_-]). */
export function newRequestId() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** An incremental SSE parser: feed text, get {event, data, id} objects. Comments are skipped. */
export class SseParser {
  constructor() {
    this.buffer = "";
    this.reset();
  }
  reset() {
    this.event = "";
    this.data = [];
    this.id = null;
  }
  feed(text) {
    this.buffer += text;
    const out = [];
    let nl;
    while ((nl = this.buffer.search(/\r\n|\r|\n/)) >= 0) {
      const eol = this.buffer[nl] === "\r" && this.buffer[nl + 1] === "\n" ? 2 : 1;
      if (this.buffer[nl] === "\r" && nl + 1 === this.buffer.length) break; // wait for a possible \n
      const line = this.buffer.slice(0, nl);
      this.buffer = this.buffer.slice(nl + eol);
      if (line === "") {
        if (this.data.length) out.push({ event: this.event || "message", data: this.data.join("\n"), id: this.id });
        this.reset();
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") this.event = value;
      else if (field === "data") this.data.push(value);
      else if (field === "id") this.id = value;
    }
    return out;
  }
}

/** The answer text inside one upstream event, for the common apis; "" when there is none. */
export function textDelta(event, data) {
  if (!data || typeof data !== "object") return "";
  if (event === "response.output_text.delta") return data.delta || "";
  if (event === "content_block_delta") return data.delta && data.delta.type === "text_delta" ? data.delta.text || "" : "";
  if (Array.isArray(data.choices)) return (data.choices[0] && data.choices[0].delta && data.choices[0].delta.content) || "";
  if (Array.isArray(data.candidates)) {
    const parts = (data.candidates[0] && data.candidates[0].content && data.candidates[0].content.parts) || [];
    return parts.filter((p) => !p.thought && typeof p.text === "string").map((p) => p.text).join("");
  }
  if (data.message && typeof data.message.content === "string") return data.message.content;
  if (typeof data.response === "string") return data.response;
  return "";
}

/**
 * A refusal that came instead of the event stream (aloud's own 4xx/5xx, or a proxy's page), read
 * from any api's error envelope: `{"error":{"message","type"}}`, Gemini's `status`, Ollama's
 * `{"error":"..."}`.
 * @param {number} status
 * @param {string} text
 * @returns {AloudError}
 */
export function refusal(status, text) {
  /** @type {any} */
  let body = null;
  try {
    body = JSON.parse(text);
  } catch (_) {}
  const e = body && typeof body === "object" ? body.error ?? body : null;
  const message = typeof e === "string" ? e : (e && typeof e.message === "string" && e.message) || text.trim() || `status ${status}`;
  const kind = e && typeof e === "object" ? e.type ?? e.status : null;
  return { status, message, type: typeof kind === "string" ? kind : null, code: "refused", body };
}

/**
 * Sends one request through aloud's events tier.
 * @param {string} url
 * @param {AloudFetchOptions} [options]
 * @returns {{requestId: string, cancel: () => void, done: Promise<void>}}
 */
export function aloudFetch(url, options = {}) {
  const requestId = options.requestId || newRequestId();
  const controller = new AbortController();
  const noop = () => {};
  const on = {
    progress: options.onProgress || noop,
    delta: options.onDelta || noop,
    event: options.onEvent || noop,
    result: options.onResult || noop,
    error: options.onError || noop,
    cancel: options.onCancel || noop,
    done: options.onDone || noop,
  };
  const headers = Object.assign(
    { "content-type": "application/json", "aloud-progress": "events", "aloud-request-id": requestId },
    options.token ? { "aloud-token": options.token } : {},
    options.headers || {},
  );
  const body = typeof options.body === "string" ? options.body : JSON.stringify(options.body || {});
  let failed = false;
  // What the user saw, measured here and sent to aloud once (options.beacon === false: never).
  const t0 = performance.now();
  const seen = {};
  const mark = (name) => {
    if (seen[name] === undefined) seen[name] = Math.round((performance.now() - t0) * 10) / 10;
  };
  let beaconSent = false;
  const sendTimings = (extra) => {
    if (beaconSent || options.beacon === false || typeof navigator === "undefined" || !navigator.sendBeacon) return;
    beaconSent = true;
    const body = Object.assign({}, seen, extra);
    try {
      const target = new URL(`/aloud/v1/requests/${requestId}/timings`, new URL(url, location.href));
      if (options.token) target.searchParams.set("access_token", options.token);
      navigator.sendBeacon(target, JSON.stringify(body)); // a string goes as text/plain: no preflight
    } catch (_) {}
  };
  /** @param {AloudError} e */
  const fail = (e) => {
    if (failed) return;
    failed = true;
    // The user's own cancel is not a failure: onCancel, and the beacon says they left.
    if (controller.signal.aborted) {
      on.cancel();
      sendTimings({ abandoned_ms: Math.round(performance.now() - t0), abandoned: true });
    } else on.error(e);
  };

  const done = (async () => {
    let response;
    try {
      response = await fetch(url, { method: options.method || "POST", headers, body, signal: controller.signal });
    } catch (e) {
      fail({ status: 0, code: "network", message: String(e) });
      return;
    }
    const type = response.headers.get("content-type") || "";
    if (!type.startsWith("text/event-stream") || !response.body) {
      // Refused before the upstream was contacted (bad id, unknown route, body too large...).
      fail(refusal(response.status, await response.text().catch(() => "")));
      return;
    }
    // A route with on_disconnect = "finish" keeps the answer: after a drop, resume it.
    const resume = response.headers.get("aloud-on-disconnect") === "finish" && options.resume !== false
      ? resumeState(requestId, url, options)
      : null;
    const handle = (e) => {
          let data = null;
          try {
            data = JSON.parse(e.data);
          } catch (_) {
            data = e.data;
          }
          if (resume && !e.event.startsWith("aloud.")) resume.rendered();
          if (e.event === "aloud.progress") {
            on.progress(withEta(data));
            mark("first_progress_painted_ms");
          } else if (e.event === "aloud.done") {
            on.done(data);
            mark("done_ms");
            sendTimings({});
          }
          else if (e.event === "aloud.result") on.result(data);
          else if (e.event === "aloud.error") fail(data);
          else {
            on.event(e.event, data);
            const text = textDelta(e.event, data);
            if (text) {
              on.delta(text);
              mark("first_token_painted_ms");
            }
          }
          if (resume && e.event === "aloud.done") resume.forget();
    };
    try {
      await readEvents(response, handle);
    } catch (e) {
      if (resume && !controller.signal.aborted) {
        await resumeAfterDrop(resume, handle, on, controller.signal, fail);
        return;
      }
      fail({ status: 0, code: "network", message: String(e) });
    }
  })();

  return { requestId, cancel: () => controller.abort(), done };
}

/** Reads a response's SSE events into `handle`; throws when the transfer fails. */
async function readEvents(response, handle) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  const parser = new SseParser();
  for (;;) {
    const { value, done: end } = await reader.read();
    if (end) return;
    for (const e of parser.feed(decoder.decode(value, { stream: true }))) handle(e);
  }
}

// Resuming (routes with on_disconnect = "finish"): N counts the upstream's own events the page
// rendered (not aloud.* events, not comments). After a network drop the same call continues
// from /aloud/v1/requests/{id}/stream?after=N; after a reload, resumeStored() does, with the id
// and N kept in sessionStorage under "aloud.resume".

const RESUME_KEY = "aloud.resume";

/** The resume bookkeeping of one call: events rendered, mirrored to sessionStorage. */
function resumeState(requestId, url, options) {
  const state = { requestId, url: String(url), after: options.after || 0, token: options.token, base: options.base };
  const save = () => {
    try {
      sessionStorage.setItem(RESUME_KEY, JSON.stringify({ requestId, url: state.url, after: state.after }));
    } catch (_) {}
  };
  save();
  state.rendered = () => {
    state.after += 1;
    save();
  };
  state.forget = () => {
    try {
      sessionStorage.removeItem(RESUME_KEY);
    } catch (_) {}
  };
  return state;
}

/** Retries the resume until the rest of the answer arrived, or aloud says it never will. */
async function resumeAfterDrop(state, handle, on, signal, fail) {
  let wait = 250;
  for (;;) {
    if (signal.aborted) return fail({ status: 0, message: "cancelled" });
    let response = null;
    try {
      const u = new URL(`/aloud/v1/requests/${state.requestId}/stream`, new URL(state.url, location.href));
      u.searchParams.set("after", String(state.after));
      const headers = state.token ? { "aloud-token": state.token } : {};
      response = await fetch(u, { headers, signal, cache: "no-store" });
    } catch (_) {}
    if (response && !response.ok) {
      // 404: not kept (or gone); 410: it outgrew its buffer; 416: nothing after N.
      const body = await response.json().catch(() => null);
      state.forget();
      return fail({ status: response.status, message: (body && body.error && body.error.message) || "cannot resume", body });
    }
    if (response) {
      try {
        await readEvents(response, handle);
        state.forget();
        return on.done({ id: state.requestId, resumed: true });
      } catch (_) {}
    }
    await new Promise((r) => setTimeout(r, wait));
    wait = Math.min(wait * 2, 2000);
  }
}

/**
 * After a reload: resumes the call this tab had in flight (kept in sessionStorage), with the
 * same callbacks as aloudFetch. `options.after` (e.g. 0 to render the whole answer again, when
 * the page kept nothing) overrides the stored count. Returns null when nothing is pending.
 */
export function resumeStored(options = {}) {
  let stored = null;
  try {
    stored = JSON.parse(sessionStorage.getItem(RESUME_KEY) || "null");
  } catch (_) {}
  if (!stored || !stored.requestId) return null;
  const controller = new AbortController();
  const noop = () => {};
  const on = { event: options.onEvent || noop, delta: options.onDelta || noop, error: options.onError || noop, done: options.onDone || noop };
  const state = resumeState(stored.requestId, stored.url, Object.assign({}, options, { after: options.after ?? stored.after }));
  const handle = (e) => {
    let data = null;
    try {
      data = JSON.parse(e.data);
    } catch (_) {
      data = e.data;
    }
    state.rendered();
    on.event(e.event, data);
    const text = textDelta(e.event, data);
    if (text) on.delta(text);
  };
  const done = resumeAfterDrop(state, handle, on, controller.signal, on.error);
  return { requestId: stored.requestId, cancel: () => controller.abort(), done };
}

/**
 * Where aloud is: `options.base` (a URL), else this page's origin.
 * @param {string} path
 * @param {{base?: string}} options
 */
function aloudUrl(path, options) {
  return new URL(path, options.base || location.href);
}

/**
 * The side channel's URL for `requestId`. A token goes as `access_token`, since a browser's
 * EventSource cannot send headers; `after` replays from a sequence number.
 * @param {string} requestId
 * @param {{base?: string, token?: string, after?: number}} [options]
 */
export function progressUrl(requestId, options = {}) {
  const u = aloudUrl(`/aloud/v1/progress/${requestId}`, options);
  if (options.token) u.searchParams.set("access_token", options.token);
  if (options.after !== undefined) u.searchParams.set("after", String(options.after));
  return u.toString();
}

/**
 * Follows a request's progress on the side channel (works in any tier, even for a request made
 * by another client with the same token). Returns the EventSource; call `.close()` to stop.
 * @param {string} requestId
 * @param {{base?: string, token?: string, after?: number, onProgress?: (p: AloudProgress) => void, onDone?: (d: AloudDone) => void, onError?: (e: AloudError) => void}} [options]
 */
export function watchProgress(requestId, options = {}) {
  const es = new EventSource(progressUrl(requestId, options));
  /** @param {MessageEvent} e */
  const parse = (e) => {
    try { return JSON.parse(e.data); } catch (_) { return e.data; }
  };
  es.addEventListener("aloud.progress", (e) => (options.onProgress || (() => {}))(withEta(parse(e))));
  es.addEventListener("aloud.done", (e) => {
    (options.onDone || (() => {}))(parse(e));
    es.close();
  });
  es.addEventListener("aloud.error", (e) => {
    (options.onError || (() => {}))(parse(e));
    es.close();
  });
  return es;
}

/**
 * Sends feedback ({score, label, comment}) for a request. With a token it goes in
 * `Aloud-Token`. Resolves to the HTTP status (204: kept; 404: no such request for this token).
 * @param {string} requestId
 * @param {{score?: number, label?: string, comment?: string}} feedback
 * @param {{base?: string, token?: string}} [options]
 */
export async function sendFeedback(requestId, feedback, options = {}) {
  /** @type {Record<string, string>} */
  const headers = { "content-type": "application/json" };
  if (options.token) headers["aloud-token"] = options.token;
  const r = await fetch(aloudUrl(`/aloud/v1/requests/${requestId}/feedback`, options), {
    method: "POST",
    headers,
    body: JSON.stringify(feedback),
  });
  return r.status;
}

/**
 * Adds the ETA fields of an `aloud.progress` payload in camelCase, in place: `fraction` stays,
 * `etaMs` (to the end), `etaFirstTokenMs` (to the first answer token, while there is none),
 * `etaBasis` (past exchanges behind the estimate). Absent until aloud has enough history.
 */
export function withEta(p) {
  if (p && typeof p === "object" && typeof p.fraction === "number") {
    p.etaMs = p.eta_ms;
    p.etaFirstTokenMs = p.eta_first_token_ms;
    p.etaBasis = p.eta_basis;
  }
  return p;
}

/**
 * A progress bar driven by `fraction`: `fill`'s width only ever grows (a later, lower fraction
 * is ignored), glides between events with a linear CSS transition over `stepMs` (the heartbeat,
 * 1 s by default), and is full only after `done()`. aloud's fractions already speed up towards
 * the end (docs/protocol.md). Returns `{ update(p), done(), reset(), value }`.
 */
export function progressBar(fill, options = {}) {
  const step = options.stepMs ?? 1000;
  let shown = 0;
  const set = (fraction, ms) => {
    fill.style.transition = `width ${ms}ms linear`;
    fill.style.width = `${(fraction * 100).toFixed(2)}%`;
  };
  set(0, 0);
  return {
    update(p) {
      const f = p && typeof p.fraction === "number" ? Math.min(p.fraction, 0.99) : null;
      if (f !== null && f > shown) {
        shown = f;
        set(f, step);
      }
      return shown;
    },
    done() {
      shown = 1;
      set(1, 200);
    },
    reset() {
      shown = 0;
      set(0, 0);
    },
    get value() {
      return shown;
    },
  };
}
