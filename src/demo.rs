//! aloud's own page at `/aloud/` (a live demo of the events tier) and the JS client it uses.

use crate::config::{Route, Upstream};
use serde_json::json;

/// The dependency-free browser client (also usable on its own: `/aloud/aloud.js`).
pub const CLIENT_JS: &str = include_str!("../examples/web/aloud.js");

const PAGE: &str = include_str!("../examples/web/demo.html");

/// The demo page, listing the routes it can call; simulator routes come first.
pub fn page<'a>(routes: impl Iterator<Item = &'a Route>) -> String {
    let mut list: Vec<&Route> = routes.collect();
    list.sort_by_key(|r| r.upstream != Upstream::Simulator && !r.name.starts_with("sim"));
    let routes: Vec<serde_json::Value> = list
        .iter()
        .map(|r| json!({ "name": r.name, "prefix": r.prefix, "api": r.api.as_str() }))
        .collect();
    // JSON inside a <script>: escape '<' so no value can close the tag.
    let data = serde_json::Value::Array(routes)
        .to_string()
        .replace('<', "\\u003c");
    PAGE.replace("__ALOUD_ROUTES__", &data)
}
