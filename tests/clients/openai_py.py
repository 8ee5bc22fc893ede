"""openai-python against an OpenAI-style endpoint; prints one JSON document of parsed objects.

    python openai_py.py --base-url http://127.0.0.1:PORT/v1 SCENARIO [--header NAME=VALUE]...
"""

import openai

from _common import dump, emit, error_doc, parse_args, stream_outcome

MODEL = "o-sim"
MESSAGES = [{"role": "user", "content": "Why is the sky blue?"}]
INPUT = "Why is the sky blue?"


def chat(c):
    return {"completion": dump(c.chat.completions.create(model=MODEL, messages=MESSAGES))}


def chat_stream(c):
    stream = c.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    return {"chunks": [dump(chunk) for chunk in stream]}


def chat_stream_usage(c):
    stream = c.chat.completions.create(
        model=MODEL,
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    return {"chunks": [dump(chunk) for chunk in stream]}


def chat_stream_helper(c):
    with c.chat.completions.stream(
        model=MODEL, messages=MESSAGES, stream_options={"include_usage": True}
    ) as stream:
        events = [dump(event) for event in stream]
        final = stream.get_final_completion()
    return {"events": events, "final_completion": dump(final)}


def responses(c):
    return {"response": dump(c.responses.create(model=MODEL, input=INPUT))}


def responses_stream(c):
    stream = c.responses.create(model=MODEL, input=INPUT, stream=True)
    return {"events": [dump(event) for event in stream]}


def responses_stream_helper(c):
    with c.responses.stream(
        model=MODEL, input=INPUT, reasoning={"summary": "auto"}
    ) as stream:
        events = [dump(event) for event in stream]
        final = stream.get_final_response()
    return {"events": events, "final_response": dump(final)}


def chat_stream_raises(c):
    """A stream whose upstream may fail: whether and where the SDK raised."""
    return stream_outcome(
        lambda: c.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    )


def error(status):
    def run(c):
        try:
            c.with_options(default_headers={"x-sim-status": str(status)}).chat.completions.create(
                model=MODEL, messages=MESSAGES
            )
        except openai.APIStatusError as e:
            return error_doc(e)
        raise SystemExit(f"expected an APIStatusError for {status}")

    return run


SCENARIOS = {
    "chat": chat,
    "chat_stream": chat_stream,
    "chat_stream_usage": chat_stream_usage,
    "chat_stream_helper": chat_stream_helper,
    "responses": responses,
    "responses_stream": responses_stream,
    "responses_stream_helper": responses_stream_helper,
    "chat_stream_raises": chat_stream_raises,
    "error_429": error(429),
    "error_401": error(401),
    "error_500": error(500),
}


def main():
    args, headers = parse_args(SCENARIOS)
    client = openai.OpenAI(
        api_key="sk-test-not-a-real-key",
        base_url=args.base_url,
        default_headers=headers,
        max_retries=0,
        timeout=30.0,
    )
    emit({"sdk": f"openai-python {openai.__version__}", **SCENARIOS[args.scenario](client)})


if __name__ == "__main__":
    main()
