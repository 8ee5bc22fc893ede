//! Egress through an HTTP CONNECT proxy: the `proxy` key (with credentials), `HTTPS_PROXY` and
//! `HTTP_PROXY` from the (injected) environment, `NO_PROXY` bypass, and a refusing proxy, all
//! against local servers with a CA the test makes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

mod support;

use aloud::config::MapEnv;
use http::{Request, Response};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::path::Path;
use support::certs::TestCa;
use support::connect_proxy::ConnectProxy;
use support::https_upstream::HttpsUpstream;
use support::*;

fn q(p: &Path) -> String {
    format!("{:?}", p.to_str().unwrap())
}

/// One serving thread: each thread keeps its own upstream connections, and the counts below
/// are of one pool.
fn route(upstream: &str, extra: &str) -> String {
    format!(
        "[server]\nworkers = 1\n[[routes]]\nname = \"up\"\nprefix = \"/up\"\nupstream = \"{upstream}\"\napi = \"openai\"\nprogress = \"off\"\ncapture = \"off\"\n{extra}\n"
    )
}

/// Answers with the request's `proxy-authorization` header, or "none".
async fn echo_proxy_auth(req: Request<Incoming>) -> Response<BoxBody> {
    let seen = req
        .headers()
        .get("proxy-authorization")
        .map_or("none".to_owned(), |v| v.to_str().unwrap().to_owned());
    response(200, &[], full(seen))
}

async fn https_upstream(ca: &TestCa) -> HttpsUpstream {
    let leaf = ca.issue("upstream", &["127.0.0.1"], false);
    HttpsUpstream::start(
        TestCa::server_config(&leaf, &[b"h2", b"http/1.1"], None),
        None,
        echo_proxy_auth,
    )
    .await
}

async fn text(url: &str) -> (u16, String) {
    let r = get(url).await;
    let status = r.status().as_u16();
    (
        status,
        String::from_utf8(body_bytes(r).await.to_vec()).unwrap(),
    )
}

fn target(addr: SocketAddr) -> String {
    format!("127.0.0.1:{}", addr.port())
}

#[tokio::test]
async fn the_proxy_key_tunnels_with_its_credentials_on_the_connect_only() {
    let ca = TestCa::new("egress-ca");
    let up = https_upstream(&ca).await;
    // base64("user:p@ss")
    let proxy = ConnectProxy::start(Some("Basic dXNlcjpwQHNz")).await;
    let aloud = Aloud::start(&route(
        &format!("https://{}", up.addr),
        &format!(
            "ca_file = {}\nproxy = \"http://user:p%40ss@{}\"",
            q(&ca.ca_file),
            proxy.addr
        ),
    ))
    .await;
    let (status, body) = text(&aloud.url("/up/x")).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "none"),
        "no credentials reach the upstream"
    );
    assert_eq!(proxy.tunnels.targets(), [target(up.addr)]);
    assert_eq!(
        proxy.tunnels.auths(),
        [Some("Basic dXNlcjpwQHNz".to_owned())]
    );
    assert_eq!(up.seen.connections(), 1);
}

#[tokio::test]
async fn https_proxy_from_the_environment_and_no_proxy_bypass() {
    let ca = TestCa::new("env-ca");
    let up = https_upstream(&ca).await;
    let proxy = ConnectProxy::start(None).await;
    let toml = route(
        &format!("https://{}", up.addr),
        &format!("ca_file = {}", q(&ca.ca_file)),
    );

    let env = MapEnv::default().with("HTTPS_PROXY", &proxy.url());
    let proxied = Aloud::start_with_env(&toml, env).await;
    assert_eq!(text(&proxied.url("/up/x")).await.0, 200);
    assert_eq!(proxy.tunnels.targets(), [target(up.addr)]);

    let env = MapEnv::default()
        .with("https_proxy", &proxy.url())
        .with("no_proxy", "example.com, 127.0.0.0/8");
    let bypassed = Aloud::start_with_env(&toml, env).await;
    assert_eq!(text(&bypassed.url("/up/x")).await.0, 200);
    assert_eq!(proxy.tunnels.targets().len(), 1, "NO_PROXY went direct");
    assert_eq!(up.seen.connections(), 2);

    // `proxy = ""` on a route goes direct whatever the environment says.
    let env = MapEnv::default().with("HTTPS_PROXY", &proxy.url());
    let direct = Aloud::start_with_env(
        &route(
            &format!("https://{}", up.addr),
            &format!("ca_file = {}\nproxy = \"\"", q(&ca.ca_file)),
        ),
        env,
    )
    .await;
    assert_eq!(text(&direct.url("/up/x")).await.0, 200);
    assert_eq!(proxy.tunnels.targets().len(), 1);
}

#[tokio::test]
async fn a_plain_http_upstream_goes_through_the_tunnel_on_its_port() {
    let up = Upstream::start(|_req| async { response(200, &[], full("plain")) }).await;
    let proxy = ConnectProxy::start(None).await;
    let env = MapEnv::default()
        .with("HTTP_PROXY", &proxy.url())
        // Only HTTPS_PROXY's upstreams would use this one.
        .with("HTTPS_PROXY", "http://127.0.0.1:1");
    let aloud = Aloud::start_with_env(&route(&format!("http://{}", up.addr), ""), env).await;
    assert_eq!(text(&aloud.url("/up/x")).await, (200, "plain".to_owned()));
    assert_eq!(proxy.tunnels.targets(), [target(up.addr)]);
}

#[tokio::test]
async fn a_refusing_or_absent_proxy_is_a_502_that_names_it() {
    let ca = TestCa::new("refused-ca");
    let up = https_upstream(&ca).await;
    let proxy = ConnectProxy::start(Some("Basic c2VjcmV0")).await;
    let aloud = Aloud::start(&route(
        &format!("https://{}", up.addr),
        &format!("ca_file = {}\nproxy = \"{}\"", q(&ca.ca_file), proxy.url()),
    ))
    .await;
    let (status, body) = text(&aloud.url("/up/x")).await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body.contains(&format!("egress proxy {}", proxy.url())),
        "{body}"
    );
    assert!(body.contains("proxy authorization required"), "{body}");
    assert_eq!(up.seen.connections(), 0);

    // A proxy that is not there: nothing listens on its port.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = listener.local_addr().unwrap();
    drop(listener);
    let aloud = Aloud::start(&route(
        &format!("https://{}", up.addr),
        &format!("ca_file = {}\nproxy = \"http://{closed}\"", q(&ca.ca_file)),
    ))
    .await;
    let (status, body) = text(&aloud.url("/up/x")).await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body.contains(&format!("egress proxy http://{closed}")),
        "{body}"
    );
}
