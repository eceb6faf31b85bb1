//! Field mappings (`mappings/*.yaml`): which CRM fields a sink writes, and how each value
//! is made from a company's score. A mapping is checked completely at load (unknown
//! signals, duplicate CRM fields, value maps that miss or invent stages, bad date
//! formats), so a sync never discovers a broken mapping halfway through a run.
//!
//! Rendering is pure: `Mapping::desired` turns a `CompanyScore` into the CRM values the
//! record should hold. Values are JSON so each sink can send them in its API's types
//! (HubSpot takes strings, Salesforce and webhooks take typed JSON).

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::scoring::{CompanyScore, Micro, Stage};

/// A signal a CRM field can take its value from: the fields of the output contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(try_from = "String")]
pub enum Signal {
    Domain,
    Stage,
    PeakStage,
    StageSince,
    Score,
    FirstSeen,
    LastSeen,
    Downloads30d,
    Views30d,
    Community30d,
    Telemetry30d,
    Actors90d,
    Versions90d,
    Upgrading,
    ChurnRisk,
    Events30d,
    Actors30d,
    EventsMom,
    EventsWow,
    // Scarf's own stage, joined from its company rollup (`sources/scarf.rs`).
    ScarfStage,
    ScarfStageSince,
    // Insight signals (scoring/insight.rs): beyond the output contract.
    Reason,
    Trend,
    ScoreChange30d,
    TopPage30d,
    TopPackage90d,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SignalType {
    Text,
    Stage,
    Date,
    /// A count or a number, with the decimals it has.
    Number { decimals: u8 },
    Bool,
}

impl Signal {
    pub const ALL: [(Signal, &'static str); 26] = [
        (Signal::Domain, "domain"),
        (Signal::Stage, "stage"),
        (Signal::PeakStage, "peak_stage"),
        (Signal::StageSince, "stage_since"),
        (Signal::Score, "score"),
        (Signal::FirstSeen, "first_seen"),
        (Signal::LastSeen, "last_seen"),
        (Signal::Downloads30d, "downloads_30d"),
        (Signal::Views30d, "views_30d"),
        (Signal::Community30d, "community_30d"),
        (Signal::Telemetry30d, "telemetry_30d"),
        (Signal::Actors90d, "actors_90d"),
        (Signal::Versions90d, "versions_90d"),
        (Signal::Upgrading, "upgrading"),
        (Signal::ChurnRisk, "churn_risk"),
        (Signal::Events30d, "events_30d"),
        (Signal::Actors30d, "actors_30d"),
        (Signal::EventsMom, "events_mom"),
        (Signal::EventsWow, "events_wow"),
        (Signal::ScarfStage, "scarf_stage"),
        (Signal::ScarfStageSince, "scarf_stage_since"),
        // Insight signals.
        (Signal::Reason, "reason"),
        (Signal::Trend, "trend"),
        (Signal::ScoreChange30d, "score_change_30d"),
        (Signal::TopPage30d, "top_page_30d"),
        (Signal::TopPackage90d, "top_package_90d"),
    ];

    /// Whether the signal is one of `scoring::insight`, which a sync computes from each
    /// company's activities.
    pub fn is_insight(self) -> bool {
        matches!(self, Signal::Reason | Signal::Trend | Signal::ScoreChange30d | Signal::TopPage30d | Signal::TopPackage90d)
    }

    pub fn as_str(self) -> &'static str {
        Signal::ALL.iter().find(|(s, _)| *s == self).map(|(_, n)| *n).unwrap_or("?")
    }

    fn kind(self) -> SignalType {
        use Signal::*;
        match self {
            Domain | Reason | Trend | TopPage30d | TopPackage90d => SignalType::Text,
            ScoreChange30d => SignalType::Number { decimals: 2 },
            Stage | PeakStage | ScarfStage => SignalType::Stage,
            StageSince | FirstSeen | LastSeen | ScarfStageSince => SignalType::Date,
            Score => SignalType::Number { decimals: 2 },
            EventsMom | EventsWow => SignalType::Number { decimals: 1 },
            Upgrading | ChurnRisk => SignalType::Bool,
            _ => SignalType::Number { decimals: 0 },
        }
    }

    /// The CRM property type a sink should create for this field.
    pub fn crm_type(self, field: &FieldMapping) -> CrmType {
        match (self.kind(), &field.values, &field.format) {
            (SignalType::Stage, _, _) => CrmType::Enumeration,
            (SignalType::Bool, Some(_), _) => CrmType::Enumeration,
            (SignalType::Bool, None, _) => CrmType::Bool,
            (SignalType::Number { .. }, _, _) => CrmType::Number,
            (SignalType::Date, _, DateFormat::Date | DateFormat::EpochMillis) => CrmType::Date,
            _ => CrmType::Text,
        }
    }
}

impl TryFrom<String> for Signal {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Signal::ALL
            .iter()
            .find(|(_, name)| *name == s)
            .map(|(sig, _)| *sig)
            .ok_or_else(|| {
                let names: Vec<&str> = Signal::ALL.iter().map(|(_, n)| *n).collect();
                format!("unknown signal `{s}` (known: {})", names.join(", "))
            })
    }
}

/// The kind of CRM property a field needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrmType {
    Text,
    Number,
    Date,
    Bool,
    Enumeration,
}

/// How date signals are written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum DateFormat {
    /// `YYYY-MM-DD`.
    #[default]
    Date,
    /// Milliseconds since the epoch at midnight UTC (HubSpot's and many APIs' date form).
    EpochMillis,
    /// A chrono `strftime` pattern.
    Pattern(String),
}

impl TryFrom<String> for DateFormat {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "date" => Ok(DateFormat::Date),
            "epoch_ms" => Ok(DateFormat::EpochMillis),
            p if p.contains('%') => {
                use chrono::format::{Item, StrftimeItems};
                if StrftimeItems::new(p).any(|i| matches!(i, Item::Error)) {
                    Err(format!("`{p}` is not a valid strftime pattern"))
                } else {
                    Ok(DateFormat::Pattern(s))
                }
            }
            _ => Err(format!("unknown date format `{s}` (expected date, epoch_ms or a strftime pattern such as %d/%m/%Y)")),
        }
    }
}

/// One CRM field: where its value comes from and how it is written.
#[derive(Clone, Debug, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldMapping {
    pub from: Signal,
    /// Stage or boolean → CRM value (e.g. `ongoing_usage: Ongoing Usage`).
    #[serde(default)]
    pub values: Option<BTreeMap<String, String>>,
    /// Decimal places kept of a number (half away from zero).
    #[serde(default)]
    pub round: Option<u8>,
    #[serde(default)]
    pub format: DateFormat,
    /// When the signal has no value (e.g. `events_mom` with nothing to compare), clear
    /// the CRM field instead of leaving what it holds.
    #[serde(default)]
    pub clear_when_missing: bool,
    /// `always` (default) writes the value whenever it changes; `if_empty` writes it only
    /// while the CRM field is empty (read live before the write), so a value someone
    /// typed by hand stays.
    #[serde(default)]
    pub update: UpdateRule,
}

/// When a field's value is written over what the CRM holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UpdateRule {
    #[default]
    Always,
    IfEmpty,
}

/// What a company's first accepted sync does with the triggers its stage matches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FirstSync {
    /// Record the stage and fire nothing: connecting a CRM does not start a nurture for
    /// every company already in a trigger's stage. Later changes fire as usual.
    #[default]
    Baseline,
    /// Treat the first sync as a change from no stage, and fire.
    Fire,
}

/// `match`: how a company is found in the CRM.
#[derive(Clone, Debug, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MatchRule {
    /// The CRM field that holds the company's domain (HubSpot `domain`, Salesforce `Website`).
    #[serde(default)]
    pub crm_field: Option<String>,
    /// An external-id field keyed by domain (Salesforce upserts through it).
    #[serde(default)]
    pub external_id: Option<String>,
    /// A domain that matched no record, or several, is looked up again after this many
    /// hours, or as soon as the values it should carry change; until then a sync asks
    /// the CRM nothing about it.
    #[serde(default = "default_recheck_hours")]
    pub recheck_unmatched_hours: u32,
}

fn default_recheck_hours() -> u32 {
    24
}

/// `when: {from?, to}`.
#[derive(Clone, Debug, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct When {
    #[serde(default)]
    pub from: Option<StageName>,
    pub to: StageName,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct StageName(pub Stage);

impl TryFrom<String> for StageName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Stage::parse(&s).map(StageName).ok_or_else(|| {
            format!("unknown stage `{s}` (expected interest, investigation, experimentation, ongoing_usage or inactive)")
        })
    }
}

/// What a trigger does. One key per action; sinks reject the ones they cannot run.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum Action {
    /// Add the company to a HubSpot list (manual or snapshot), by list id.
    HubspotList(String),
    /// Add the account's contacts to a Salesforce campaign.
    SalesforceCampaign(CampaignTarget),
    /// Create a task for the Salesforce account's owner.
    SalesforceTask(TaskTarget),
    /// POST a JSON event to a URL (read from the environment variable named by `url_env`
    /// when the URL holds a secret).
    Webhook(WebhookTarget),
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignTarget {
    /// The Campaign id (`701…`).
    pub id: String,
    /// The CampaignMember status to set (one the campaign defines).
    #[serde(default = "default_member_status")]
    pub status: String,
}

fn default_member_status() -> String {
    "Sent".into()
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskTarget {
    /// A message template (`docs/sync.md`, Message templates).
    pub subject: super::template::MessageTemplate,
    #[serde(default = "default_due")]
    pub due_in_days: u32,
}

fn default_due() -> u32 {
    2
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookTarget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_env: Option<String>,
    /// A message template rendered into the event's `text`, for receivers that post it
    /// as it is (chat tools, ticket systems).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<super::template::MessageTemplate>,
}

impl WebhookTarget {
    /// The URL to POST to, read from the environment when it is a secret.
    pub fn resolve(&self) -> Result<String, super::SinkError> {
        match (&self.url, &self.url_env) {
            (Some(url), _) => Ok(url.clone()),
            (None, Some(var)) => std::env::var(var)
                .inspect(|url| crate::redaction::register(url))
                .map_err(|_| super::SinkError::Api(format!("webhook `url_env`: environment variable {var} is not set"))),
            (None, None) => Err(super::SinkError::Api("webhook has no `url` or `url_env`".into())),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    pub when: When,
    pub action: Action,
}

impl Trigger {
    pub fn matches(&self, from: Option<Stage>, to: Stage) -> bool {
        self.when.to.0 == to && self.when.from.is_none_or(|f| Some(f.0) == from)
    }
}

/// A whole mapping file.
#[derive(Clone, Debug, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// The CRM object (HubSpot `companies`, Salesforce `Account`).
    pub object: String,
    #[serde(rename = "match")]
    pub match_rule: MatchRule,
    #[serde(default)]
    pub create_missing: bool,
    /// Stages whose companies are pushed; a company already in the CRM stays synced
    /// whatever its stage, so a lead that goes cold is seen going cold.
    #[serde(default = "all_stages")]
    pub stages: Vec<StageName>,
    pub fields: BTreeMap<String, FieldMapping>,
    #[serde(default)]
    pub triggers: Vec<Trigger>,
    /// Whether a company's first accepted sync fires the triggers its stage matches.
    #[serde(default)]
    pub first_sync: FirstSync,
}

impl Default for Mapping {
    fn default() -> Self {
        Mapping {
            object: String::new(),
            match_rule: MatchRule { crm_field: None, external_id: None, recheck_unmatched_hours: default_recheck_hours() },
            create_missing: false,
            stages: all_stages(),
            fields: BTreeMap::new(),
            triggers: Vec::new(),
            first_sync: FirstSync::default(),
        }
    }
}

fn all_stages() -> Vec<StageName> {
    Stage::ALL.into_iter().map(StageName).collect()
}

/// The CRM values one record should hold, by CRM field.
pub type Desired = BTreeMap<String, Value>;

impl Mapping {
    /// Checks what types alone cannot: returns the first problem as (field path, message).
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.match_rule.crm_field.is_none() && self.match_rule.external_id.is_none() {
            return Err(("match".into(), "needs `crm_field` or `external_id`".into()));
        }
        if self.fields.is_empty() {
            return Err(("fields".into(), "names no field to write".into()));
        }
        let mut lower: BTreeMap<String, &str> = BTreeMap::new();
        for (name, field) in &self.fields {
            let at = format!("fields.{name}");
            // CRM field names are case-insensitive in HubSpot and Salesforce alike.
            if let Some(first) = lower.insert(name.to_lowercase(), name) {
                return Err((at, format!("duplicate CRM field: `{first}` and `{name}` are the same field")));
            }
            if Some(name) == self.match_rule.crm_field.as_ref() {
                return Err((at, "is the match field; oql-sync never overwrites it".into()));
            }
            let kind = field.from.kind();
            if let Some(values) = &field.values {
                let expected: Vec<&str> = match kind {
                    SignalType::Stage => Stage::ALL.iter().map(|s| s.as_str()).collect(),
                    SignalType::Bool => vec!["true", "false"],
                    _ => {
                        return Err((
                            format!("{at}.values"),
                            format!("a value map needs a stage or yes/no signal, not `{}`", field.from.as_str()),
                        ));
                    }
                };
                if let Some(bad) = values.keys().find(|k| !expected.contains(&k.as_str())) {
                    return Err((format!("{at}.values"), format!("`{bad}` is not one of {}", expected.join(", "))));
                }
                let needed: Vec<&str> = match (kind, field.from) {
                    (SignalType::Stage, Signal::Stage) => self.stages.iter().map(|s| s.0.as_str()).collect(),
                    _ => expected.clone(),
                };
                let missing: Vec<&str> = needed.into_iter().filter(|k| !values.contains_key(*k)).collect();
                if !missing.is_empty() {
                    return Err((format!("{at}.values"), format!("has no value for {}", missing.join(", "))));
                }
                if let Some((k, _)) = values.iter().find(|(_, v)| v.trim().is_empty()) {
                    return Err((format!("{at}.values.{k}"), "maps to an empty value".into()));
                }
            }
            if let Some(round) = field.round {
                match kind {
                    SignalType::Number { decimals } if round <= decimals => {}
                    SignalType::Number { decimals } => {
                        return Err((format!("{at}.round"), format!("`{}` has {decimals} decimals; round must be 0 to {decimals}", field.from.as_str())));
                    }
                    _ => return Err((format!("{at}.round"), format!("`round` applies to number signals only; `{}` is not a number", field.from.as_str()))),
                }
            }
            if field.format != DateFormat::Date && kind != SignalType::Date {
                return Err((format!("{at}.format"), format!("`{}` is not a date", field.from.as_str())));
            }
        }
        for (i, t) in self.triggers.iter().enumerate() {
            if let Action::Webhook(w) = &t.action
                && w.url.is_some() == w.url_env.is_some() {
                    return Err((format!("triggers[{i}].action.webhook"), "needs exactly one of `url` or `url_env`".into()));
                }
        }
        Ok(())
    }

    /// The fields written only while the CRM holds no value in them.
    pub fn if_empty_fields(&self) -> Vec<String> {
        self.fields.iter().filter(|(_, f)| f.update == UpdateRule::IfEmpty).map(|(n, _)| n.clone()).collect()
    }

    /// Whether a field reads an insight signal, which a sync computes per company.
    pub fn needs_insight(&self) -> bool {
        self.fields.values().any(|f| f.from.is_insight())
    }

    /// Whether a company in `stage` is pushed (companies the CRM already holds always are).
    pub fn pushes(&self, stage: Stage) -> bool {
        self.stages.iter().any(|s| s.0 == stage)
    }

    /// The values the CRM record of this company should hold. A field whose signal has
    /// no value is absent (left alone), or `null` (cleared) with `clear_when_missing`.
    pub fn desired(&self, score: &CompanyScore) -> Desired {
        let mut out = Desired::new();
        for (name, field) in &self.fields {
            match render(field, score) {
                Some(v) => {
                    out.insert(name.clone(), v);
                }
                None if field.clear_when_missing => {
                    out.insert(name.clone(), Value::Null);
                }
                None => {}
            }
        }
        out
    }
}

fn render(field: &FieldMapping, s: &CompanyScore) -> Option<Value> {
    use Signal::*;
    let mapped = |key: &str| -> Value {
        match &field.values {
            Some(values) => Value::String(values.get(key).cloned().unwrap_or_else(|| key.to_owned())),
            None => Value::String(key.to_owned()),
        }
    };
    let date = |d: NaiveDate| -> Value {
        match &field.format {
            DateFormat::Date => Value::String(d.format("%Y-%m-%d").to_string()),
            DateFormat::EpochMillis => Value::from(crate::scoring::day_number(d) as i64 * 86_400_000),
            DateFormat::Pattern(p) => Value::String(d.format(p).to_string()),
        }
    };
    let count = |n: u32| Value::from(n);
    let decimals = match field.from.kind() {
        SignalType::Number { decimals } => field.round.unwrap_or(decimals),
        _ => 0,
    };
    Some(match field.from {
        Domain => Value::String(s.domain.clone()),
        Stage => mapped(s.stage.as_str()),
        PeakStage => mapped(s.peak_stage.as_str()),
        StageSince => date(s.stage_since),
        FirstSeen => date(s.first_seen),
        LastSeen => date(s.last_seen),
        Score => decimal(s.score, 6, decimals),
        Downloads30d => count(s.downloads_30d),
        Views30d => count(s.views_30d),
        Community30d => count(s.community_30d),
        Telemetry30d => count(s.telemetry_30d),
        Actors90d => count(s.actors_90d),
        Versions90d => count(s.versions_90d),
        Events30d => count(s.events_30d),
        Actors30d => count(s.actors_30d),
        Upgrading => bool_value(field, s.upgrading),
        ChurnRisk => bool_value(field, s.churn_risk),
        EventsMom => decimal(s.events_mom?, 1, decimals),
        EventsWow => decimal(s.events_wow?, 1, decimals),
        // A stage Scarf names that is not one of ours has no entry in a value map: it
        // goes out as Scarf spells it.
        ScarfStage => mapped(s.scarf_stage.as_deref()?),
        ScarfStageSince => date(s.scarf_stage_since?),
        Reason => Value::String(s.insight.as_ref()?.reason.clone()),
        Trend => Value::String(s.insight.as_ref()?.trend.as_str().to_owned()),
        ScoreChange30d => decimal(s.insight.as_ref()?.score_change_30d, 6, decimals),
        TopPage30d => Value::String(s.insight.as_ref()?.top_page_30d.clone()?),
        TopPackage90d => Value::String(s.insight.as_ref()?.top_package_90d.clone()?),
    })
}

fn bool_value(field: &FieldMapping, b: bool) -> Value {
    match &field.values {
        Some(values) => Value::String(values[if b { "true" } else { "false" }].clone()),
        None => Value::Bool(b),
    }
}

/// A fixed-point number with `scale` decimals, rounded half away from zero to `keep`
/// decimals, as a JSON number (an integer when `keep` is 0).
fn decimal(value: Micro, scale: u32, keep: u8) -> Value {
    let drop = 10i64.pow(scale - keep as u32);
    let rounded = crate::scoring::signals::div_round_half_away(value, drop);
    if keep == 0 {
        return Value::from(rounded);
    }
    let text = format!(
        "{}{}.{:0width$}",
        if rounded < 0 { "-" } else { "" },
        rounded.unsigned_abs() / 10u64.pow(keep as u32),
        rounded.unsigned_abs() % 10u64.pow(keep as u32),
        width = keep as usize
    );
    text.parse::<serde_json::Number>().map(Value::Number).unwrap_or(Value::Null)
}

/// A CRM value as the text most CRM APIs (HubSpot) take: `null` clears (empty text).
pub fn as_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(yaml: &str) -> Mapping {
        serde_saphyr::from_str(yaml).unwrap()
    }

    fn score() -> CompanyScore {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        CompanyScore {
            domain: "acme.com".into(),
            stage: Stage::Experimentation,
            peak_stage: Stage::Experimentation,
            stage_since: d("2026-10-02"),
            score: 42_125_000,
            first_seen: d("2026-08-01"),
            last_seen: d("2026-10-30"),
            downloads_30d: 7,
            views_30d: 3,
            community_30d: 0,
            telemetry_30d: 1,
            actors_90d: 2,
            versions_90d: 2,
            upgrading: true,
            churn_risk: false,
            events_30d: 11,
            actors_30d: 2,
            events_mom: None,
            events_wow: Some(-125),
            scarf_stage: None,
            scarf_stage_since: None,
            insight: None,
        }
    }

    const BASE: &str = "object: companies\nmatch: { crm_field: domain }\n";

    #[test]
    fn renders_values_rounding_dates_and_missing_signals() {
        let m = mapping(&format!(
            "{BASE}fields:\n  oql_stage: {{ from: stage, values: {{ interest: I, investigation: Inv, experimentation: Exp, ongoing_usage: OU, inactive: Gone }} }}\n  oql_score: {{ from: score }}\n  oql_score_int: {{ from: score, round: 0 }}\n  oql_last: {{ from: last_seen, format: epoch_ms }}\n  oql_since: {{ from: stage_since, format: \"%d/%m/%Y\" }}\n  oql_mom: {{ from: events_mom }}\n  oql_mom_clear: {{ from: events_mom, clear_when_missing: true }}\n  oql_wow: {{ from: events_wow }}\n  oql_upgrading: {{ from: upgrading, values: {{ \"true\": Yes, \"false\": No }} }}\n"
        ));
        m.validate().unwrap();
        let d = m.desired(&score());
        assert_eq!(d["oql_stage"], "Exp");
        assert_eq!(d["oql_score"], serde_json::json!(42.13));
        assert_eq!(d["oql_score_int"], serde_json::json!(42));
        assert_eq!(d["oql_last"], serde_json::json!(1_793_318_400_000i64));
        assert_eq!(d["oql_since"], "02/10/2026");
        assert!(!d.contains_key("oql_mom"), "no value leaves the field alone");
        assert_eq!(d["oql_mom_clear"], Value::Null);
        assert_eq!(d["oql_wow"], serde_json::json!(-12.5));
        assert_eq!(d["oql_upgrading"], "Yes");
        assert_eq!(as_text(&d["oql_score"]), "42.13");
    }

    #[test]
    fn rejects_bad_value_maps_duplicates_and_misplaced_options() {
        let err = |fields: &str| mapping(&format!("{BASE}fields:\n{fields}")).validate().unwrap_err();
        assert_eq!(
            err("  s: { from: stage, values: { interest: I } }\n").1,
            "has no value for investigation, experimentation, ongoing_usage, inactive"
        );
        assert_eq!(
            err("  s: { from: stage, values: { trial: T } }\n").1,
            "`trial` is not one of interest, investigation, experimentation, ongoing_usage, inactive"
        );
        assert_eq!(err("  a: { from: score, values: { x: y } }\n").0, "fields.a.values");
        assert_eq!(err("  OQL: { from: score }\n  oql: { from: stage }\n").1, "duplicate CRM field: `OQL` and `oql` are the same field");
        assert_eq!(err("  a: { from: stage, round: 1 }\n").0, "fields.a.round");
        assert_eq!(err("  a: { from: score, round: 3 }\n").1, "`score` has 2 decimals; round must be 0 to 2");
        assert_eq!(err("  a: { from: score, format: epoch_ms }\n").0, "fields.a.format");
        assert_eq!(err("  domain: { from: domain }\n").1, "is the match field; oql-sync never overwrites it");
    }

    #[test]
    fn a_stage_map_needs_only_the_pushed_stages() {
        let m = mapping(&format!(
            "{BASE}stages: [experimentation, ongoing_usage]\nfields:\n  s: {{ from: stage, values: {{ experimentation: E, ongoing_usage: O }} }}\n"
        ));
        m.validate().unwrap();
    }

    #[test]
    fn triggers_match_on_to_and_optional_from() {
        let m = mapping(&format!(
            "{BASE}fields:\n  s: {{ from: stage }}\ntriggers:\n  - when: {{ to: experimentation }}\n    action: {{ hubspot_list: \"42\" }}\n  - when: {{ from: ongoing_usage, to: inactive }}\n    action: {{ webhook: {{ url: \"http://x\" }} }}\n"
        ));
        m.validate().unwrap();
        assert!(m.triggers[0].matches(None, Stage::Experimentation));
        assert!(m.triggers[0].matches(Some(Stage::Investigation), Stage::Experimentation));
        assert!(!m.triggers[1].matches(Some(Stage::Experimentation), Stage::Inactive));
        assert!(m.triggers[1].matches(Some(Stage::OngoingUsage), Stage::Inactive));
    }
}
