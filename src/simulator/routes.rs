//! HTTP edge: routes, body reading with a limit, the `x-sim-*` checks, and sending a plan.

use super::body::PlanBody;
use super::errors::{Family, error_plan};
use super::gemini::Framing;
use super::knobs::Knobs;
use super::plan::{Plan, SSE};
use super::script::Script;
use super::{chat, gemini, messages, ollama, replay, responses};
use crate::capture::CaptureRecord;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use http_body_util::{BodyExt, Limited};
use serde_json::Value;
use std::sync::Arc;

/// Request bodies above this size get a 413 in the api's envelope.
pub const BODY_LIMIT: usize = 32 * 1024 * 1024;

/// Where a call's script comes from: the seed, or one captured exchange replayed.
#[derive(Debug, Clone, Default)]
pub struct Source(Option<Arc<CaptureRecord>>);

impl Source {
    pub fn replay(record: CaptureRecord) -> Self {
        Self(Some(Arc::new(record)))
    }

    fn script(&self, model: Option<&str>, body_len: usize, knobs: Knobs) -> Script {
        match &self.0 {
            Some(record) => Script::from_record(record, model, body_len, knobs),
            None => Script::new(model, body_len, knobs),
        }
    }

    /// The replayed record's upstream error, answered instead of any content.
    fn error(&self, family: Family, knobs: &Knobs) -> Option<Plan> {
        self.0
            .as_deref()
            .and_then(|record| replay::error(record, family, knobs))
    }
}

pub fn router(source: Source) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/chat/completions", post(chat_completions))
        .route("/v1/responses", post(openai_responses))
        .route("/responses", post(openai_responses))
        .route("/v1/messages", post(anthropic_messages))
        .route("/v1beta/models/{*target}", post(gemini_generate))
        .route("/v1/models/{*target}", post(gemini_generate))
        .route("/api/chat", post(ollama_chat))
        .route("/api/generate", post(ollama_generate))
        .route("/api/tags", get(ollama_tags))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(source)
}

async fn chat_completions(State(src): State<Source>, headers: HeaderMap, body: Body) -> Response {
    run(Family::OpenAi, &src, &headers, body, |req, len, knobs| {
        let s = src.script(req["model"].as_str(), len, knobs);
        chat::plan(&s, chat::Options::from_request(req))
    })
    .await
}

async fn openai_responses(State(src): State<Source>, headers: HeaderMap, body: Body) -> Response {
    run(Family::OpenAi, &src, &headers, body, |req, len, knobs| {
        let s = src.script(req["model"].as_str(), len, knobs);
        responses::plan(&s, &responses::Options::from_request(req))
    })
    .await
}

async fn anthropic_messages(State(src): State<Source>, headers: HeaderMap, body: Body) -> Response {
    run(
        Family::Anthropic,
        &src,
        &headers,
        body,
        |req, len, knobs| {
            let s = src.script(req["model"].as_str(), len, knobs);
            messages::plan(&s, messages::Options::from_request(req))
        },
    )
    .await
}

async fn gemini_generate(
    State(src): State<Source>,
    Path(target): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some((model, method)) = gemini::parse_target(&target) else {
        return send(unknown(Family::Gemini, "POST", &target)).await;
    };
    let sse = query
        .as_deref()
        .is_some_and(|q| q.split('&').any(|kv| kv == "alt=sse"));
    let framing = match (method, sse) {
        ("generateContent", _) => Framing::Whole,
        ("streamGenerateContent", true) => Framing::Sse,
        ("streamGenerateContent", false) => Framing::Array,
        _ => return send(unknown(Family::Gemini, "POST", &target)).await,
    };
    let model = model.to_owned();
    run(Family::Gemini, &src, &headers, body, |req, len, knobs| {
        let s = src.script(Some(&model), len, knobs);
        gemini::plan(&s, framing, gemini::include_thoughts(req))
    })
    .await
}

async fn ollama_chat(State(src): State<Source>, headers: HeaderMap, body: Body) -> Response {
    ollama_endpoint(ollama::Endpoint::Chat, &src, headers, body).await
}

async fn ollama_generate(State(src): State<Source>, headers: HeaderMap, body: Body) -> Response {
    ollama_endpoint(ollama::Endpoint::Generate, &src, headers, body).await
}

async fn ollama_endpoint(
    endpoint: ollama::Endpoint,
    src: &Source,
    headers: HeaderMap,
    body: Body,
) -> Response {
    run(
        Family::Ollama,
        src,
        &headers,
        body,
        move |req, len, knobs| {
            let s = src.script(req["model"].as_str(), len, knobs);
            ollama::plan(&s, ollama::Options::from_request(endpoint, req))
        },
    )
    .await
}

async fn ollama_tags() -> Response {
    axum::Json(ollama::tags()).into_response()
}

async fn not_found(method: Method, uri: Uri) -> Response {
    send(unknown(family_of(uri.path()), method.as_str(), uri.path())).await
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let message = format!("method {method} is not allowed on {}", uri.path());
    send(error_plan(
        family_of(uri.path()),
        StatusCode::METHOD_NOT_ALLOWED,
        0,
        &message,
    ))
    .await
}

fn unknown(family: Family, method: &str, path: &str) -> Plan {
    let message = format!("the simulator has no route for {method} {path}");
    error_plan(family, StatusCode::NOT_FOUND, 0, &message)
}

/// Guesses the envelope for paths no route claimed.
fn family_of(path: &str) -> Family {
    if path.starts_with("/api/") {
        Family::Ollama
    } else if path.starts_with("/v1beta/") {
        Family::Gemini
    } else if path.starts_with("/v1/messages") {
        Family::Anthropic
    } else {
        Family::OpenAi
    }
}

/// Checks the overrides and the body, then builds and sends the plan (or the replayed error).
async fn run(
    family: Family,
    src: &Source,
    headers: &HeaderMap,
    body: Body,
    build: impl FnOnce(&Value, usize, Knobs) -> Plan,
) -> Response {
    let plan = match prepare(family, headers, body).await {
        Ok((req, len, knobs)) => match src.error(family, &knobs) {
            Some(error) => error,
            None => build(&req, len, knobs),
        },
        Err(plan) => plan,
    };
    send(plan).await
}

async fn prepare(
    family: Family,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Value, usize, Knobs), Plan> {
    let bad = |message: &str| error_plan(family, StatusCode::BAD_REQUEST, 0, message);
    let knobs = Knobs::from_headers(headers).map_err(|m| bad(&m))?;
    let bytes = match Limited::new(body, BODY_LIMIT).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            let message = format!(
                "request body over {}",
                crate::config::units::ShownSize(BODY_LIMIT as u64)
            );
            return Err(error_plan(
                family,
                StatusCode::PAYLOAD_TOO_LARGE,
                0,
                &message,
            ));
        }
        Err(error) => return Err(bad(&format!("could not read the request body: {error}"))),
    };
    if let Some(status) = knobs.status {
        let message = format!("simulated {} error (x-sim-status)", status.as_u16());
        return Err(error_plan(family, status, knobs.headers_ms, &message));
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(req) if req.is_object() => Ok((req, bytes.len(), knobs)),
        Ok(_) => Err(bad("the request body must be a JSON object")),
        Err(error) => Err(bad(&format!("the request body is not valid JSON: {error}"))),
    }
}

/// The timing edge for headers: waits `headers_ms`, then answers with a body that paces itself.
async fn send(plan: Plan) -> Response {
    if plan.headers_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(plan.headers_ms)).await;
    }
    let mut response = Response::new(Body::new(PlanBody::new(plan.frames)));
    *response.status_mut() = plan.status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(plan.content_type),
    );
    if plan.content_type == SSE {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    response
}
