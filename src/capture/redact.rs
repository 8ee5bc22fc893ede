//! Redaction: what must never be stored, spilled or exported — configured JSON paths, regexes,
//! emails, card numbers, API-key shapes and the exact secrets aloud itself holds — replaced by
//! markers before a record leaves the request path.
//!
//! **Invariant:** redaction is pure and idempotent: redacting twice gives what redacting once
//! gave, because text inside an existing marker is never matched again and each call repeats
//! its passes until nothing changes.
//!
//! Markers: `[REDACTED:email]`, `[REDACTED:card]`, `[REDACTED:key]` (API-key shapes and
//! configured secrets), `[REDACTED]` (JSON paths, credential-named members, custom patterns).
//!
//! A record's answer and reasoning are redacted whole, and its deltas are offsets into them that
//! redaction moves with the text (`record.rs`), so a secret split across stream chunks is seen
//! whole and survives in no delta. A JSON number is rewritten only when it is a card number
//! (`{"card": 4242424242424242}` would otherwise be stored as it came).
//!
//! Text with `\u` escapes (JSON text inside a string: tool-call arguments) is also read decoded
//! (`unescape.rs`): `dave\u0040example.com` is an e-mail to whoever parses it. When that reading
//! finds something, the text is stored decoded and redacted (still valid JSON text).

mod checks;
mod clean;
mod path;
mod patterns;
mod record;
mod unescape;

use std::borrow::Cow;

use regex::{Regex, RegexSet};
use serde_json::Value;

use checks::{is_card_integer, is_card_number, looks_random, secret_forms};
pub use path::JsonPath;
use patterns::{
    API_KEY_PATTERNS, AUTH_PATTERN, CARD_PATTERN, EMAIL_PATTERN, KEY_VALUE_PATTERN, MARKER_PATTERN,
    PASSWORD_PATTERN, SK_PATTERN,
};

/// What to redact. `Default` turns on emails, card numbers and API keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedactConfig {
    /// Paths (see [`JsonPath`]) whose values are replaced wholesale with `"[REDACTED]"`.
    pub json_paths: Vec<String>,
    /// Regexes (`regex` crate syntax); each match becomes `[REDACTED]`.
    pub patterns: Vec<String>,
    /// E-mail addresses, also with the `@` form-encoded as `%40`.
    pub emails: bool,
    /// Luhn-valid runs of 13–19 digits, optionally in groups of four split by single spaces,
    /// no-break spaces, dashes or dots (or Amex's 4-6-5), starting with 2–6 (the issuer ranges
    /// in use; this also spares millisecond timestamps). JSON integers (and whole floats below
    /// 2^53) of that shape are replaced too, by the marker as a string.
    pub card_numbers: bool,
    /// Common key shapes: `sk-…`, `sk-ant-…`, `AIza…`, `ghp_…`, `xoxb-…`, `Bearer …`,
    /// `AKIA…`, Stripe's `sk_live_…`/`sk_test_…`/`rk_live_…`/`rk_test_…`, Hugging Face's
    /// `hf_…`, Groq's `gsk_…`, JWTs (`eyJ….eyJ….…`), and long high-entropy values after
    /// `key=`, `api_key:`, `token=` and the like.
    pub api_keys: bool,
    /// Exact strings never to be stored (configured API keys, client tokens). Also matched in
    /// their JSON-escaped and base64 (standard and URL-safe, at any alignment) forms.
    pub secrets: Vec<String>,
}

impl Default for RedactConfig {
    fn default() -> Self {
        RedactConfig {
            json_paths: Vec::new(),
            patterns: Vec::new(),
            emails: true,
            card_numbers: true,
            api_keys: true,
            secrets: Vec::new(),
        }
    }
}

pub const MARKER: &str = "[REDACTED]";
const MARKER_KEY: &str = "[REDACTED:key]";
const MARKER_EMAIL: &str = "[REDACTED:email]";
const MARKER_CARD: &str = "[REDACTED:card]";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    None,
    Luhn,
    Entropy,
    Token,
    Digit,
}

/// One regex with its marker. When the regex has a group named `s`, only that group is replaced
/// (so `Bearer <token>` keeps `Bearer `).
#[derive(Clone, Debug)]
struct Rule {
    regex: Regex,
    marker: &'static str,
    check: Check,
}

/// One replacement a pass made: `start..end` of its input became `put`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Edit {
    start: usize,
    end: usize,
    put: Put,
}

/// What took a replaced span's place: a marker (a secret went) or the character a `\u` escape
/// stands for (`unescape.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Put {
    Marker(&'static str),
    Char(char),
}

impl Put {
    /// Its length in bytes, to move offsets past it.
    fn len(self) -> usize {
        match self {
            Put::Marker(m) => m.len(),
            Put::Char(c) => c.len_utf8(),
        }
    }

    fn push_to(self, out: &mut String) {
        match self {
            Put::Marker(m) => out.push_str(m),
            Put::Char(c) => out.push(c),
        }
    }
}

/// Built once from a [`RedactConfig`]; cheap to share (`Arc`) between requests.
///
/// A clone shares the compiled regexes but has search caches of its own: a regex's cache pool
/// serves the first thread that used it without a lock and every other thread through a mutex,
/// so a thread that redacts all day (the capture writer's) keeps a clone of its own
/// (`redaction::Live`).
#[derive(Clone, Debug)]
pub struct Redactor {
    rules: Vec<Rule>,
    /// All rule regexes, to find in one pass which rules can match a string at all.
    set: RegexSet,
    markers: Regex,
    paths: Vec<JsonPath>,
    /// Card numbers are redacted: JSON integers are checked too, which no regex sees.
    cards: bool,
    /// Every rule can be searched for in texts joined by newlines (`clean.rs`).
    joinable: bool,
}

impl Redactor {
    pub fn new(config: &RedactConfig) -> Result<Redactor, String> {
        let mut rules = Vec::new();
        let mut add = |pattern: &str, marker, check| -> Result<(), String> {
            let regex =
                Regex::new(pattern).map_err(|e| format!("redact pattern {pattern:?}: {e}"))?;
            rules.push(Rule {
                regex,
                marker,
                check,
            });
            Ok(())
        };
        let secrets = secret_forms(&config.secrets)?;
        if !secrets.is_empty() {
            let alternation: Vec<String> = secrets.iter().map(|s| regex::escape(s)).collect();
            add(&alternation.join("|"), MARKER_KEY, Check::None)?;
        }
        if config.api_keys {
            add(SK_PATTERN, MARKER_KEY, Check::Digit)?;
            for p in API_KEY_PATTERNS {
                add(p, MARKER_KEY, Check::None)?;
            }
            add(AUTH_PATTERN, MARKER_KEY, Check::Token)?;
            add(PASSWORD_PATTERN, MARKER_KEY, Check::None)?;
            add(KEY_VALUE_PATTERN, MARKER_KEY, Check::Entropy)?;
        }
        if config.emails {
            add(EMAIL_PATTERN, MARKER_EMAIL, Check::None)?;
        }
        if config.card_numbers {
            add(CARD_PATTERN, MARKER_CARD, Check::Luhn)?;
        }
        for p in &config.patterns {
            add(p, MARKER, Check::None)?;
        }
        let set = RegexSet::new(rules.iter().map(|r| r.regex.as_str()))
            .map_err(|e| format!("redact patterns: {e}"))?;
        let markers = Regex::new(MARKER_PATTERN).map_err(|e| e.to_string())?;
        let paths = config
            .json_paths
            .iter()
            .map(|p| JsonPath::parse(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Redactor {
            rules,
            set,
            markers,
            paths,
            cards: config.card_numbers,
            joinable: config.patterns.iter().all(|p| clean::joinable(p)),
        })
    }

    /// Replaces every match in `text`; borrows when nothing matched.
    pub fn redact_str<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match self.redact_passes(text, |_, _| {}) {
            Some(out) => Cow::Owned(out),
            None => Cow::Borrowed(text),
        }
    }

    /// Redacts `text` in passes, calling `on_pass` with each pass's input and the replacements
    /// it made there (sorted, not overlapping); `None` when nothing matched.
    ///
    /// A replacement can reveal a match that its neighbour hid (`4111…1111s3cret` shows a card
    /// once the secret is a marker, because a word boundary appears), so passes repeat until
    /// nothing changes. Each pass turns unfenced text into a fenced marker, so this ends; the
    /// cap only bounds the cost of hostile input.
    fn redact_passes(&self, text: &str, mut on_pass: impl FnMut(&str, &[Edit])) -> Option<String> {
        const MAX_PASSES: usize = 16;
        let mut out = self.pass(text, &mut on_pass)?;
        for _ in 1..MAX_PASSES {
            match self.pass(&out, &mut on_pass) {
                Some(next) => out = next,
                None => break,
            }
        }
        Some(out)
    }

    /// One pass over `text`, or over its decoded view (`unescape.rs`) when it has one and that
    /// pass replaces something: JSON text inside a string holds `dave\u0040example.com`, an
    /// e-mail to whoever parses it. Then the view is what is kept, its escapes decoded
    /// (`on_pass` hears of the decoding as a pass of its own, first); a text the view shows
    /// nothing in is kept as it was. Every pass tries the view, so a result holds nothing that
    /// either reading would replace, and redacting it again changes nothing.
    fn pass(&self, text: &str, on_pass: &mut impl FnMut(&str, &[Edit])) -> Option<String> {
        if let Some((decoded, escapes)) = unescape::decode(text)
            && let Some((out, edits)) = self.redact_pass(&decoded)
        {
            on_pass(text, &escapes);
            on_pass(&decoded, &edits);
            return Some(out);
        }
        let (out, edits) = self.redact_pass(text)?;
        on_pass(text, &edits);
        Some(out)
    }

    /// One pass over `text`: `None` when nothing matched, else the new text and the
    /// replacements made.
    fn redact_pass(&self, text: &str) -> Option<(String, Vec<Edit>)> {
        // Most strings match nothing: `is_match` answers that without the overlapping search
        // `matches` runs for every rule.
        if !self.set.is_match(text) {
            return None;
        }
        let hits = self.set.matches(text);
        // Existing markers are fenced off so that redacting again changes nothing.
        let fences: Vec<(usize, usize)> = self
            .markers
            .find_iter(text)
            .map(|m| (m.start(), m.end()))
            .collect();
        let mut spans: Vec<Edit> = Vec::new();
        for i in hits.iter() {
            let Some(rule) = self.rules.get(i) else {
                continue;
            };
            for caps in rule.regex.captures_iter(text) {
                let Some(m) = caps.name("s").or_else(|| caps.get(0)) else {
                    continue;
                };
                if m.is_empty() || !passes(rule.check, m.as_str()) {
                    continue;
                }
                let (start, end) = (m.start(), m.end());
                if fences.iter().any(|&(fs, fe)| start < fe && fs < end) {
                    continue;
                }
                spans.push(Edit {
                    start,
                    end,
                    put: Put::Marker(rule.marker),
                });
            }
        }
        if spans.is_empty() {
            return None;
        }
        // Earliest first, longest first among equals; overlapping later spans are dropped.
        spans.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        spans.retain(|e| {
            if e.start < at {
                return false;
            }
            out.push_str(text.get(at..e.start).unwrap_or_default());
            e.put.push_to(&mut out);
            at = e.end;
            true
        });
        out.push_str(text.get(at..).unwrap_or_default());
        Some((out, spans))
    }

    /// Replaces the configured paths wholesale, the scalar values of credential-named members,
    /// and every match in every string: values and member names alike.
    pub fn redact_json(&self, value: &mut Value) {
        let marker = Value::String(MARKER.to_owned());
        for path in &self.paths {
            path.replace(value, &marker);
        }
        self.scan_json(value);
    }

    /// [`Redactor::redact_json`] without the paths: for documents whose shape the paths do not
    /// describe (tool-call arguments).
    fn scan_json(&self, value: &mut Value) {
        // A card sent as a number is as much a card as one in a string; a string marker in its
        // place changes the member's type, which is the least bad of keeping it or losing it.
        if self.cards && matches!(value, Value::Number(n) if is_card_integer(n)) {
            *value = Value::String(MARKER_CARD.to_owned());
            return;
        }
        match value {
            Value::String(s) => self.redact_string(s),
            Value::Array(items) => items.iter_mut().for_each(|v| self.scan_json(v)),
            Value::Object(map) => {
                self.redact_names(map);
                for (k, v) in map.iter_mut() {
                    let scalar = matches!(v, Value::String(_) | Value::Number(_));
                    if scalar && is_credential_name(k) {
                        *v = Value::String(MARKER.to_owned());
                    } else {
                        self.scan_json(v);
                    }
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }

    /// Member names are text too: an e-mail or a key used as a name (a map keyed by user) is
    /// replaced like one in a value. Names that redact alike stay apart, as `[REDACTED:email]`,
    /// `[REDACTED:email] #2`, …: no member is lost. Most objects match nothing, and are left
    /// untouched after one `is_match` and one search for `\u` per name.
    fn redact_names(&self, map: &mut serde_json::Map<String, Value>) {
        // A name with `\u` escapes may hide a match only its decoded view shows.
        if !map
            .keys()
            .any(|k| self.set.is_match(k) || unescape::has_escape(k))
        {
            return;
        }
        for (name, v) in std::mem::take(map) {
            let name = match self.redact_str(&name) {
                Cow::Owned(redacted) => redacted,
                Cow::Borrowed(_) => name,
            };
            let mut unique = name.clone();
            let mut n = 1;
            while map.contains_key(&unique) {
                n += 1;
                unique = format!("{name} #{n}");
            }
            map.insert(unique, v);
        }
    }

    /// Redacts a URL query string: values of credential-named parameters (Gemini's `key=`)
    /// become `[REDACTED]`, and the rest is scanned like any text.
    pub fn redact_query<'a>(&self, query: &'a str) -> Cow<'a, str> {
        let mut changed = false;
        let parts: Vec<Cow<'a, str>> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, value))
                    if (name == "key" || is_credential_name(name)) && !value.is_empty() =>
                {
                    changed = true;
                    Cow::Owned(format!("{name}={MARKER}"))
                }
                _ => {
                    let r = self.redact_str(pair);
                    changed |= matches!(r, Cow::Owned(_));
                    r
                }
            })
            .collect();
        if changed {
            Cow::Owned(parts.join("&"))
        } else {
            Cow::Borrowed(query)
        }
    }

    fn redact_string(&self, text: &mut String) {
        if let Cow::Owned(o) = self.redact_str(text) {
            *text = o;
        }
    }
}

/// Member and parameter names whose scalar values are credentials. Compared without case,
/// `-` or `_`, so `api_key`, `apiKey`, `x-api-key` and `X_API_KEY` all count. (A bare `key`
/// counts only in a query string, where Gemini puts its key; as a JSON member it is too common.)
fn is_credential_name(name: &str) -> bool {
    if !(5..=32).contains(&name.len()) {
        return false;
    }
    // Every name ends in one of these letters (a test holds it): most member names (`model`,
    // `messages`, `usage`) are turned down here, before being folded.
    let last = name.bytes().rev().find(|b| *b != b'-' && *b != b'_');
    if !last.is_some_and(|b| CREDENTIAL_LAST_LETTERS.contains(&b.to_ascii_lowercase())) {
        return false;
    }
    // Folded into a buffer on the stack: this runs for every member of every stored body.
    let mut folded = [0u8; 32];
    let mut len = 0;
    for b in name.bytes().filter(|b| *b != b'-' && *b != b'_') {
        let Some(slot) = folded.get_mut(len) else {
            return false;
        };
        *slot = b.to_ascii_lowercase();
        len += 1;
    }
    let folded = &folded[..len];
    CREDENTIAL_NAMES.iter().any(|n| n.as_bytes() == folded)
}

/// Credential names, lowercase, without `-` or `_`: 5 to 32 bytes, each ending in one of
/// [`CREDENTIAL_LAST_LETTERS`].
const CREDENTIAL_NAMES: &[&str] = &[
    "apikey",
    "xapikey",
    "xgoogapikey",
    "authorization",
    "proxyauthorization",
    "password",
    "passwd",
    "secret",
    "clientsecret",
    "token",
    "accesstoken",
    "refreshtoken",
    "authtoken",
    "idtoken",
    "sessiontoken",
    "bearertoken",
    "privatekey",
    "secretkey",
    "secretaccesskey",
];

/// The letters [`CREDENTIAL_NAMES`] end in.
const CREDENTIAL_LAST_LETTERS: &[u8] = b"yndt";

fn passes(check: Check, text: &str) -> bool {
    match check {
        Check::None => true,
        Check::Luhn => is_card_number(text),
        Check::Entropy => looks_random(text),
        Check::Digit => text.bytes().any(|b| b.is_ascii_digit()),
        Check::Token => text.len() >= 24 || text.bytes().any(|b| !b.is_ascii_alphabetic()),
    }
}

#[cfg(test)]
mod tests;
