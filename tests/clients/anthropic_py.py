"""anthropic-python against an Anthropic Messages endpoint; prints one JSON document.

    python anthropic_py.py --base-url http://127.0.0.1:PORT SCENARIO [--header NAME=VALUE]...

The base URL is the one without /v1 (the SDK adds /v1/messages).
"""

import anthropic

from _common import dump, emit, error_doc, parse_args, stream_outcome

MODEL = "claude-sim"
MESSAGES = [{"role": "user", "content": "Why is the sky blue?"}]
MAX_TOKENS = 2048
THINKING = {"type": "enabled", "budget_tokens": 1024}


def messages(c):
    return {"message": dump(c.messages.create(model=MODEL, max_tokens=MAX_TOKENS, messages=MESSAGES))}


def messages_thinking(c):
    m = c.messages.create(model=MODEL, max_tokens=MAX_TOKENS, messages=MESSAGES, thinking=THINKING)
    return {"message": dump(m)}


def messages_stream(c):
    stream = c.messages.create(model=MODEL, max_tokens=MAX_TOKENS, messages=MESSAGES, stream=True)
    return {"events": [dump(event) for event in stream]}


def messages_stream_helper(c):
    with c.messages.stream(
        model=MODEL, max_tokens=MAX_TOKENS, messages=MESSAGES, thinking=THINKING
    ) as stream:
        events = [dump(event) for event in stream]
        final = stream.get_final_message()
    return {"events": events, "final_message": dump(final)}


def messages_stream_raises(c):
    """A stream whose upstream may fail: whether and where the SDK raised."""
    return stream_outcome(
        lambda: c.messages.create(model=MODEL, max_tokens=MAX_TOKENS, messages=MESSAGES, stream=True)
    )


def error(status):
    def run(c):
        try:
            c.with_options(default_headers={"x-sim-status": str(status)}).messages.create(
                model=MODEL, max_tokens=MAX_TOKENS, messages=MESSAGES
            )
        except anthropic.APIStatusError as e:
            return error_doc(e)
        raise SystemExit(f"expected an APIStatusError for {status}")

    return run


SCENARIOS = {
    "messages": messages,
    "messages_thinking": messages_thinking,
    "messages_stream": messages_stream,
    "messages_stream_helper": messages_stream_helper,
    "messages_stream_raises": messages_stream_raises,
    "error_529": error(529),
    "error_429": error(429),
    "error_401": error(401),
}


def main():
    args, headers = parse_args(SCENARIOS)
    client = anthropic.Anthropic(
        api_key="sk-ant-test-not-a-real-key",
        base_url=args.base_url,
        default_headers=headers,
        max_retries=0,
        timeout=30.0,
    )
    emit({"sdk": f"anthropic-python {anthropic.__version__}", **SCENARIOS[args.scenario](client)})


if __name__ == "__main__":
    main()
