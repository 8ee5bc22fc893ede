//! Without `[admin] token_env`, the dashboard answers only requests addressed to an IP address
//! or `localhost`: a web page whose own name was rebound to 127.0.0.1 (DNS rebinding) would
//! otherwise read the requests in flight, whose ids open their side channel and kept answers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

mod support;

use http::{Request, StatusCode};
use support::*;

async fn live(aloud: &Aloud, host: &str) -> StatusCode {
    let req = Request::get(aloud.admin_url("/dashboard/api/live"))
        .header("host", host)
        .body(full(""))
        .unwrap();
    send(req).await.status()
}

#[tokio::test]
async fn without_a_token_the_dashboard_answers_only_loopback_names_and_addresses() {
    let aloud = Aloud::start(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[[routes]]\nname = \"sim\"\nprefix = \"/sim\"\n\
         upstream = \"builtin:simulator\"\napi = \"openai\"\n",
    )
    .await;
    let port = aloud.admin.unwrap().port();
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        "10.0.0.7".to_owned(),
    ] {
        assert_eq!(live(&aloud, &host).await, StatusCode::OK, "{host}");
    }
    for host in [
        format!("rebound.example:{port}"),
        "attacker.test".to_owned(),
        format!("127.0.0.1.nip.io:{port}"),
    ] {
        assert_eq!(live(&aloud, &host).await, StatusCode::FORBIDDEN, "{host}");
    }
    // The page itself too.
    let page = Request::get(aloud.admin_url("/dashboard"))
        .header("host", "rebound.example")
        .body(full(""))
        .unwrap();
    assert_eq!(send(page).await.status(), StatusCode::FORBIDDEN);
}

/// With a token, the name does not matter: a rebound page has neither the token nor the cookie
/// (its cookie jar is its own name's).
#[tokio::test]
async fn with_a_token_any_name_may_ask_with_it() {
    let env = aloud::config::MapEnv::default().with("ADMIN_TOKEN", "t0ken");
    let aloud = Aloud::start_with_env(
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_env = \"ADMIN_TOKEN\"\n[[routes]]\n\
         name = \"sim\"\nprefix = \"/sim\"\nupstream = \"builtin:simulator\"\napi = \"openai\"\n",
        env,
    )
    .await;
    let req = Request::get(aloud.admin_url("/dashboard/api/live"))
        .header("host", "aloud.internal:9787")
        .header("authorization", "Bearer t0ken")
        .body(full(""))
        .unwrap();
    assert_eq!(send(req).await.status(), StatusCode::OK);
    assert_eq!(
        live(&aloud, "aloud.internal:9787").await,
        StatusCode::UNAUTHORIZED
    );
}
