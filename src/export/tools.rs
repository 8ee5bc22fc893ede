//! The tools a request offered the model, read from every api's shape into [`Tool`]s.

use serde_json::{Value, json};

use super::messages::Tool;

/// The tools the request offered: OpenAI chat and Ollama (`{"type": "function", "function":
/// {...}}`), Responses (`{"type": "function", "name", ...}`; built-in tools are left out),
/// Anthropic (`{"name", "input_schema"}`) and Gemini (`functionDeclarations`, either case).
pub fn tools(request: &Value) -> Vec<Tool> {
    let mut out = Vec::new();
    let Some(list) = request.get("tools").and_then(Value::as_array) else {
        return out;
    };
    for t in list {
        let declarations = t
            .get("functionDeclarations")
            .or_else(|| t.get("function_declarations"));
        if let Some(Value::Array(ds)) = declarations {
            out.extend(ds.iter().filter_map(|d| tool(d, "parameters")));
        } else if let Some(f) = t.get("function") {
            out.extend(tool(f, "parameters"));
        } else if t.get("input_schema").is_some() {
            out.extend(tool(t, "input_schema"));
        } else if t.get("type").and_then(Value::as_str) == Some("function") {
            out.extend(tool(t, "parameters"));
        }
    }
    out
}

fn tool(t: &Value, schema: &str) -> Option<Tool> {
    let name = t.get("name").and_then(Value::as_str)?;
    let parameters = t
        .get(schema)
        .or_else(|| t.get("parametersJsonSchema"))
        .filter(|p| p.is_object())
        .cloned()
        .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
    Some(Tool {
        name: name.to_owned(),
        description: t
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_owned),
        parameters,
    })
}
