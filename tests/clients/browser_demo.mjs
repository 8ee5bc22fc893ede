// The demo page (/aloud/, served by aloud) in a real headless Chromium, driven by playwright-core.
//
//   node browser_demo.mjs --base-url http://127.0.0.1:PORT --out DIR
//
// Opens `/` with simulator knobs in the query (aloud redirects to /aloud/ and keeps them), clicks
// Ask and checks what the page shows, never how fast: the phase label changes (thinking ... done),
// the elapsed time only grows and passes 2 s, the reasoning headings are listed, the answer is
// the seeded one (the same request made from Node through aloud.js gives the same text), and
// "Thought for N s" appears. Screenshots go to DIR (demo-mid.png while thinking, demo-end.png).
// Prints one JSON summary on stdout; a failed check exits 1 with the reasons on stderr.
import { parseArgs } from 'node:util';
import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { CHROMIUM, CHROMIUM_ARGS, loadAloudJs, responsesText, run, summaryAndExit } from './browser_common.mjs';
import { chromium } from 'playwright-core';

const QUERY = { seed: '7', 'think-ms': '3000', tokens: '25', 'token-ms': '40' };
/** Longest wait for one page state; the whole call takes about 4 s. */
const WAIT_MS = 30_000;

/** Records, inside the page, every change of #phase and #elapsed as it happens. */
function observePage() {
  window.__phases = [];
  window.__elapsed = [];
  const start = () => {
    const phase = document.getElementById('phase');
    const elapsed = document.getElementById('elapsed');
    const notePhase = () => {
      const text = phase.textContent.trim();
      if (window.__phases[window.__phases.length - 1] !== text) window.__phases.push(text);
    };
    const noteElapsed = () => {
      const text = elapsed.textContent.trim();
      if (text) window.__elapsed.push(text);
    };
    notePhase();
    new MutationObserver(notePhase).observe(phase, { childList: true, characterData: true, subtree: true });
    new MutationObserver(noteElapsed).observe(elapsed, { childList: true, characterData: true, subtree: true });
  };
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
}

/** The bold headings (`**Heading**`) of a Responses reasoning summary, in order. */
function boldHeadings(summary) {
  return [...summary.matchAll(/\*\*([^*\n]+)\*\*/g)].map((m) => m[1].trim());
}

async function main() {
  const { values } = parseArgs({
    options: { 'base-url': { type: 'string' }, out: { type: 'string' } },
  });
  if (!values['base-url'] || !values.out) {
    process.stderr.write('usage: browser_demo.mjs --base-url http://127.0.0.1:PORT --out DIR\n');
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

  // aloud.js as aloud serves it, for the reference call from Node.
  const { aloudFetch } = await loadAloudJs(base);

  const profile = await mkdtemp(join(tmpdir(), 'aloud-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 900, height: 760 },
  });
  const summary = { query: QUERY };
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    const pageErrors = [];
    const consoleErrors = [];
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    // aloud.js reports what the user saw with a timings beacon when the stream ends.
    const beacons = [];
    page.on('request', (r) => {
      if (r.url().includes('/aloud/v1/requests/') && r.url().endsWith('/timings')) beacons.push(r.postData() || '');
    });
    page.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(`${m.text()} (${m.location().url})`);
    });
    await page.addInitScript(observePage);

    const start = `${base}/?${new URLSearchParams(QUERY)}`;
    const response = await page.goto(start, { waitUntil: 'load' });
    summary.url = page.url();
    check(response && response.ok(), `GET ${start}: status ${response && response.status()}`);
    const landed = new URL(page.url());
    check(landed.pathname === '/aloud/', `/ should redirect to /aloud/, the page is at ${page.url()}`);
    for (const [k, v] of Object.entries(QUERY)) {
      check(landed.searchParams.get(k) === v, `the redirect lost ?${k}=${v}: ${page.url()}`);
    }
    await page.waitForSelector('#send:not([disabled])');
    check((await page.textContent('#phase')).trim() === 'idle', 'the phase is not "idle" before Ask');

    // What the page will send, built the way the page builds it.
    const route = await page.$eval('#route', (s) => ({ prefix: s.value, api: s.selectedOptions[0]?.dataset.api }));
    const prompt = await page.inputValue('#prompt');
    summary.route = route;
    check(route.prefix === '/sim' && route.api === 'openai', `the selected route is ${JSON.stringify(route)}, not /sim (openai)`);
    const url = `${base}${route.prefix}/v1/responses`;
    const body = { model: 'sim-reasoner', stream: true, input: prompt, reasoning: { summary: 'auto' } };
    const headers = Object.fromEntries(Object.entries(QUERY).map(([k, v]) => [`x-sim-${k}`, v]));

    // The same request from Node, streamed through aloud.js, and not streamed: both in parallel
    // with the page, so they cost no extra time.
    const reference = new Promise((resolveRef) => {
      const ref = { text: '', summary: '', progress: 0, error: null };
      const call = aloudFetch(url, {
        body,
        headers,
        onProgress: () => ref.progress++,
        onDelta: (t) => (ref.text += t),
        onEvent: (name, data) => {
          if (name === 'response.reasoning_summary_text.delta') ref.summary += data.delta || '';
        },
        onError: (e) => (ref.error = e),
      });
      call.done.then(() => resolveRef(ref));
    });
    const nonStreamed = fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'aloud-progress': 'off', ...headers },
      body: JSON.stringify({ ...body, stream: false }),
    }).then(async (r) => ({ status: r.status, text: responsesText(await r.json()) }));

    await page.click('#send');

    // Mid-wait: thinking for a second, with at least one heading listed.
    await page.waitForFunction(
      () =>
        document.getElementById('phase').textContent === 'thinking' &&
        document.querySelectorAll('#headings li').length > 0 &&
        parseFloat(document.getElementById('elapsed').textContent) >= 1,
      null,
      { timeout: WAIT_MS },
    );
    const midPath = join(out, 'demo-mid.png');
    await page.screenshot({ path: midPath });
    summary.mid = {
      screenshot: midPath,
      phase: await page.textContent('#phase'),
      elapsed: await page.textContent('#elapsed'),
      headings: await page.$$eval('#headings li', (lis) => lis.map((li) => li.textContent)),
    };

    // The end: done, with the "Thought for" line written by onDone.
    await page.waitForFunction(
      () => {
        const phase = document.getElementById('phase').textContent;
        return phase === 'error' || (phase === 'done' && document.getElementById('thought').textContent !== '');
      },
      null,
      { timeout: WAIT_MS },
    );
    // The ticker stops with the call: the last elapsed value stays.
    await page.waitForSelector('#send:not([disabled])');
    const endPath = join(out, 'demo-end.png');
    await page.screenshot({ path: endPath, fullPage: true });

    const state = await page.evaluate(() => ({
      phase: document.getElementById('phase').textContent,
      statusPhase: document.getElementById('status').dataset.phase,
      label: document.getElementById('label').textContent,
      elapsed: document.getElementById('elapsed').textContent,
      answer: document.getElementById('answer').textContent,
      thought: document.getElementById('thought').textContent,
      headings: Array.from(document.querySelectorAll('#headings li'), (li) => li.textContent),
      phases: window.__phases,
      elapsedSamples: window.__elapsed,
    }));
    const ref = await reference;
    const whole = await nonStreamed;

    // (a) the phase label moved through thinking to done.
    summary.phases = state.phases;
    check(state.phase === 'done', `the call ended in phase ${JSON.stringify(state.phase)} (${state.label})`);
    check(state.statusPhase === 'done', `#status data-phase is ${JSON.stringify(state.statusPhase)}`);
    check(state.phases[0] === 'idle', `phases should start at idle: ${state.phases.join(' > ')}`);
    check(state.phases.includes('thinking'), `no "thinking" phase seen: ${state.phases.join(' > ')}`);
    check(state.phases.at(-1) === 'done', `phases should end at done: ${state.phases.join(' > ')}`);
    check(
      state.phases.indexOf('thinking') < state.phases.lastIndexOf('done'),
      `"thinking" should come before "done": ${state.phases.join(' > ')}`,
    );
    check(!state.phases.includes('error'), `an error phase was shown: ${state.phases.join(' > ')}`);

    // (b) the elapsed time never goes back and passes 2 s.
    const seconds = state.elapsedSamples.map((t) => {
      const m = /^(\d+(?:\.\d+)?) s$/.exec(t);
      check(m, `#elapsed shows ${JSON.stringify(t)}, not "N.N s"`);
      return m ? Number(m[1]) : NaN;
    });
    const backwards = seconds.findIndex((s, i) => i > 0 && s < seconds[i - 1]);
    summary.elapsed = {
      samples: seconds.length,
      first: seconds[0],
      last: seconds.at(-1),
      max: Math.max(...seconds),
    };
    check(seconds.length >= 10, `only ${seconds.length} elapsed values seen`);
    check(backwards < 0, `#elapsed went back from ${seconds[backwards - 1]} s to ${seconds[backwards]} s`);
    check(Math.max(...seconds) > 2, `#elapsed never passed 2 s (max ${Math.max(...seconds)} s)`);

    // (c) the seeded answer: the page shows what the same request gives from Node.
    summary.answer = state.answer;
    summary.reference = {
      streamed_progress_events: ref.progress,
      streamed_same_text: ref.text === state.answer,
      non_streamed_status: whole.status,
      non_streamed_same_text: whole.text === ref.text,
    };
    check(!ref.error, `the reference call from Node failed: ${JSON.stringify(ref.error)}`);
    check(ref.text.length > 0, 'the reference call from Node got no answer text');
    check(ref.progress > 0, 'the reference call from Node got no aloud.progress events');
    check(
      state.answer === ref.text,
      `#answer differs from the same request made from Node:\n  page: ${JSON.stringify(state.answer)}\n  node: ${JSON.stringify(ref.text)}`,
    );
    check(
      state.answer.split(/\s+/).filter(Boolean).length >= 10,
      `#answer is too short for 25 tokens: ${JSON.stringify(state.answer)}`,
    );
    if (whole.text !== ref.text) {
      process.stderr.write(
        `note: the non-streamed Responses text differs from the streamed one:\n  streamed:     ${JSON.stringify(ref.text)}\n  non-streamed: ${JSON.stringify(whole.text)}\n`,
      );
    }

    // (d) "Thought for N s", N >= 1.
    summary.thought = state.thought;
    const thought = /^Thought for (\d+) s$/.exec(state.thought.trim());
    check(thought && Number(thought[1]) >= 1, `#thought is ${JSON.stringify(state.thought)}, not "Thought for N s" with N >= 1`);

    // (e) the model's reasoning headings are listed, in the order it wrote them.
    summary.headings = state.headings;
    const expected = boldHeadings(ref.summary);
    summary.reference.headings = expected;
    check(expected.length > 0, `the reference reasoning summary has no **headings**: ${JSON.stringify(ref.summary.slice(0, 200))}`);
    // Only the model's own headings are listed (label_from: "model"), never the status ladder.
    check(
      JSON.stringify(state.headings) === JSON.stringify(expected),
      `#headings should list exactly the reasoning headings ${JSON.stringify(expected)}; it lists ${JSON.stringify(state.headings)}`,
    );
    check(summary.mid.headings.length > 0, 'no heading was listed while thinking');

    check(pageErrors.length === 0, `errors in the page: ${pageErrors.join('; ')}`);
    await page.waitForFunction(() => true); // let the beacon request be observed
    summary.beacons = beacons;
    const beacon = beacons.length === 1 ? JSON.parse(beacons[0]) : null;
    check(
      beacon && beacon.first_progress_painted_ms >= 0 && beacon.first_token_painted_ms >= beacon.first_progress_painted_ms && beacon.done_ms >= beacon.first_token_painted_ms,
      `expected one timings beacon with ordered first_progress/first_token/done; got ${JSON.stringify(beacons)}`,
    );
    summary.console_errors = consoleErrors;
    check(consoleErrors.length === 0, `errors in the console: ${consoleErrors.join('; ')}`);
    summary.screenshots = [midPath, endPath];
  } finally {
    await context.close();
    await rm(profile, { recursive: true, force: true });
  }
  summaryAndExit(summary, failures);
}

run(main);
