//! The dashboard's files, embedded in the binary: the page, its script and styles, and the
//! vendored uPlot (assets/uplot/, with its licence). uPlot's URLs carry its version, so they are
//! cached for a year; the page's own files are revalidated.

use axum::body::Body;
use http::{HeaderValue, Response, StatusCode, header};

/// The vendored uPlot's version; assets/uplot/README.md says how to update it.
pub const UPLOT_VERSION: &str = "1.6.32";

const PAGE: &[u8] = include_bytes!("../../../assets/dashboard/index.html");
const SCRIPT: &[u8] = include_bytes!("../../../assets/dashboard/dashboard.js");
const STYLE: &[u8] = include_bytes!("../../../assets/dashboard/dashboard.css");
const UPLOT_JS: &[u8] = include_bytes!("../../../assets/uplot/uPlot.iife.min.js");
const UPLOT_CSS: &[u8] = include_bytes!("../../../assets/uplot/uPlot.min.css");
const UPLOT_LICENSE: &[u8] = include_bytes!("../../../assets/uplot/LICENSE");

/// Only the dashboard's own origin: no inline script, no other hosts. uPlot sizes its
/// elements through `style` properties, which a `style-src 'self'` allows.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                      img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
                      frame-ancestors 'none'; form-action 'none'";

const IMMUTABLE: &str = "private, max-age=31536000, immutable";
const REVALIDATE: &str = "private, no-cache";

/// The embedded file at `path` (below `/dashboard`), if there is one.
pub fn file(path: &str) -> Option<Response<Body>> {
    let uplot = |ext: &str| format!("/uplot-{UPLOT_VERSION}.min.{ext}");
    let page = matches!(path, "" | "/");
    let (bytes, kind, cache) = match path {
        "" | "/" => (PAGE, "text/html; charset=utf-8", "no-store"),
        "/dashboard.js" => (SCRIPT, "text/javascript; charset=utf-8", REVALIDATE),
        "/dashboard.css" => (STYLE, "text/css; charset=utf-8", REVALIDATE),
        "/uplot.LICENSE.txt" => (UPLOT_LICENSE, "text/plain; charset=utf-8", IMMUTABLE),
        p if p == uplot("js") => (UPLOT_JS, "text/javascript; charset=utf-8", IMMUTABLE),
        p if p == uplot("css") => (UPLOT_CSS, "text/css; charset=utf-8", IMMUTABLE),
        _ => return None,
    };
    let mut r = Response::new(Body::from(bytes));
    *r.status_mut() = StatusCode::OK;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if page {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(POLICY),
        );
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uplot_is_served_under_its_version_with_a_long_cache() {
        let r = file(&format!("/uplot-{UPLOT_VERSION}.min.js")).unwrap();
        assert_eq!(r.headers()[header::CACHE_CONTROL], IMMUTABLE);
        assert!(file("/uplot-0.0.0.min.js").is_none());
        let page = file("").unwrap();
        assert!(page.headers().contains_key(header::CONTENT_SECURITY_POLICY));
        assert!(
            std::str::from_utf8(PAGE)
                .unwrap()
                .contains(&format!("uplot-{UPLOT_VERSION}.min.js")),
            "the page asks for the vendored version"
        );
    }
}
