// openai-node against an OpenAI-style endpoint; prints one JSON document of parsed objects.
//   node openai_node.mjs --base-url http://127.0.0.1:PORT/v1 SCENARIO [--header NAME=VALUE]...
import OpenAI from 'openai';
import { VERSION } from 'openai/version';
import { collect, emit, parse, run, streamOutcome } from './_common.mjs';

const MODEL = 'o-sim';
const MESSAGES = [{ role: 'user', content: 'Why is the sky blue?' }];
const INPUT = 'Why is the sky blue?';

const error = (status) => async (c) => {
  try {
    await c.chat.completions.create(
      { model: MODEL, messages: MESSAGES },
      { headers: { 'x-sim-status': String(status) } },
    );
  } catch (e) {
    if (!(e instanceof OpenAI.APIError)) throw e;
    return {
      error: {
        class: e.constructor.name,
        status: e.status,
        error: e.error,
        code: e.code,
        type: e.type,
        param: e.param,
        message: e.message,
      },
    };
  }
  throw new Error(`expected an APIError for ${status}`);
};

const SCENARIOS = {
  // A stream whose upstream may fail: whether and where the SDK raised.
  chat_stream_raises: (c) =>
    streamOutcome(() => c.chat.completions.create({ model: MODEL, messages: MESSAGES, stream: true })),
  chat: async (c) => ({
    completion: await c.chat.completions.create({ model: MODEL, messages: MESSAGES }),
  }),
  chat_stream: async (c) => ({
    chunks: await collect(
      await c.chat.completions.create({ model: MODEL, messages: MESSAGES, stream: true }),
    ),
  }),
  chat_stream_usage: async (c) => ({
    chunks: await collect(
      await c.chat.completions.create({
        model: MODEL,
        messages: MESSAGES,
        stream: true,
        stream_options: { include_usage: true },
      }),
    ),
  }),
  chat_stream_helper: async (c) => {
    const stream = c.chat.completions.stream({
      model: MODEL,
      messages: MESSAGES,
      stream_options: { include_usage: true },
    });
    const chunks = await collect(stream);
    return { chunks, final_completion: await stream.finalChatCompletion() };
  },
  responses: async (c) => ({ response: await c.responses.create({ model: MODEL, input: INPUT }) }),
  responses_stream: async (c) => ({
    events: await collect(await c.responses.create({ model: MODEL, input: INPUT, stream: true })),
  }),
  responses_stream_helper: async (c) => {
    const stream = c.responses.stream({
      model: MODEL,
      input: INPUT,
      reasoning: { summary: 'auto' },
    });
    const events = await collect(stream);
    return { events, final_response: await stream.finalResponse() };
  },
  error_429: error(429),
  error_401: error(401),
  error_500: error(500),
};

run(async () => {
  const { baseURL, scenario, headers } = parse(SCENARIOS);
  const client = new OpenAI({
    apiKey: 'sk-test-not-a-real-key',
    baseURL,
    defaultHeaders: headers,
    maxRetries: 0,
    timeout: 30_000,
  });
  emit({ sdk: `openai-node ${VERSION}`, ...(await SCENARIOS[scenario](client)) });
});
