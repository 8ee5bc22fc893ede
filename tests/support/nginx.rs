//! A real nginx for a test: Debian's `nginx` with a generated config in a temp dir, round-robin
//! over the given upstreams as docs/deploy.md recommends for aloud (no buffering either way,
//! HTTP/1.1 upstream, long read timeouts), each response marked with the upstream that answered
//! (`X-Aloud-Replica`). Ready when its port accepts connections; stopped on drop, and by a
//! watchdog process when the test binary dies without dropping it. A skip (or, with
//! `ALOUD_REQUIRE_CLIENTS=1`, a failure) when nginx is not installed.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

/// How long nginx may take to accept connections.
pub const DEADLINE: Duration = Duration::from_secs(20);
/// The response header naming the upstream (`$upstream_addr`: `A` or, after a retry, `A, B`).
pub const REPLICA_HEADER: &str = "x-aloud-replica";

pub struct Nginx {
    child: Child,
    /// Its stdin closing (our drop, or the test binary's death) sends nginx SIGTERM.
    watchdog: Option<(Child, ChildStdin)>,
    dir: tempfile::TempDir,
    pub addr: SocketAddr,
}

/// Debian's nginx (`nginx-light`), or `None`.
fn binary() -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join("nginx"))
        .find(|p| p.is_file())
}

/// Starts nginx in front of `upstreams`, or `None` (a loud skip) when it is not installed and
/// not required.
pub async fn start(what: &str, upstreams: &[SocketAddr]) -> Option<Nginx> {
    let required = std::env::var("ALOUD_REQUIRE_CLIENTS").is_ok_and(|v| v == "1");
    let Some(bin) = binary() else {
        assert!(
            !required,
            "ALOUD_REQUIRE_CLIENTS=1 but nginx is not installed: run scripts/install-test-deps.sh"
        );
        super::skip(&format!(
            "{what}: nginx is not installed (scripts/install-test-deps.sh installs \
             nginx-light), or set ALOUD_REQUIRE_CLIENTS=1 to make this an error"
        ));
        return None;
    };
    let dir = tempfile::Builder::new()
        .prefix("aloud-nginx-")
        .tempdir()
        .unwrap();
    let port = free_port();
    let d = dir.path().display();
    let servers: String = upstreams
        .iter()
        .map(|a| format!("        server {a};\n"))
        .collect();
    // No `keepalive` pool: every proxied request opens its connection, so a replica that died
    // is a refused connection (retried on the other) rather than a stale pooled one.
    let conf = format!(
        "worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    upstream aloud {{
{servers}    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://aloud;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
            add_header X-Aloud-Replica $upstream_addr always;
        }}
    }}
}}
"
    );
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let child = Command::new(bin)
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&path)
        .arg("-e")
        .arg(dir.path().join("error.log"))
        .args(["-g", "daemon off;"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut watchdog = Command::new("sh")
        .args(["-c", &format!("read _; kill -TERM {}", child.id())])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdin = watchdog.stdin.take().unwrap();
    let mut nginx = Nginx {
        child,
        watchdog: Some((watchdog, stdin)),
        dir,
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
    };
    nginx.wait_ready().await;
    Some(nginx)
}

impl Nginx {
    /// Polls the port until it accepts a connection; fails at once when nginx exits.
    async fn wait_ready(&mut self) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("nginx exited with {status}: {}", self.error_log());
            }
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "nginx not accepting on {} within {DEADLINE:?}: {}",
                self.addr,
                self.error_log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    /// SIGTERM through the watchdog (a fast shutdown: the master stops its worker), then reap.
    fn drop(&mut self) {
        if let Some((mut watchdog, stdin)) = self.watchdog.take() {
            drop(stdin);
            let _ = watchdog.wait();
        }
        let _ = self.child.wait();
    }
}

/// The replica that answered a response that went through nginx (the last upstream tried).
pub fn replica<B>(r: &http::Response<B>) -> SocketAddr {
    let v = r
        .headers()
        .get(REPLICA_HEADER)
        .unwrap_or_else(|| panic!("no {REPLICA_HEADER}: {:?}", r.headers()))
        .to_str()
        .unwrap();
    v.rsplit(',').next().unwrap().trim().parse().unwrap()
}

/// A port nothing listens on now (nginx binds it a moment later; a collision fails loudly).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
