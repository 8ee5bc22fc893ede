//! HTTPS towards clients (`[server] tls_cert` / `tls_key`): HTTP/2 and HTTP/1.1 by ALPN, the
//! comments tier's stream over HTTP/2, a side channel and its request on one connection, the
//! handshake deadline, the drain at shutdown and the second stop over HTTP/2, certificate
//! reload, and the config errors. Clients are rustls + hyper over real sockets, trusting a CA
//! the test makes (tests/support/tls.rs).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

mod support;

use aloud::config::{Config, MapEnv};
use aloud::server::{Command, Listeners};
use bytes::Bytes;
use http::{Request, Response, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use support::tls::{ServerCert, TestCa, server_toml};
use support::*;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

const CHAT: &str = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

/// Longest a step may take before the test fails (nothing here waits on time otherwise).
const DEADLINE: Duration = Duration::from_secs(20);

async fn tls_connect(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    TlsConnector::from(config).connect(name, tcp).await.unwrap()
}

/// An HTTP/2 client on one new connection (the ALPN must have chosen h2).
async fn h2_client(
    addr: SocketAddr,
    ca: &TestCa,
) -> hyper::client::conn::http2::SendRequest<BoxBody> {
    let tls = tls_connect(addr, ca.client(&["h2", "http/1.1"])).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    #[expect(
        clippy::disallowed_methods,
        reason = "connection driver for a test client"
    )]
    tokio::spawn(conn);
    sender
}

fn https(addr: SocketAddr, path: &str) -> String {
    format!("https://localhost:{}{path}", addr.port())
}

/// The headers a response on HTTP/2 may never carry (RFC 9113 §8.2.2).
fn assert_no_connection_headers(r: &Response<Incoming>) {
    for h in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
    ] {
        assert!(r.headers().get(h).is_none(), "{h} on an h2 response: {r:?}");
    }
}

/// Reads frames until `pred` holds for what arrived so far; returns it.
async fn read_until(body: &mut Incoming, got: &mut Vec<u8>, pred: impl Fn(&[u8]) -> bool) {
    timeout(DEADLINE, async {
        while !pred(got) {
            let frame = body.frame().await.expect("body ended early").unwrap();
            if let Some(d) = frame.data_ref() {
                got.extend_from_slice(d);
            }
        }
    })
    .await
    .expect("the expected bytes did not arrive");
}

/// The body without the comments tier's `: aloud {...}` lines.
fn without_comments(body: &[u8]) -> Vec<u8> {
    body.split_inclusive(|b| *b == b'\n')
        .filter(|line| !line.starts_with(b": aloud "))
        .flatten()
        .copied()
        .collect()
}

#[tokio::test]
async fn alpn_picks_http2_or_http11_and_own_endpoints_answer_on_both() {
    let ca = TestCa::new();
    let cert = ca.server_cert("server");
    let aloud = Aloud::start(&format!(
        "[server]\n{}[upstream]\nmax_request_body = \"16\"\n[cors]\norigins = [\"https://page.example\"]\n\
         [[routes]]\nname = \"sim\"\nprefix = \"/sim\"\nupstream = \"builtin:simulator\"\napi = \"openai\"\n",
        server_toml(&cert)
    ))
    .await;

    // h2 when offered first.
    let mut h2 = h2_client(aloud.addr, &ca).await;
    let r = h2
        .send_request(
            Request::get(https(aloud.addr, "/healthz"))
                .header("origin", "https://page.example")
                .body(full(""))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.version(), Version::HTTP_2);
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("aloud-request-id"), "{r:?}");
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://page.example"
    );
    assert_no_connection_headers(&r);
    // A refusal that closes an HTTP/1.1 connection (`Connection: close`) is a plain response
    // on HTTP/2: an h2 client would reset a stream carrying that header.
    let r = h2
        .send_request(
            Request::post(https(aloud.addr, "/sim/v1/chat/completions"))
                .header("content-type", "application/json")
                .body(full(CHAT))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_no_connection_headers(&r);
    // The same connection serves on.
    let r = h2
        .send_request(
            Request::get(https(aloud.addr, "/aloud/"))
                .body(full(""))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // HTTP/1.1 when that is all the client offers.
    let tls = tls_connect(aloud.addr, ca.client(&["http/1.1"])).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut h1, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    #[expect(
        clippy::disallowed_methods,
        reason = "connection driver for a test client"
    )]
    tokio::spawn(conn);
    let r = h1
        .send_request(
            Request::get("/healthz")
                .header("host", format!("localhost:{}", aloud.addr.port()))
                .body(full(""))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.version(), Version::HTTP_11);
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("aloud-request-id"));

    // No ALPN at all: HTTP/1.1 too.
    let tls = tls_connect(aloud.addr, ca.client(&[])).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), None);
    aloud.stop().await;
}

/// An upstream that streams what the test feeds it: each request hands the test a sender.
async fn fed_upstream() -> (Upstream, mpsc::Receiver<mpsc::Sender<Bytes>>) {
    let (senders_tx, senders) = mpsc::channel(4);
    let upstream = Upstream::start(move |_req| {
        let senders_tx = senders_tx.clone();
        async move {
            let (tx, body) = channel_body();
            senders_tx.send(tx).await.unwrap();
            response(200, &[("content-type", "text/event-stream")], body)
        }
    })
    .await;
    (upstream, senders)
}

fn fed_config(upstream: SocketAddr, cert: &ServerCert, server_extra: &str) -> String {
    format!(
        "[server]\n{}{server_extra}\n[progress]\nheartbeat = \"100ms\"\n\
         [[routes]]\nname = \"up\"\nprefix = \"/up\"\nupstream = \"http://{upstream}\"\napi = \"openai\"\nprogress = \"comments\"\n",
        server_toml(cert)
    )
}

const EVENT_1: &[u8] = b"data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n";
const EVENT_2: &[u8] = b"data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"}}]}\n\ndata: [DONE]\n\n";

fn chat_request(addr: SocketAddr) -> Request<BoxBody> {
    Request::post(https(addr, "/up/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(full(CHAT))
        .unwrap()
}

#[tokio::test]
async fn an_sse_stream_over_http2_is_the_upstreams_bytes_plus_comments_frame_by_frame() {
    let ca = TestCa::new();
    let cert = ca.server_cert("server");
    let (upstream, mut senders) = fed_upstream().await;
    let aloud = Aloud::start(&fed_config(
        upstream.addr,
        &cert,
        "max_concurrent_requests = 1",
    ))
    .await;
    let mut h2 = h2_client(aloud.addr, &ca).await;
    let r = h2.send_request(chat_request(aloud.addr)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), Version::HTTP_2);
    assert!(r.headers().contains_key("aloud-request-id"));
    assert!(r.headers().contains_key("server-timing"), "{r:?}");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    assert_no_connection_headers(&r);
    let feed = senders.recv().await.unwrap();
    feed.send(Bytes::from_static(EVENT_1)).await.unwrap();
    let mut body = r.into_body();
    let mut got = Vec::new();
    // The first event, then a comment while the upstream is silent: both reach the client
    // before the upstream sends more, so nothing waits for the end of the body.
    read_until(&mut body, &mut got, |b| {
        b.starts_with(EVENT_1) && b.ends_with(b"\n") && b.windows(8).any(|w| w == b": aloud ")
    })
    .await;
    // `max_concurrent_requests` counts exchanges, whichever stream they came on.
    let refused = h2.send_request(chat_request(aloud.addr)).await.unwrap();
    assert_eq!(refused.status(), 503);
    feed.send(Bytes::from_static(EVENT_2)).await.unwrap();
    drop(feed);
    timeout(DEADLINE, async {
        while let Some(frame) = body.frame().await {
            if let Some(d) = frame.expect("the stream ends cleanly").data_ref() {
                got.extend_from_slice(d);
            }
        }
    })
    .await
    .unwrap();
    let upstream_bytes = [EVENT_1, EVENT_2].concat();
    assert_eq!(
        String::from_utf8(without_comments(&got)).unwrap(),
        String::from_utf8(upstream_bytes).unwrap()
    );
    aloud.stop().await;
}

#[tokio::test]
async fn a_side_channel_and_its_request_share_one_http2_connection() {
    let ca = TestCa::new();
    let cert = ca.server_cert("server");
    let aloud = Aloud::start(&format!(
        "[server]\n{}[progress]\nheartbeat = \"100ms\"\n\
         [[routes]]\nname = \"sim\"\nprefix = \"/sim\"\nupstream = \"builtin:simulator\"\napi = \"openai\"\n",
        server_toml(&cert)
    ))
    .await;
    let mut h2 = h2_client(aloud.addr, &ca).await;
    let id = "tls-side-channel-0001";
    let mut subscribers = Vec::new();
    for _ in 0..8 {
        let sub = h2
            .send_request(
                Request::get(https(aloud.addr, &format!("/aloud/v1/progress/{id}")))
                    .body(full(""))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(sub.status(), 200);
        subscribers.push(sub.into_body());
    }
    let r = h2
        .send_request(
            Request::post(https(aloud.addr, "/sim/v1/chat/completions"))
                .header("content-type", "application/json")
                .header("aloud-request-id", id)
                .header("x-sim-think-ms", "300")
                .header("x-sim-tokens", "3")
                .body(full(CHAT))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["aloud-request-id"], id);
    let answer = timeout(DEADLINE, r.into_body().collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    assert!(answer.ends_with(b"data: [DONE]\n\n"), "{answer:?}");
    for sub in subscribers {
        let events = timeout(DEADLINE, sub.collect())
            .await
            .unwrap()
            .unwrap()
            .to_bytes();
        let text = String::from_utf8(events.to_vec()).unwrap();
        assert!(text.contains("event: aloud.done"), "{text}");
    }
    aloud.stop().await;
}

#[tokio::test]
async fn a_client_that_never_finishes_its_handshake_is_dropped_and_frees_its_slot() {
    let ca = TestCa::new();
    let cert = ca.server_cert("server");
    let aloud = Aloud::start(&format!(
        "[server]\n{}request_head_timeout = \"500ms\"\nmax_connections = 1\n\
         [[routes]]\nname = \"sim\"\nprefix = \"/sim\"\nupstream = \"builtin:simulator\"\napi = \"openai\"\n",
        server_toml(&cert)
    ))
    .await;
    let started = Instant::now();
    let mut silent = TcpStream::connect(aloud.addr).await.unwrap();
    // It holds the only slot: the next connection is closed without a handshake.
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let refused = TlsConnector::from(ca.client(&["h2"]))
        .connect(name, TcpStream::connect(aloud.addr).await.unwrap())
        .await;
    assert!(refused.is_err(), "a second connection got through");
    let mut buf = [0u8; 64];
    let read = timeout(DEADLINE, silent.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the silent connection was not closed: {read:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(450));
    // Its slot is free again (the task ends just after the socket closes).
    let ok = timeout(DEADLINE, async {
        loop {
            let tcp = TcpStream::connect(aloud.addr).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            if let Ok(tls) = TlsConnector::from(ca.client(&["h2"]))
                .connect(name, tcp)
                .await
            {
                return tls;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    // After the handshake, an HTTP/2 client that sends nothing is closed after the same time.
    let after_handshake = Instant::now();
    let mut ok = ok;
    // aloud's SETTINGS frame comes first; then the end.
    let end = timeout(DEADLINE, async {
        loop {
            match ok.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the silent h2 connection was not closed");
    assert!(after_handshake.elapsed() >= Duration::from_millis(450));
    aloud.stop().await;
}

/// aloud with a controllable stop (two stops: drain, then cut), and its admin listener.
struct Controlled {
    addr: SocketAddr,
    admin: SocketAddr,
    commands: mpsc::Sender<Command>,
    handle: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start_controlled(toml: &str) -> Controlled {
    let config = Config::parse(
        &format!("{toml}\n[admin]\nlisten = \"127.0.0.1:0\"\n"),
        Path::new("test.toml"),
        &MapEnv::default(),
    )
    .unwrap();
    let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (addr, admin_addr) = (proxy.local_addr().unwrap(), admin.local_addr().unwrap());
    let (commands, rx) = mpsc::channel(4);
    #[expect(clippy::disallowed_methods, reason = "the test joins it")]
    let handle = tokio::spawn(aloud::server::serve_controlled(
        config,
        Listeners {
            proxy,
            admin: Some(admin),
        },
        rx,
    ));
    Controlled {
        addr,
        admin: admin_addr,
        commands,
        handle,
    }
}

impl Controlled {
    /// Waits until `/readyz` says 503 after a request was served: the first stop was taken.
    async fn draining(&self) {
        timeout(DEADLINE, async {
            loop {
                let r = get(&format!("http://{}/readyz", self.admin)).await;
                // It was ready (a request was served): not ready now means draining.
                if r.status() == 503 {
                    return;
                }
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("aloud never said it was draining");
    }
}

#[tokio::test]
async fn a_stop_drains_an_in_flight_http2_stream_and_a_second_stop_cuts_one() {
    let ca = TestCa::new();
    let cert = ca.server_cert("server");
    let (upstream, mut senders) = fed_upstream().await;

    // The first stop: the stream goes on to its end, then the connection closes and aloud ends.
    let aloud = start_controlled(&fed_config(
        upstream.addr,
        &cert,
        "shutdown_grace = \"60s\"",
    ))
    .await;
    let mut h2 = h2_client(aloud.addr, &ca).await;
    let r = h2.send_request(chat_request(aloud.addr)).await.unwrap();
    let feed = senders.recv().await.unwrap();
    feed.send(Bytes::from_static(EVENT_1)).await.unwrap();
    let mut body = r.into_body();
    let mut got = Vec::new();
    read_until(&mut body, &mut got, |b| b.starts_with(EVENT_1)).await;
    aloud.commands.send(Command::Stop).await.unwrap();
    aloud.draining().await;
    feed.send(Bytes::from_static(EVENT_2)).await.unwrap();
    read_until(&mut body, &mut got, |b| b.ends_with(b"data: [DONE]\n\n")).await;
    assert!(
        !aloud.handle.is_finished(),
        "aloud ended with a stream in flight"
    );
    drop(feed);
    while let Some(frame) = timeout(DEADLINE, body.frame()).await.unwrap() {
        frame.expect("the drained stream ends cleanly");
    }
    // Well within the 60 s grace: the connection went away with its last stream (GOAWAY).
    timeout(DEADLINE, aloud.handle)
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    // A second stop cuts a stream at once.
    let aloud = start_controlled(&fed_config(
        upstream.addr,
        &cert,
        "shutdown_grace = \"60s\"",
    ))
    .await;
    let mut h2 = h2_client(aloud.addr, &ca).await;
    let r = h2.send_request(chat_request(aloud.addr)).await.unwrap();
    let feed = senders.recv().await.unwrap();
    feed.send(Bytes::from_static(EVENT_1)).await.unwrap();
    let mut body = r.into_body();
    let mut got = Vec::new();
    read_until(&mut body, &mut got, |b| b.starts_with(EVENT_1)).await;
    aloud.commands.send(Command::Stop).await.unwrap();
    aloud.draining().await;
    aloud.commands.send(Command::Stop).await.unwrap();
    timeout(DEADLINE, aloud.handle)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let ended = timeout(DEADLINE, async {
        loop {
            match body.frame().await {
                Some(Ok(_)) => continue,
                Some(Err(_)) => return false,
                None => return true,
            }
        }
    })
    .await
    .unwrap();
    assert!(!ended, "a cut stream must not end cleanly");
    drop(feed);
}

/// The leaf certificate a new connection is served.
async fn served_cert(addr: SocketAddr, ca: &TestCa) -> rustls::pki_types::CertificateDer<'static> {
    let tls = tls_connect(addr, ca.client(&["h2"])).await;
    tls.get_ref().1.peer_certificates().unwrap()[0].clone()
}

#[tokio::test]
async fn a_reload_serves_a_renewed_certificate_and_keeps_tls_on() {
    let ca = TestCa::new();
    let first = ca.server_cert("first");
    let renewed = ca.server_cert("renewed");
    let routes = "[[routes]]\nname = \"sim\"\nprefix = \"/sim\"\nupstream = \"builtin:simulator\"\napi = \"openai\"\n";
    let with = |cert: &ServerCert| format!("[server]\n{}{routes}", server_toml(cert));
    let aloud = start_controlled(&with(&first)).await;
    assert_eq!(served_cert(aloud.addr, &ca).await, first.der);
    let parse = |toml: &str| {
        Box::new(Config::parse(toml, Path::new("t.toml"), &MapEnv::default()).unwrap())
    };
    aloud
        .commands
        .send(Command::Reload(parse(&with(&renewed))))
        .await
        .unwrap();
    // Reloads are taken in order: once the renewed certificate is served, the reload is done.
    timeout(DEADLINE, async {
        while served_cert(aloud.addr, &ca).await != renewed.der {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the renewed certificate was never served");
    // Turning TLS off needs a restart: the running certificate is kept while the rest of the
    // new config (here an allowed origin) is taken.
    aloud
        .commands
        .send(Command::Reload(parse(&format!(
            "[cors]\norigins = [\"https://page.example\"]\n{routes}"
        ))))
        .await
        .unwrap();
    timeout(DEADLINE, async {
        loop {
            let mut h2 = h2_client(aloud.addr, &ca).await;
            let r = h2
                .send_request(
                    Request::get(https(aloud.addr, "/healthz"))
                        .header("origin", "https://page.example")
                        .body(full(""))
                        .unwrap(),
                )
                .await
                .unwrap();
            if r.headers().contains_key("access-control-allow-origin") {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the reload was never taken");
    assert_eq!(served_cert(aloud.addr, &ca).await, renewed.der);
    aloud.commands.send(Command::Stop).await.unwrap();
    timeout(DEADLINE, aloud.handle)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[test]
fn tls_settings_that_cannot_work_are_config_errors_naming_the_file() {
    let ca = TestCa::new();
    let cert = ca.server_cert("server");
    let other = ca.server_cert("other");
    let routes = "[[routes]]\nname = \"sim\"\nprefix = \"/sim\"\nupstream = \"builtin:simulator\"\napi = \"openai\"\n";
    let parse = |server: String| {
        Config::parse(
            &format!("[server]\n{server}{routes}"),
            Path::new("t.toml"),
            &MapEnv::default(),
        )
    };
    let s = |p: &Path| p.display().to_string();
    let cases: Vec<(String, &str, String)> = vec![
        (
            format!("tls_cert = {:?}\n", s(&cert.cert)),
            "server.tls_key",
            "needs both".to_owned(),
        ),
        (
            format!("tls_key = {:?}\n", s(&cert.key)),
            "server.tls_cert",
            "needs both".to_owned(),
        ),
        (
            format!(
                "tls_cert = \"/nonexistent/cert.pem\"\ntls_key = {:?}\n",
                s(&cert.key)
            ),
            "server.tls_cert",
            "cannot read /nonexistent/cert.pem".to_owned(),
        ),
        (
            // A key where the certificate should be.
            format!(
                "tls_cert = {:?}\ntls_key = {:?}\n",
                s(&cert.key),
                s(&cert.key)
            ),
            "server.tls_cert",
            format!("{} holds no PEM certificate", s(&cert.key)),
        ),
        (
            format!(
                "tls_cert = {:?}\ntls_key = {:?}\n",
                s(&cert.cert),
                s(&cert.cert)
            ),
            "server.tls_key",
            format!("{} holds no PEM private key", s(&cert.cert)),
        ),
        (
            format!(
                "tls_cert = {:?}\ntls_key = {:?}\n",
                s(&cert.cert),
                s(&other.key)
            ),
            "server.tls_key",
            format!(
                "the key in {} does not match the certificate in {}",
                s(&other.key),
                s(&cert.cert)
            ),
        ),
    ];
    for (server, key, message) in cases {
        let e = parse(server.clone()).expect_err(&server);
        assert_eq!(e.key, key, "{server}: {e}");
        assert!(e.message.contains(&message), "{server}: {e}");
    }
    assert!(parse(server_toml(&cert)).unwrap().server.tls.is_some());
}

/// Over TLS (HTTP/1.1), a head hyper cannot parse gets hyper's own 400, with an id and a code
/// added above the encryption.
#[tokio::test]
async fn an_unparsable_head_over_tls_gets_an_id() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ca = TestCa::new();
    let cert = ca.server_cert("server");
    let aloud = Aloud::start(&format!(
        "[server]\n{}[[routes]]\nname = \"sim\"\nprefix = \"/sim\"\nupstream = \"builtin:simulator\"\napi = \"openai\"\n",
        server_toml(&cert)
    ))
    .await;
    let mut tls = tls_connect(aloud.addr, ca.client(&["http/1.1"])).await;
    tls.write_all(b"NOT HTTP AT ALL\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    let _ = timeout(DEADLINE, tls.read_to_end(&mut out)).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text:?}");
    assert!(text.contains("\r\naloud-request-id: "), "{text:?}");
    assert!(
        text.contains("\r\naloud-error-code: bad_request\r\n"),
        "{text:?}"
    );
    aloud.stop().await;
}
