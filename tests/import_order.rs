//! Property: the order activities are imported in (shuffled lines, split across files
//! imported in any order) never changes any output.

use std::path::Path;

use chrono::NaiveDate;
use oql_sync::app::compute_scores;
use oql_sync::attribution::AttributionRules;
use oql_sync::import::import_file;
use oql_sync::output;
use oql_sync::scoring::Model;
use oql_sync::sources::export::ExportOptions;
use oql_sync::store::Store;
use proptest::prelude::*;

fn golden_lines() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/mix-7.ndjson");
    std::fs::read_to_string(path).unwrap().lines().map(str::to_owned).collect()
}

fn companies_after_import(files: &[Vec<String>]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = Store::open(dir.path().join("oql.db").to_str().unwrap()).await.unwrap();
        for (i, lines) in files.iter().enumerate() {
            let path = dir.path().join(format!("part-{i}.ndjson"));
            std::fs::write(&path, lines.join("\n")).unwrap();
            import_file(&store, &path, &ExportOptions::default(), &AttributionRules::default()).await.unwrap();
        }
        let as_of = NaiveDate::from_ymd_opt(2026, 6, 30).unwrap();
        output::json(&compute_scores(&store, &Model::default(), as_of).await.unwrap())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn import_order_does_not_change_any_output(
        shuffled in Just(golden_lines()).prop_shuffle(),
        split in 0usize..2201,
        reverse_files in any::<bool>(),
    ) {
        let expected = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/mix-7.expected.json")).unwrap();
        let (a, b) = shuffled.split_at(split);
        let mut files = vec![a.to_vec(), b.to_vec()];
        if reverse_files {
            files.reverse();
        }
        let got = companies_after_import(&files);
        prop_assert_eq!(got.trim_end(), expected.trim_end());
    }
}
