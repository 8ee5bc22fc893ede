// The demo page over HTTPS in a real headless Chromium (playwright-core), with ten side-channel
// subscriptions and a request on one origin, all progressing at once: over HTTP/1.1 a browser
// opens at most six connections per origin, so the tenth subscription and the request would
// wait; over HTTP/2 they share one connection.
//
//   node browser_h2.mjs --base-url https://localhost:PORT --spki BASE64 --out DIR
//
// The test's own certificate is trusted with --ignore-certificate-errors-spki-list (the
// base64 SHA-256 of the leaf's SubjectPublicKeyInfo), nothing else.
// Checks, in the page: every EventSource opens and gets progress events before the request
// ends; the request streams to its end; every resource (page, aloud.js, the subscriptions,
// the request) went over h2 per the Resource Timing `nextHopProtocol`.
// Prints one JSON summary on stdout; a failed check exits 1 with the reasons on stderr.
import { parseArgs } from 'node:util';
import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { CHROMIUM, CHROMIUM_ARGS, run, summaryAndExit } from './browser_common.mjs';
import { chromium } from 'playwright-core';

const SUBSCRIPTIONS = 10;
/** Longest the in-page run may take; the request itself takes about 3 s. */
const WAIT_MS = 60_000;

/** Runs inside the page: subscribes, then asks, and reports what each saw and when. */
async function subscribeAndAsk({ n, waitMs }) {
  const id = `h2-browser-${Date.now()}-${Math.random().toString(36).slice(2, 10)}`;
  const t0 = performance.now();
  const subs = Array.from({ length: n }, (_, i) => {
    const s = { i, opened: null, events: [], done: null, error: null };
    const es = new EventSource(`/aloud/v1/progress/${id}?sub=${i}`);
    s.es = es;
    es.onopen = () => { s.opened ??= performance.now() - t0; };
    const note = (e) => {
      s.events.push({ type: e.type, at: performance.now() - t0 });
      if (e.type === 'aloud.done' || e.type === 'aloud.error') {
        s.done = performance.now() - t0;
        es.close();
      }
    };
    for (const type of ['aloud.progress', 'aloud.done', 'aloud.error', 'message']) es.addEventListener(type, note);
    es.onerror = () => { if (s.done === null) s.error = performance.now() - t0; };
    return s;
  });
  const deadline = (ms, what) => new Promise((_, reject) => setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms));
  // Every subscription is open before the request goes out (over HTTP/1.1 the seventh never is).
  await Promise.race([
    new Promise((ok) => {
      const check = () => (subs.every((s) => s.opened !== null) ? ok() : setTimeout(check, 20));
      check();
    }),
    deadline(waitMs, `${n} subscriptions open`),
  ]);
  const request = { status: null, chunks: 0, bytes: 0, start: performance.now() - t0, end: null };
  await Promise.race([
    (async () => {
      const r = await fetch('/sim/v1/chat/completions', {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'aloud-request-id': id,
          'x-sim-seed': '11',
          'x-sim-think-ms': '2500',
          'x-sim-tokens': '20',
          'x-sim-token-ms': '20',
        },
        body: JSON.stringify({ model: 'm', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
      });
      request.status = r.status;
      const reader = r.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        request.chunks += 1;
        request.bytes += value.length;
      }
      request.end = performance.now() - t0;
    })(),
    deadline(waitMs, 'the request'),
  ]);
  await Promise.race([
    new Promise((ok) => {
      const check = () => (subs.every((s) => s.done !== null || s.error !== null) ? ok() : setTimeout(check, 20));
      check();
    }),
    deadline(waitMs, 'every subscription done'),
  ]);
  const resources = performance.getEntriesByType('resource').map((e) => ({
    name: new URL(e.name).pathname,
    initiator: e.initiatorType,
    protocol: e.nextHopProtocol,
  }));
  const navigation = performance.getEntriesByType('navigation').map((e) => e.nextHopProtocol);
  return {
    id,
    request,
    navigation,
    resources,
    subscriptions: subs.map(({ es, ...s }) => s),
  };
}

async function main() {
  const { values } = parseArgs({
    options: { 'base-url': { type: 'string' }, spki: { type: 'string' }, out: { type: 'string' } },
  });
  if (!values['base-url'] || !values.spki || !values.out) {
    process.stderr.write('usage: browser_h2.mjs --base-url https://localhost:PORT --spki BASE64 --out DIR\n');
    process.exit(2);
  }
  const base = values['base-url'].replace(/\/+$/, '');
  const out = resolve(values.out);
  await mkdir(out, { recursive: true });
  const failures = [];
  const check = (ok, message) => {
    if (!ok) failures.push(message);
    return ok;
  };

  const profile = await mkdtemp(join(tmpdir(), 'aloud-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [...CHROMIUM_ARGS, `--ignore-certificate-errors-spki-list=${values.spki}`],
    viewport: { width: 900, height: 760 },
  });
  let summary = {};
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    const pageErrors = [];
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    const response = await page.goto(`${base}/aloud/`, { waitUntil: 'load' });
    check(response?.status() === 200, `GET /aloud/: status ${response?.status()}`);
    check(await page.locator('#phase').count() === 1, 'the demo page has no #phase');
    summary = await page.evaluate(subscribeAndAsk, { n: SUBSCRIPTIONS, waitMs: WAIT_MS });
    await page.screenshot({ path: join(out, 'h2-demo.png') });
    summary.pageErrors = pageErrors;

    const { request, subscriptions, resources, navigation } = summary;
    check(request.status === 200, `the request: status ${request.status}`);
    check(request.end !== null && request.bytes > 0, 'the request did not stream to its end');
    check(subscriptions.length === SUBSCRIPTIONS, `${subscriptions.length} subscriptions`);
    for (const s of subscriptions) {
      const progress = s.events.filter((e) => e.type === 'aloud.progress' && e.at < request.end);
      check(progress.length >= 2, `subscription ${s.i}: ${progress.length} progress events before the request ended`);
      check(s.events.some((e) => e.type === 'aloud.done'), `subscription ${s.i}: no aloud.done`);
      check(s.error === null, `subscription ${s.i}: error at ${s.error} ms`);
    }
    check(navigation.length === 1 && navigation[0] === 'h2', `the page went over ${navigation}`);
    const seen = (path) => resources.filter((r) => r.name.startsWith(path));
    check(seen('/sim/').length === 1, 'no resource entry for the request');
    check(resources.length > 0, 'no resource entries');
    for (const r of resources) check(r.protocol === 'h2', `${r.name} went over ${r.protocol || '(unknown)'}`);
  } finally {
    await context.close();
    await rm(profile, { recursive: true, force: true });
  }
  summaryAndExit(summary, failures);
}

run(main);
