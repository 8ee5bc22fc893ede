// Shared bits of the browser scripts (browser_demo.mjs, browser_cors.mjs): the Chromium to
// drive, aloud.js as aloud serves it, and the summary/exit convention.
// Every script prints ONE JSON document on stdout; failed checks go to stderr with exit 1.

/** Debian's chromium, as scripts/install-test-deps.sh installs it. */
export const CHROMIUM = '/usr/bin/chromium';

/** Quiet, sandbox-free, loopback-only Chromium (playwright adds its own headless flags too). */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Imports `/aloud/aloud.js` as aloud serves it (so Node runs the very file the page does). */
export async function loadAloudJs(base) {
  const r = await fetch(`${base}/aloud/aloud.js`);
  if (!r.ok) throw new Error(`GET ${base}/aloud/aloud.js: status ${r.status}`);
  const source = await r.text();
  return import(`data:text/javascript;base64,${Buffer.from(source).toString('base64')}`);
}

/** The answer text of a non-streamed Responses API body. */
export function responsesText(body) {
  if (typeof body?.output_text === 'string') return body.output_text;
  return (body?.output ?? [])
    .flatMap((item) => (item.type === 'message' ? item.content ?? [] : []))
    .filter((c) => c.type === 'output_text')
    .map((c) => c.text)
    .join('');
}

/** Prints the summary; exits 1 listing the failed checks, if any. */
export function summaryAndExit(summary, failures) {
  summary.failures = failures;
  process.stdout.write(`${JSON.stringify(summary, null, 1)}\n`);
  if (failures.length) {
    process.stderr.write(`${failures.length} check(s) failed:\n${failures.map((f) => `- ${f}`).join('\n')}\n`);
    process.exit(1);
  }
}

/** Runs `main`, printing an unexpected error to stderr with a non-zero exit. */
export function run(main) {
  main().catch((e) => {
    process.stderr.write(`${e?.stack ?? e}\n`);
    if (e?.cause) process.stderr.write(`cause: ${e.cause?.stack ?? e.cause}\n`);
    process.exit(1);
  });
}
