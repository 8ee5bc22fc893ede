"""openai-python resumes a kept answer (on_disconnect = "finish") through aloud's resume path.

    python openai_resume.py --aloud http://127.0.0.1:PORT --prefix /sim

1. An uninterrupted streamed call (seeded): every chunk as the SDK parsed it.
2. The same call again; after a few chunks the stream is closed (the connection drops), the
   id taken from the response's Aloud-Request-Id.
3. A second client whose base_url is /aloud/v1/requests/{id}/resume/v1 repeats the call with
   extra_query={"after": N}: the chunks it missed. And once more from the start (after=0).

Prints ONE JSON document: the chunks of each, for the Rust test to compare.
"""

import argparse
import json
import sys

from openai import OpenAI

HEADERS = {
    "x-sim-seed": "11",
    "x-sim-think-ms": "50",
    "x-sim-tokens": "30",
    "x-sim-token-ms": "40",
}
REQUEST = {
    "model": "sim-reasoner",
    "messages": [{"role": "user", "content": "Tell me something."}],
    "stream": True,
}


def chunk_json(c):
    return c.model_dump(exclude_none=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--aloud", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--seen", type=int, default=4)
    args = p.parse_args()
    client = OpenAI(base_url=f"{args.aloud}{args.prefix}/v1", api_key="unused", max_retries=0)

    full = [chunk_json(c) for c in client.chat.completions.create(**REQUEST, extra_headers=HEADERS)]

    raw = client.chat.completions.with_raw_response.create(**REQUEST, extra_headers=HEADERS)
    request_id = raw.headers["aloud-request-id"]
    on_disconnect = raw.headers.get("aloud-on-disconnect")
    stream = raw.parse()
    seen = []
    for c in stream:
        seen.append(chunk_json(c))
        if len(seen) == args.seen:
            break
    stream.close()  # the connection goes away mid-answer

    resumed = OpenAI(
        base_url=f"{args.aloud}/aloud/v1/requests/{request_id}/resume/v1",
        api_key="unused",
        max_retries=0,
    )
    rest = [
        chunk_json(c)
        for c in resumed.chat.completions.create(**REQUEST, extra_query={"after": len(seen)})
    ]
    again = [chunk_json(c) for c in resumed.chat.completions.create(**REQUEST)]
    json.dump(
        {
            "request_id": request_id,
            "on_disconnect": on_disconnect,
            "full": full,
            "seen": seen,
            "rest": rest,
            "again": again,
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
