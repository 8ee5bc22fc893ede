//! Who may use aloud's own endpoints when client tokens are set: the side channel and the
//! beacons take a token as `Aloud-Token`, `Authorization: Bearer`, or the `access_token` query
//! parameter (RFC 6750's name: a browser's `EventSource` and `sendBeacon` cannot send headers).
//!
//! Logs carry paths without their query, so an `access_token` never reaches them; the token is
//! turned into its [`Owner`] fingerprint here and not kept.

use crate::apis::Api;
use crate::config::Owner;
use crate::config::tokens;
use crate::proxy::error::{Origin, ProxyError};
use crate::proxy::headers::CLIENT_TOKEN_HEADER;
use axum::body::Body;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

/// The query parameter that carries a token (RFC 6750 §2.3).
pub const ACCESS_TOKEN_PARAM: &str = "access_token";

/// No valid client token came while client tokens are set.
#[derive(Debug)]
pub struct Unauthorized;

/// The owner the request's token stands for: `Ok(None)` when client tokens are off,
/// `Unauthorized` when they are on and no valid token came.
pub fn owner(
    tokens: &[String],
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Option<Owner>, Unauthorized> {
    if tokens.is_empty() {
        return Ok(None);
    }
    let from_headers = headers
        .get_all(CLIENT_TOKEN_HEADER)
        .iter()
        .chain(headers.get_all(header::AUTHORIZATION).iter())
        .filter_map(|v| v.to_str().ok())
        .map(|v| tokens::strip_bearer(v).to_owned());
    let from_query = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter_map(|kv| kv.strip_prefix(ACCESS_TOKEN_PARAM)?.strip_prefix('='))
        .map(tokens::percent_decode);
    from_headers
        .chain(from_query)
        .find_map(|t| tokens::find(&t, tokens))
        .map(Some)
        .ok_or(Unauthorized)
}

impl Unauthorized {
    /// 401 in aloud's error shape, with `WWW-Authenticate: Bearer`.
    pub fn into_response(self) -> Response<Body> {
        let mut r = ProxyError::new(
            StatusCode::UNAUTHORIZED,
            Origin::Downstream,
            "client_token_missing",
            "this aloud requires a client token: send it in Aloud-Token, as Authorization: Bearer, \
         or as the access_token query parameter",
        )
        .into_response(Api::OpenAi);
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        r
    }
}
