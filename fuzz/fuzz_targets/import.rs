//! Export parsing (`ExportFile::from_reader`, the path `import` and watched folders
//! take): the first byte picks the format and the name the file is given, the rest is
//! the file. No input may panic, hang or lose the line count; every valid activity is
//! attributed like the importer does. Each line of the body that is a JSON object is
//! also read by both NDJSON paths, which must agree: the fast one (borrowed fields) and
//! the JSON map one.
#![no_main]

use std::path::Path;

use oql_sync::activity::Activity;
use oql_sync::attribution::AttributionRules;
use oql_sync::sources::export::{ExportFile, ExportFormat, ExportOptions, Record};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let (name, format) = match selector % 6 {
        0 => ("fuzz.ndjson", ExportFormat::Auto),
        1 => ("fuzz.csv", ExportFormat::Auto),
        2 => ("fuzz.txt", ExportFormat::Auto),
        3 => ("fuzz", ExportFormat::Csv),
        4 => ("fuzz", ExportFormat::Scarf),
        _ => ("fuzz", ExportFormat::Ndjson),
    };
    let mut options = ExportOptions { format, ..Default::default() };
    if selector & 0x80 != 0 {
        options.scarf.doc_pixels = vec!["px".into()];
        options.scarf.telemetry_packages = vec!["tel".into()];
        options.source = Some("fuzz".into());
    }
    if let Ok(text) = std::str::from_utf8(body) {
        let source = options.source.as_deref();
        for line in text.lines().map(str::trim) {
            if let Err(e) = oql_sync::json_object::parse(line) {
                if oql_sync::json_object::is_repeated_key(&e) {
                    assert!(Activity::from_json_line(line, source).is_err(), "a repeated key is refused: {line}");
                }
            }
            if let Ok(serde_json::Value::Object(mut obj)) = oql_sync::json_object::parse(line) {
                if let Some(s) = source {
                    obj.insert("source".into(), serde_json::Value::String(s.into()));
                }
                assert_eq!(Activity::from_json_line(line, source), Activity::from_object(obj), "{line}");
            }
        }
    }
    let rules = AttributionRules::default();
    let Ok(file) = ExportFile::from_reader(Path::new(name), std::io::Cursor::new(body.to_vec()), body.len() as u64, &options) else {
        return;
    };
    let mut last_line = 0;
    for record in file {
        match record {
            Ok(Record::Valid { line, activity }) => {
                assert!(line >= last_line, "line numbers go forward");
                last_line = line;
                let _ = rules.attribute(activity.company_domain.as_deref(), activity.actor.as_deref(), activity.email_domain.as_deref());
                let _ = oql_sync::activity::format_timestamp(activity.occurred_at);
                if let Some(url) = &activity.url {
                    assert_eq!(oql_sync::activity::redact_personal_data(url), url.as_str(), "redaction is idempotent");
                }
            }
            Ok(Record::Invalid { line, reason, .. }) => {
                assert!(line >= last_line, "line numbers go forward");
                last_line = line;
                assert!(!reason.contains('\n'), "one line per reason");
            }
            Err(_) => break,
        }
    }
});
