//! A table of bad configs, each with the message it must produce (file, line, column, key).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

use aloud::config::{Config, MapEnv};
use std::path::Path;

const ROUTE: &str = "[[routes]]\nname = \"a\"\nprefix = \"/a\"\nupstream = \"http://127.0.0.1:1\"\napi = \"openai\"\n";

fn error(toml: &str) -> String {
    Config::parse(toml, Path::new("bad.toml"), &MapEnv::default())
        .unwrap_err()
        .to_string()
}

#[test]
fn bad_configs_name_file_line_column_and_key() {
    let table: Vec<(String, &str)> = vec![
        (
            "[server]\nlisten = \"x\"\n".to_owned() + ROUTE,
            "bad.toml:2:10: server.listen: \"x\" is not an address",
        ),
        (
            "[cluster]\nenabled = true\n".to_owned() + ROUTE,
            "cluster.enabled: the side channel across replicas needs the Postgres",
        ),
        (
            "[cluster]\nenabled = true\ndatabase = \"aloud.db\"\n".to_owned() + ROUTE,
            "bad.toml:3:12: cluster.database: a Postgres URL starts with postgres:// or postgresql://",
        ),
        (
            "[cluster]\nenabled = true\ndatabase_env = \"PG_URL\"\n".to_owned() + ROUTE,
            "bad.toml:3:16: cluster.database_env: environment variable PG_URL is unset",
        ),
        // A bad rung names its phase; a repeated key is named.
        (
            "[progress.labels]\nthinking = [{ after = \"0s\", txt = \"x\" }]\n".to_owned() + ROUTE,
            "bad.toml:2:29: progress.labels.thinking[0].txt: unknown field `txt`",
        ),
        (
            "[progress.labels]\nthinkin = [{ after = \"0s\", text = \"x\" }]\n".to_owned() + ROUTE,
            "bad.toml:2:35: progress.labels.thinkin: unknown phase",
        ),
        (
            "[server]\nlisten = \"127.0.0.1:1\"\nlisten = \"127.0.0.1:2\"\n".to_owned() + ROUTE,
            "bad.toml:3:1: duplicate key `listen`",
        ),
        (
            "[server]\n[server]\n".to_owned() + ROUTE,
            "duplicate table `[server]`",
        ),
        (
            "[server]\nbogus = 1\n".to_owned() + ROUTE,
            "bad.toml:2:1: server.bogus: unknown field `bogus`",
        ),
        (
            ROUTE.to_owned() + "colour = \"red\"\n",
            "bad.toml:6:1: routes[0].colour: unknown field `colour`",
        ),
        (
            ROUTE.to_owned() + "idle_timeout = \"30\"\n",
            "bad.toml:6:16: routes[0].idle_timeout: duration \"30\" has no unit",
        ),
        (
            ROUTE.to_owned() + "idle_timeout = \"soon\"\n",
            "routes[0].idle_timeout: invalid duration \"soon\"",
        ),
        (
            ROUTE.to_owned() + "total_timeout = \"0s\"\n",
            "routes[0].total_timeout: duration \"0s\" must be greater than zero",
        ),
        (
            ROUTE.to_owned() + "max_request_body = \"12 parsecs\"\n",
            "routes[0].max_request_body: invalid size unit",
        ),
        // A wrong type names the form expected, with file, line, column and key kept.
        (
            ROUTE.to_owned() + "total_timeout = 30\n",
            "bad.toml:6:17: routes[0].total_timeout: invalid type: integer `30`, expected a duration like \"30s\"",
        ),
        (
            "[progress]\nheartbeat = 1.5\n".to_owned() + ROUTE,
            "bad.toml:2:13: progress.heartbeat: invalid type: floating point `1.5`, expected a duration like \"30s\"",
        ),
        (
            ROUTE.to_owned() + "max_request_body = true\n",
            "bad.toml:6:20: routes[0].max_request_body: invalid type: boolean `true`, expected a size like \"8 MiB\"",
        ),
        (
            "[upstream]\nmax_request_body = -1\n".to_owned() + ROUTE,
            "bad.toml:2:20: upstream.max_request_body: invalid value: integer `-1`, expected a size like \"8 MiB\"",
        ),
        (
            "[server]\nlisten = 8787\n".to_owned() + ROUTE,
            "bad.toml:2:10: server.listen: invalid type: integer `8787`, expected an address like \"127.0.0.1:8787\"",
        ),
        (
            ROUTE.replace("\"http://127.0.0.1:1\"", "true"),
            "routes[0].upstream: invalid type: boolean `true`, expected a URL like \"https://api.openai.com\"",
        ),
        (
            ROUTE.replace("openai", "gpt"),
            "bad.toml:5:7: routes[0].api: unknown variant `gpt`",
        ),
        (
            ROUTE.to_owned() + ROUTE,
            "bad.toml:7:8: routes[1].name: route name \"a\" is already used",
        ),
        (
            ROUTE.to_owned() + &ROUTE.replace("\"a\"", "\"b\"").replace("/a", "/a/b"),
            "bad.toml:8:10: routes[1].prefix: prefix \"/a/b\" overlaps route \"a\"",
        ),
        (
            ROUTE.replace("/a", "a"),
            "routes[0].prefix: prefix \"a\" must start with '/'",
        ),
        (
            ROUTE.replace("/a", "/a/"),
            "routes[0].prefix: prefix \"/a/\" must not end with '/'",
        ),
        (
            ROUTE.replace("/a", "/aloud/x"),
            "routes[0].prefix: prefix \"/aloud/x\" is reserved",
        ),
        (
            ROUTE.replace("/a", "/healthz"),
            "routes[0].prefix: prefix \"/healthz\" is reserved",
        ),
        (
            ROUTE.replace("http://127.0.0.1:1", "ftp://x"),
            "routes[0].upstream: \"ftp://x\": only http:// and https://",
        ),
        (
            ROUTE.replace("http://127.0.0.1:1", "api.openai.com"),
            "routes[0].upstream: \"api.openai.com\" needs a scheme",
        ),
        (
            ROUTE.replace("http://127.0.0.1:1", "https://u:p@x"),
            "put credentials in api_key_env",
        ),
        (
            ROUTE.replace("name = \"a\"\n", ""),
            "routes[0]: missing field `name`",
        ),
        (
            "[server]\nworkers = 0\n".to_owned() + ROUTE,
            "server.workers: must be from 1 to 1024",
        ),
        (
            "[server]\nworkers = 1025\n".to_owned() + ROUTE,
            "server.workers: must be from 1 to 1024",
        ),
        (
            "[server]\nmax_concurrent_requests = 0\n".to_owned() + ROUTE,
            "server.max_concurrent_requests: must be at least 1",
        ),
        (
            "[server]\nmax_concurrent_requests = -3\n".to_owned() + ROUTE,
            "server.max_concurrent_requests",
        ),
        (
            "[server]\nlisten = \"127.0.0.1:1\"\n".to_owned(),
            "routes: no [[routes]] defined",
        ),
        ("this is = not toml [".to_owned(), "bad.toml:1:"),
        (
            ROUTE.replace("prefix = \"/a\"", "prefix = \"/a/../b\""),
            "bad.toml:3:10: routes[0].prefix: prefix \"/a/../b\" must not hold '.' or '..' segments",
        ),
        (
            ROUTE.replace("127.0.0.1:1", "127.0.0.1:1/x/../y"),
            "routes[0].upstream: \"http://127.0.0.1:1/x/../y\": the base path must not hold",
        ),
        (
            "[cors]\norigins = [\"not a url\"]\n".to_owned() + ROUTE,
            "bad.toml:2:12: cors.origins: \"not a url\" is not an origin",
        ),
        (
            "[cors]\norigins = [\"https://app.example/\"]\n".to_owned() + ROUTE,
            "cors.origins: \"https://app.example/\" ends with '/'",
        ),
        (
            "[cors]\norigins = [\"https://app.example/x\"]\n".to_owned() + ROUTE,
            "cors.origins: \"https://app.example/x\" has a path",
        ),
        (
            "[server]\nclient_tokens_env = \"NOPE\"\n".to_owned() + ROUTE,
            "server.client_tokens_env: environment variable NOPE is unset",
        ),
        (
            "[server]\nlisten = \"0.0.0.0:8787\"\n".to_owned() + ROUTE + "api_key_env = \"K\"\n",
            "bad.toml:2:10: server.listen: listening on 0.0.0.0:8787 (beyond loopback) while routes inject API keys",
        ),
    ];
    for (toml, expected) in table {
        let got = error(&toml);
        assert!(
            got.contains(expected),
            "for config:\n{toml}\nexpected {expected:?}\ngot      {got:?}"
        );
    }
}

#[test]
fn open_relays_need_tokens_or_an_explicit_choice() {
    let open = "[server]\nlisten = \"0.0.0.0:8787\"\nallow_open_relay = true\n".to_owned()
        + ROUTE
        + "api_key_env = \"K\"\n";
    assert!(Config::parse(&open, Path::new("ok.toml"), &MapEnv::default()).is_ok());
    let tokens = "[server]\nlisten = \"0.0.0.0:8787\"\nclient_tokens_env = \"T\"\n".to_owned()
        + ROUTE
        + "api_key_env = \"K\"\n";
    let env = MapEnv::default().with("T", "tok-0123456789abcdef");
    assert!(Config::parse(&tokens, Path::new("ok.toml"), &env).is_ok());
    // A short token is refused, named by its place in the list, never printed.
    let env = MapEnv::default().with("T", "tok-0123456789abcdef, tok-short");
    let e = Config::parse(&tokens, Path::new("ok.toml"), &env)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("server.client_tokens_env") && e.contains("token 2 of T is shorter than 16"),
        "{e}"
    );
    assert!(!e.contains("tok-short"), "{e}");
    let no_keys = "[server]\nlisten = \"0.0.0.0:8787\"\n".to_owned() + ROUTE;
    assert!(Config::parse(&no_keys, Path::new("ok.toml"), &MapEnv::default()).is_ok());
}

#[test]
fn route_overrides_beat_upstream_defaults() {
    let toml = "[upstream]\nidle_timeout = \"7s\"\ntotal_timeout = \"1m\"\n".to_owned()
        + ROUTE
        + "idle_timeout = \"3s\"\n";
    let c = Config::parse(&toml, Path::new("ok.toml"), &MapEnv::default()).unwrap();
    let l = c.routes[0].limits;
    assert_eq!(l.idle_timeout.as_secs(), 3);
    assert_eq!(l.total_timeout.as_secs(), 60);
    assert_eq!(
        l.headers_timeout.as_secs(),
        60,
        "headers default to the total"
    );
}

/// `check-config` refuses what `serve` would refuse at start: a redaction setting the redactor
/// cannot build, and one address for both listeners.
#[test]
fn check_config_refuses_what_serve_would_refuse_at_start() {
    let dir = tempfile::tempdir().unwrap();
    for (extra, expected) in [
        (
            "[capture.redact]\njson_paths = [\"a[[\"]\n",
            "capture.redact",
        ),
        (
            "[server]\nlisten = \"127.0.0.1:18901\"\n[admin]\nlisten = \"127.0.0.1:18901\"\n",
            "admin.listen: 127.0.0.1:18901 is server.listen too",
        ),
    ] {
        let path = dir.path().join("config.toml");
        std::fs::write(&path, format!("{extra}{ROUTE}")).unwrap();
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_aloud"))
            .arg("check-config")
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{extra}: {stderr}");
        assert!(stderr.contains(expected), "{extra}: {stderr}");
    }
}
