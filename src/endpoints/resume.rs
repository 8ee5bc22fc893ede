//! Resuming a kept answer (`on_disconnect = "finish"`), token-scoped like the side channel:
//! - `GET /aloud/v1/requests/{id}/stream?after=N`: the upstream's own bytes after event N, in
//!   its own content type, then live until the end;
//! - `GET /aloud/v1/requests/{id}/result`: the whole answer once it ended (the upstream's own
//!   bytes: a streamed answer comes back as its whole stream);
//! - `/aloud/v1/requests/{id}/resume/...`: any method and path below it answers like
//!   `/stream` (`?after=N` too), so an SDK whose base URL points there gets the answer again.
//!
//! An unknown id and one made with another token are both 404. A kept answer that overflowed
//! its bound is 410; one whose upstream failed is the bytes it got, then a cut transfer.

use crate::apis::Api;
use crate::apis::envelope;
use crate::app::App;
use crate::endpoints::auth;
use crate::progress::keep::{FollowError, Kept, KeptHead};
use axum::body::Body;
use bytes::Bytes;
use futures_util::stream;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use std::sync::Arc;

/// What a resume asks for.
enum Want {
    Stream,
    Result,
}

/// Whether `rest` (below `/aloud/v1/requests/`) is a resume path; the id and what it wants.
fn parse(rest: &str) -> Option<(&str, Want)> {
    let (id, what) = rest.split_once('/')?;
    match what {
        "stream" => Some((id, Want::Stream)),
        "result" => Some((id, Want::Result)),
        w if w == "resume" || w.starts_with("resume/") => Some((id, Want::Stream)),
        _ => None,
    }
}

/// True for the paths this module answers.
pub fn handles(rest: &str) -> bool {
    parse(rest).is_some()
}

/// Answers a resume path below `/aloud/v1/requests/`.
pub async fn answer(app: &App, req: Request<Incoming>, rest: &str) -> Response<Body> {
    let Some((id, want)) = parse(rest) else {
        return failure(
            Api::OpenAi,
            StatusCode::NOT_FOUND,
            "no_endpoint",
            "no such endpoint",
        );
    };
    let sdk = rest.contains("/resume");
    if !sdk && req.method() != Method::GET {
        return failure(
            Api::OpenAi,
            StatusCode::METHOD_NOT_ALLOWED,
            "method",
            "resumes are GET",
        );
    }
    let query = req.uri().query();
    let owner = match auth::owner(&app.server.client_tokens, req.headers(), query) {
        Ok(owner) => owner,
        Err(e) => return e.into_response(),
    };
    let Some(kept) = app.finishing.keeper.find(id, owner) else {
        return failure(
            Api::OpenAi,
            StatusCode::NOT_FOUND,
            "no_kept_answer",
            "no kept answer for this id: unknown, made with another token, not on a route with \
             on_disconnect = \"finish\", or past its retention",
        );
    };
    let after = match after(query) {
        Ok(n) => n,
        Err(m) => return failure(kept.api, StatusCode::BAD_REQUEST, "bad_after", &m),
    };
    kept.resumed(after);
    match want {
        Want::Stream => stream_after(kept, after).await,
        Want::Result => match kept.whole().await {
            Ok((head, chunks)) => {
                let body = Body::from_stream(stream::iter(
                    chunks.into_iter().map(Ok::<Bytes, std::io::Error>),
                ));
                with_head(&head, body)
            }
            Err(e) => follow_failure(kept.api, &e),
        },
    }
}

async fn stream_after(kept: Arc<Kept>, after: u64) -> Response<Body> {
    if let Err(e) = kept.start(after) {
        return follow_failure(kept.api, &e);
    }
    let head = match kept.head_when_known().await {
        Ok(h) => h,
        Err(e) => return follow_failure(kept.api, &e),
    };
    let follow = kept.follow(after);
    // A failure after the head cuts the transfer (no clean end), as the upstream's did.
    let body = stream::unfold(follow, |mut f| async move {
        let item = f.next().await?;
        if item.is_err() {
            // hyper holds the head and the bytes before them until the body waits, and a body
            // error drops what it holds: replaying an answer that already failed would be an
            // empty reply. Waiting once lets them go out, then the transfer is cut.
            tokio::task::yield_now().await;
        }
        Some((item.map_err(std::io::Error::other), f))
    });
    with_head(&head, Body::from_stream(body))
}

/// The upstream's status, content type and encoding.
fn with_head(head: &KeptHead, body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::from_u16(head.status).unwrap_or(StatusCode::OK);
    let h = r.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, &head.content_type),
        (header::CONTENT_ENCODING, &head.content_encoding),
    ] {
        if let Some(v) = value.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
            h.insert(name, v);
        }
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}

/// `?after=N`: events to skip (0 when absent).
fn after(query: Option<&str>) -> Result<u64, String> {
    let Some(q) = query else { return Ok(0) };
    match q.split('&').find_map(|kv| kv.strip_prefix("after=")) {
        None => Ok(0),
        Some(n) => n
            .parse()
            .map_err(|_| format!("after={n:?} is not an event count")),
    }
}

fn follow_failure(api: Api, e: &FollowError) -> Response<Body> {
    let status = match e {
        FollowError::Overflow(_) => StatusCode::GONE,
        FollowError::Failed(_) => StatusCode::BAD_GATEWAY,
        FollowError::Beyond { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
    };
    failure(api, status, e.code(), &e.to_string())
}

/// An error in `api`'s envelope, with its `code` in the body and in `Aloud-Error-Code`.
fn failure(api: Api, status: StatusCode, code: &'static str, message: &str) -> Response<Body> {
    let mut body = envelope::error_body(api, status, message);
    match body.get_mut("error").and_then(|e| e.as_object_mut()) {
        // Gemini's `code` is the numeric status: the name goes beside it.
        Some(err) if err.get("code").is_some_and(|c| c.is_number()) => {
            err.insert("aloud_code".into(), code.into());
        }
        Some(err) => {
            err.insert("code".into(), code.into());
        }
        None => {
            if let Some(obj) = body.as_object_mut() {
                obj.insert("code".into(), code.into());
            }
        }
    }
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        crate::proxy::error::ERROR_CODE,
        HeaderValue::from_static(code),
    );
    r.headers_mut()
        .insert("x-should-retry", HeaderValue::from_static("false"));
    r
}
