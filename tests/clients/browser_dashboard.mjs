// The dashboard (/dashboard on aloud's admin listener) in a real headless Chromium.
//
//   node browser_dashboard.mjs --admin http://127.0.0.1:PORT --proxy http://127.0.0.1:PORT
//        --token TOKEN --since T --until T --out DIR
//
// Checks: without the token every dashboard URL is 401; `/dashboard?access_token=…&since=…`
// redirects to the URL without the token (a cookie keeps it) and the page loads with no console
// or page errors and no failed requests; it reads the summary table the page shows (the Rust
// test compares it with `aloud stats --json` for the same window); a slow request made through
// the proxy shows up in the live table while it runs (waited on, never slept on) and leaves it
// when aborted; it reads the ETA error chart's data as drawn (uPlot's) and its caption.
// Screenshots: DIR/dashboard.png (the whole page) and DIR/dashboard-live.png.
// Prints one JSON summary on stdout; a failed check exits 1 with the reasons on stderr.
import { parseArgs } from 'node:util';
import { mkdtemp, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { CHROMIUM, CHROMIUM_ARGS, run, summaryAndExit } from './browser_common.mjs';
import { chromium } from 'playwright-core';

/** Longest wait for one page state. */
const WAIT_MS = 30_000;

async function main() {
  const { values } = parseArgs({
    options: {
      admin: { type: 'string' }, proxy: { type: 'string' }, token: { type: 'string' },
      since: { type: 'string' }, until: { type: 'string' }, out: { type: 'string' },
    },
  });
  for (const k of ['admin', 'proxy', 'token', 'since', 'until', 'out']) {
    if (!values[k]) {
      process.stderr.write(`missing --${k}\n`);
      process.exit(2);
    }
  }
  const admin = values.admin.replace(/\/+$/, '');
  const out = resolve(values.out);
  await mkdir(out, { recursive: true });
  const failures = [];
  const check = (ok, message) => {
    if (!ok) failures.push(message);
    return ok;
  };
  const summary = {};

  // Without the token: 401 everywhere, and a wrong one is no better.
  summary.unauthorized = {};
  for (const path of ['/dashboard', '/dashboard/api/stats', '/dashboard/api/points', '/dashboard/api/live', '/dashboard/dashboard.js']) {
    const none = await fetch(`${admin}${path}`, { redirect: 'manual' });
    const wrong = await fetch(`${admin}${path}?access_token=nope`, { redirect: 'manual' });
    summary.unauthorized[path] = [none.status, wrong.status];
    check(none.status === 401 && wrong.status === 401, `${path} without the token: ${none.status}, ${wrong.status}`);
  }

  // The JSON endpoints with the token as a header, for the Rust test to compare (as sent).
  const auth = { authorization: `Bearer ${values.token}` };
  const window0 = new URLSearchParams({ since: values.since, until: values.until });
  for (const [name, path] of [['stats', `/dashboard/api/stats?${window0}&group_by=route,model`],
    ['points', `/dashboard/api/points?${window0}&limit=1000`]]) {
    const r = await fetch(`${admin}${path}`, { headers: auth });
    check(r.status === 200, `${path}: ${r.status}`);
    // As text: Node's JSON would print 197.0 as 197, and the test compares the server's own.
    summary[`api_${name}`] = await r.text();
  }

  const profile = await mkdtemp(join(tmpdir(), 'aloud-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 900 },
  });
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    // Also written to stderr as they happen, so a timed-out wait shows why.
    const errors = [];
    errors.push = (...items) => {
      for (const e of items) process.stderr.write(`${e}\n`);
      return Array.prototype.push.apply(errors, items);
    };
    page.on('pageerror', (e) => errors.push(`page: ${e}`));
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') errors.push(`console ${m.type()}: ${m.text()}`);
    });
    page.on('requestfailed', (r) => errors.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
    page.on('response', (r) => {
      if (r.status() >= 400) errors.push(`HTTP ${r.status()}: ${r.url()}`);
    });

    const window = new URLSearchParams({ since: values.since, until: values.until });
    const entry = `${admin}/dashboard?access_token=${encodeURIComponent(values.token)}&${window}`;
    await page.goto(entry, { waitUntil: 'load' });
    const landed = new URL(page.url());
    summary.landed = landed.pathname + landed.search;
    check(!landed.search.includes('access_token'), `the token stayed in the address: ${page.url()}`);
    check(landed.searchParams.get('since') === values.since, `the redirect lost since: ${page.url()}`);
    await page.waitForSelector('body[data-loaded="true"]', { timeout: WAIT_MS });

    // The summary table as shown.
    summary.table = await page.$$eval('#summary tbody tr', (rows) => rows.map((tr) => {
      const cells = {};
      for (const td of tr.querySelectorAll('td[data-cell]')) cells[td.dataset.cell] = td.textContent.trim();
      return cells;
    }));
    summary.latency_over = (await page.textContent('#latency-over')).trim();
    // `charts` is dashboard.js's top-level table of drawn uPlot instances.
    summary.eta_chart = await page.evaluate(() => ({
      data: charts['chart-eta'].data,
      count: document.getElementById('eta-count').textContent.trim(),
    }));
    summary.charts = await page.$$eval('.chart', (els) => els.map((e) => [e.id, !!e.querySelector('canvas')]));
    for (const [id, drawn] of summary.charts) check(drawn, `chart ${id} was not drawn`);
    await page.screenshot({ path: join(out, 'dashboard.png'), fullPage: true });

    // A slow request through the proxy: the live table shows it while it runs.
    const id = `dash-live-${Date.now()}`;
    const abort = new AbortController();
    const slow = fetch(`${values.proxy}/sim/v1/chat/completions`, {
      method: 'POST',
      signal: abort.signal,
      headers: {
        'content-type': 'application/json', 'aloud-request-id': id, 'aloud-progress': 'comments',
        'x-sim-think-ms': '60000', 'x-sim-seed': '3',
      },
      body: JSON.stringify({ model: 'sim-slow', stream: true, messages: [{ role: 'user', content: 'wait' }] }),
    }).then(async (r) => {
      const reader = r.body.getReader();
      for (;;) {
        const { done } = await reader.read();
        if (done) break;
      }
    }).catch(() => {});
    await page.waitForSelector(`#live tr[data-id="${id}"]`, { timeout: WAIT_MS });
    // Once it reports the model and a phase past "accepted", and its elapsed time moved on.
    await page.waitForFunction((rid) => {
      const tr = document.querySelector(`#live tr[data-id="${rid}"]`);
      const cells = tr ? [...tr.children].map((td) => td.textContent) : [];
      return cells[2] === 'sim-slow' && cells[4] !== 'accepted' && parseFloat(cells[6]) >= 1;
    }, id, { timeout: WAIT_MS });
    summary.live = await page.$eval(`#live tr[data-id="${id}"]`, (tr) => [...tr.children].map((td) => td.textContent.trim()));
    summary.live_count = (await page.textContent('#live-count')).trim();
    await page.screenshot({ path: join(out, 'dashboard-live.png'), fullPage: false });
    abort.abort();
    await slow;
    await page.waitForFunction((rid) => !document.querySelector(`#live tr[data-id="${rid}"]`), id, { timeout: WAIT_MS });
    summary.live_gone = true;

    summary.errors = errors;
    check(errors.length === 0, `the page had errors: ${errors.join('; ')}`);
  } finally {
    await context.close();
  }
  summaryAndExit(summary, failures);
}

run(main);
