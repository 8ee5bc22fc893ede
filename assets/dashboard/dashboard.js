// @ts-check
// aloud's dashboard: draws /dashboard/api/{stats,points,live} with uPlot (served beside this
// file). Every number comes from the server; this script only formats and plots. The window is
// the page's own `since`/`until` query parameters when given (the same forms as `aloud stats
// --since/--until`), else the select's choice.

/** uPlot, loaded by the script tag before this one (assets/uplot/). */
const Plot = /** @type {any} */ (globalThis).uPlot;

/**
 * @typedef {{n: number, p50?: number|null, p90?: number|null, p99?: number|null, mean?: number|null}} Summary
 * @typedef {{bucket_start_ms: number|null, group: Record<string, string>, n: number,
 *   outcomes: Record<string, number>, metrics: Record<string, Summary>,
 *   feedback: {n: number, mean: number|null}}} Row
 * @typedef {{window: {since_ms: number|null, until_ms: number|null, bucket: string|null},
 *   group_by: string[], latency_over: string, rows: Row[]}} Report
 * @typedef {{id: string, started_ms: number, route: string, model: string|null, tier: string,
 *   outcome: string, first_feedback_ms: number|null, total_ms: number|null,
 *   longest_silence_ms: number|null, eta_error_pct: number|null}} Point
 * @typedef {{id: string, route: string, model: string|null, tier: string, phase: string,
 *   label: string, elapsed_ms: number}} Live
 */

const TIERS = ["off", "comments", "events"];
const TIER_COLORS = { off: "#9ca3af", comments: "#2563eb", events: "#16a34a" };
const OUTCOME_COLORS = {
  ok: "#16a34a", upstream_error: "#dc2626", proxy_error: "#f59e0b",
  timeout: "#7c3aed", client_disconnected: "#6b7280", shutdown: "#0891b2",
};
/** Upper edges (ms) of the silence histogram's bins; the last bin is open. */
const SILENCE_EDGES = [250, 500, 1000, 2000, 5000, 10000, 30000];

/** @param {string} id */
const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

/** A number as the tables show it: one decimal at most, "–" for none. */
const fmt = (/** @type {number|null|undefined} */ v) =>
  v === null || v === undefined ? "–" : String(Math.round(v * 10) / 10);

/** GETs JSON from the dashboard's API (the cookie or token came with the page). */
async function get(/** @type {string} */ path) {
  const r = await fetch(path, { credentials: "same-origin" });
  if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
  return r.json();
}

/** The window as query parameters: the page's own, or the select's "since". */
function windowParams() {
  const own = new URLSearchParams(location.search);
  const p = new URLSearchParams();
  const since = own.get("since") ?? /** @type {HTMLSelectElement} */ ($("range")).value;
  p.set("since", since);
  const until = own.get("until");
  if (until) p.set("until", until);
  return p;
}

/** The bucket for a window: hours up to two days, else days. */
function bucketFor(/** @type {Report} */ r) {
  const { since_ms, until_ms } = r.window;
  const span = (until_ms ?? Date.now()) - (since_ms ?? 0);
  return span <= 48 * 3600e3 ? "1h" : "1d";
}

/** @type {Report | null} the last bucketed report, redrawn when a select changes */
let lastSeries = null;

/** @type {Record<string, any>} charts drawn so far, by element id (replaced on redraw) */
const charts = {};

/** Draws (or redraws) a uPlot chart into the element `id`. */
function draw(/** @type {string} */ id, /** @type {any} */ opts, /** @type {any[]} */ data) {
  const el = $(id);
  charts[id]?.destroy();
  charts[id] = new Plot({ width: el.clientWidth || 600, height: 240, ...opts }, data, el);
}

/** Rows of the window's report, one per route and model, as the summary table. */
function summaryTable(/** @type {Report} */ report) {
  $("latency-over").textContent = report.latency_over;
  const body = /** @type {HTMLElement} */ ($("summary").querySelector("tbody"));
  body.replaceChildren();
  for (const row of report.rows) {
    const tr = document.createElement("tr");
    const key = `${row.group.route}|${row.group.model}`;
    tr.dataset.group = key;
    /** @param {string} text @param {string} [name] @param {boolean} [num] */
    const cell = (text, name, num = true) => {
      const td = document.createElement("td");
      td.textContent = text;
      if (num) td.className = "num";
      if (name) td.dataset.cell = name;
      tr.append(td);
    };
    cell(row.group.route, "route", false);
    cell(row.group.model, "model", false);
    cell(String(row.n), "n");
    const outcomes = Object.entries(row.outcomes).filter(([, n]) => n > 0);
    cell(outcomes.map(([o, n]) => `${o} ${n}`).join(", "), "outcomes", false);
    for (const [m, qs] of [["first_feedback_ms", ["p50", "p90", "p99"]],
      ["first_token_ms", ["p50", "p90", "p99"]], ["total_ms", ["p50", "p90", "p99"]],
      ["eta_error_pct", ["p50", "p90"]]]) {
      for (const q of qs) {
        const s = row.metrics[/** @type {string} */ (m)];
        cell(fmt(s?.[/** @type {"p50"} */ (q)]), `${m}.${q}`);
      }
    }
    cell(row.feedback.n ? `${fmt(row.feedback.mean)} (${row.feedback.n})` : "–", "feedback");
    body.append(tr);
  }
}

/** p50/p90/p99 of one figure over time, for the chosen route and model. */
function latencyChart(/** @type {Report} */ series) {
  const groups = [...new Set(series.rows.map((r) => `${r.group.route}|${r.group.model}`))];
  const select = /** @type {HTMLSelectElement} */ ($("series-group"));
  const chosen = select.value;
  select.replaceChildren(...groups.map((g) => new Option(g.replace("|", " · "), g)));
  if (groups.includes(chosen)) select.value = chosen;
  const metric = /** @type {HTMLSelectElement} */ ($("series-metric")).value;
  const rows = series.rows.filter((r) => `${r.group.route}|${r.group.model}` === select.value);
  const xs = rows.map((r) => /** @type {number} */ (r.bucket_start_ms) / 1000);
  const q = (/** @type {"p50"|"p90"|"p99"} */ k) => rows.map((r) => r.metrics[metric]?.[k] ?? null);
  draw("chart-latency", {
    series: [{}, { label: "p50", stroke: "#16a34a" }, { label: "p90", stroke: "#f59e0b" },
      { label: "p99", stroke: "#dc2626" }],
    axes: [{}, { label: "ms" }],
  }, [xs, q("p50"), q("p90"), q("p99")]);
}

/** Outcome shares (%) and feedback means per bucket, summed over every group. */
function bucketCharts(/** @type {Report} */ series) {
  /** @type {Map<number, {n: number, outcomes: Record<string, number>, fb: number, fbn: number}>} */
  const by = new Map();
  for (const r of series.rows) {
    const at = /** @type {number} */ (r.bucket_start_ms);
    const b = by.get(at) ?? { n: 0, outcomes: {}, fb: 0, fbn: 0 };
    b.n += r.n;
    for (const [o, n] of Object.entries(r.outcomes)) b.outcomes[o] = (b.outcomes[o] ?? 0) + n;
    if (r.feedback.n && r.feedback.mean !== null) {
      b.fb += r.feedback.mean * r.feedback.n;
      b.fbn += r.feedback.n;
    }
    by.set(at, b);
  }
  const at = [...by.keys()].sort((a, b) => a - b);
  const buckets = at.map((t) => /** @type {any} */ (by.get(t)));
  const xs = at.map((t) => t / 1000);
  const names = Object.keys(OUTCOME_COLORS);
  draw("chart-outcomes", {
    series: [{}, ...names.map((o) => ({ label: o, stroke: /** @type {any} */ (OUTCOME_COLORS)[o] }))],
    axes: [{}, { label: "% of exchanges" }],
  }, [xs, ...names.map((o) => buckets.map((b) => (b.n ? (100 * (b.outcomes[o] ?? 0)) / b.n : null)))]);
  draw("chart-feedback", {
    series: [{}, { label: "mean score", stroke: "#2563eb" },
      { label: "scores", stroke: "#9ca3af", scale: "n" }],
    axes: [{}, { label: "score" }, { side: 1, scale: "n", label: "count", grid: { show: false } }],
  }, [xs, buckets.map((b) => (b.fbn ? b.fb / b.fbn : null)), buckets.map((b) => b.fbn)]);
}

/** First feedback against total time, one dot per exchange, a series per tier. */
function scatterChart(/** @type {Point[]} */ points) {
  const done = points
    .filter((p) => p.total_ms !== null && p.first_feedback_ms !== null)
    .sort((a, b) => /** @type {number} */ (a.total_ms) - /** @type {number} */ (b.total_ms));
  const xs = done.map((p) => p.total_ms);
  const dots = { show: true, size: 6 };
  draw("chart-scatter", {
    scales: { x: { time: false } },
    series: [{ label: "total ms" },
      ...TIERS.map((t) => ({ label: t, stroke: /** @type {any} */ (TIER_COLORS)[t], paths: () => null, points: dots })),
      { label: "first feedback = total", stroke: "#d1d5db", dash: [4, 4], points: { show: false } }],
    axes: [{ label: "total (ms)" }, { label: "first feedback (ms)" }],
  }, [xs, ...TIERS.map((t) => done.map((p) => (p.tier === t ? p.first_feedback_ms : null))), xs]);
}

/** How many exchanges per tier had their longest silence in each bin. */
function silenceChart(/** @type {Point[]} */ points) {
  const counts = TIERS.map(() => new Array(SILENCE_EDGES.length + 1).fill(0));
  for (const p of points) {
    const t = TIERS.indexOf(p.tier);
    if (t < 0 || p.longest_silence_ms === null) continue;
    const s = p.longest_silence_ms;
    const bin = SILENCE_EDGES.findIndex((edge) => s < edge);
    counts[t][bin < 0 ? SILENCE_EDGES.length : bin] += 1;
  }
  const names = SILENCE_EDGES.map((e) => `<${e >= 1000 ? `${e / 1000}s` : `${e}ms`}`).concat(["≥30s"]);
  // Side by side: bin b's bar for tier t stands at x = 4b + t (x = 4b + 3 is the gap).
  const xs = names.flatMap((_, b) => [0, 1, 2].map((t) => 4 * b + t));
  const bars = Plot.paths.bars({ size: [0.9, 40] });
  draw("chart-silence", {
    scales: { x: { time: false } },
    series: [{ label: "silence" },
      ...TIERS.map((t, i) => ({ label: t, stroke: /** @type {any} */ (TIER_COLORS)[t],
        fill: /** @type {any} */ (TIER_COLORS)[t] + "aa", paths: bars, points: { show: false },
        value: (/** @type {any} */ _u, /** @type {number|null} */ v) => (v === null ? "–" : String(v)) }))],
    axes: [{ splits: () => names.map((_, b) => 4 * b + 1),
      values: (/** @type {any} */ _u, /** @type {number[]} */ ticks) => ticks.map((x) => names[(x - 1) / 4] ?? "") },
    { label: "exchanges" }],
  }, [xs, ...TIERS.map((_, i) => xs.map((x) => (x % 4 === i ? counts[i][Math.floor(x / 4)] : null)))]);
}

/**
 * The ETA's error at 25% of each call over time: a dot per call (from `api/points`) and the
 * median per bucket (`eta_error_pct` p50 of an ungrouped, bucketed `api/stats` report), drawn
 * at the middle of its bucket. Says how many calls had an estimate, of how many.
 */
function etaChart(/** @type {Point[]} */ points, /** @type {Report} */ buckets) {
  const dots = points.filter((p) => p.eta_error_pct !== null);
  const bucketMs = buckets.window.bucket === "1d" ? 86400e3 : 3600e3;
  const medians = buckets.rows.filter((r) => r.metrics.eta_error_pct?.p50 != null);
  /** @type {Map<number, [number|null, number|null]>} x (s) → [dot, median] */
  const at = new Map();
  for (const p of dots) at.set(p.started_ms / 1000, [p.eta_error_pct, null]);
  for (const r of medians) {
    const x = (/** @type {number} */ (r.bucket_start_ms) + bucketMs / 2) / 1000;
    at.set(x, [at.get(x)?.[0] ?? null, r.metrics.eta_error_pct.p50 ?? null]);
  }
  const xs = [...at.keys()].sort((a, b) => a - b);
  const estimated = buckets.rows.reduce((n, r) => n + (r.metrics.eta_error_pct?.n ?? 0), 0);
  const calls = buckets.rows.reduce((n, r) => n + r.n, 0);
  $("eta-bucket").textContent = buckets.window.bucket === "1d" ? "day" : "hour";
  $("eta-count").textContent = `${estimated} of ${calls} calls in this window had an estimate at 25%` +
    (dots.length < estimated ? ` (dots for the newest ${dots.length})` : "") + ".";
  draw("chart-eta", {
    series: [{},
      { label: "a call", stroke: "#2563eb", paths: () => null, points: { show: true, size: 5 } },
      { label: `median per ${$("eta-bucket").textContent}`, stroke: "#dc2626", width: 2, spanGaps: true }],
    axes: [{}, { label: "% error" }],
  }, [xs, xs.map((x) => at.get(x)?.[0] ?? null), xs.map((x) => at.get(x)?.[1] ?? null)]);
}

/** The in-flight table, from `api/live`. */
async function refreshLive() {
  /** @type {{in_flight: number, requests: Live[]} | null} */
  const live = await get("/dashboard/api/live");
  const rows = live?.requests ?? [];
  $("live-count").textContent = String(live?.in_flight ?? 0);
  $("live-empty").hidden = rows.length > 0;
  const body = /** @type {HTMLElement} */ ($("live").querySelector("tbody"));
  body.replaceChildren(...rows.map((r) => {
    const tr = document.createElement("tr");
    tr.dataset.id = r.id;
    for (const [text, cls] of [[r.id, ""], [r.route, ""], [r.model ?? "–", ""], [r.tier, ""],
      [r.phase, "phase"], [r.label, "label"], [`${(r.elapsed_ms / 1000).toFixed(1)} s`, "num"]]) {
      const td = document.createElement("td");
      td.textContent = text;
      td.className = cls;
      tr.append(td);
    }
    return tr;
  }));
}

/** Everything drawn from the store, for the current window. */
async function refreshWindow() {
  const p = windowParams();
  p.set("group_by", "route,model");
  /** @type {Report} */
  const report = await get(`/dashboard/api/stats?${p}`);
  const w = report.window;
  $("shown").textContent = `${w.since_ms ? new Date(w.since_ms).toISOString() : "…"} → ${w.until_ms ? new Date(w.until_ms).toISOString() : "now"}`;
  summaryTable(report);
  p.set("bucket", bucketFor(report));
  /** @type {Report} */
  const series = await get(`/dashboard/api/stats?${p}`);
  latencyChart(series);
  bucketCharts(series);
  const q = windowParams();
  /** @type {{points: Point[]}} */
  const pts = await get(`/dashboard/api/points?${q}`);
  scatterChart(pts.points);
  silenceChart(pts.points);
  // Medians cannot be merged across groups: the ETA line asks for the window ungrouped.
  q.set("bucket", bucketFor(report));
  /** @type {Report} */
  const etaBuckets = await get(`/dashboard/api/stats?${q}`);
  etaChart(pts.points, etaBuckets);
  lastSeries = series;
  document.body.dataset.loaded = "true";
}

/** Shows an error instead of failing silently (and keeps polling). */
function showing(/** @type {() => Promise<void>} */ f) {
  return () => f().then(() => { $("error").hidden = true; }, (e) => {
    $("error").hidden = false;
    $("error").textContent = String(e);
  });
}

const reloadWindow = showing(refreshWindow);
$("range").addEventListener("change", reloadWindow);
$("series-group").addEventListener("change", () => lastSeries && latencyChart(lastSeries));
$("series-metric").addEventListener("change", () => lastSeries && latencyChart(lastSeries));
reloadWindow();
const pollLive = showing(refreshLive);
pollLive();
// The live view polls once a second; the window's charts every 30 s.
setInterval(pollLive, 1000);
setInterval(reloadWindow, 30000);
