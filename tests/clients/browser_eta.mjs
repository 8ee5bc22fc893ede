// The demo page's progress bar in a real headless Chromium, driven by playwright-core.
//
//   node browser_eta.mjs --base-url http://127.0.0.1:PORT --out DIR [--runs N]
//
// First teaches aloud the route's durations (ok calls from Node, the demo's own request), then
// asks the page N times with different seeds and think times, sampling the bar's rendered width
// on every animation frame. Checks: within a run the width never decreases, it is full only
// once the page shows "done", it ends full, and in some run it stood between empty and full
// (the ETA drove it). Then, in the page, aloud.js's progressBar ignores a lower fraction.
// Screenshot: DIR/eta-mid.png. Prints one JSON summary; a failed check exits 1.
import { parseArgs } from 'node:util';
import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { CHROMIUM, CHROMIUM_ARGS, run, summaryAndExit } from './browser_common.mjs';
import { chromium } from 'playwright-core';

const WAIT_MS = 30_000;
const PROMPT = 'Why is the sky blue? Think it through.';
const KNOBS = { tokens: '12', 'token-ms': '40' };

/** Samples the bar (as a share of its track) and the phase on every frame, inside the page. */
function sampleBar() {
  window.__samples = [];
  const tick = () => {
    const fill = document.getElementById('fill');
    const track = document.getElementById('bar');
    const status = document.getElementById('status');
    if (fill && track && track.clientWidth > 0) {
      const w = parseFloat(getComputedStyle(fill).width) / track.clientWidth;
      window.__samples.push({ w, phase: status.dataset.phase, t: performance.now() });
    }
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
}

async function main() {
  const { values } = parseArgs({
    options: { 'base-url': { type: 'string' }, out: { type: 'string' }, runs: { type: 'string' } },
  });
  if (!values['base-url'] || !values.out) {
    process.stderr.write('usage: browser_eta.mjs --base-url http://127.0.0.1:PORT --out DIR [--runs N]\n');
    process.exit(2);
  }
  const base = values['base-url'].replace(/\/+$/, '');
  const out = resolve(values.out);
  const runs = Number(values.runs ?? 4);
  await mkdir(out, { recursive: true });
  const failures = [];
  const check = (ok, message) => {
    if (!ok) failures.push(message);
    return ok;
  };
  const summary = { runs: [] };

  // History: the demo's request (same route, model, streaming and size), answered ok.
  const body = JSON.stringify({ model: 'sim-reasoner', stream: true, input: PROMPT, reasoning: { summary: 'auto' } });
  const teach = [];
  for (let i = 0; i < 10; i++) {
    const headers = { 'content-type': 'application/json', 'aloud-progress': 'off', 'x-sim-seed': String(100 + i), 'x-sim-think-ms': String(1500 + 100 * i), ...Object.fromEntries(Object.entries(KNOBS).map(([k, v]) => [`x-sim-${k}`, v])) };
    teach.push(fetch(`${base}/sim/v1/responses`, { method: 'POST', headers, body }).then((r) => r.text().then(() => r.status)));
  }
  summary.taught = await Promise.all(teach);
  check(summary.taught.every((s) => s === 200), `teaching calls: ${summary.taught}`);

  const profile = await mkdtemp(join(tmpdir(), 'aloud-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 900, height: 700 },
  });
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    const pageErrors = [];
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    await page.addInitScript(sampleBar);
    for (let i = 0; i < runs; i++) {
      const query = { seed: String(i + 1), 'think-ms': String(1400 + 250 * i), ...KNOBS };
      await page.goto(`${base}/aloud/?${new URLSearchParams(query)}`, { waitUntil: 'load' });
      await page.waitForSelector('#send:not([disabled])');
      await page.evaluate(() => (window.__samples = []));
      await page.click('#send');
      if (i === 0) {
        await page.waitForFunction(() => (window.__samples.at(-1)?.w ?? 0) > 0.05, null, { timeout: WAIT_MS }).catch(() => {});
        await page.screenshot({ path: join(out, 'eta-mid.png') });
      }
      await page.waitForFunction(() => document.getElementById('status').dataset.phase === 'done', null, { timeout: WAIT_MS });
      // The final glide to full takes 200 ms.
      await page.waitForFunction(() => (window.__samples.at(-1)?.w ?? 0) >= 0.995, null, { timeout: 5_000 }).catch(() => {});
      const samples = await page.evaluate(() => window.__samples);
      let backwards = 0;
      let fullEarly = 0;
      let mid = 0;
      for (let k = 0; k < samples.length; k++) {
        if (k > 0 && samples[k].w < samples[k - 1].w - 1e-3) backwards++;
        if (samples[k].w >= 0.995 && samples[k].phase !== 'done') fullEarly++;
        if (samples[k].w > 0.02 && samples[k].w < 0.98 && samples[k].phase !== 'done') mid++;
      }
      const last = samples.at(-1)?.w ?? 0;
      const r = { query, samples: samples.length, backwards, fullEarly, mid, last: Math.round(last * 1000) / 1000, maxBeforeDone: Math.max(0, ...samples.filter((s) => s.phase !== 'done').map((s) => Math.round(s.w * 1000) / 1000)) };
      summary.runs.push(r);
      check(samples.length > 10, `run ${i}: only ${samples.length} samples`);
      check(backwards === 0, `run ${i}: the bar moved backwards ${backwards} times`);
      check(fullEarly === 0, `run ${i}: the bar was full before done (${fullEarly} samples)`);
      check(last >= 0.995, `run ${i}: the bar ended at ${last}, not full`);
    }
    check(summary.runs.some((r) => r.mid > 5), 'in no run did the ETA move the bar before done');

    // aloud.js's bar, in the page: a lower fraction later never moves it back.
    summary.unit = await page.evaluate(async () => {
      const { progressBar } = await import('/aloud/aloud.js');
      const fill = document.createElement('div');
      const bar = progressBar(fill);
      const a = bar.update({ fraction: 0.5 });
      const b = bar.update({ fraction: 0.3 });
      const c = bar.update({ fraction: 1 });
      const widthBeforeDone = fill.style.width;
      bar.done();
      return { a, b, c, widthBeforeDone, widthDone: fill.style.width };
    });
    check(summary.unit.b === 0.5, `progressBar went back to ${summary.unit.b}`);
    check(summary.unit.c === 0.99 && parseFloat(summary.unit.widthBeforeDone) === 99, `progressBar before done: ${JSON.stringify(summary.unit)}`);
    check(parseFloat(summary.unit.widthDone) === 100, `progressBar at done: ${summary.unit.widthDone}`);
    summary.pageErrors = pageErrors;
    check(pageErrors.length === 0, `page errors: ${pageErrors.join('; ')}`);
  } finally {
    await context.close();
    await rm(profile, { recursive: true, force: true });
  }
  summaryAndExit(summary, failures);
}

run(main);
