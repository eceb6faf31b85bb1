//! The normalized activity: the one shape every source is turned into before anything
//! else sees it (`spec/activity-format.md`).
//!
//! Parsing works on a JSON object rather than a derived struct so that each rule of the
//! format can produce its own precise reason (the quarantine shows it to the operator),
//! and so that unknown fields can be kept in `properties` instead of being dropped.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// What happened, by category of signal. The scoring model assigns points per kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Download,
    PageView,
    DocView,
    Telemetry,
    Community,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Download,
        Kind::PageView,
        Kind::DocView,
        Kind::Telemetry,
        Kind::Community,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Download => "download",
            Kind::PageView => "page_view",
            Kind::DocView => "doc_view",
            Kind::Telemetry => "telemetry",
            Kind::Community => "community",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn is_view(self) -> bool {
        matches!(self, Kind::PageView | Kind::DocView)
    }

    /// Downloads and telemetry are the signals of actual use of the software.
    pub fn is_usage(self) -> bool {
        matches!(self, Kind::Download | Kind::Telemetry)
    }
}

/// The community action; required when the kind is `community`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Star,
    Fork,
    Reaction,
    Comment,
    IssueOpened,
    PrOpened,
    DiscussionOpened,
    SlackJoin,
    SlackMessage,
}

impl Action {
    pub const ALL: [Action; 9] = [
        Action::Star,
        Action::Fork,
        Action::Reaction,
        Action::Comment,
        Action::IssueOpened,
        Action::PrOpened,
        Action::DiscussionOpened,
        Action::SlackJoin,
        Action::SlackMessage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Star => "star",
            Action::Fork => "fork",
            Action::Reaction => "reaction",
            Action::Comment => "comment",
            Action::IssueOpened => "issue_opened",
            Action::PrOpened => "pr_opened",
            Action::DiscussionOpened => "discussion_opened",
            Action::SlackJoin => "slack_join",
            Action::SlackMessage => "slack_message",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// Strength of a signal within its category.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Low,
    Medium,
    High,
}

impl Tier {
    pub const ALL: [Tier; 3] = [Tier::Low, Tier::Medium, Tier::High];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Low => "low",
            Tier::Medium => "medium",
            Tier::High => "high",
        }
    }

    pub fn parse(s: &str) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| t.as_str() == s)
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// A validated activity, ready for the store. Personal data is already reduced: the
/// email is kept only as its domain.
#[derive(Clone, Debug, PartialEq)]
pub struct Activity {
    pub source: String,
    pub id: String,
    pub kind: Kind,
    pub action: Option<Action>,
    /// UTC instant in nanoseconds since the Unix epoch.
    pub occurred_at: i64,
    pub tier: Option<Tier>,
    /// The company the source itself named (attribution rule 1), normalized.
    pub company_domain: Option<String>,
    pub company_name: Option<String>,
    pub actor: Option<String>,
    pub email_domain: Option<String>,
    pub package: Option<String>,
    pub version: Option<String>,
    pub url: Option<String>,
    /// JSON text of the `properties` object, when there is anything to keep.
    pub properties: Option<String>,
}

impl Activity {
    /// A `community` activity as the pollers make them: an action by a login or member.
    pub fn community(source: &str, id: String, action: Action, actor: &str, occurred_at: i64) -> Activity {
        Activity {
            source: source.to_owned(),
            id,
            kind: Kind::Community,
            action: Some(action),
            occurred_at,
            tier: None,
            company_domain: None,
            company_name: None,
            actor: Some(actor.to_owned()),
            email_domain: None,
            package: None,
            version: None,
            url: None,
            properties: None,
        }
    }
}

impl Activity {
    /// The activity with every text field redacted as an imported line's are: what the
    /// pollers build from API answers goes through the same rule.
    pub fn redacted(mut self) -> Activity {
        self.source = redact_owned(self.source);
        self.id = redact_owned(self.id);
        self.actor = self.actor.map(|a| pseudonymize_actor(&a));
        self.company_name = self.company_name.map(redact_owned);
        self.package = self.package.map(redact_owned);
        self.version = self.version.map(redact_owned);
        self.url = self.url.map(redact_owned);
        // Addresses hold no character JSON escapes: the text can be redacted as it is.
        self.properties = self.properties.map(redact_owned);
        self
    }
}

/// Why a line is not a valid activity. The text is shown to the operator as is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid(pub String);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn invalid(msg: impl Into<String>) -> Invalid {
    Invalid(msg.into())
}

const KNOWN_FIELDS: [&str; 14] = [
    "id",
    "source",
    "kind",
    "action",
    "occurred_at",
    "tier",
    "company_domain",
    "company_name",
    "actor",
    "actor_email",
    "package",
    "version",
    "url",
    "properties",
];

/// Earliest and latest instants accepted: they keep nanoseconds inside an `i64` and
/// reject the 0001-01-01 and 9999-12-31 placeholders some exporters emit.
const MIN_YEAR: i32 = 1970;
const MAX_YEAR: i32 = 2200;

impl Activity {
    /// Builds an activity from one JSON object, as read from an NDJSON line or built
    /// from a CSV row. An object without `id` gets the hash of its canonical content.
    pub fn from_object(mut obj: Map<String, Value>) -> Result<Activity, Invalid> {
        let hash_id = if obj.get("id").is_none_or(|v| v.is_null()) {
            Some(content_hash(&obj))
        } else {
            None
        };
        Activity::build(&mut obj, hash_id)
    }

    /// Builds an activity from one NDJSON line, `source` (if given) replacing the line's
    /// own. Lines of the usual shape (known fields only, all strings, an id, no
    /// `properties`) are read straight into borrowed fields, several times faster than
    /// through a JSON map; any other line, and any line that fails there, goes through
    /// `from_object`, which also words every error.
    pub fn from_json_line(text: &str, source: Option<&str>) -> Result<Activity, Invalid> {
        if let Some(activity) = Activity::from_usual_line(text, source) {
            return Ok(activity);
        }
        // A repeated field is ambiguous: the line is quarantined, not read last-wins.
        match crate::json_object::parse(text) {
            Err(e) if crate::json_object::is_repeated_key(&e) => Err(Invalid(e.to_string())),
            Err(e) => Err(Invalid(format!("not valid JSON: {e}"))),
            Ok(Value::Object(mut obj)) => {
                if let Some(source) = source {
                    obj.insert("source".into(), Value::String(source.to_owned()));
                }
                Activity::from_object(obj)
            }
            Ok(other) => Err(Invalid(format!(
                "line is a JSON {}, not an object",
                match other {
                    Value::Array(_) => "array",
                    Value::String(_) => "string",
                    Value::Number(_) => "number",
                    Value::Bool(_) => "boolean",
                    _ => "null",
                }
            ))),
        }
    }

    /// The fast path of `from_json_line`: `None` for a line of any other shape, or one
    /// that is not a valid activity.
    fn from_usual_line(text: &str, source: Option<&str>) -> Option<Activity> {
        let mut line = serde_json::from_str::<Line<'_>>(text).ok()?;
        if let Some(s) = source {
            line.source = Some(Cow::Borrowed(s));
        }
        if line.id.as_deref().is_none_or(|id| id.trim().is_empty()) {
            return None;
        }
        Activity::build(&mut line, None).ok()
    }

    /// The validation and normalization every activity goes through, field by field in
    /// a fixed order (so a line with several faults always reports the same one).
    fn build(f: &mut impl Fields, hash_id: Option<String>) -> Result<Activity, Invalid> {
        let source = redact_owned(f.required("source")?);
        let id = match hash_id {
            Some(h) => h,
            None => redact_owned(f.required("id")?),
        };
        let kind_text = f.required("kind")?;
        let kind = Kind::parse(&kind_text).ok_or_else(|| {
            invalid(format!(
                "unknown kind `{}` (expected one of download, page_view, doc_view, telemetry, community)",
                truncate(&kind_text, 60)
            ))
        })?;
        let action = match f.optional("action")? {
            Some(a) => Some(Action::parse(&a).ok_or_else(|| {
                invalid(format!("unknown action `{}`", truncate(&a, 60)))
            })?),
            None => None,
        };
        if kind == Kind::Community && action.is_none() {
            return Err(invalid("missing required field `action` (required for kind `community`)"));
        }
        let occurred_text = f.required("occurred_at")?;
        let occurred_at = parse_timestamp(&occurred_text)?;
        let tier = match f.optional("tier")? {
            Some(t) => Some(Tier::parse(&t).ok_or_else(|| {
                invalid(format!("unknown tier `{}` (expected low, medium or high)", truncate(&t, 60)))
            })?),
            None => None,
        };
        let company_domain = match f.optional("company_domain")? {
            Some(d) if names_an_address(&d) => None,
            Some(d) => Some(normalize_domain(&d).ok_or_else(|| {
                invalid(format!("field `company_domain` is not a domain: `{}`", truncate(&d, 60)))
            })?),
            None => None,
        };
        let company_name = f.optional("company_name")?.map(redact_owned);
        let actor = f.optional("actor")?.map(|a| pseudonymize_actor(&a));
        let email_domain = match f.optional("actor_email")? {
            Some(e) => Some(email_domain(&e).ok_or_else(|| {
                invalid("field `actor_email` is not an email address")
            })?),
            None => None,
        };
        let package = f.optional("package")?.map(redact_owned);
        let version = f.optional("version")?.map(redact_owned);
        let url = f.optional("url")?.map(redact_owned);
        let properties = f.rest()?;
        let properties = (!properties.is_empty()).then(|| {
            let properties = redact_json(Value::Object(properties));
            serde_json::to_string(&properties).expect("JSON map serializes")
        });
        Ok(Activity {
            source,
            id,
            kind,
            action,
            occurred_at,
            tier,
            company_domain,
            company_name,
            actor,
            email_domain,
            package,
            version,
            url,
            properties,
        })
    }

    /// The UTC calendar date of `occurred_at`.
    pub fn date(&self) -> NaiveDate {
        date_of(self.occurred_at)
    }
}

/// The UTC date of an instant given in nanoseconds.
pub fn date_of(nanos: i64) -> NaiveDate {
    DateTime::<Utc>::from_timestamp_nanos(nanos).date_naive()
}

/// Formats a stored instant back as RFC 3339 UTC.
pub fn format_timestamp(nanos: i64) -> String {
    DateTime::<Utc>::from_timestamp_nanos(nanos).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// Parses an RFC 3339 timestamp with offset into UTC nanoseconds.
pub fn parse_timestamp(text: &str) -> Result<i64, Invalid> {
    let parsed = DateTime::parse_from_rfc3339(text.trim()).map_err(|e| {
        use chrono::format::ParseErrorKind;
        let trimmed = text.trim();
        let why = if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            "a number: write the time as RFC 3339, e.g. `2026-03-01T12:00:00Z`"
        } else if chrono::NaiveDateTime::parse_from_str(trimmed, "%Y-%m-%dT%H:%M:%S%.f").is_ok() {
            "no UTC offset: add `Z` or e.g. `+02:00`"
        } else {
            match e.kind() {
                ParseErrorKind::OutOfRange => "a date or time field is out of range",
                ParseErrorKind::TooShort => "it ends early",
                ParseErrorKind::TooLong => "trailing characters",
                _ => "unexpected characters",
            }
        };
        invalid(format!("field `occurred_at` is not an RFC 3339 timestamp with offset: `{}` ({why})", truncate(text, 60)))
    })?;
    let utc = parsed.with_timezone(&Utc);
    let year = utc.year();
    if !(MIN_YEAR..MAX_YEAR).contains(&year) {
        return Err(invalid(format!(
            "field `occurred_at` is out of range ({MIN_YEAR} to {}): `{}`",
            MAX_YEAR - 1,
            truncate(text, 60)
        )));
    }
    Ok(utc.timestamp_nanos_opt().expect("range checked above"))
}

use chrono::Datelike;

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Where `Activity::build` takes its fields from: a JSON map, or a line read into
/// borrowed fields.
trait Fields {
    /// The field as a trimmed string, `None` when missing, null or blank.
    fn optional(&mut self, field: &'static str) -> Result<Option<String>, Invalid>;

    fn required(&mut self, field: &'static str) -> Result<String, Invalid> {
        self.optional(field)?.ok_or_else(|| invalid(format!("missing required field `{field}`")))
    }

    /// Every other field, as the properties to keep.
    fn rest(&mut self) -> Result<Map<String, Value>, Invalid>;
}

impl Fields for Map<String, Value> {
    fn optional(&mut self, field: &'static str) -> Result<Option<String>, Invalid> {
        optional_str(self, field)
    }

    fn rest(&mut self) -> Result<Map<String, Value>, Invalid> {
        let mut properties = match self.remove("properties") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m,
            Some(other) => {
                return Err(invalid(format!(
                    "field `properties` must be an object, found {}",
                    type_name(&other)
                )));
            }
        };
        // Unknown fields are kept, never interpreted; explicit properties win.
        for (k, v) in std::mem::take(self) {
            if !KNOWN_FIELDS.contains(&k.as_str()) {
                properties.entry(k).or_insert(v);
            }
        }
        Ok(properties)
    }
}

/// The known fields of a line, borrowed from it where no escape forces a copy. Unknown
/// fields, `properties`, a value that is not a string or null, and a repeated field all
/// fail here and send the line to the map.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Line<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    source: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    action: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    occurred_at: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tier: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    company_domain: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    company_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    actor: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    actor_email: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    package: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    version: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    url: Option<Cow<'a, str>>,
}

impl Fields for Line<'_> {
    fn optional(&mut self, field: &'static str) -> Result<Option<String>, Invalid> {
        let value = match field {
            "id" => self.id.take(),
            "source" => self.source.take(),
            "kind" => self.kind.take(),
            "action" => self.action.take(),
            "occurred_at" => self.occurred_at.take(),
            "tier" => self.tier.take(),
            "company_domain" => self.company_domain.take(),
            "company_name" => self.company_name.take(),
            "actor" => self.actor.take(),
            "actor_email" => self.actor_email.take(),
            "package" => self.package.take(),
            "version" => self.version.take(),
            "url" => self.url.take(),
            _ => None,
        };
        Ok(value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()))
    }

    fn rest(&mut self) -> Result<Map<String, Value>, Invalid> {
        Ok(Map::new())
    }
}

fn optional_str(obj: &mut Map<String, Value>, field: &str) -> Result<Option<String>, Invalid> {
    match obj.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let trimmed = s.trim();
            if trimmed.is_empty() {
                Ok(None)
            } else if trimmed.len() == s.len() {
                Ok(Some(s))
            } else {
                Ok(Some(trimmed.to_owned()))
            }
        }
        Some(other) => Err(invalid(format!(
            "field `{field}` must be a string, found {}",
            type_name(&other)
        ))),
    }
}

/// Hash of the object's canonical JSON (keys sorted, no whitespace), so the same line
/// always gets the same id and re-importing it is a no-op.
fn content_hash(obj: &Map<String, Value>) -> String {
    // serde_json's Map is a BTreeMap here (no `preserve_order`), so keys are sorted.
    let canonical = serde_json::to_string(obj).expect("JSON map serializes");
    let digest = Sha256::digest(canonical.as_bytes());
    let mut id = String::with_capacity(34);
    id.push_str("h:");
    for b in &digest[..16] {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

/// An actor is an opaque identity; a raw IP address (or an email address) is personal
/// data and is replaced by a stable hash so that distinct-actor counts still work.
fn pseudonymize_actor(actor: &str) -> String {
    if let Some(ip) = crate::personal_data::parse_ip(actor) {
        crate::personal_data::hashed("ip-hash:", &ip.to_string())
    } else {
        redact_owned(actor.to_owned())
    }
}


fn redact_owned(text: String) -> String {
    match redact_personal_data(&text) {
        Cow::Borrowed(_) => text,
        Cow::Owned(redacted) => redacted,
    }
}

/// Every string (and key) of a JSON value, redacted.
fn redact_json(value: Value) -> Value {
    match value {
        Value::String(s) => Value::String(redact_owned(s)),
        Value::Array(items) => Value::Array(items.into_iter().map(redact_json).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (redact_owned(k), redact_json(v))).collect()),
        other => other,
    }
}

pub use crate::personal_data::redact_personal_data;

/// The domain part of an email address, normalized; `None` when it is not one.
pub fn email_domain(email: &str) -> Option<String> {
    let (local, domain) = email.trim().rsplit_once('@')?;
    if local.is_empty() {
        return None;
    }
    normalize_domain(domain)
}

/// Normalizes a company domain: lower-cased, scheme, path, port, credentials and a
/// leading `www.` removed. Returns `None` unless what is left is a company domain: a
/// host name under a public suffix, never an address (`personal_data::is_company_domain`).
pub fn normalize_domain(input: &str) -> Option<String> {
    let domain = host_of(input);
    let valid = !domain.is_empty()
        && domain.len() <= 253
        && domain
            .split('.')
            .all(|label| !label.is_empty() && label.chars().all(|c| c.is_alphanumeric() || c == '-'))
        && crate::personal_data::is_company_domain(&domain);
    valid.then_some(domain)
}

/// Whether a company domain as given names an IP address (`192.168.010.021`,
/// `https://198.51.100.7:8443/`, `[2001:db8::1]`): such an activity is kept, with no
/// company.
pub fn names_an_address(input: &str) -> bool {
    let s = input.trim();
    let s = s.find("://").map_or(s, |pos| &s[pos + 3..]);
    let s = s.split(['/', '?', '#']).next().unwrap_or_default();
    let s = s.rsplit_once('@').map_or(s, |(_, host)| host);
    let bracketed = s.strip_prefix('[').and_then(|r| r.split_once(']')).map(|(inside, _)| inside);
    crate::personal_data::is_address(bracketed.unwrap_or(s)) || crate::personal_data::is_address(&host_of(input))
}

/// The host of a domain, URL or address as written, lower-cased, without port and
/// leading `www.`.
fn host_of(input: &str) -> String {
    let mut s = input.trim();
    if let Some(pos) = s.find("://") {
        s = &s[pos + 3..];
    } else if let Some(rest) = s.strip_prefix("//") {
        s = rest;
    }
    let end = s.find(['/', '?', '#']).unwrap_or(s.len());
    s = &s[..end];
    if let Some(pos) = s.rfind('@') {
        s = &s[pos + 1..];
    }
    if let Some(pos) = s.find(':') {
        s = &s[..pos];
    }
    let domain = s.trim_end_matches('.').to_lowercase();
    match domain.strip_prefix("www.") {
        Some(rest) => rest.to_owned(),
        None => domain,
    }
}

/// At most `max` characters of a value quoted in a reason, an ellipsis marking the cut.
/// Personal data is redacted before the cut, which could leave half an address that
/// no scan would recognize.
pub fn truncate(s: &str, max: usize) -> String {
    let s = redact_personal_data(s);
    if s.chars().count() <= max {
        s.into_owned()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {

    /// What the JSON map path makes of a line (the reference the fast path must match).
    fn through_map(line: &str, source: Option<&str>) -> Result<Activity, Invalid> {
        let mut obj = match crate::json_object::parse(line) {
            Ok(Value::Object(obj)) => obj,
            Err(e) => return Err(Invalid(e.to_string())),
            Ok(_) => panic!("{line}"),
        };
        if let Some(s) = source {
            obj.insert("source".into(), Value::String(s.into()));
        }
        Activity::from_object(obj)
    }

    #[test]
    fn the_fast_line_path_makes_what_the_map_path_makes() {
        let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
        let mut lines: Vec<String> = Vec::new();
        for entry in std::fs::read_dir(&golden).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "ndjson") {
                lines.extend(std::fs::read_to_string(&path).unwrap().lines().map(str::to_owned));
            }
        }
        assert!(lines.len() > 1000, "{} golden lines", lines.len());
        lines.extend([
            r#"{"id":" 7 ","source":"s","kind":"download","occurred_at":"2026-06-01T00:00:00Z","company_domain":" WWW.Acme.COM. ","actor":"  ","version":null}"#.to_owned(),
            r#"{"id":"e\u00e9\n","source":"s","kind":"page_view","occurred_at":"2026-06-01T00:00:00+02:00","url":"/a?email=jo@acme.com"}"#.to_owned(),
            r#"{"id":"ip","source":"s","kind":"telemetry","occurred_at":"2026-06-01T00:00:00Z","actor":"10.1.2.3","actor_email":"Jo@Initech.io"}"#.to_owned(),
            r#"{"id":"dup","id":"dup2","source":"s","kind":"download","occurred_at":"2026-06-01T00:00:00Z"}"#.to_owned(),
            r#"{"id":"dup3","source":"s","kind":"download","occurred_at":"2026-06-01T00:00:00Z","extra":1,"extra":2}"#.to_owned(),
            r#"{"id":"u","source":"s","kind":"download","occurred_at":"2026-06-01T00:00:00Z","extra":{"b":1,"a":[2]}}"#.to_owned(),
            r#"{"id":"p","source":"s","kind":"download","occurred_at":"2026-06-01T00:00:00Z","properties":{"plan":"pro"}}"#.to_owned(),
            r#"{"id":"n","source":"s","kind":"download","occurred_at":"2026-06-01T00:00:00Z","version":3}"#.to_owned(),
            r#"{"source":"s","kind":"download","occurred_at":"2026-06-01T00:00:00Z"}"#.to_owned(),
            r#"{"id":"c","source":"s","kind":"community","occurred_at":"2026-06-01T00:00:00Z"}"#.to_owned(),
            r#"{"id":"t","source":"s","kind":"download","occurred_at":"yesterday"}"#.to_owned(),
        ]);
        let usual = lines.iter().filter(|l| Activity::from_usual_line(l, None).is_some()).count();
        assert!(usual * 10 >= lines.len() * 9, "the fast path reads {usual} of {} lines", lines.len());
        for line in &lines {
            for source in [None, Some("override")] {
                assert_eq!(Activity::from_json_line(line, source), through_map(line, source), "{line}");
            }
        }
        // A repeated field is not read last-wins by either path: the line is refused.
        for (id, field) in [("\"dup\"", "id"), ("\"dup3\"", "extra")] {
            let line = lines.iter().find(|l| l.contains(id)).unwrap();
            let reason = Activity::from_json_line(line, None).unwrap_err().0;
            assert!(reason.starts_with(&format!("field `{field}` appears twice")), "{reason}");
        }
    }

    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn domains_are_normalized() {
        assert_eq!(normalize_domain("https://WWW.Tiers.Example/path").as_deref(), Some("tiers.example"));
        assert_eq!(normalize_domain("acme.com:8443").as_deref(), Some("acme.com"));
        assert_eq!(normalize_domain("www.acme.com.").as_deref(), Some("acme.com"));
        assert_eq!(normalize_domain("localhost"), None);
        assert_eq!(normalize_domain("not a domain.com"), None);
    }

    #[test]
    fn email_is_reduced_to_its_domain() {
        let a = Activity::from_object(obj(json!({
            "source": "web", "id": "1", "kind": "page_view",
            "occurred_at": "2026-03-01T12:00:00+02:00", "actor_email": "Jane@Acme.COM"
        })))
        .unwrap();
        assert_eq!(a.email_domain.as_deref(), Some("acme.com"));
        assert_eq!(format_timestamp(a.occurred_at), "2026-03-01T10:00:00Z");
    }

    #[test]
    fn missing_id_is_a_stable_content_hash() {
        let line = json!({"source": "web", "kind": "page_view", "occurred_at": "2026-03-01T12:00:00Z"});
        let a = Activity::from_object(obj(line.clone())).unwrap();
        let b = Activity::from_object(obj(line)).unwrap();
        assert_eq!(a.id, b.id);
        assert!(a.id.starts_with("h:"));
    }

    #[test]
    fn unknown_fields_are_kept_in_properties() {
        let a = Activity::from_object(obj(json!({
            "source": "web", "id": "1", "kind": "page_view",
            "occurred_at": "2026-03-01T12:00:00Z", "browser": "firefox", "properties": {"a": 1}
        })))
        .unwrap();
        assert_eq!(a.properties.as_deref(), Some(r#"{"a":1,"browser":"firefox"}"#));
    }

    #[test]
    fn invalid_lines_say_why() {
        let cases = [
            (json!({"source": "s", "id": "1", "kind": "click", "occurred_at": "2026-03-01T12:00:00Z"}), "unknown kind `click`"),
            (json!({"source": "s", "id": "1", "kind": "community", "occurred_at": "2026-03-01T12:00:00Z"}), "missing required field `action`"),
            (json!({"source": "s", "id": "1", "kind": "community", "action": "like", "occurred_at": "2026-03-01T12:00:00Z"}), "unknown action `like`"),
            (json!({"source": "s", "id": "1", "kind": "download", "occurred_at": "yesterday"}), "not an RFC 3339"),
            (json!({"source": "s", "id": "1", "kind": "download", "occurred_at": "2026-03-01T12:00:00"}), "not an RFC 3339"),
            (json!({"source": "s", "id": "1", "kind": "download", "occurred_at": "0001-01-01T00:00:00Z"}), "out of range"),
            (json!({"id": "1", "kind": "download", "occurred_at": "2026-03-01T12:00:00Z"}), "missing required field `source`"),
            (json!({"source": "s", "id": "1", "kind": "download", "occurred_at": "2026-03-01T12:00:00Z", "version": 2}), "field `version` must be a string, found a number"),
        ];
        for (line, reason) in cases {
            let err = Activity::from_object(obj(line.clone())).unwrap_err();
            assert!(err.0.contains(reason), "{line}: {err}");
        }
    }

    #[test]
    fn ip_actors_are_never_kept() {
        let a = Activity::from_object(obj(json!({
            "source": "s", "id": "1", "kind": "download", "occurred_at": "2026-03-01T12:00:00Z", "actor": "203.0.113.7"
        })))
        .unwrap();
        assert!(!a.actor.unwrap().contains("203.0"));
    }
}
