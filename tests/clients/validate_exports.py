#!/usr/bin/env python3
"""Validate aloud's export formats with their consumers' own rules.

Usage:
    python validate_exports.py [--inspect FILE] [--chat FILE] [--evals FILE] [--csv FILE]

--inspect  needs inspect_ai (tested with inspect_ai==0.3.285): loads the file with
           inspect_ai.dataset.json_dataset and prints the sample count.
--chat     OpenAI chat fine-tuning rules (those of OpenAI's data-preparation cookbook, plus
           tool calls): each line has `messages`; roles are system/user/assistant/tool; keys are
           known; the last message is the assistant's, with content or tool calls.
--evals    the openai/evals sample shape: `input` is a list of {role, content} messages and
           `ideal` is a string or a list of strings.
--csv      parses with the csv module: a header row and rows of the same width.

Prints one line per file and exits 1 on the first file that fails.
"""

import argparse
import csv
import json
import sys

CHAT_ROLES = {"system", "user", "assistant", "tool"}
CHAT_KEYS = {"role", "content", "name", "tool_calls", "tool_call_id", "function_call", "weight"}


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                yield n, json.loads(line)


def check_chat(path):
    count = 0
    for n, sample in read_jsonl(path):
        where = f"{path}:{n}"
        messages = sample.get("messages") if isinstance(sample, dict) else None
        assert isinstance(messages, list) and messages, f"{where}: no messages list"
        for m in messages:
            assert isinstance(m, dict), f"{where}: message is not an object"
            assert not set(m) - CHAT_KEYS, f"{where}: unknown keys {set(m) - CHAT_KEYS}"
            assert m.get("role") in CHAT_ROLES, f"{where}: role {m.get('role')!r}"
            content = m.get("content")
            assert content is None or isinstance(content, (str, list)), f"{where}: content type"
            if m["role"] == "assistant":
                assert content or m.get("tool_calls"), f"{where}: empty assistant message"
                for call in m.get("tool_calls") or []:
                    fn = call.get("function", {})
                    assert call.get("type") == "function" and call.get("id"), f"{where}: tool call"
                    assert isinstance(fn.get("name"), str), f"{where}: tool call name"
                    assert isinstance(fn.get("arguments"), str), f"{where}: arguments not a string"
            elif m["role"] != "tool":
                assert isinstance(content, str), f"{where}: {m['role']} without text content"
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
    return len(rows) - 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--inspect")
    parser.add_argument("--chat")
    parser.add_argument("--evals")
    parser.add_argument("--csv")
    args = parser.parse_args()
    checks = [
        ("inspect", args.inspect, check_inspect),
        ("chat-jsonl", args.chat, check_chat),
        ("openai-evals", args.evals, check_evals),
        ("csv", args.csv, check_csv),
    ]
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


if __name__ == "__main__":
    main()
