// The Vercel AI SDK (`ai` generateText/streamText) with @ai-sdk/openai and @ai-sdk/anthropic;
// prints one JSON document.
//   node vercel_ai.mjs --base-url http://127.0.0.1:PORT/v1 SCENARIO [--header NAME=VALUE]...
// The base URL is the provider's, with /v1, for both providers. `openai_*` scenarios speak
// OpenAI (chat via `.chat(...)`, and the Responses model), `anthropic_*` speak Anthropic.
//
// The document holds what the SDK parsed: results, every stream part (with raw chunks), steps,
// usage, provider metadata and the request body it sent. HTTP response headers are left out
// (any `headers` key): they describe the hop, not the model's output, and a proxy adds its own.
import { createAnthropic } from '@ai-sdk/anthropic';
import { createOpenAI } from '@ai-sdk/openai';
import { APICallError, generateText, streamText } from 'ai';
import { emit, parse, run } from './_common.mjs';

const PROMPT = 'Why is the sky blue?';
// An o-series id, so @ai-sdk/openai treats it as a reasoning model and asks for summaries.
const OPENAI_MODEL = 'o4-mini';
const ANTHROPIC_MODEL = 'claude-sim';
const OPENAI_OPTIONS = { openai: { reasoningSummary: 'auto' } };
const ANTHROPIC_OPTIONS = { anthropic: { thinking: { type: 'enabled', budgetTokens: 1024 } } };

// Ids and dates the SDK makes up itself (not from the wire) are fixed, so two runs compare.
let counter = 0;
const INTERNAL = {
  generateId: () => `id-${counter++}`,
  currentDate: () => new Date(0),
  now: () => 0,
};

// Anthropic's Messages api carries no creation time, so the AI SDK stamps `response.timestamp`
// with the client's clock (`new Date()`, not injectable in generateText/streamText). Those
// timestamps are replaced by this marker; OpenAI's come from the wire (`created`) and stay.
const CLIENT_CLOCK = '<client clock>';

/** JSON-ready data: Dates, URLs and class instances as JSON, `headers` dropped. */
function clean(value, { clientClock = false } = {}) {
  return JSON.parse(
    JSON.stringify(value, (key, v) => {
      if (key === 'headers') return undefined;
      if (clientClock && key === 'timestamp') return CLIENT_CLOCK;
      return v;
    }),
  );
}

async function generated(options, cleaning) {
  const r = await generateText({ maxRetries: 0, _internal: INTERNAL, ...options });
  return clean({
    result: {
      text: r.text,
      content: r.content,
      reasoning: r.reasoning,
      reasoningText: r.reasoningText,
      files: r.files,
      sources: r.sources,
      toolCalls: r.toolCalls,
      toolResults: r.toolResults,
      finishReason: r.finishReason,
      rawFinishReason: r.rawFinishReason,
      usage: r.usage,
      totalUsage: r.totalUsage,
      warnings: r.warnings,
      request: r.request,
      response: r.response,
      providerMetadata: r.providerMetadata,
      steps: r.steps,
    },
  }, cleaning);
}

async function streamed(options, cleaning) {
  const r = streamText({
    maxRetries: 0,
    includeRawChunks: true,
    _internal: INTERNAL,
    onError: () => {},
    ...options,
  });
  const parts = [];
  for await (const part of r.fullStream) parts.push(part);
  return clean({
    parts,
    result: {
      text: await r.text,
      content: await r.content,
      reasoning: await r.reasoning,
      reasoningText: await r.reasoningText,
      finishReason: await r.finishReason,
      rawFinishReason: await r.rawFinishReason,
      usage: await r.usage,
      totalUsage: await r.totalUsage,
      warnings: await r.warnings,
      request: await r.request,
      response: await r.response,
      providerMetadata: await r.providerMetadata,
      steps: await r.steps,
    },
  }, cleaning);
}

/** A call the simulator answers with `status`: the error the SDK throws. */
async function failed(options, status) {
  try {
    await generateText({ maxRetries: 0, headers: { 'x-sim-status': String(status) }, ...options });
  } catch (e) {
    if (!APICallError.isInstance(e)) throw e;
    return {
      error: {
        class: e.constructor.name,
        name: e.name,
        statusCode: e.statusCode,
        isRetryable: e.isRetryable,
        responseBody: e.responseBody,
        data: e.data,
        message: e.message,
      },
    };
  }
  throw new Error(`expected an APICallError for ${status}`);
}

const SCENARIOS = {
  openai_chat_generate: ({ openai }) => generated({ model: openai.chat(OPENAI_MODEL), prompt: PROMPT }),
  openai_chat_stream: ({ openai }) => streamed({ model: openai.chat(OPENAI_MODEL), prompt: PROMPT }),
  openai_responses_generate: ({ openai }) =>
    generated({ model: openai.responses(OPENAI_MODEL), prompt: PROMPT, providerOptions: OPENAI_OPTIONS }),
  openai_responses_stream: ({ openai }) =>
    streamed({ model: openai.responses(OPENAI_MODEL), prompt: PROMPT, providerOptions: OPENAI_OPTIONS }),
  openai_error_429: ({ openai }) => failed({ model: openai.chat(OPENAI_MODEL), prompt: PROMPT }, 429),
  anthropic_generate: ({ anthropic }) =>
    generated(
      { model: anthropic(ANTHROPIC_MODEL), prompt: PROMPT, maxOutputTokens: 2048, providerOptions: ANTHROPIC_OPTIONS },
      { clientClock: true },
    ),
  anthropic_stream: ({ anthropic }) =>
    streamed(
      { model: anthropic(ANTHROPIC_MODEL), prompt: PROMPT, maxOutputTokens: 2048, providerOptions: ANTHROPIC_OPTIONS },
      { clientClock: true },
    ),
  anthropic_error_529: ({ anthropic }) =>
    failed({ model: anthropic(ANTHROPIC_MODEL), prompt: PROMPT, maxOutputTokens: 2048 }, 529),
};

run(async () => {
  const { baseURL, scenario, headers } = parse(SCENARIOS);
  const providers = {
    openai: createOpenAI({ baseURL, apiKey: 'sk-test-not-a-real-key', headers }),
    anthropic: createAnthropic({ baseURL, apiKey: 'sk-ant-test-not-a-real-key', headers }),
  };
  emit({ sdk: 'vercel-ai', ...(await SCENARIOS[scenario](providers)) });
});
