// aloud called from another origin, in a real headless Chromium driven by playwright-core.
//
//   node browser_cors.mjs --base-url http://127.0.0.1:ALOUD_PORT --page-port PORT [--out DIR]
//
// Serves a tiny page on http://127.0.0.1:PORT (the origin aloud's `[cors] origins` allows) that
// imports aloud.js from aloud itself (a cross-origin module script), subscribes to the side
// channel `GET /aloud/v1/progress/{id}` with a plain EventSource, then POSTs through aloud.js with
// that id, `Aloud-Progress: events` and SDK headers (`x-stainless-*`, `anthropic-version`).
// Checks: the POST streamed progress and the seeded answer, `Aloud-Request-Id` was readable,
// the EventSource got `aloud.progress` events with increasing ids and then `aloud.done`; and a
// page on a second, not allowed origin is refused by the browser (fetch rejects, EventSource
// fails). Prints one JSON summary on stdout; a failed check exits 1 with the reasons on stderr.
import { parseArgs } from 'node:util';
import { createServer, request as httpRequest } from 'node:http';
import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, loadAloudJs, run, summaryAndExit } from './browser_common.mjs';

/** Longest wait for one page state; each call takes about 2 s. */
const WAIT_MS = 30_000;

/** The request both the page and the Node reference make (a seeded, short simulator call). */
const SIM_HEADERS = {
  'x-sim-seed': '11',
  'x-sim-think-ms': '1500',
  'x-sim-tokens': '12',
  'x-sim-token-ms': '20',
};
const SDK_HEADERS = {
  'x-stainless-os': 'Linux',
  'x-stainless-lang': 'js',
  'x-stainless-package-version': '6.49.0',
  'anthropic-version': '2023-06-01',
};
const BODY = { model: 'sim-reasoner', stream: true, messages: [{ role: 'user', content: 'Why is the sky blue?' }] };

/** A page that loads aloud.js from `aloud` as a module and says when it is ready. */
function pageHtml(aloud, title) {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${title}</title></head>
<body><h1>${title}</h1><pre id="log">loading aloud.js from ${aloud}</pre>
<script type="module">
import * as lib from ${JSON.stringify(`${aloud}/aloud/aloud.js`)};
window.aloudLib = lib;
document.getElementById("log").textContent = "aloud.js loaded";
</script>
<script>window.addEventListener("error", (e) => (window.__loadError = String(e.message || e.type)), true);</script>
</body></html>`;
}

/** An HTTP server on 127.0.0.1:port serving `html` at `/`. */
function servePage(port, html) {
  const server = createServer((req, res) => {
    if (req.url === '/favicon.ico') {
      res.writeHead(204);
      res.end();
    } else if (req.url === '/' || req.url.startsWith('/?')) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(html);
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found');
    }
  });
  return new Promise((resolveServer, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolveServer(server));
  });
}

/** A raw preflight from Node (which sends any Origin it is told to): status and allow-origin. */
function preflight(url, origin) {
  return new Promise((resolvePre, reject) => {
    const req = httpRequest(url, {
      method: 'OPTIONS',
      headers: {
        origin,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'content-type, aloud-progress, aloud-request-id, x-stainless-os, anthropic-version',
      },
    });
    req.on('response', (res) => {
      res.resume();
      resolvePre({ status: res.statusCode, allow_origin: res.headers['access-control-allow-origin'] ?? null });
    });
    req.on('error', reject);
    req.end();
  });
}

/** In the allowed page: side channel first, then the POST through aloud.js with the same id. */
async function allowedRun({ aloud, id, headers, body, waitMs }) {
  const { aloudFetch } = window.aloudLib;
  const out = { side: [], sideErrors: [], progress: [], text: '', done: null, errors: [], responses: [] };
  const timeout = (what) =>
    new Promise((_, reject) => setTimeout(() => reject(new Error(`${what}: nothing within ${waitMs} ms`)), waitMs));

  const es = new EventSource(`${aloud}/aloud/v1/progress/${id}`);
  const record = (e) => {
    let data = e.data;
    try {
      data = JSON.parse(e.data);
    } catch (_) {}
    out.side.push({ event: e.type, id: e.lastEventId, data });
  };
  const sideEnded = new Promise((resolveSide) => {
    es.addEventListener('aloud.progress', record);
    for (const last of ['aloud.done', 'aloud.error']) {
      es.addEventListener(last, (e) => {
        record(e);
        es.close();
        resolveSide();
      });
    }
    es.addEventListener('error', () => {
      out.sideErrors.push(`EventSource error (readyState ${es.readyState})`);
      if (es.readyState === EventSource.CLOSED) resolveSide();
    });
  });
  await Promise.race([
    new Promise((resolveOpen) => es.addEventListener('open', resolveOpen, { once: true })),
    timeout('EventSource open'),
  ]);
  out.sideOpenedBeforePost = true;

  // aloud.js keeps the response to itself: look at its headers on the way past.
  const realFetch = window.fetch;
  window.fetch = async (input, init) => {
    const r = await realFetch(input, init);
    out.responses.push({
      url: String(input),
      status: r.status,
      type: r.type,
      contentType: r.headers.get('content-type'),
      requestId: r.headers.get('aloud-request-id'),
      readable: [...r.headers.keys()],
    });
    return r;
  };
  try {
    const call = aloudFetch(`${aloud}/sim/v1/chat/completions`, {
      requestId: id,
      headers,
      body,
      onProgress: (p) => out.progress.push(p),
      onDelta: (t) => (out.text += t),
      onDone: (d) => (out.done = d),
      onError: (e) => out.errors.push(e),
    });
    out.callRequestId = call.requestId;
    await Promise.race([call.done, timeout('aloudFetch')]);
  } finally {
    window.fetch = realFetch;
  }
  await Promise.race([sideEnded, timeout('side channel aloud.done')]);
  // A simple cross-origin GET works from here too (the control for the blocked page).
  const health = await fetch(`${aloud}/healthz`);
  out.health = { status: health.status, body: await health.text() };
  document.getElementById('log').textContent = JSON.stringify(
    { progress: out.progress.map((p) => `${p.seq} ${p.phase}`), side: out.side.map((e) => `${e.id} ${e.event} ${e.data.phase ?? ''}`), text: out.text },
    null,
    1,
  );
  return out;
}

/** In the page of the other origin: the same calls, which the browser must refuse. */
async function blockedRun({ aloud, waitMs }) {
  const attempt = async (what, url, init) => {
    try {
      const r = await fetch(url, init);
      return { what, rejected: false, status: r.status };
    } catch (e) {
      return { what, rejected: true, name: e.name, message: e.message };
    }
  };
  const results = [
    await attempt('preflighted POST', `${aloud}/sim/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'aloud-progress': 'events', 'x-stainless-os': 'Linux', 'x-sim-status': '400' },
      body: '{}',
    }),
    await attempt('simple GET', `${aloud}/healthz`),
  ];
  const side = await new Promise((resolveSide) => {
    const es = new EventSource(`${aloud}/aloud/v1/progress/blocked-origin-000001`);
    const timer = setTimeout(() => {
      es.close();
      resolveSide({ what: 'EventSource', failed: false, note: `still readyState ${es.readyState} after ${waitMs} ms` });
    }, waitMs);
    es.addEventListener('open', () => {
      clearTimeout(timer);
      es.close();
      resolveSide({ what: 'EventSource', failed: false, note: 'opened' });
    });
    es.addEventListener('error', () => {
      clearTimeout(timer);
      const closed = es.readyState === EventSource.CLOSED;
      es.close();
      resolveSide({ what: 'EventSource', failed: true, closed });
    });
  });
  results.push(side);
  return results;
}

async function main() {
  const { values } = parseArgs({
    options: { 'base-url': { type: 'string' }, 'page-port': { type: 'string' }, out: { type: 'string' } },
  });
  const pagePort = Number(values['page-port']);
  if (!values['base-url'] || !Number.isInteger(pagePort) || pagePort <= 0) {
    process.stderr.write('usage: browser_cors.mjs --base-url http://127.0.0.1:PORT --page-port PORT [--out DIR]\n');
    process.exit(2);
  }
  const aloud = values['base-url'].replace(/\/+$/, '');
  const failures = [];
  const check = (ok, message) => {
    if (!ok) failures.push(message);
    return ok;
  };
  const summary = {};

  const allowedServer = await servePage(pagePort, pageHtml(aloud, 'allowed origin'));
  const blockedServer = await servePage(0, pageHtml(aloud, 'not allowed origin'));
  const allowedOrigin = `http://127.0.0.1:${pagePort}`;
  const blockedOrigin = `http://127.0.0.1:${blockedServer.address().port}`;
  summary.origins = { allowed: allowedOrigin, blocked: blockedOrigin };

  // What aloud answers each origin's preflight, seen from Node (for clearer failures).
  const target = `${aloud}/sim/v1/chat/completions`;
  summary.preflight = {
    allowed: await preflight(target, allowedOrigin),
    blocked: await preflight(target, blockedOrigin),
  };

  // The same call from Node (no Origin), for the seeded answer text.
  const { aloudFetch } = await loadAloudJs(aloud);
  const reference = { text: '', error: null };
  const referenceDone = aloudFetch(target, {
    headers: SIM_HEADERS,
    body: BODY,
    onDelta: (t) => (reference.text += t),
    onError: (e) => (reference.error = e),
  }).done;

  const profile = await mkdtemp(join(tmpdir(), 'aloud-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 900, height: 700 },
  });
  try {
    const pageErrors = [];
    const consoleErrors = { allowed: [], blocked: [] };
    const open = async (which, url) => {
      const page = await context.newPage();
      page.on('pageerror', (e) => pageErrors.push(`${which}: ${e}`));
      page.on('console', (m) => {
        if (m.type() === 'error') consoleErrors[which].push(m.text());
      });
      const r = await page.goto(url, { waitUntil: 'load' });
      check(r && r.ok(), `GET ${url}: status ${r && r.status()}`);
      return page;
    };

    // --- the allowed origin ---------------------------------------------------------------
    const page = await open('allowed', `${allowedOrigin}/`);
    const loaded = await page
      .waitForFunction(() => (window.aloudLib ? 'loaded' : window.__loadError && `failed: ${window.__loadError}`), null, { timeout: WAIT_MS })
      .then((h) => h.jsonValue());
    if (!check(loaded === 'loaded', `the allowed page could not import ${aloud}/aloud/aloud.js: ${JSON.stringify(loaded)}; console: ${consoleErrors.allowed.join(' | ')}`)) {
      throw new Error(failures.join('\n'));
    }
    const id = `browser-cors-${Date.now().toString(36)}-${process.pid}`;
    const headers = { ...SDK_HEADERS, ...SIM_HEADERS };
    const got = await page.evaluate(allowedRun, { aloud, id, headers, body: BODY, waitMs: WAIT_MS });
    await referenceDone;
    if (values.out) {
      const out = resolve(values.out);
      await mkdir(out, { recursive: true });
      summary.screenshot = join(out, 'cors-allowed.png');
      await page.screenshot({ path: summary.screenshot, fullPage: true });
    }

    const post = got.responses.find((r) => r.url.endsWith('/sim/v1/chat/completions'));
    summary.post = post ?? null;
    summary.request_id = id;
    summary.progress = got.progress.map((p) => `${p.seq} ${p.phase}`);
    summary.text = got.text;
    summary.side_channel = got.side.map((e) => `${e.id} ${e.event} ${e.data?.phase ?? ''}`.trim());
    summary.side_channel_errors = got.sideErrors;

    // The POST: succeeded, streamed, and its id header was readable across origins.
    check(post, `no response to the POST was seen: ${JSON.stringify(got.responses)}`);
    if (post) {
      check(post.status === 200, `the POST got status ${post.status}`);
      check(post.type === 'cors', `the POST response type is ${post.type}, not cors`);
      check(post.contentType?.startsWith('text/event-stream'), `the POST content-type is ${post.contentType}`);
      check(post.requestId === id, `Aloud-Request-Id read by the page is ${JSON.stringify(post.requestId)}, not ${id} (readable headers: ${post.readable.join(', ')})`);
    }
    check(got.errors.length === 0, `aloud.js reported errors: ${JSON.stringify(got.errors)}`);
    check(got.progress.length >= 2, `only ${got.progress.length} aloud.progress events reached the page inline`);
    // Chat Completions sends nothing while it thinks: aloud shows "waiting" until the answer.
    check(got.progress.some((p) => p.phase === 'waiting' || p.phase === 'thinking'), `no inline waiting/thinking progress: ${summary.progress.join(', ')}`);
    check(got.progress.some((p) => p.phase === 'generating'), `no inline "generating" progress: ${summary.progress.join(', ')}`);
    check(got.progress.every((p) => p.request_id === id), 'an inline progress event names another request id');
    check(got.done && got.done.timings, `no aloud.done with timings inline: ${JSON.stringify(got.done)}`);

    // The answer: the seeded one, as Node gets it through aloud.
    check(!reference.error, `the reference call from Node failed: ${JSON.stringify(reference.error)}`);
    check(got.text.length > 0, 'no answer text reached the page');
    check(got.text === reference.text, `the page's answer differs from Node's:\n  page: ${JSON.stringify(got.text)}\n  node: ${JSON.stringify(reference.text)}`);

    // The side channel: aloud.progress events with increasing ids, then aloud.done.
    const side = got.side;
    const progressEvents = side.filter((e) => e.event === 'aloud.progress');
    const ids = side.map((e) => Number(e.id));
    check(progressEvents.length >= 2, `the EventSource got ${progressEvents.length} aloud.progress events: ${summary.side_channel.join(', ')}`);
    check(side.at(-1)?.event === 'aloud.done', `the EventSource did not end with aloud.done: ${summary.side_channel.join(', ')}`);
    check(side.every((e) => e.id !== '' && Number.isInteger(Number(e.id))), `an EventSource event has no numeric id: ${summary.side_channel.join(', ')}`);
    check(ids.every((n, i) => i === 0 || n > ids[i - 1]), `EventSource ids do not increase: ${ids.join(', ')}`);
    check(side.every((e) => e.data?.request_id === id), 'an EventSource event names another request id');
    check(side[0]?.data?.phase === 'accepted', `the side channel should start at "accepted" (it was subscribed first): ${summary.side_channel.join(', ')}`);
    check(progressEvents.some((e) => e.data.phase === 'waiting' || e.data.phase === 'thinking'), `no waiting/thinking on the side channel: ${summary.side_channel.join(', ')}`);
    check(progressEvents.some((e) => e.data.phase === 'generating'), `no "generating" on the side channel: ${summary.side_channel.join(', ')}`);
    check(got.health.status === 200, `GET /healthz from the allowed origin: ${JSON.stringify(got.health)}`);

    // --- the origin aloud does not allow ----------------------------------------------------
    const other = await open('blocked', `${blockedOrigin}/`);
    // Its module import of aloud.js is itself a CORS request: it must fail.
    await other.waitForFunction(() => window.aloudLib || window.__loadError, null, { timeout: WAIT_MS });
    const importBlocked = await other.evaluate(() => !window.aloudLib);
    const blocked = await other.evaluate(blockedRun, { aloud, waitMs: WAIT_MS });
    summary.blocked = { import_refused: importBlocked, attempts: blocked, console: consoleErrors.blocked };
    check(importBlocked, 'a page on a not allowed origin could import aloud.js from aloud');
    for (const b of blocked) {
      if (b.what === 'EventSource') {
        check(b.failed, `an EventSource from a not allowed origin was not refused: ${JSON.stringify(b)}`);
      } else {
        check(b.rejected && b.name === 'TypeError', `${b.what} from a not allowed origin should reject with a TypeError (CORS), got ${JSON.stringify(b)}`);
      }
    }
    const corsMessages = consoleErrors.blocked.filter((m) => m.includes('blocked by CORS policy'));
    check(corsMessages.length >= 2, `Chromium should log "blocked by CORS policy" for the not allowed origin; it logged: ${consoleErrors.blocked.join(' | ')}`);
    check(summary.preflight.blocked.status === 403, `aloud answered the not allowed origin's preflight with ${JSON.stringify(summary.preflight.blocked)}`);
    check(
      summary.preflight.allowed.status === 204 && summary.preflight.allowed.allow_origin === allowedOrigin,
      `aloud answered the allowed origin's preflight with ${JSON.stringify(summary.preflight.allowed)}`,
    );
    check(pageErrors.length === 0, `errors in the pages: ${pageErrors.join('; ')}`);
    check(consoleErrors.allowed.length === 0, `console errors on the allowed page: ${consoleErrors.allowed.join(' | ')}`);
  } finally {
    await context.close();
    await rm(profile, { recursive: true, force: true });
    allowedServer.close();
    blockedServer.close();
  }
  summaryAndExit(summary, failures);
}

run(main);
