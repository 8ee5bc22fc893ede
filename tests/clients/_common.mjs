// Shared bits of the Node client scripts: arguments, x-sim-* headers, JSON output.
// Every script prints ONE JSON document on stdout and nothing else; diagnostics go to stderr.
import { parseArgs } from 'node:util';

// Small simulated times so a scenario takes well under a second.
export const DEFAULT_HEADERS = {
  'x-sim-seed': '42',
  'x-sim-think-ms': '40',
  'x-sim-tokens': '12',
  'x-sim-token-ms': '2',
};

/** `--base-url URL SCENARIO [--header NAME=VALUE]...` -> { baseURL, scenario, headers }. */
export function parse(scenarios) {
  const { values, positionals } = parseArgs({
    options: {
      'base-url': { type: 'string' },
      header: { type: 'string', multiple: true, default: [] },
    },
    allowPositionals: true,
  });
  const usage = `usage: --base-url URL SCENARIO [--header NAME=VALUE]...; scenarios: ${Object.keys(scenarios).join(', ')}`;
  if (!values['base-url'] || positionals.length !== 1 || !(positionals[0] in scenarios)) {
    fail(usage);
  }
  const headers = { ...DEFAULT_HEADERS };
  for (const h of values.header) {
    const i = h.indexOf('=');
    if (i < 0) fail(`--header wants NAME=VALUE, got ${JSON.stringify(h)}`);
    headers[h.slice(0, i).trim().toLowerCase()] = h.slice(i + 1);
  }
  return { baseURL: values['base-url'], scenario: positionals[0], headers };
}

export function fail(message) {
  process.stderr.write(`${message}\n`);
  process.exit(2);
}

/** Collects every item an async iterable yields. */
export async function collect(iterable) {
  const out = [];
  for await (const item of iterable) out.push(item);
  return out;
}

export function emit(doc) {
  process.stdout.write(`${JSON.stringify(doc, null, 1)}\n`);
}

/** Runs `main`, printing an unexpected error to stderr with a non-zero exit. */
export function run(main) {
  main().catch((e) => {
    process.stderr.write(`${e?.stack ?? e}\n`);
    if (e?.cause) process.stderr.write(`cause: ${e.cause?.stack ?? e.cause}\n`);
    process.exit(1);
  });
}

/**
 * Iterates a stream to its end or its first exception; reports where it stopped. Each item is
 * announced on stderr (`aloud-test item N`) so a test driving a failing upstream knows when the
 * client has everything before the failure.
 */
export async function streamOutcome(makeStream) {
  let items = 0;
  try {
    for await (const _ of await makeStream()) {
      items += 1;
      process.stderr.write(`aloud-test item ${items}\n`);
    }
  } catch (e) {
    return { raised: true, class: e?.constructor?.name ?? String(e), items, message: String(e?.message ?? e).slice(0, 500) };
  }
  return { raised: false, class: null, items };
}
