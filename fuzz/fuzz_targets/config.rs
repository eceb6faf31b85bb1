//! Config loading (`Config::from_files`, what `Config::load` runs on the files it read):
//! the input, split at NUL bytes, is a connector, a mapping, `scoring.yaml` and
//! `attribution.yaml`. No input may panic or hang; every error names its file.
#![no_main]

use std::path::PathBuf;

use oql_sync::config::{Config, ConfigFiles};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|&b| b == 0);
    let dir = PathBuf::from("/cfg");
    let mut files = ConfigFiles { dir: dir.clone(), ..Default::default() };
    if let Some(c) = parts.next() {
        files.connectors.push((dir.join("connectors/c.yaml"), c.to_vec()));
    }
    if let Some(m) = parts.next() {
        files.mappings.push((dir.join("mappings/m.yaml"), m.to_vec()));
    }
    files.scoring = parts.next().map(<[u8]>::to_vec);
    files.attribution = parts.next().map(<[u8]>::to_vec);
    if let Err(e) = Config::from_files(files) {
        // Every problem is reported, one a line, each naming its file.
        for line in e.lines() {
            assert!(line.starts_with("/cfg/"), "{line}");
        }
    }
});
