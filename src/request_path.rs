//! The request path, checked before routing: a path that could climb out of a route's upstream
//! base path (dot-segments, empty segments, encoded separators) is refused, never rewritten.
//!
//! Why refuse rather than resolve: the route's prefix is removed and the rest appended to the
//! upstream's base path byte for byte, and upstreams differ in what they decode (`%2e`, `%2f`,
//! `\`, Tomcat's `..;`). No model API uses any of these shapes, so a path that has one is either
//! a client bug or an attack, and a 400 tells both. Legitimate paths pass unchanged, including
//! `/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse` and a trailing slash.

/// Why a path was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path must start with '/'")]
    NotAbsolute,
    #[error("the path has a dot-segment (\".\" or \"..\", also percent-encoded)")]
    DotSegment,
    #[error("the path has an empty segment (\"//\")")]
    EmptySegment,
    #[error("the path has an encoded slash or a backslash (\"%2F\", \"%5C\", \"\\\")")]
    Separator,
}

/// Checks `path` (without its query). `Ok` means it is forwarded exactly as it came.
pub fn check(path: &str) -> Result<(), PathError> {
    if plain(path) {
        return Ok(());
    }
    check_segments(path)
}

/// Whether `path` has nothing the segment rules look at (nearly every request's path): it is
/// absolute, and holds no `%`, no `\`, no `//` and no segment that starts with a dot. Such a
/// path passes [`check_segments`]; one byte loop is cheaper than splitting it into segments.
fn plain(path: &str) -> bool {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return false;
    }
    let mut prev = 0;
    bytes.iter().all(|&c| {
        let ok = match c {
            b'%' | b'\\' => false,
            b'/' | b'.' => prev != b'/',
            _ => true,
        };
        prev = c;
        ok
    })
}

fn check_segments(path: &str) -> Result<(), PathError> {
    if path.is_empty() {
        // Authority-form (CONNECT) has no path; there is nothing to climb out of.
        return Ok(());
    }
    let Some(segments) = path.strip_prefix('/') else {
        return Err(PathError::NotAbsolute);
    };
    let mut segments = segments.split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        check_segment(segment, last)?;
    }
    Ok(())
}

fn check_segment(segment: &str, last: bool) -> Result<(), PathError> {
    if segment.is_empty() {
        // "/" alone and one trailing slash are ordinary; "//" anywhere is not.
        return if last {
            Ok(())
        } else {
            Err(PathError::EmptySegment)
        };
    }
    if segment.contains('\\') || contains_encoded(segment, b'/') || contains_encoded(segment, b'\\')
    {
        return Err(PathError::Separator);
    }
    // Some servers read "..;x" as ".." (path parameters): judge the part before any ';'.
    let name = segment.split(';').next().unwrap_or(segment);
    if is_dots(name) {
        return Err(PathError::DotSegment);
    }
    Ok(())
}

/// Whether `segment` holds `%XX` encoding `byte` (either hex case).
fn contains_encoded(segment: &str, byte: u8) -> bool {
    segment
        .as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && hex(w[1], w[2]) == Some(byte))
}

/// Whether `name` decodes to "." or ".." (each dot literal or `%2e`/`%2E`).
fn is_dots(name: &str) -> bool {
    let mut rest = name.as_bytes();
    let mut dots = 0;
    while !rest.is_empty() {
        match rest {
            [b'.', tail @ ..] => rest = tail,
            [b'%', a, b, tail @ ..] if hex(*a, *b) == Some(b'.') => rest = tail,
            _ => return false,
        }
        dots += 1;
    }
    (1..=2).contains(&dots)
}

fn hex(hi: u8, lo: u8) -> Option<u8> {
    let digit = |c: u8| (c as char).to_digit(16);
    Some((digit(hi)? * 16 + digit(lo)?) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn legitimate_paths_pass_unchanged() {
        for path in [
            "",
            "/",
            "/v1/chat/completions",
            "/v1/responses/resp_123",
            "/v1beta/models/gemini-2.5-pro:streamGenerateContent",
            "/v1beta/tunedModels/my-model-1:generateContent",
            "/openai/deployments/gpt-4o/chat/completions",
            "/api/chat",
            "/v1/models/",
            "/v1/files/file-abc.jsonl",
            "/a/.well-known/x",
            "/a/...",
            "/a/..b",
            "/a/%2e%2e%2e",
            "/a/file%2ename",
            "/a/%20space",
            "/a/%zz",
            "/a/%",
        ] {
            assert_eq!(check(path), Ok(()), "{path:?}");
        }
    }

    #[test]
    fn escapes_are_refused() {
        use PathError::*;
        for (path, want) in [
            ("*", NotAbsolute),
            ("v1/x", NotAbsolute),
            ("/..", DotSegment),
            ("/.", DotSegment),
            ("/route/../../admin/keys", DotSegment),
            ("/route/./x", DotSegment),
            ("/route/x/..", DotSegment),
            ("/route/%2e%2e/admin", DotSegment),
            ("/route/%2E%2E/admin", DotSegment),
            ("/route/.%2e/admin", DotSegment),
            ("/route/%2E./admin", DotSegment),
            ("/route/%2e/admin", DotSegment),
            ("/route/..;/admin", DotSegment),
            ("/route/..;x=1/admin", DotSegment),
            ("//admin", EmptySegment),
            ("/route//admin", EmptySegment),
            ("/route/x//", EmptySegment),
            ("/route/%2f../admin", Separator),
            ("/route/..%2fadmin", Separator),
            ("/route/..%2Fadmin", Separator),
            ("/route/..%5cadmin", Separator),
            ("/route/..%5Cadmin", Separator),
            ("/route/..\\admin", Separator),
        ] {
            assert_eq!(check(path), Err(want), "{path:?}");
        }
    }

    /// How a lenient upstream might read a path: `%2e`, `%2f`, `%5c` decoded, `\` as `/`,
    /// `;params` dropped, then RFC 3986 dot-segment removal. Returns the segments, or `None`
    /// if a `..` climbed above the first segment (the base path).
    fn lenient_resolve(path: &str) -> Option<Vec<String>> {
        let decoded = path
            .replace("%2e", ".")
            .replace("%2E", ".")
            .replace("%2f", "/")
            .replace("%2F", "/")
            .replace("%5c", "/")
            .replace("%5C", "/")
            .replace('\\', "/");
        let mut out: Vec<String> = Vec::new();
        for seg in decoded.split('/') {
            match seg.split(';').next().unwrap_or(seg) {
                "" | "." => {}
                ".." if out.len() <= 1 => return None,
                ".." => {
                    out.pop();
                }
                _ => out.push(seg.to_owned()),
            }
        }
        Some(out)
    }

    fn piece() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "a", "v1", "/", "//", ".", "..", "%2e", "%2E", "%2e%2e", ".%2E", "%2f", "%2F", "%5c",
            "\\", ";", "..;", "x;y", "%", "%2", "e",
        ])
    }

    proptest! {
        /// The fast path only passes what the segment rules pass.
        #[test]
        fn a_plain_path_passes_the_segment_rules(pieces in prop::collection::vec(piece(), 0..12)) {
            let path: String = pieces.concat();
            for p in [path.clone(), format!("/{path}"), format!("/route/{path}")] {
                if plain(&p) {
                    prop_assert_eq!(check_segments(&p), Ok(()), "{}", p);
                }
            }
        }

        /// Whatever a client sends, a path that passes never leaves the route's base path
        /// once the route's prefix is swapped for it, even on a lenient upstream.
        #[test]
        fn no_accepted_path_escapes_the_base(pieces in prop::collection::vec(piece(), 0..12)) {
            let rest: String = pieces.concat();
            let path = format!("/route/{rest}");
            if check(&path).is_ok() {
                let forwarded = format!("/base/{rest}");
                let resolved = lenient_resolve(&forwarded);
                prop_assert!(resolved.is_some_and(|r| r[0] == "base"), "{}", path);
                // And it is forwarded byte for byte: what came after the prefix is unchanged.
                prop_assert!(forwarded.ends_with(&rest));
            }
        }
    }
}
