//! The README's first hour, proved: every fenced block marked `snippet` is taken from README.md
//! and run as it stands (its `127.0.0.1:8787` pointed at the test's port) with the real client
//! (Python SDKs from the test venv, Node SDKs from tests/clients, curl) against the real
//! `aloud serve` binary on the shipped `config.toml`, with no API keys in its environment.
//! Each must print a real answer from the simulator. And aloud's own errors on the default
//! simulator routes come in each api's shape, naming the size and the config key.
//!
//! The snippet runs need `ALOUD_TEST_PYTHON` and `ALOUD_TEST_CLIENTS` (`scripts/test.sh` sets
//! them); without them they skip loudly, unless `ALOUD_REQUIRE_CLIENTS=1`, when they fail.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use support::binary::Binary;
use support::clients::{Clients, RUN_TIMEOUT, clients};
use support::wire::Conn;

/// The address every snippet is written for: the shipped config's `[server] listen`.
const README_ADDR: &str = "127.0.0.1:8787";

/// Every answer of the simulator opens with "This is the simulated {model} answering."; no
/// error body, log line or progress comment says "simulated" (no snippet sets `x-sim-status`).
const ANSWER_MARK: &str = "simulated";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lang {
    Python,
    Js,
    Sh,
}

#[derive(Debug, Clone)]
struct Snippet {
    lang: Lang,
    /// 1-based line of the opening fence, to name the snippet in failures.
    line: usize,
    code: String,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The fenced blocks whose info string has the word `snippet` (after the language, so GitHub
/// still highlights them).
fn snippets(readme: &str) -> Vec<Snippet> {
    let mut out = Vec::new();
    let mut open: Option<(Option<Lang>, usize, String)> = None;
    for (i, line) in readme.lines().enumerate() {
        match &mut open {
            None => {
                if let Some(info) = line.strip_prefix("```") {
                    let words: Vec<&str> = info.split_whitespace().collect();
                    let lang = match words.first() {
                        Some(&"python") => Some(Lang::Python),
                        Some(&"js") => Some(Lang::Js),
                        Some(&"sh") => Some(Lang::Sh),
                        _ => None,
                    };
                    let marked = words.contains(&"snippet");
                    assert!(
                        !marked || lang.is_some(),
                        "README.md:{}: a snippet must be python, js or sh",
                        i + 1
                    );
                    open = Some((if marked { lang } else { None }, i + 1, String::new()));
                }
            }
            Some((lang, start, code)) => {
                if line.starts_with("```") {
                    if let Some(lang) = *lang {
                        out.push(Snippet {
                            lang,
                            line: *start,
                            code: std::mem::take(code),
                        });
                    }
                    open = None;
                } else {
                    code.push_str(line);
                    code.push('\n');
                }
            }
        }
    }
    assert!(open.is_none(), "README.md has an unclosed fence");
    out
}

fn readme_snippets() -> Vec<Snippet> {
    snippets(&std::fs::read_to_string(repo().join("README.md")).unwrap())
}

/// The README promises these clients; each must have a marked snippet, so a lost mark cannot
/// quietly take a snippet out of the test.
#[test]
fn the_readme_marks_a_snippet_for_every_promised_client() {
    let all = readme_snippets();
    let has = |lang: Lang, needle: &str| {
        all.iter()
            .any(|s| s.lang == lang && s.code.contains(needle))
    };
    for (lang, needle, what) in [
        (
            Lang::Sh,
            "curl -N http://127.0.0.1:8787/sim/v1/chat/completions",
            "curl",
        ),
        (Lang::Python, "from openai import OpenAI", "openai Python"),
        (
            Lang::Python,
            "from anthropic import Anthropic",
            "anthropic Python",
        ),
        (Lang::Js, "from 'openai'", "openai Node"),
        (Lang::Js, "from 'ai'", "the Vercel AI SDK"),
        (Lang::Sh, "/sim-gemini/", "curl to Gemini"),
        (Lang::Sh, "/sim-ollama/", "curl to Ollama"),
    ] {
        assert!(
            has(lang, needle),
            "README.md has no marked snippet for {what}"
        );
    }
    for s in &all {
        assert!(
            s.code.contains(README_ADDR),
            "README.md:{}: a snippet talks to the default address {README_ADDR}",
            s.line
        );
        assert!(
            !s.code.contains("x-sim-"),
            "README.md:{}: a snippet works without simulator overrides",
            s.line
        );
    }
    // The marks are what the test finds: an unmarked block is not taken.
    let doc = "```python\nprint(1)\n```\n```python snippet\nprint(2)\n```\n";
    let found = snippets(doc);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].code, "print(2)\n");
}

/// The README's commands table has a row for every subcommand the binary has.
#[test]
fn the_readme_lists_every_command() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let cli = <aloud::cli::Cli as clap::CommandFactory>::command();
    let names: Vec<&str> = cli.get_subcommands().map(|c| c.get_name()).collect();
    assert!(
        names.contains(&"stats") && names.contains(&"export"),
        "{names:?}"
    );
    for name in names {
        assert!(
            readme.contains(&format!("| `aloud {name}")),
            "README.md's commands table has no row for `aloud {name}`"
        );
    }
}

/// aloud serving the shipped config.toml on port 0, in a temp dir (the capture database lands
/// there), with no API keys in its environment.
async fn default_aloud(dir: &Path) -> Binary {
    Binary::start_in(&repo().join("config.toml"), &[], Some(dir)).await
}

/// Runs one snippet to its end; its stdout, or a panic naming it with its output.
async fn run(snippet: &Snippet, clients: &Clients, addr: &str, dir: &Path) -> String {
    let code = snippet.code.replace(README_ADDR, addr);
    let n = snippet.line;
    let mut cmd = match snippet.lang {
        Lang::Python => {
            let file = dir.join(format!("snippet_{n}.py"));
            std::fs::write(&file, code).unwrap();
            let mut c = tokio::process::Command::new(&clients.python);
            c.arg(file);
            c
        }
        Lang::Js => {
            // ES modules resolve packages from the file's own folder up: the snippet sits
            // beside a link to tests/clients/node_modules.
            let file = dir.join(format!("snippet_{n}.mjs"));
            std::fs::write(&file, code).unwrap();
            let mut c = tokio::process::Command::new("node");
            c.arg(file);
            c
        }
        Lang::Sh => {
            let mut c = tokio::process::Command::new("bash");
            c.args(["-euo", "pipefail", "-c", &code]);
            c
        }
    };
    cmd.current_dir(dir)
        .env_remove("OPENAI_API_KEY")
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("ANTHROPIC_BASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(RUN_TIMEOUT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("README.md:{n}: the snippet ran past {RUN_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("README.md:{n}: cannot start the snippet's client: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "README.md:{n}: the snippet failed ({}):\n{}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status,
        snippet.code
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_readme_snippet_gets_an_answer_from_the_default_config() {
    let Some(clients) = clients("the README snippets") else {
        return;
    };
    let all = readme_snippets();
    assert!(!all.is_empty());
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        clients.dir.join("node_modules"),
        dir.path().join("node_modules"),
    )
    .unwrap();
    let aloud = default_aloud(dir.path()).await;
    let addr = aloud.addr.to_string();
    // All at once: each simulated call takes 10-25 s of "thinking", so one after another
    // would take minutes.
    let runs = all.iter().map(|s| run(s, &clients, &addr, dir.path()));
    let outputs = futures_util::future::join_all(runs).await;
    for (snippet, stdout) in all.iter().zip(outputs) {
        assert!(
            stdout.contains(ANSWER_MARK),
            "README.md:{}: no answer from the simulator in the snippet's output:\n{stdout}",
            snippet.line
        );
        assert!(
            !stdout.contains("\"error\""),
            "README.md:{}: an error in the snippet's output:\n{stdout}",
            snippet.line
        );
    }
}

/// Checks an error body's envelope and returns its message.
type MessageOf = fn(&serde_json::Value) -> &serde_json::Value;

/// aloud's own refusal (a body over the route's `max_request_body`, declared up front) on each
/// default simulator route: the api's own error envelope, the size in units, the config key.
#[tokio::test]
async fn the_default_routes_refuse_in_their_apis_shape_naming_size_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let aloud = default_aloud(dir.path()).await;
    let declared_too_large = |path: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
             Content-Length: 40000000\r\n\r\n"
        )
    };
    let expected = "request body over 32 MiB, this route's limit (`max_request_body`";
    let cases: [(&str, MessageOf); 4] = [
        ("/sim-anthropic/v1/messages", |v| {
            assert_eq!(v["type"], "error", "Anthropic's shape: {v}");
            assert_eq!(v["error"]["type"], "request_too_large", "{v}");
            &v["error"]["message"]
        }),
        ("/sim/v1/chat/completions", |v| {
            assert_eq!(
                v["error"]["code"], "request_too_large",
                "OpenAI's shape: {v}"
            );
            &v["error"]["message"]
        }),
        ("/sim-gemini/v1beta/models/m:generateContent", |v| {
            assert_eq!(v["error"]["code"], 413, "Gemini's shape: {v}");
            &v["error"]["message"]
        }),
        ("/sim-ollama/api/chat", |v| &v["error"]),
    ];
    for (path, message_of) in cases {
        let reply = Conn::raw_request(aloud.addr, declared_too_large(path).as_bytes())
            .await
            .finish()
            .await;
        assert_eq!(reply.status, 413, "{path}");
        let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        let message = message_of(&body).as_str().unwrap_or_default().to_owned();
        assert!(
            message.starts_with(expected),
            "{path}: expected {expected:?}…, got {message:?}"
        );
    }
}
