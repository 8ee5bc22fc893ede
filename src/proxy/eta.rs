//! The exchange's ETA key: learnt from its request once the body went upstream whole (the
//! route, and what `apis::traits` reads from the kept bytes, in place).

use super::RouteRuntime;
use super::body::RequestTap;
use crate::progress::eta::{Key, KeySource, input_bucket};
use http::Method;
use std::sync::Arc;

/// The largest request body whose model and effort the ETA key reads (as `apis::usage` bounds
/// what it parses of an answer).
const MAX_PARSED: usize = 256 << 10;

/// How an exchange learns its ETA key once its request body went upstream: the route, and
/// what the request says (`apis::traits`), read in place from the tap.
pub(super) fn key_source(
    rt: &RouteRuntime,
    method: &Method,
    path_and_query: &str,
    tap: &Arc<RequestTap>,
) -> KeySource {
    let (route, api, method) = (Arc::clone(&rt.name), rt.route.api, method.clone());
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (path_and_query.to_owned(), None),
    };
    let tap = Arc::clone(tap);
    Box::new(move || {
        let traits = tap.with_whole_body(|body| {
            // This runs between the upstream's head and the client's: a body past the bound
            // is not parsed (about 140 µs a MiB), and its key falls back to what the path
            // says, the coarser levels the estimator already knows how to use.
            let body = parsed(body);
            crate::apis::traits::read(api, method.as_str(), &path, query.as_deref(), body)
        })?;
        Some(Key {
            route: Arc::clone(&route),
            model: traits.model.map(Arc::from),
            streams: traits.streams,
            effort: traits.effort.map(Arc::from),
            input: input_bucket(tap.bytes_in()),
        })
    })
}

/// The part of a request body the ETA key reads: all of it, unless it is empty or past
/// [`MAX_PARSED`].
fn parsed(body: &[u8]) -> Option<&[u8]> {
    (!body.is_empty() && body.len() <= MAX_PARSED).then_some(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_past_the_bound_is_not_parsed() {
        let at = vec![b' '; MAX_PARSED];
        let past = vec![b' '; MAX_PARSED + 1];
        assert!(parsed(&at).is_some());
        assert!(parsed(&past).is_none());
        assert!(parsed(b"").is_none());
    }
}
