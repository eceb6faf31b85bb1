//! JSON Schemas of the config files, derived from the very types the loader deserializes
//! into, so that an editor (through `# yaml-language-server: $schema=...`) completes and
//! checks exactly what `Config::load` accepts. Types that parse a string themselves
//! (`try_from = "String"`) describe their accepted shapes here, next to each other.
//!
//! What a schema cannot say (a cron expression that never fires, a mapping naming a
//! missing file) is still only caught by `oql-sync check`.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, generate::SchemaSettings, json_schema};
use serde_json::{Map, Value, json};

use crate::activity::Kind;
use crate::attribution::{AttributionFile, PersonalHost, UtcDate};
use crate::config::{Domain, ExportConnector, KindName, Schedule};
use crate::scoring::Stage;
use crate::sinks::template::MessageTemplate;
use crate::scoring::model::{Days, ModelOverrides, Percent, Points, Ratio};
use crate::sinks::common_room::CommonRoomConfig;
use crate::sinks::file::FileConfig;
use crate::sinks::hubspot::HubSpotConfig;
use crate::sinks::mapping::{DateFormat, Mapping, Signal, StageName};
use crate::sinks::salesforce::SalesforceConfig;
use crate::sinks::webhook::WebhookConfig;
use crate::sources::github::GitHubConfig;
use crate::sources::scarf::ScarfConfig;
use crate::sources::slack::SlackConfig;

/// The config files that have a schema, as `oql-sync schema FILE` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ConfigFile {
    /// `connectors/*.yaml`: one connector of any kind.
    Connector,
    /// `mappings/*.yaml`.
    Mapping,
    /// `scoring.yaml`.
    Scoring,
    /// `attribution.yaml`.
    Attribution,
}

impl ConfigFile {
    pub const ALL: [ConfigFile; 4] = [ConfigFile::Connector, ConfigFile::Mapping, ConfigFile::Scoring, ConfigFile::Attribution];

    /// The file name `init` writes the schema to, under `<config dir>/schemas/`.
    pub fn file_name(self) -> &'static str {
        match self {
            ConfigFile::Connector => "connector.schema.json",
            ConfigFile::Mapping => "mapping.schema.json",
            ConfigFile::Scoring => "scoring.schema.json",
            ConfigFile::Attribution => "attribution.schema.json",
        }
    }

    /// The config file a path names, by the folder it is in or its stem.
    pub fn of_path(relative: &str) -> Option<ConfigFile> {
        let relative = relative.trim_start_matches("./");
        if relative.starts_with("connectors/") {
            Some(ConfigFile::Connector)
        } else if relative.starts_with("mappings/") {
            Some(ConfigFile::Mapping)
        } else if relative.starts_with("scoring.") {
            Some(ConfigFile::Scoring)
        } else if relative.starts_with("attribution.") {
            Some(ConfigFile::Attribution)
        } else {
            None
        }
    }

    /// The modeline a YAML file in `<config dir>/<relative>` starts with so that editors
    /// find the schema `init` wrote beside it.
    pub fn modeline(self, relative: &str) -> String {
        let depth = relative.trim_start_matches("./").matches('/').count();
        format!("# yaml-language-server: $schema={}schemas/{}\n", "../".repeat(depth), self.file_name())
    }
}

fn generator() -> SchemaGenerator {
    SchemaSettings::draft2020_12().for_deserialize().into_generator()
}

/// The schema of one config file, as a JSON value.
pub fn schema(file: ConfigFile) -> Value {
    let (title, schema) = match file {
        ConfigFile::Connector => ("oql-sync connector (connectors/*.yaml)", connector_schema()),
        ConfigFile::Mapping => ("oql-sync field mapping (mappings/*.yaml)", generator().into_root_schema_for::<Mapping>().to_value()),
        ConfigFile::Scoring => ("oql-sync scoring overrides (scoring.yaml)", generator().into_root_schema_for::<ModelOverrides>().to_value()),
        ConfigFile::Attribution => ("oql-sync attribution rules (attribution.yaml)", generator().into_root_schema_for::<AttributionFile>().to_value()),
    };
    let mut schema = schema;
    if let Some(object) = schema.as_object_mut() {
        object.insert("title".into(), json!(title));
    }
    schema
}

/// The connector kinds, as `kind:` names them.
pub const KINDS: [&str; 9] = ["export", "github", "slack", "scarf", "hubspot", "salesforce", "common_room", "webhook", "file"];

/// One schema for every connector file: a `oneOf` over the kinds, each the kind's
/// config type with `kind` pinned to its name, so an editor offers the keys of the kind
/// the file declares.
fn connector_schema() -> Value {
    let mut generator = generator();
    let kinds: [(&str, Schema); 9] = [
        ("export", generator.subschema_for::<ExportConnector>()),
        ("github", generator.subschema_for::<GitHubConfig>()),
        ("slack", generator.subschema_for::<SlackConfig>()),
        ("scarf", generator.subschema_for::<ScarfConfig>()),
        ("hubspot", generator.subschema_for::<HubSpotConfig>()),
        ("salesforce", generator.subschema_for::<SalesforceConfig>()),
        ("common_room", generator.subschema_for::<CommonRoomConfig>()),
        ("webhook", generator.subschema_for::<WebhookConfig>()),
        ("file", generator.subschema_for::<FileConfig>()),
    ];
    let mut defs = generator.take_definitions(true);
    let mut one_of = Vec::new();
    for (kind, reference) in kinds {
        debug_assert!(KINDS.contains(&kind));
        let reference = reference.to_value();
        let name = reference.get("$ref").and_then(Value::as_str).and_then(|r| r.rsplit('/').next()).map(str::to_owned);
        if let Some(def) = name.and_then(|n| defs.get_mut(&n)).and_then(Value::as_object_mut) {
            if let Some(props) = def.get_mut("properties").and_then(Value::as_object_mut) {
                props.insert("kind".into(), json!({ "const": kind, "description": format!("`{kind}`: this connector's kind") }));
            }
        }
        one_of.push(reference);
    }
    let kinds: Vec<&str> = KINDS.to_vec();
    let mut root = Map::new();
    root.insert("$schema".into(), json!("https://json-schema.org/draft/2020-12/schema"));
    // `kind` first, on its own: a misspelt kind gets one message listing the kinds
    // rather than eight "does not match" ones.
    root.insert("type".into(), json!("object"));
    root.insert("required".into(), json!(["name", "kind", "schedule"]));
    root.insert("properties".into(), json!({ "kind": { "enum": kinds } }));
    root.insert("oneOf".into(), Value::Array(one_of));
    root.insert("$defs".into(), Value::Object(defs));
    Value::Object(root)
}

/// Implements `JsonSchema` for a type deserialized from a string it checks itself.
macro_rules! string_schema {
    ($ty:ty, $name:literal, $schema:expr) => {
        impl JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                $name.into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                $schema
            }
        }
    };
}

string_schema!(Schedule, "Schedule", json_schema!({
    "type": "string",
    "description": "A cron expression with seconds: sec min hour day month weekday [year], e.g. `0 */15 * * * *`.",
    "examples": ["0 */15 * * * *", "0 0 3 * * *"]
}));
string_schema!(Domain, "Domain", json_schema!({ "type": "string", "description": "A company's domain, e.g. `acme.com`." }));
string_schema!(UtcDate, "UtcDate", json_schema!({ "type": "string", "format": "date", "description": "A UTC calendar date, YYYY-MM-DD." }));
string_schema!(PersonalHost, "PersonalHost", json_schema!({
    "type": "string",
    "description": "A host name, optionally as a wildcard (`*.mysite.dev`); an entry always covers its subdomains."
}));
string_schema!(KindName, "ActivityKind", json_schema!({ "enum": Kind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>() }));
string_schema!(StageName, "StageName", json_schema!({ "enum": Stage::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>() }));
string_schema!(Signal, "Signal", json_schema!({
    "description": "A signal (docs/signals.md).",
    "enum": Signal::ALL.iter().map(|(_, n)| *n).collect::<Vec<_>>()
}));
string_schema!(DateFormat, "DateFormat", json_schema!({
    "description": "`date` (YYYY-MM-DD), `epoch_ms`, or a strftime pattern such as `%d/%m/%Y`.",
    "anyOf": [{ "enum": ["date", "epoch_ms"] }, { "type": "string", "pattern": "%" }]
}));
string_schema!(Points, "Points", json_schema!({ "type": "number", "minimum": 0, "description": "Points, at most six decimals." }));
string_schema!(Ratio, "Ratio", json_schema!({ "type": "number", "minimum": 0, "maximum": 1 }));
string_schema!(Percent, "Percent", json_schema!({ "type": "number", "description": "A percentage (25 is 25%), at most one decimal." }));
string_schema!(MessageTemplate, "MessageTemplate", json_schema!({
    "type": "string",
    "description": "A minijinja template; its variables are the signals and company, from, to, crm_id, connector, as_of (docs/sync.md)."
}));
string_schema!(Days, "Days", json_schema!({ "type": "integer", "minimum": 1, "maximum": 3650, "description": "A number of days." }));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modelines_point_at_the_schemas_folder_of_the_config_dir() {
        assert_eq!(ConfigFile::of_path("connectors/hubspot.yaml"), Some(ConfigFile::Connector));
        assert_eq!(ConfigFile::Connector.modeline("connectors/hubspot.yaml"), "# yaml-language-server: $schema=../schemas/connector.schema.json\n");
        assert_eq!(ConfigFile::Scoring.modeline("scoring.yaml"), "# yaml-language-server: $schema=schemas/scoring.schema.json\n");
    }

    #[test]
    fn every_connector_kind_pins_its_kind() {
        let schema = schema(ConfigFile::Connector);
        let defs = schema["$defs"].as_object().unwrap();
        let pinned: Vec<&str> = defs.values().filter_map(|d| d["properties"]["kind"]["const"].as_str()).collect();
        assert_eq!(pinned.len(), 9, "{pinned:?}");
    }
}
