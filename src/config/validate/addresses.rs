//! Where routes and browsers are: route prefixes, upstream URLs and CORS origins.

use super::Ctx;
use crate::config::{BUILTIN_SIMULATOR, ConfigError, HttpUpstream, Upstream};
use toml::Spanned;

/// Paths that aloud answers itself; no route may claim them.
const RESERVED: [&str; 2] = ["/aloud", "/healthz"];

pub(super) fn check_prefix(
    p: &Spanned<String>,
    ctx: &Ctx<'_>,
    key: &str,
) -> Result<String, ConfigError> {
    let prefix = p.get_ref();
    let bad = |m: String| Err(ctx.err(Some(p.span()), key, m));
    if !prefix.starts_with('/') {
        return bad(format!("prefix {prefix:?} must start with '/'"));
    }
    if prefix.len() > 1 && prefix.ends_with('/') {
        return bad(format!(
            "prefix {prefix:?} must not end with '/' (write {:?})",
            prefix.trim_end_matches('/')
        ));
    }
    if prefix.contains(['?', '#', ' ', '%']) || prefix.contains("//") {
        return bad(format!(
            "prefix {prefix:?} must be a plain path (no '?', '#', '%', spaces or '//')"
        ));
    }
    // What the request path check refuses, no request could reach.
    if let Err(e) = crate::request_path::check(prefix) {
        return bad(format!(
            "prefix {prefix:?} must not hold '.' or '..' segments or separators that aloud \
             refuses in request paths ({e}): no request could reach this route"
        ));
    }
    if let Some(r) = RESERVED
        .iter()
        .find(|r| overlaps(r, prefix) && prefix != "/")
    {
        return bad(format!(
            "prefix {prefix:?} is reserved: aloud serves {r} itself"
        ));
    }
    Ok(prefix.clone())
}

/// Whether two prefixes can match the same path (segment boundaries; "/" matches everything).
pub(super) fn overlaps(a: &str, b: &str) -> bool {
    let under = |long: &str, short: &str| {
        short == "/"
            || long == short
            || (long.starts_with(short) && long.as_bytes().get(short.len()) == Some(&b'/'))
    };
    under(a, b) || under(b, a)
}

/// A `[cors] origins` entry: `*`, or an origin as browsers send it (`scheme://host[:port]`,
/// nothing after it); anything else would never match.
pub(super) fn check_origin(o: &Spanned<String>, ctx: &Ctx<'_>) -> Result<String, ConfigError> {
    let text = o.get_ref();
    if text == "*" {
        return Ok(text.clone());
    }
    let bad = |why: &str| {
        Err(ctx.err(
            Some(o.span()),
            "cors.origins",
            format!("{text:?} {why}: an origin is scheme://host[:port], as browsers send it"),
        ))
    };
    let Ok(uri) = text.parse::<http::Uri>() else {
        return bad("is not an origin");
    };
    if uri.scheme().is_none() || uri.authority().is_none() {
        return bad("is not an origin");
    }
    if text.ends_with('/') {
        return bad("ends with '/', which a browser's Origin never does");
    }
    if uri.path_and_query().is_some_and(|pq| pq.as_str() != "/") {
        return bad("has a path");
    }
    Ok(text.clone())
}

pub(super) fn parse_upstream(u: &Spanned<String>) -> Result<Upstream, String> {
    let text = u.get_ref();
    if text == BUILTIN_SIMULATOR {
        return Ok(Upstream::Simulator);
    }
    let uri: http::Uri = text
        .parse()
        .map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    let scheme = uri
        .scheme()
        .cloned()
        .ok_or_else(|| format!("{text:?} needs a scheme: http:// or https://"))?;
    if scheme != http::uri::Scheme::HTTP && scheme != http::uri::Scheme::HTTPS {
        return Err(format!(
            "{text:?}: only http:// and https:// upstreams (or {BUILTIN_SIMULATOR}) are supported"
        ));
    }
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| format!("{text:?} needs a host"))?;
    if authority.as_str().contains('@') {
        return Err(format!(
            "{text:?}: put credentials in api_key_env, not in the URL"
        ));
    }
    if uri.query().is_some() {
        return Err(format!(
            "{text:?}: an upstream URL cannot carry a query string"
        ));
    }
    let base_path = uri.path().trim_end_matches('/').to_owned();
    if let Err(e) = crate::request_path::check(&base_path) {
        return Err(format!(
            "{text:?}: the base path must not hold what aloud refuses in request paths ({e}); \
             write the path it stands for"
        ));
    }
    Ok(Upstream::Http(HttpUpstream {
        scheme,
        authority,
        base_path,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_respects_segments() {
        assert!(overlaps("/openai", "/openai"));
        assert!(overlaps("/openai", "/openai/v1"));
        assert!(!overlaps("/openai", "/openaix"));
        assert!(overlaps("/", "/x"));
    }
}
