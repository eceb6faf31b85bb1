//! Message templates: the texts of trigger actions (Slack messages, HubSpot notes,
//! Salesforce task subjects, a webhook event's `text`), written in minijinja with the
//! signals as variables: `{{ domain }} moved to {{ to }}: {{ reason }}`.
//!
//! A template is compiled when the mapping loads, and every variable it names must be
//! a signal or a field of the stage change: a typo is a config error with file and
//! line, never a message that says "undefined" to a sales team. Rendering is strict
//! (an undefined variable fails the delivery instead of printing nothing).
//!
//! The values come from activities, which anyone on the internet can shape (a package
//! called `<!channel>`); each destination escapes the values for its own markup, while
//! the template's own text is the operator's and stays as written.

use std::collections::BTreeSet;

use minijinja::{Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::SinkError;
use super::mapping::Signal;

/// Variables a template may name beside the signals: the stage change.
pub const CHANGE_VARIABLES: [&str; 6] = ["company", "from", "to", "crm_id", "connector", "as_of"];

/// A template checked at load; held and serialized as its source text.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct MessageTemplate(String);

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env
}

/// Every name a template may use, sorted.
pub fn known_variables() -> BTreeSet<&'static str> {
    Signal::ALL.iter().map(|(_, n)| *n).chain(CHANGE_VARIABLES).collect()
}

impl TryFrom<String> for MessageTemplate {
    type Error = String;
    fn try_from(source: String) -> Result<Self, String> {
        let env = environment();
        let template = env.template_from_str(&source).map_err(|e| format!("template does not parse: {}", describe(&e)))?;
        let known = known_variables();
        let mut unknown: Vec<String> = template.undeclared_variables(false).into_iter().filter(|v| !known.contains(v.as_str())).collect();
        if !unknown.is_empty() {
            unknown.sort();
            let names: Vec<&str> = known.into_iter().collect();
            return Err(format!(
                "template names unknown variable{} {} (known: {})",
                if unknown.len() > 1 { "s" } else { "" },
                unknown.iter().map(|u| format!("`{u}`")).collect::<Vec<_>>().join(", "),
                names.join(", ")
            ));
        }
        drop(template);
        Ok(MessageTemplate(source))
    }
}

impl From<MessageTemplate> for String {
    fn from(t: MessageTemplate) -> String {
        t.0
    }
}

impl MessageTemplate {
    pub fn source(&self) -> &str {
        &self.0
    }

    /// Renders with the variables of a trigger event, each text value passed through
    /// `escape` first (the destination's markup).
    pub fn render(&self, variables: &Map<String, Value>, escape: fn(&str) -> String) -> Result<String, SinkError> {
        let escaped: Map<String, Value> = variables
            .iter()
            .map(|(k, v)| (k.clone(), if let Value::String(s) = v { Value::String(escape(s)) } else { v.clone() }))
            .collect();
        environment()
            .render_str(&self.0, minijinja::value::Serde(&escaped))
            .map(|s| s.trim().to_owned())
            .map_err(|e| SinkError::Api(format!("cannot render the message template: {}", describe(&e))))
    }
}

/// The variables of a trigger event (`triggers::firings`): its signals, then the stage
/// change (`company`, `from`, `to`, `crm_id`, `connector`, `as_of`).
pub fn variables_of(event: &Value) -> Map<String, Value> {
    let mut out = match event.get("signals") {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    out.insert("company".into(), event.get("company").cloned().unwrap_or(Value::Null));
    for key in ["from", "to", "crm_id", "connector", "as_of"] {
        out.insert(key.into(), event.get(key).cloned().unwrap_or(Value::Null));
    }
    out
}

/// Text values as they are.
pub fn plain(s: &str) -> String {
    s.to_owned()
}

/// minijinja's message with the line of the template it points at.
fn describe(e: &minijinja::Error) -> String {
    match (e.detail(), e.line()) {
        (Some(detail), Some(line)) => format!("{detail} (template line {line})"),
        (Some(detail), None) => detail.to_owned(),
        (None, Some(line)) => format!("{} (template line {line})", e.kind()),
        (None, None) => e.kind().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_template_naming_an_unknown_variable_is_refused_with_the_known_ones() {
        let err = MessageTemplate::try_from("{{ domain }} {{ reasn }} {{ scor | round }}".to_owned()).unwrap_err();
        assert!(err.starts_with("template names unknown variables `reasn`, `scor` (known: "), "{err}");
        assert!(err.contains("reason") && err.contains("as_of"), "{err}");
        let err = MessageTemplate::try_from("{% if %}".to_owned()).unwrap_err();
        assert!(err.starts_with("template does not parse"), "{err}");
    }

    #[test]
    fn renders_signals_and_the_change_with_values_escaped_for_the_destination() {
        let t = MessageTemplate::try_from("{{ company }}: {{ from or 'new' }} -> {{ to }}, {{ score }} ({{ trend }}) {{ top_package_90d }}".to_owned()).unwrap();
        let event = json!({
            "company": "acme.com", "from": null, "to": "experimentation", "crm_id": "7", "connector": "c", "as_of": "2026-10-30",
            "signals": { "domain": "acme.com", "score": 42.5, "trend": "heating", "top_package_90d": "<!channel> 1.0" }
        });
        let vars = variables_of(&event);
        assert_eq!(t.render(&vars, plain).unwrap(), "acme.com: new -> experimentation, 42.5 (heating) <!channel> 1.0");
        let escape: fn(&str) -> String = |s| s.replace('<', "&lt;");
        assert_eq!(t.render(&vars, escape).unwrap(), "acme.com: new -> experimentation, 42.5 (heating) &lt;!channel> 1.0");
    }
}
