//! `[telemetry]`: the OTLP endpoint, service name, sampling ratio, content capture and the
//! collector's extra headers, checked at load so a bad value never reaches the exporter.

use super::Ctx;
use crate::config::raw::RawTelemetry;
use crate::config::{ConfigError, Env, TelemetryConfig, defaults};
use http::Uri;

pub(super) fn telemetry(
    raw: RawTelemetry,
    ctx: &Ctx<'_>,
    env: &dyn Env,
) -> Result<TelemetryConfig, ConfigError> {
    let otlp_endpoint = match &raw.otlp_endpoint {
        None => None,
        Some(e) if e.get_ref().is_empty() => None,
        Some(e) => Some(
            endpoint(e.get_ref())
                .map_err(|m| ctx.err(Some(e.span()), "telemetry.otlp_endpoint", m))?,
        ),
    };
    let service_name = match raw.service_name {
        Some(s) if s.get_ref().trim().is_empty() => {
            return Err(ctx.err(
                Some(s.span()),
                "telemetry.service_name",
                "must not be empty",
            ));
        }
        Some(s) => s.into_inner(),
        None => defaults::SERVICE_NAME.to_owned(),
    };
    let sample = match &raw.sample {
        Some(s) if !(0.0..=1.0).contains(s.get_ref()) => {
            return Err(ctx.err(
                Some(s.span()),
                "telemetry.sample",
                "must be between 0.0 and 1.0",
            ));
        }
        Some(s) => *s.get_ref(),
        None => defaults::TELEMETRY_SAMPLE,
    };
    let headers = match &raw.headers_env {
        None => Vec::new(),
        Some(var) => {
            let text = env.var(var.get_ref()).ok_or_else(|| {
                ctx.err(
                    Some(var.span()),
                    "telemetry.headers_env",
                    format!("environment variable {} is unset", var.get_ref()),
                )
            })?;
            // The value is a secret: the message names the variable, never its text.
            parse_headers(&text).map_err(|m| {
                ctx.err(
                    Some(var.span()),
                    "telemetry.headers_env",
                    format!("environment variable {}: {m}", var.get_ref()),
                )
            })?
        }
    };
    Ok(TelemetryConfig {
        otlp_endpoint,
        service_name,
        sample,
        capture_content: raw.capture_content.unwrap_or(false),
        headers,
    })
}

/// The traces URL: `http(s)://host[:port]/path`, used as it is, like the OTel SDKs'
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`. A URL without a path gets `/v1/traces`, the path every
/// OTLP/HTTP collector serves, so a bare `http://collector:4318` works too.
pub fn endpoint(text: &str) -> Result<Uri, String> {
    let uri: Uri = text
        .parse()
        .map_err(|_| format!("{text:?} is not a URL like \"http://127.0.0.1:4318/v1/traces\""))?;
    let scheme = uri.scheme_str().unwrap_or("");
    if !matches!(scheme, "http" | "https") || uri.authority().is_none() {
        return Err(format!(
            "{text:?} must be an http:// or https:// URL like \"http://127.0.0.1:4318/v1/traces\""
        ));
    }
    if matches!(uri.path(), "" | "/") && uri.query().is_none() {
        let base = text.trim_end_matches('/');
        return format!("{base}/v1/traces")
            .parse()
            .map_err(|_| format!("{text:?} is not a valid URL"));
    }
    Ok(uri)
}

/// `name=value,name2=value2`, as `OTEL_EXPORTER_OTLP_HEADERS` writes them: values may be
/// percent-encoded (`Authorization=Basic%20...`); spaces around names and values are trimmed.
pub fn parse_headers(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for pair in text.split(',').filter(|p| !p.trim().is_empty()) {
        let (name, value) = pair
            .split_once('=')
            .ok_or("expected name=value pairs separated by commas")?;
        let name = name.trim().to_ascii_lowercase();
        let value = percent_decode(value.trim());
        if http::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(format!("{name:?} is not a header name"));
        }
        if http::HeaderValue::from_str(&value).is_err() {
            return Err(format!("the value of {name} is not a valid header value"));
        }
        out.push((name, value));
    }
    Ok(out)
}

/// `%XX` escapes decoded; anything else kept (a stray `%` stays as it is).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_used_as_written_and_a_bare_host_gets_the_traces_path() {
        let full = endpoint("https://cloud.langfuse.com/api/public/otel/v1/traces").unwrap();
        assert_eq!(full.path(), "/api/public/otel/v1/traces");
        assert_eq!(
            endpoint("http://127.0.0.1:4318").unwrap().to_string(),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(endpoint("http://h:4318/").unwrap().path(), "/v1/traces");
        assert!(endpoint("grpc://h:4317").is_err());
        assert!(endpoint("/v1/traces").is_err());
    }

    #[test]
    fn headers_read_like_otel_exporter_otlp_headers() {
        let h = parse_headers("Authorization=Basic%20YWJj , x-tenant = t1").unwrap();
        assert_eq!(
            h,
            [
                ("authorization".to_owned(), "Basic YWJj".to_owned()),
                ("x-tenant".to_owned(), "t1".to_owned())
            ]
        );
        assert!(parse_headers("no-equals").is_err());
        assert!(parse_headers("bad name=1").is_err());
        assert!(parse_headers("x=a%0Ab").is_err());
    }
}
