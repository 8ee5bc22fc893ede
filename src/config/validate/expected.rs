//! The form a string-valued key expects, named in type errors: `listen = 8787` says "expected
//! an address like \"127.0.0.1:8787\"", not serde's bare "expected a string".

/// `message` with serde's "expected a string" replaced by the form `key` takes, when known.
pub(super) fn name_the_form(key: &str, message: String) -> String {
    const BARE: &str = "expected a string";
    let Some(form) = form(key) else {
        return message;
    };
    if message.ends_with(BARE) {
        format!("{}expected {form}", &message[..message.len() - BARE.len()])
    } else {
        message
    }
}

/// The key path without serde's internal segments: toml's `Spanned` reads its value under a
/// private field name (`server.listen.$__serde_spanned_private_value`), which names no key.
pub(super) fn without_serde_internals(key: &str) -> String {
    key.split('.')
        .filter(|segment| !segment.starts_with("$__"))
        .collect::<Vec<_>>()
        .join(".")
}

/// The leaf of a key path (`routes[0].upstream` -> `upstream`, `cors.origins[2]` -> `origins`).
fn leaf(key: &str) -> &str {
    let last = key.rsplit('.').next().unwrap_or(key);
    last.split('[').next().unwrap_or(last)
}

fn form(key: &str) -> Option<&'static str> {
    Some(match leaf(key) {
        "listen" => "an address like \"127.0.0.1:8787\"",
        "upstream" => "a URL like \"https://api.openai.com\" or \"builtin:simulator\"",
        "prefix" => "a path like \"/openai\"",
        "otlp_endpoint" => "a URL like \"http://127.0.0.1:4318/v1/traces\"",
        "proxy" => "a URL like \"http://proxy.internal:3128\"",
        "database" => "a file name like \"aloud.db\" or a postgres:// URL",
        "origins" => "an origin like \"https://app.example.com\" or \"*\"",
        "ca_file" | "client_cert" | "client_key" | "tls_cert" | "tls_key" | "spill_dir" => {
            "a path like \"certs/ca.pem\""
        }
        leaf if leaf.ends_with("_env") => "an environment variable name like \"OPENAI_API_KEY\"",
        "name" | "service_name" | "text" | "patterns" => "a quoted string",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_keys_name_their_form() {
        let bare = "invalid type: integer `8787`, expected a string".to_owned();
        assert_eq!(
            name_the_form("server.listen", bare.clone()),
            "invalid type: integer `8787`, expected an address like \"127.0.0.1:8787\""
        );
        assert!(
            name_the_form("routes[3].api_key_env", bare.clone())
                .ends_with("like \"OPENAI_API_KEY\"")
        );
        assert!(name_the_form("cors.origins[1]", bare.clone()).contains("an origin like"));
        assert_eq!(name_the_form("server.unknown_key", bare.clone()), bare);
        assert_eq!(
            without_serde_internals("server.listen.$__serde_spanned_private_value"),
            "server.listen"
        );
        let other = "unknown field `x`".to_owned();
        assert_eq!(name_the_form("server.listen", other.clone()), other);
    }
}
