//! `oql-sync schema` and the config loader agree: every config file the project ships or
//! `init` writes is valid under the schema and loads, and each broken file below is
//! refused by both. The schemas are what editors check files against
//! (`# yaml-language-server: $schema=...`), so a schema stricter than the loader would
//! flag good files and a looser one would let mistakes through to `check`.

mod common;

use std::path::{Path, PathBuf};

use common::Env;
use serde_json::Value;

fn schema(env: &Env, file: &str) -> Value {
    serde_json::from_str(&env.ok(&["schema", file])).expect("`oql-sync schema` prints JSON")
}

fn validator(env: &Env, file: &str) -> jsonschema::Validator {
    jsonschema::validator_for(&schema(env, file)).expect("the schema is a valid JSON Schema")
}

fn yaml_value(text: &str) -> Value {
    serde_saphyr::from_str(text).expect("YAML")
}

fn schema_errors(v: &jsonschema::Validator, text: &str) -> Vec<String> {
    v.iter_errors(&yaml_value(text)).map(|e| format!("{} at {}", e, e.instance_path())).collect()
}

/// Which schema a file of a config dir falls under, by where it sits.
fn schema_name(relative: &str) -> Option<&'static str> {
    let relative = relative.strip_suffix(".disabled").unwrap_or(relative);
    if !(relative.ends_with(".yaml") || relative.ends_with(".yml")) {
        return None;
    }
    if relative.starts_with("connectors/") {
        Some("connector")
    } else if relative.starts_with("mappings/") {
        Some("mapping")
    } else if relative.starts_with("scoring.") {
        Some("scoring")
    } else if relative.starts_with("attribution.") {
        Some("attribution")
    } else {
        None
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_shipped_and_starter_config_file_is_valid_under_its_schema_and_loads() {
    let env = Env::new();
    let validators: Vec<(&str, jsonschema::Validator)> =
        ["connector", "mapping", "scoring", "attribution"].into_iter().map(|f| (f, validator(&env, f))).collect();
    let validator_of = |name: &str| &validators.iter().find(|(n, _)| *n == name).unwrap().1;

    // The starter, with every disabled example enabled: the loader takes them all.
    env.ok(&["init"]);
    for path in files(env.path()) {
        if let Some(stem) = path.to_str().and_then(|p| p.strip_suffix(".disabled")) {
            std::fs::rename(&path, stem).unwrap();
        }
    }
    // Their secrets, as an operator would give them.
    env.write("secrets/salesforce.key", common::salesforce_crm::test_keypair().0);
    let secrets = [
        ("COMMON_ROOM_TOKEN", "t"),
        ("GITHUB_TOKEN", "t"),
        ("HUBSPOT_TOKEN", "t"),
        ("SLACK_BOT_TOKEN", "t"),
        ("CHURN_WEBHOOK_URL", "https://hooks.example.com/churn"),
        ("OQL_WEBHOOK_URL", "https://hooks.example.com/oql"),
        ("SLACK_DIGEST_WEBHOOK_URL", "https://hooks.slack.com/services/T0/B0/x"),
    ];
    let check = env.run_with(&["check"], &secrets);
    assert_eq!(check.code, 0, "the starter with every connector enabled does not load:\n{}", check.stderr);

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    let dirs = [env.path().to_path_buf(), root.join("examples/quickstart"), root.to_path_buf()];
    for dir in &dirs {
        for path in files(dir) {
            let relative = path.strip_prefix(dir).unwrap().display().to_string();
            let Some(name) = schema_name(&relative) else { continue };
            let text = std::fs::read_to_string(&path).unwrap();
            let errors = schema_errors(validator_of(name), &text);
            assert!(errors.is_empty(), "{} is not valid under `oql-sync schema {name}`:\n  {}", path.display(), errors.join("\n  "));
            checked += 1;
        }
    }
    // The shipped starter examples sit outside a config dir's layout.
    for (file, name) in [("examples/starter/exports.yaml", "connector"), ("examples/starter/crm-file.yaml", "connector"), ("examples/starter/webhook.yaml", "connector")] {
        let errors = schema_errors(validator_of(name), &std::fs::read_to_string(root.join(file)).unwrap());
        assert!(errors.is_empty(), "{file}: {}", errors.join("; "));
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} files were checked");
}

#[test]
fn init_points_every_starter_file_at_a_schema_it_wrote() {
    let env = Env::new();
    env.ok(&["init"]);
    let mut pointed = 0;
    for path in files(env.path()) {
        let relative = path.strip_prefix(env.path()).unwrap().display().to_string();
        let Some(name) = schema_name(&relative) else { continue };
        let text = std::fs::read_to_string(&path).unwrap();
        let first = text.lines().next().unwrap_or_default();
        let target = first
            .strip_prefix("# yaml-language-server: $schema=")
            .unwrap_or_else(|| panic!("{relative} does not start with a yaml-language-server modeline: {first}"));
        let schema_path = path.parent().unwrap().join(target);
        let written: Value = serde_json::from_str(&std::fs::read_to_string(&schema_path).unwrap()).unwrap();
        assert_eq!(written, schema(&env, name), "{relative} points at {target}, which is not `oql-sync schema {name}`");
        pointed += 1;
    }
    assert!(pointed >= 10, "{pointed}");
}

/// Each broken file, with the config file it is: both the loader (`check`) and the
/// schema must refuse it.
const BROKEN: &[(&str, &str, &str)] = &[
    ("misspelt kind", "connectors/x.yaml", "name: x\nkind: hubspt\nschedule: \"0 0 * * * *\"\nmapping: mappings/crm.yaml\n"),
    ("unknown key", "connectors/x.yaml", "name: x\nkind: export\nschedule: \"0 0 * * * *\"\npath: data\nsetle: 5s\n"),
    ("missing schedule", "connectors/x.yaml", "name: x\nkind: export\npath: data\n"),
    ("a number where text goes", "connectors/x.yaml", "name: x\nkind: github\nschedule: \"0 0 * * * *\"\nrepos: [acme/widgets]\ntoken_env: 12\n"),
    ("text where a number goes", "connectors/x.yaml", "name: x\nkind: hubspot\nschedule: \"0 0 * * * *\"\nmapping: mappings/crm.yaml\ntoken_env: HS\ndead_after: many\n"),
    ("unknown format", "connectors/x.yaml", "name: x\nkind: export\nschedule: \"0 0 * * * *\"\npath: data\nformat: xml\n"),
    ("unknown signal in a mapping", "mappings/crm.yaml", "fields:\n  oql_stage: { signal: stagee }\n"),
    ("unknown scoring key", "scoring.yaml", "windows:\n  scor: 30\n"),
    ("negative points", "scoring.yaml", "points:\n  downloads:\n    low:\n      points: -1\n"),
    ("unknown attribution key", "attribution.yaml", "email_domain:\n  a.com: b.com\n"),
];

#[test]
fn the_loader_and_the_schema_refuse_the_same_broken_files() {
    let env = Env::new();
    env.ok(&["init"]);
    let base = env.run(&["check"]);
    assert_eq!(base.code, 0, "{}", base.stderr);
    for (what, file, text) in BROKEN {
        let path = env.path().join(file);
        let before = std::fs::read(&path).ok();
        std::fs::write(&path, text).unwrap();
        let check = env.run(&["check"]);
        assert_eq!(check.code, 2, "{what}: `check` accepted {file}:\n{text}\n{}", check.stdout);
        let name = schema_name(file).unwrap();
        let errors = schema_errors(&validator(&env, name), text);
        assert!(!errors.is_empty(), "{what}: the schema accepts {file}, which `check` refuses ({}):\n{text}", check.stderr.trim());
        match before {
            Some(b) => std::fs::write(&path, b).unwrap(),
            None => std::fs::remove_file(&path).unwrap(),
        }
    }
}
