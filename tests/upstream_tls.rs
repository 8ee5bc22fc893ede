//! Upstream TLS: a private CA trusted through `ca_file` (and refused without it), mTLS with
//! `client_cert`/`client_key`, the key formats read, and the config errors, all against a
//! local HTTPS upstream whose CA the test makes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

mod support;

use aloud::config::{Config, MapEnv};
use http::{Request, Response};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::path::Path;
use support::certs::TestCa;
use support::https_upstream::HttpsUpstream;
use support::*;

/// A path as a TOML string.
fn q(p: &Path) -> String {
    format!("{:?}", p.to_str().unwrap())
}

fn https_route(up: SocketAddr, route_extra: &str, top: &str) -> String {
    format!(
        "{top}\n[[routes]]\nname = \"up\"\nprefix = \"/up\"\nupstream = \"https://{up}\"\napi = \"openai\"\nprogress = \"off\"\ncapture = \"off\"\n{route_extra}\n"
    )
}

async fn hello(_req: Request<Incoming>) -> Response<BoxBody> {
    response(
        200,
        &[("content-type", "text/plain")],
        full("hello over tls"),
    )
}

async fn text(r: Response<Incoming>) -> (u16, String) {
    let status = r.status().as_u16();
    (
        status,
        String::from_utf8(body_bytes(r).await.to_vec()).unwrap(),
    )
}

#[tokio::test]
async fn a_private_ca_is_trusted_through_ca_file_and_not_without_it() {
    let ca = TestCa::new("private-ca");
    let leaf = ca.issue("upstream", &["127.0.0.1"], false);
    let up = HttpsUpstream::start(
        TestCa::server_config(&leaf, &[b"http/1.1"], None),
        None,
        hello,
    )
    .await;

    let route = Aloud::start(&https_route(
        up.addr,
        &format!("ca_file = {}", q(&ca.ca_file)),
        "",
    ))
    .await;
    let (status, body) = text(get(&route.url("/up/x")).await).await;
    assert_eq!((status, body.as_str()), (200, "hello over tls"));

    let section = Aloud::start(&https_route(
        up.addr,
        "",
        &format!("[upstream]\nca_file = {}", q(&ca.ca_file)),
    ))
    .await;
    assert_eq!(text(get(&section.url("/up/x")).await).await.0, 200);

    let untrusted = Aloud::start(&https_route(up.addr, "", "")).await;
    let (status, body) = text(get(&untrusted.url("/up/x")).await).await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("TLS with the upstream failed"), "{body}");
    assert!(body.contains("UnknownIssuer"), "{body}");
    assert!(
        body.contains("ca_file"),
        "the message says what to do: {body}"
    );
    assert_eq!(
        up.seen.connections(),
        2,
        "the untrusted one never completed a handshake"
    );
}

#[tokio::test]
async fn mtls_presents_the_client_certificate_and_fails_clearly_without_it() {
    let ca = TestCa::new("gateway-ca");
    let leaf = ca.issue("gateway", &["127.0.0.1"], false);
    let client = ca.issue("aloud-client", &["aloud.test"], true);
    let config = TestCa::server_config(&leaf, &[b"h2", b"http/1.1"], Some(&ca));
    let up = HttpsUpstream::start(config, None, hello).await;

    let with = Aloud::start(&https_route(
        up.addr,
        &format!(
            "ca_file = {}\nclient_cert = {}\nclient_key = {}",
            q(&ca.ca_file),
            q(&client.cert_file),
            q(&client.key_file)
        ),
        "",
    ))
    .await;
    let (status, body) = text(get(&with.url("/up/x")).await).await;
    assert_eq!((status, body.as_str()), (200, "hello over tls"));
    assert_eq!(*up.seen.client_certs.lock().unwrap(), [true]);

    let without = Aloud::start(&https_route(
        up.addr,
        &format!("ca_file = {}", q(&ca.ca_file)),
        "",
    ))
    .await;
    let (status, body) = text(get(&without.url("/up/x")).await).await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body.contains("client_cert"),
        "the message says what to do: {body}"
    );
    assert_eq!(
        up.seen.connections(),
        1,
        "only the client with a certificate got in"
    );
}

#[test]
fn client_keys_load_as_pkcs8_rsa_and_ec() {
    let ca = TestCa::new("keys-ca");
    let pkcs8 = ca.issue("pkcs8", &["aloud.test"], true);
    let fixtures = Path::new("tests/fixtures/tls");
    for (cert, key) in [
        (pkcs8.cert_file.clone(), pkcs8.key_file.clone()),
        (fixtures.join("rsa.crt"), fixtures.join("rsa_pkcs1.key")),
        (fixtures.join("ec.crt"), fixtures.join("ec_sec1.key")),
    ] {
        let toml = https_route(
            "127.0.0.1:1".parse().unwrap(),
            &format!("client_cert = {}\nclient_key = {}", q(&cert), q(&key)),
            "",
        );
        let config = Config::parse(&toml, Path::new("t.toml"), &MapEnv::default())
            .unwrap_or_else(|e| panic!("{}: {e}", key.display()));
        let id = config.routes[0].connect.identity.as_ref().unwrap();
        assert_eq!(id.certs.len(), 1);
    }
}

fn parse_err(toml: &str) -> String {
    Config::parse(toml, Path::new("t.toml"), &MapEnv::default())
        .unwrap_err()
        .to_string()
}

#[test]
fn tls_config_errors_name_the_key_and_the_problem() {
    let ca = TestCa::new("errors-ca");
    let a = ca.issue("a", &["aloud.test"], true);
    let b = ca.issue("b", &["aloud.test"], true);
    let up: SocketAddr = "127.0.0.1:1".parse().unwrap();

    let e = parse_err(&https_route(
        up,
        &format!("client_cert = {}", q(&a.cert_file)),
        "",
    ));
    assert!(
        e.contains("routes[0].client_cert") && e.contains("set both"),
        "{e}"
    );
    let e = parse_err(&https_route(
        up,
        "",
        &format!("[upstream]\nclient_key = {}", q(&a.key_file)),
    ));
    assert!(
        e.contains("upstream.client_key") && e.contains("set both"),
        "{e}"
    );

    let e = parse_err(&https_route(
        up,
        &format!(
            "client_cert = {}\nclient_key = {}",
            q(&a.cert_file),
            q(&b.key_file)
        ),
        "",
    ));
    assert!(e.contains("do not make a usable pair"), "{e}");

    let e = parse_err(&https_route(up, "ca_file = \"/nonexistent/ca.pem\"", ""));
    assert!(
        e.contains("routes[0].ca_file") && e.contains("/nonexistent/ca.pem"),
        "{e}"
    );

    // A key file is no certificate file.
    let e = parse_err(&https_route(
        up,
        &format!("ca_file = {}", q(&a.key_file)),
        "",
    ));
    assert!(e.contains("holds no PEM certificate"), "{e}");

    // A route's own pair wins over [upstream]'s, and a route's ca_file over [upstream]'s.
    let toml = https_route(
        up,
        &format!(
            "client_cert = {}\nclient_key = {}",
            q(&b.cert_file),
            q(&b.key_file)
        ),
        &format!(
            "[upstream]\nclient_cert = {}\nclient_key = {}",
            q(&a.cert_file),
            q(&a.key_file)
        ),
    );
    let config = Config::parse(&toml, Path::new("t.toml"), &MapEnv::default()).unwrap();
    let id = config.routes[0].connect.identity.as_ref().unwrap();
    assert_eq!(id.certs[0], b.cert);
}
