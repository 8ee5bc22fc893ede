//! The built-in rules' regexes: API-key shapes, credentials after their names, e-mails and
//! card-shaped digit runs (checked further in `checks.rs`), and the markers themselves.

/// OpenAI (sk-, sk-proj-) and Anthropic (sk-ant-) keys; they must hold a digit, which spares
/// hyphenated words like "sk-learn-compatible-estimators".
pub const SK_PATTERN: &str = r"\bsk-[A-Za-z0-9_\-]{16,}";

pub const API_KEY_PATTERNS: &[&str] = &[
    // Google API keys.
    r"\bAIza[0-9A-Za-z_\-]{30,}",
    // GitHub tokens.
    r"\bgh[pousr]_[A-Za-z0-9]{30,}",
    r"\bgithub_pat_[A-Za-z0-9_]{30,}",
    // Slack tokens.
    r"\bxox[bpaors]-[A-Za-z0-9\-]{10,}",
    // AWS access key ids.
    r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
    // Stripe secret and restricted keys, live and test.
    r"\b[sr]k_(?:live|test)_[A-Za-z0-9]{24,}",
    // Hugging Face tokens.
    r"\bhf_[A-Za-z0-9]{30,}",
    // Groq keys.
    r"\bgsk_[A-Za-z0-9]{40,}",
    // JWTs: header and payload are base64url JSON objects (`{"` encodes as `eyJ`), then the
    // signature; each part 10 characters or more.
    r"\beyJ[A-Za-z0-9_\-]{7,}\.eyJ[A-Za-z0-9_\-]{7,}\.[A-Za-z0-9_\-]{10,}",
];

/// Authorization header values; the token must not read like a word ("bearer instruments").
pub const AUTH_PATTERN: &str = r"(?i)\b(?:Bearer|Basic)\s+(?P<s>[A-Za-z0-9._~+/\-]{8,}=*)";

/// Passwords after their name, whatever they look like (on one line, up to a separator).
pub const PASSWORD_PATTERN: &str =
    r#"(?i)\b(?:password|passwd|pwd)["']?[ \t]*[=:][ \t]*["']?(?P<s>[^\s"'&,;\[\]]{4,})"#;

/// Long high-entropy values after a credential-like name (`key=`, `"api_key": "`, `token: `).
pub const KEY_VALUE_PATTERN: &str = r#"(?i)\b(?:api[_\-]?key|x-api-key|key|access[_\-]?token|auth[_\-]?token|token|secret|client[_\-]?secret|password|passwd)["']?\s*[=:]\s*["']?(?P<s>[A-Za-z0-9._~+/\-]{16,})"#;

/// E-mails, also form-encoded (`oscar%40example.com`). Before a `%40` the local part takes no
/// `%`, so other percent-escapes are not read as part of an address (`users%2F%40alice.json`
/// is not one); the domain after it must still have a dot and a top-level domain.
pub const EMAIL_PATTERN: &str = concat!(
    r"(?:[A-Za-z0-9._%+\-]+@|[A-Za-z0-9._+\-]+%40)",
    r"[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*",
    r"\.[A-Za-z]{2,}\b",
);

/// Card-shaped digit runs: 13–19 digits together, in groups of four split by spaces, no-break
/// spaces (U+00A0, what word processors and web pages put between the groups), dashes or dots,
/// or Amex's 4-6-5 split by spaces, no-break spaces or dashes; the Luhn check comes after (and
/// turns down mixed separators).
pub const CARD_PATTERN: &str = concat!(
    r"\b(?:[2-6][0-9]{12,18}",
    r"|[2-6][0-9]{3}(?: [0-9]{4}){2} [0-9]{1,4}(?: [0-9]{1,3})?",
    r"|[2-6][0-9]{3}(?:\x{A0}[0-9]{4}){2}\x{A0}[0-9]{1,4}(?:\x{A0}[0-9]{1,3})?",
    r"|[2-6][0-9]{3}(?:-[0-9]{4}){2}-[0-9]{1,4}(?:-[0-9]{1,3})?",
    r"|[2-6][0-9]{3}(?:\.[0-9]{4}){2}\.[0-9]{1,4}(?:\.[0-9]{1,3})?",
    r"|3[47][0-9]{2}[ \-\x{A0}][0-9]{6}[ \-\x{A0}][0-9]{5})\b",
);

pub const MARKER_PATTERN: &str = r"\[REDACTED(?::[a-z]+)?\]";
