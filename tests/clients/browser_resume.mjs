// aloud.js resumes an answer across a network cut, in a real headless Chromium.
//
//   node browser_resume.mjs --base-url http://127.0.0.1:PORT --prefix /sim
//
// On a page of aloud's origin, aloud.js makes the same seeded call twice: once uninterrupted,
// once with the network cut after a few deltas were rendered, then restored. The cut is the
// DevTools protocol's offline mode (playwright's context.setOffline, that is
// Network.emulateNetworkConditions offline: every new request fails) plus the open connections
// reset: Chromium's offline emulation lets a response already streaming go on (seen here: 38
// more events arrived offline), so the page reaches aloud through a TCP relay in this script
// that drops its sockets at the cut, as a changed network would.
// The second call must end with the same text, the same upstream events, and `resumed: true`.
// Then the demo page (/aloud/, which calls resumeStored on load): Ask once uninterrupted for the
// answer to expect, Ask again and reload mid-answer; the reloaded page must resume that call
// from sessionStorage (its /stream?after=0) and end with the whole answer.
// Prints ONE JSON document (the request ids, for the Rust test to compare /result bytes).
import { parseArgs } from 'node:util';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, connect } from 'node:net';
import { CHROMIUM, CHROMIUM_ARGS, run, summaryAndExit } from './browser_common.mjs';
import { chromium } from 'playwright-core';

const HEADERS = { 'x-sim-seed': '5', 'x-sim-think-ms': '200', 'x-sim-tokens': '40', 'x-sim-token-ms': '60' };
const WAIT_MS = 30_000;

/** In the page: one call through aloud.js, its progress kept on window.__calls[name]. */
async function startCall({ name, url, headers }) {
  const { aloudFetch } = await import('/aloud/aloud.js');
  const call = { text: '', events: [], done: null, error: null };
  (window.__calls ||= {})[name] = call;
  const body = { model: 'sim-reasoner', stream: true, messages: [{ role: 'user', content: 'Hello' }] };
  const c = aloudFetch(url, {
    body,
    headers,
    beacon: false,
    onEvent: (event, data) => call.events.push(JSON.stringify([event, data])),
    onDelta: (t) => (call.text += t),
    onDone: (d) => (call.done = d),
    onError: (e) => (call.error = e),
  });
  call.id = c.requestId;
  return c.requestId;
}

/** A TCP relay to `target` (host:port) whose open connections `cut()` resets. */
async function relay(target) {
  const [host, port] = [target.hostname, Number(target.port)];
  const open = new Set();
  const server = createServer((client) => {
    const upstream = connect(port, host);
    open.add(client);
    open.add(upstream);
    const close = () => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    base: `http://127.0.0.1:${server.address().port}`,
    cut: () => {
      for (const s of open) s.resetAndDestroy ? s.resetAndDestroy() : s.destroy();
      open.clear();
    },
    close: () => new Promise((r) => server.close(r)),
  };
}

async function main() {
  const { values } = parseArgs({ options: { 'base-url': { type: 'string' }, prefix: { type: 'string' } } });
  const net = await relay(new URL(values['base-url']));
  const base = net.base;
  const url = `${base}${values.prefix}/v1/chat/completions`;
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
  });
  const summary = {};
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    page.on('pageerror', (e) => failures.push(`page error: ${e}`));
    // Every fetch the page starts, to see the resume attempts (failed ones leave no timing entry).
    await page.addInitScript(() => {
      window.__fetches = [];
      window.__ids = [];
      const original = window.fetch;
      window.fetch = (u, o) => {
        window.__fetches.push(String(u));
        const id = o && o.headers && o.headers['aloud-request-id'];
        if (id) window.__ids.push(id);
        return original(u, o);
      };
    });
    await page.goto(`${base}/aloud/`, { waitUntil: 'load' });
    const state = (name) => page.evaluate((n) => window.__calls[n], name);
    const settled = (name) =>
      page.waitForFunction((n) => window.__calls[n] && (window.__calls[n].done || window.__calls[n].error), name, {
        timeout: WAIT_MS,
      });

    summary.reference_id = await page.evaluate(startCall, { name: 'reference', url, headers: HEADERS });
    await settled('reference');
    const reference = await state('reference');
    check(!reference.error, `the reference call failed: ${JSON.stringify(reference.error)}`);
    check(reference.text.length > 0, 'the reference call rendered no text');

    summary.cut_id = await page.evaluate(startCall, { name: 'cut', url, headers: HEADERS });
    await page.waitForFunction(() => window.__calls.cut.text.length > 0 && window.__calls.cut.events.length >= 5, null, {
      timeout: WAIT_MS,
    });
    await context.setOffline(true);
    net.cut();
    const atCut = await state('cut');
    summary.events_before_cut = atCut.events.length;
    // Offline until the page has seen the drop (its first resume attempt fails offline too).
    await page.waitForFunction(
      () => window.__fetches.some((u) => u.includes('/stream?after=')),
      null,
      { timeout: WAIT_MS },
    );
    await context.setOffline(false);
    await settled('cut');
    const cut = await state('cut');
    summary.events_after = cut.events.length;
    summary.cut_done = cut.done;
    check(!cut.error, `the cut call failed: ${JSON.stringify(cut.error)}`);
    check(cut.done && cut.done.resumed === true, `the cut call did not resume: ${JSON.stringify(cut.done)}`);
    check(atCut.events.length < reference.events.length, `the cut came after the answer ended (${atCut.events.length} events)`);
    check(cut.text === reference.text, `the resumed text differs:\n${cut.text}\nvs\n${reference.text}`);
    check(
      JSON.stringify(cut.events) === JSON.stringify(reference.events),
      `the resumed events differ: ${cut.events.length} vs ${reference.events.length}`,
    );
    summary.stored_after = await page.evaluate(() => sessionStorage.getItem('aloud.resume'));
    check(summary.stored_after === null, 'a finished call is still in sessionStorage');

    // The demo page on this route, reloaded mid-answer: it resumes by itself.
    const knobs = new URLSearchParams({ route: values.prefix, seed: '5', 'think-ms': '200', tokens: '40', 'token-ms': '60' });
    await page.goto(`${base}/aloud/?${knobs}`, { waitUntil: 'load' });
    check((await page.textContent('#phase')).trim() === 'idle', 'the demo page resumed with nothing stored');
    const ask = async () => {
      const before = await page.evaluate(() => window.__ids.length);
      await page.click('#send');
      await page.waitForFunction((n) => window.__ids.length > n, before, { timeout: WAIT_MS });
      return page.evaluate(() => window.__ids[window.__ids.length - 1]);
    };
    const answer = async () => (await page.textContent('#answer')) ?? '';
    summary.demo_reference_id = await ask();
    await page.waitForFunction(() => document.getElementById('thought').textContent !== '', null, { timeout: WAIT_MS });
    const full = await answer();
    check(full.length > 0, 'the demo page showed no answer');
    summary.reload_id = await ask();
    await page.waitForFunction(() => document.getElementById('answer').textContent.length > 0, null, { timeout: WAIT_MS });
    const shownBeforeReload = await answer();
    summary.stored_at_reload = await page.evaluate(() => sessionStorage.getItem('aloud.resume'));
    await page.reload({ waitUntil: 'load' });
    // Not done before the reload: the stored call is still in flight and the page showed a part.
    check(shownBeforeReload.length < full.length, `the reload came after the answer (${shownBeforeReload.length} chars)`);
    check(summary.stored_at_reload && summary.stored_at_reload.includes(summary.reload_id), `sessionStorage at the reload: ${summary.stored_at_reload}`);
    await page.waitForFunction(() => ['done', 'error'].includes(document.getElementById('status').dataset.phase), null, { timeout: WAIT_MS });
    summary.demo_after_reload = {
      phase: (await page.textContent('#phase')).trim(),
      label: (await page.textContent('#label')).trim(),
      fetches: await page.evaluate(() => window.__fetches.filter((u) => u.includes('/stream?'))),
    };
    check(summary.demo_after_reload.phase === 'done', `the reloaded demo page ended ${JSON.stringify(summary.demo_after_reload)}`);
    check(
      summary.demo_after_reload.fetches.some((u) => u.includes(`/requests/${summary.reload_id}/stream?after=0`)),
      `the reloaded page did not resume ${summary.reload_id}: ${summary.demo_after_reload.fetches}`,
    );
    const resumed = await answer();
    check(resumed === full, `the reloaded demo page's answer differs:\n${resumed}\nvs\n${full}`);
    check(!(await page.evaluate(() => sessionStorage.getItem('aloud.resume'))), 'the resumed call is still in sessionStorage');
  } finally {
    await context.close();
    await net.close();
    await rm(profile, { recursive: true, force: true });
  }
  summaryAndExit(summary, failures);
}

run(main);
