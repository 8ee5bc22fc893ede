#!/usr/bin/env python3
"""Validate aloud's export formats with their consumers' own rules.

Usage:
    python validate_exports.py [--inspect FILE] [--chat FILE] [--evals FILE] [--csv FILE]
                               [--datasets FILE]...

--inspect  needs inspect_ai (tested with inspect_ai==0.3.285): loads the file with
           inspect_ai.dataset.json_dataset and prints the sample count.
--chat     OpenAI's chat fine-tuning format checks (its data-preparation cookbook, with the
           tools, tool-call and vision rules of the fine-tuning guide): top-level keys are
           messages/tools/parallel_tool_calls; roles are system/user/assistant/tool with their
           own keys; content is a string or text parts (and image_url parts in user messages:
           http(s) or base64 JPEG/PNG/WebP data URLs); every tool call has an id, type
           "function", a declared tool's name and arguments that are a JSON string; every tool
           message's tool_call_id answers an earlier call not answered yet; lines with tool calls
           declare their tools; `weight` is 0 or 1 on assistant messages; the last message is the
           assistant's, with content or tool calls.
--evals    the openai/evals sample shape: `input` is a list of {role, content} messages and
           `ideal` is a string or a list of strings.
--csv      parses with the csv module (a header row and rows of the same width), then with
           pandas.read_csv (needs pandas), which must see the same rows and columns.
--datasets the Hugging Face `datasets` library's JSON loader (load_dataset("json"), offline);
           may be given more than once; every line must become a row.

Prints one line per file and exits 1 on the first file that fails.
"""

import argparse
import base64
import csv
import json
import os
import sys
import tempfile

CHAT_ROLES = {"system", "user", "assistant", "tool"}
CHAT_KEYS = {"role", "content", "name", "tool_calls", "tool_call_id", "function_call", "weight"}


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                yield n, json.loads(line)


CHAT_TOP_KEYS = {"messages", "tools", "parallel_tool_calls"}
ROLE_KEYS = {
    "system": {"role", "content", "name", "weight"},
    "user": {"role", "content", "name", "weight"},
    "assistant": {"role", "content", "name", "tool_calls", "weight", "refusal"},
    "tool": {"role", "content", "tool_call_id"},
}
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp")


def check_image(url, where):
    if url.startswith(("https://", "http://")):
        return
    assert url.startswith("data:"), f"{where}: image is neither a URL nor a data URL"
    head, _, data = url[5:].partition(",")
    media, _, encoding = head.partition(";")
    assert media in IMAGE_TYPES, f"{where}: image type {media!r} (JPEG, PNG or WebP)"
    assert encoding == "base64", f"{where}: image data URL not base64"
    base64.b64decode(data, validate=True)


def check_content(m, where):
    content = m.get("content")
    if isinstance(content, str) or content is None:
        return bool(content)
    assert isinstance(content, list) and content, f"{where}: content is not a string or parts"
    for part in content:
        kind = part.get("type")
        if kind == "text":
            assert isinstance(part.get("text"), str), f"{where}: text part without text"
        elif kind == "image_url":
            assert m["role"] == "user", f"{where}: image in a {m['role']} message"
            check_image(part.get("image_url", {}).get("url", ""), where)
        else:
            raise AssertionError(f"{where}: content part type {kind!r}")
    return True


def check_tools(tools, where):
    assert isinstance(tools, list) and tools, f"{where}: tools is not a non-empty list"
    names = set()
    for t in tools:
        fn = t.get("function") if isinstance(t, dict) else None
        assert t.get("type") == "function" and isinstance(fn, dict), f"{where}: tool shape"
        assert isinstance(fn.get("name"), str) and fn["name"], f"{where}: tool without a name"
        assert not set(fn) - {"name", "description", "parameters", "strict"}, f"{where}: tool keys"
        params = fn.get("parameters", {})
        assert isinstance(params, dict), f"{where}: tool parameters not a JSON Schema object"
        names.add(fn["name"])
    return names


def check_chat(path):
    count = 0
    for n, sample in read_jsonl(path):
        where = f"{path}:{n}"
        assert isinstance(sample, dict), f"{where}: line is not an object"
        assert not set(sample) - CHAT_TOP_KEYS, f"{where}: unknown keys {set(sample) - CHAT_TOP_KEYS}"
        messages = sample.get("messages")
        assert isinstance(messages, list) and messages, f"{where}: no messages list"
        tools = check_tools(sample["tools"], where) if "tools" in sample else None
        pending = []  # tool call ids not answered yet
        for m in messages:
            assert isinstance(m, dict), f"{where}: message is not an object"
            role = m.get("role")
            assert role in ROLE_KEYS, f"{where}: role {role!r}"
            assert not set(m) - ROLE_KEYS[role], f"{where}: {role} keys {set(m) - ROLE_KEYS[role]}"
            has_content = check_content(m, where)
            if "weight" in m:
                assert role == "assistant" and m["weight"] in (0, 1), f"{where}: weight"
            if role == "assistant":
                calls = m.get("tool_calls") or []
                assert has_content or calls, f"{where}: empty assistant message"
                for call in calls:
                    fn = call.get("function", {})
                    assert call.get("type") == "function" and call.get("id"), f"{where}: tool call"
                    assert call["id"] not in pending, f"{where}: tool call id used twice"
                    assert isinstance(fn.get("name"), str), f"{where}: tool call name"
                    assert tools is not None, f"{where}: tool calls but no tools"
                    assert fn["name"] in tools, f"{where}: tool {fn['name']!r} not declared"
                    assert isinstance(fn.get("arguments"), str), f"{where}: arguments not a string"
                    json.loads(fn["arguments"])
                    pending.append(call["id"])
            elif role == "tool":
                call_id = m.get("tool_call_id")
                assert call_id in pending, f"{where}: tool_call_id {call_id!r} answers no call"
                pending.remove(call_id)
            else:
                assert has_content, f"{where}: {role} message without content"
        assert messages[-1]["role"] == "assistant", f"{where}: last message is not the assistant's"
        count += 1
    return count


def check_evals(path):
    count = 0
    for n, sample in read_jsonl(path):
        where = f"{path}:{n}"
        assert isinstance(sample.get("input"), list) and sample["input"], f"{where}: input"
        for m in sample["input"]:
            assert isinstance(m.get("role"), str), f"{where}: role"
            assert "content" in m or m.get("tool_calls"), f"{where}: content"
        ideal = sample.get("ideal")
        ok = isinstance(ideal, str) or (
            isinstance(ideal, list) and all(isinstance(i, str) for i in ideal)
        )
        assert ok and ideal, f"{where}: ideal"
        count += 1
    return count


def check_inspect(path):
    from inspect_ai.dataset import json_dataset

    dataset = json_dataset(path)
    samples = list(dataset)
    ids = [s.id for s in samples]
    assert len(ids) == len(set(ids)), f"{path}: duplicate ids"
    for s in samples:
        assert s.target, f"{path}: sample {s.id} has no target"
    return len(samples)


def check_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows, f"{path}: no header"
    width = len(rows[0])
    for n, row in enumerate(rows[1:], 2):
        assert len(row) == width, f"{path}: row {n} has {len(row)} fields, header {width}"
    import pandas

    frame = pandas.read_csv(path, dtype=str, keep_default_na=False)
    assert list(frame.columns) == rows[0], f"{path}: pandas columns {list(frame.columns)}"
    assert len(frame) == len(rows) - 1, f"{path}: pandas read {len(frame)} rows"
    assert frame["id"].str.len().min() > 0 if len(frame) else True, f"{path}: a row without id"
    return len(rows) - 1


def check_datasets(path):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="aloud-hf-"))
    import datasets

    datasets.disable_progress_bars()
    with open(path, encoding="utf-8") as f:
        lines = sum(1 for line in f if line.strip())
    table = datasets.load_dataset("json", data_files=path, split="train")
    assert table.num_rows == lines, f"{path}: {table.num_rows} rows from {lines} lines"
    return table.num_rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--inspect")
    parser.add_argument("--chat")
    parser.add_argument("--evals")
    parser.add_argument("--csv")
    parser.add_argument("--datasets", action="append", default=[])
    args = parser.parse_args()
    checks = [
        ("inspect", args.inspect, check_inspect),
        ("chat-jsonl", args.chat, check_chat),
        ("openai-evals", args.evals, check_evals),
        ("csv", args.csv, check_csv),
    ] + [("datasets", path, check_datasets) for path in args.datasets]
    if not any(path for _, path, _ in checks):
        parser.error("give at least one file")
    for name, path, check in checks:
        if not path:
            continue
        try:
            count = check(path)
        except (AssertionError, ValueError, KeyError, TypeError) as e:
            print(f"{name}: FAIL {e}")
            sys.exit(1)
        print(f"{name}: ok, {count} samples" if name != "csv" else f"{name}: ok, {count} rows")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
