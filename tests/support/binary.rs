//! The real `aloud` binary for lifecycle tests: started with `--log-json` on port 0, its stderr
//! read line by line on a thread, so a test waits on a log line (with a deadline), not a sleep.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How long any one wait may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub struct Binary {
    child: Option<Child>,
    lines: Arc<Mutex<Vec<String>>>,
    seen: watch::Receiver<usize>,
    pub addr: SocketAddr,
}

impl Binary {
    /// `aloud --log-json serve --config CONFIG --listen 127.0.0.1:0`, with only `env` (and
    /// `PATH`) in its environment; returns once it logs its address.
    pub async fn start(config: &Path, env: &[(&str, &str)]) -> Binary {
        Self::start_in(config, env, None).await
    }

    /// As `start`, with `cwd` as the working directory (where relative paths such as the
    /// default capture database land).
    pub async fn start_in(config: &Path, env: &[(&str, &str)], cwd: Option<&Path>) -> Binary {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_aloud"));
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        cmd.args([
            "--log-json",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(config)
        .env_clear()
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        if let Ok(path) = std::env::var("PATH") {
            cmd.env("PATH", path);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, seen) = watch::channel(0usize);
        let store = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let n = {
                    let mut l = store.lock().unwrap();
                    l.push(line);
                    l.len()
                };
                let _ = tx.send(n);
            }
        });
        let mut b = Binary {
            child: Some(child),
            lines,
            seen,
            addr: "127.0.0.1:0".parse().unwrap(),
        };
        let listening = b
            .wait_json(|v| message(v).starts_with("aloud listening"))
            .await;
        b.addr = listening["addr"].as_str().unwrap().parse().unwrap();
        b
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Sends `signal` (`TERM`, `INT`, `HUP`) with `kill`.
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal} failed");
    }

    /// Every line so far.
    pub fn log(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Every JSON line so far.
    pub fn json(&self) -> Vec<Value> {
        self.log()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits for a JSON line that `pred` accepts, from the first line on.
    pub async fn wait_json(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_json_after(0, pred).await
    }

    /// Waits for a JSON line that `pred` accepts among the lines from index `from` on.
    pub async fn wait_json_after(&mut self, from: usize, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let found = self
                .log()
                .iter()
                .skip(from)
                .find_map(|l| serde_json::from_str::<Value>(l).ok().filter(|v| pred(v)));
            if let Some(v) = found {
                return v;
            }
            let changed = tokio::time::timeout_at(deadline, self.seen.changed()).await;
            match changed {
                Ok(Ok(())) => {}
                // The process closed its stderr: one last look.
                Ok(Err(_)) => {
                    let found = self.json().into_iter().skip(from).find(|v| pred(v));
                    return found.unwrap_or_else(|| {
                        panic!(
                            "aloud ended without the line; log:\n{}",
                            self.log().join("\n")
                        )
                    });
                }
                Err(_) => panic!(
                    "no such log line within {DEADLINE:?}; log:\n{}",
                    self.log().join("\n")
                ),
            }
        }
    }

    /// How many lines were logged so far (to wait for a line after this point).
    pub fn mark(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    /// Waits for the process to exit, at most `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        let status = tokio::time::timeout(
            limit,
            tokio::task::spawn_blocking(move || child.wait().unwrap()),
        )
        .await
        .unwrap_or_else(|_| panic!("aloud did not exit within {limit:?}"))
        .unwrap();
        // The exit does not mean the reader has the last lines yet: wait until it reads the
        // end of the pipe (its sender drops), so `log`/`json` see every line written.
        let eof = async { while self.seen.changed().await.is_ok() {} };
        tokio::time::timeout(DEADLINE, eof)
            .await
            .unwrap_or_else(|_| panic!("aloud's stderr stayed open after it exited"));
        status
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A line's message.
pub fn message(v: &Value) -> &str {
    v["message"].as_str().unwrap_or("")
}

/// The access-log lines (one per exchange) that name `id`.
pub fn access_lines<'a>(lines: &'a [Value], id: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|v| v["id"] == id && message(v).starts_with("proxied"))
        .collect()
}
