//! A small HTTP CONNECT proxy for tests: records each CONNECT target and its
//! `Proxy-Authorization`, optionally requires one, then relays bytes both ways.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

#[derive(Default)]
pub struct Tunnels {
    /// Each CONNECT's target and its Proxy-Authorization value.
    pub seen: Mutex<Vec<(String, Option<String>)>>,
}

impl Tunnels {
    pub fn targets(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(t, _)| t.clone())
            .collect()
    }
    pub fn auths(&self) -> Vec<Option<String>> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(_, a)| a.clone())
            .collect()
    }
}

pub struct ConnectProxy {
    pub addr: SocketAddr,
    pub tunnels: Arc<Tunnels>,
    handle: JoinHandle<()>,
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

impl ConnectProxy {
    /// With `require`, a CONNECT without that exact `Proxy-Authorization` gets 407.
    pub async fn start(require: Option<&str>) -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tunnels = Arc::new(Tunnels::default());
        let t2 = Arc::clone(&tunnels);
        let require = require.map(str::to_owned);
        #[expect(clippy::disallowed_methods, reason = "aborted on drop")]
        let handle = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let tunnels = Arc::clone(&t2);
                let require = require.clone();
                #[expect(clippy::disallowed_methods, reason = "test connection task")]
                tokio::spawn(relay(client, tunnels, require));
            }
        });
        ConnectProxy {
            addr,
            tunnels,
            handle,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn relay(mut client: TcpStream, tunnels: Arc<Tunnels>, require: Option<String>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let Ok(n) = client.read(&mut buf).await else {
            return;
        };
        if n == 0 {
            return;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let request = lines.next().unwrap_or_default().to_owned();
    let mut parts = request.split(' ');
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let auth = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("proxy-authorization"))
        .map(|(_, v)| v.trim().to_owned());
    tunnels
        .seen
        .lock()
        .unwrap()
        .push((target.to_owned(), auth.clone()));
    if method != "CONNECT" {
        let _ = client
            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            .await;
        return;
    }
    if require.is_some() && auth != require {
        let _ = client
            .write_all(
                b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n",
            )
            .await;
        return;
    }
    let Ok(mut upstream) = TcpStream::connect(target).await else {
        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
        return;
    };
    if client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .is_err()
    {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}
