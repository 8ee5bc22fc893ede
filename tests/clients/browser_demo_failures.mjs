// The demo page (/aloud/) when a call does not end in an answer, in headless Chromium.
//
//   node browser_demo_failures.mjs --base-url http://127.0.0.1:PORT --out DIR
//
// 1. A 429 (the simulator's `x-sim-status`, set by the page's `?status=429`): the status line
//    shows the status, the upstream's own message and its error type, never aloud's words for
//    it, and no "Thought for N s" appears, also after aloud.done arrived (the timings beacon is
//    sent when it does).
// 2. A cancel mid-thinking: the page says "stopped" in a neutral colour, not "error"; no
//    "Thought for"; the beacon says the user abandoned the call.
// Neither leaves an error in the page or its console. Screenshots: demo-429.png,
// demo-stopped.png in DIR. Prints one JSON summary on stdout; failed checks exit 1.
import { parseArgs } from 'node:util';
import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { CHROMIUM, CHROMIUM_ARGS, run, summaryAndExit } from './browser_common.mjs';
import { chromium } from 'playwright-core';

/** Longest wait for one page state. */
const WAIT_MS = 30_000;
/** The simulator's message for `x-sim-status: 429` (src/simulator/routes.rs). */
const UPSTREAM_MESSAGE = 'simulated 429 error (x-sim-status)';
/** The red of `#status[data-phase="error"]` in demo.html. */
const ERROR_RED = 'rgb(253, 236, 234)';

/** What the page shows in its status line and below it. */
function pageState() {
  const status = document.getElementById('status');
  return {
    statusPhase: status.dataset.phase,
    background: getComputedStyle(status).backgroundColor,
    phase: document.getElementById('phase').textContent,
    label: document.getElementById('label').textContent,
    thought: document.getElementById('thought').textContent,
    answer: document.getElementById('answer').textContent,
  };
}

/** Opens the page at `query`, clicks Ask, runs `during`, waits for the call and the beacon. */
async function oneCall(context, base, query, during) {
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(`page: ${e}`));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()} (${m.location().url})`);
  });
  await page.goto(`${base}/aloud/?${new URLSearchParams(query)}`, { waitUntil: 'load' });
  await page.waitForSelector('#send:not([disabled])');
  // aloud.js sends the timings beacon once the call is over (aloud.done, or a cancel).
  const beacon = page.waitForRequest((r) => r.url().endsWith('/timings'), { timeout: WAIT_MS });
  await page.click('#send');
  await during(page);
  const sent = await beacon;
  await page.waitForSelector('#send:not([disabled])', { timeout: WAIT_MS });
  return { page, errors, beacon: JSON.parse(sent.postData() || 'null') };
}

async function main() {
  const { values } = parseArgs({ options: { 'base-url': { type: 'string' }, out: { type: 'string' } } });
  if (!values['base-url'] || !values.out) {
    process.stderr.write('usage: browser_demo_failures.mjs --base-url http://127.0.0.1:PORT --out DIR\n');
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
    args: CHROMIUM_ARGS,
    viewport: { width: 900, height: 600 },
  });
  const summary = {};
  try {
    // 1. The upstream answers 429.
    const limited = await oneCall(context, base, { status: '429', seed: '3' }, async () => {});
    const s429 = await limited.page.evaluate(pageState);
    await limited.page.screenshot({ path: join(out, 'demo-429.png') });
    summary.rate_limited = { ...s429, errors: limited.errors, beacon: limited.beacon };
    check(s429.statusPhase === 'error' && s429.phase === 'error', `a 429 should show phase "error": ${JSON.stringify(s429)}`);
    check(s429.label.includes('429'), `a 429 should show its status: ${JSON.stringify(s429.label)}`);
    check(s429.label.includes(UPSTREAM_MESSAGE), `a 429 should show the upstream's own message ${JSON.stringify(UPSTREAM_MESSAGE)}: ${JSON.stringify(s429.label)}`);
    check(s429.label.includes('rate_limit_error'), `a 429 should show the upstream's error type: ${JSON.stringify(s429.label)}`);
    check(!/something went wrong|the upstream answered/i.test(s429.label), `a 429 shows aloud's words, not the upstream's: ${JSON.stringify(s429.label)}`);
    check(s429.thought === '', `"Thought for" after a failure: ${JSON.stringify(s429.thought)}`);
    check(limited.errors.length === 0, `errors in the page on a 429: ${limited.errors.join('; ')}`);

    // 2. The user cancels while the model thinks.
    const cancelled = await oneCall(context, base, { seed: '5', 'think-ms': '20000' }, async (page) => {
      await page.waitForFunction(() => document.getElementById('phase').textContent === 'thinking', null, { timeout: WAIT_MS });
      await page.click('#cancel');
    });
    const stopped = await cancelled.page.evaluate(pageState);
    await cancelled.page.screenshot({ path: join(out, 'demo-stopped.png') });
    summary.cancelled = { ...stopped, errors: cancelled.errors, beacon: cancelled.beacon };
    check(stopped.statusPhase === 'stopped' && stopped.phase === 'stopped', `a cancel should show "stopped": ${JSON.stringify(stopped)}`);
    check(/^Stopped/.test(stopped.label), `a cancel should say it stopped: ${JSON.stringify(stopped.label)}`);
    check(stopped.background !== ERROR_RED, `a cancel is painted in the error red: ${stopped.background}`);
    check(stopped.thought === '', `"Thought for" after a cancel: ${JSON.stringify(stopped.thought)}`);
    check(cancelled.beacon && cancelled.beacon.abandoned === true, `the beacon should say the user abandoned the call: ${JSON.stringify(cancelled.beacon)}`);
    check(cancelled.errors.length === 0, `errors in the page on a cancel: ${cancelled.errors.join('; ')}`);
    summary.screenshots = [join(out, 'demo-429.png'), join(out, 'demo-stopped.png')];
  } finally {
    await context.close();
    await rm(profile, { recursive: true, force: true });
  }
  summaryAndExit(summary, failures);
}

run(main);
