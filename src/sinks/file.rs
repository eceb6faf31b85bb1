//! The `file` sink: writes the desired CRM rows of every company in scope as CSV or
//! NDJSON, for CRMs without a connector, spreadsheets, and the quickstart. The file is a
//! full snapshot, replaced atomically (written beside, then renamed), so a reader never
//! sees half a file.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::mapping::{Desired, Mapping, as_text};
use super::{Match, Sink, SinkError, WriteOutcome, WriteRecord};
use crate::config::Schedule;
use crate::store::Firing;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    Csv,
    Ndjson,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub name: String,
    #[allow(dead_code)]
    kind: String,
    pub schedule: Schedule,
    pub mapping: String,
    /// Output file, relative to the config dir.
    pub path: PathBuf,
    /// Default: from the extension (`.ndjson`/`.jsonl`), else CSV.
    #[serde(default)]
    pub format: Option<FileFormat>,
}

pub struct FileSink {
    path: PathBuf,
    format: FileFormat,
    columns: Vec<String>,
}

impl FileSink {
    pub fn build(c: &FileConfig, dir: &Path, mapping: &Mapping) -> FileSink {
        let path = dir.join(&c.path);
        let format = c.format.unwrap_or(match path.extension().and_then(|e| e.to_str()) {
            Some("ndjson" | "jsonl") => FileFormat::Ndjson,
            _ => FileFormat::Csv,
        });
        FileSink { path, format, columns: mapping.fields.keys().cloned().collect() }
    }

    fn render(&self, rows: &[(String, Desired)]) -> Result<Vec<u8>, SinkError> {
        let mut out = Vec::new();
        match self.format {
            FileFormat::Csv => {
                let mut w = csv::Writer::from_writer(&mut out);
                let header = std::iter::once("domain").chain(self.columns.iter().map(String::as_str));
                let io = |e: csv::Error| SinkError::Api(format!("cannot write CSV: {e}"));
                w.write_record(header).map_err(io)?;
                for (domain, fields) in rows {
                    let cells = std::iter::once(domain.clone())
                        .chain(self.columns.iter().map(|c| fields.get(c).map(as_text).unwrap_or_default()));
                    w.write_record(cells).map_err(io)?;
                }
                w.flush().map_err(|e| SinkError::Io { path: self.path.clone(), source: e })?;
            }
            FileFormat::Ndjson => {
                for (domain, fields) in rows {
                    let mut obj = serde_json::Map::new();
                    obj.insert("domain".into(), domain.clone().into());
                    obj.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
                    serde_json::to_writer(&mut out, &obj).map_err(|e| SinkError::Api(e.to_string()))?;
                    out.push(b'\n');
                }
            }
        }
        Ok(out)
    }
}

/// A temporary file beside `path`, of this writer only: two processes writing the same
/// output at once each rename a whole file of their own, never one the other is filling.
fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{}-{:08x}.tmp", std::process::id(), rand::random::<u32>()))
}

impl Sink for FileSink {
    fn batch_size(&self) -> usize {
        10_000
    }

    fn stats(&self) -> crate::http::CallCounts {
        crate::http::CallCounts::default()
    }

    async fn resolve(&mut self, domains: &[String]) -> Result<HashMap<String, Match>, SinkError> {
        Ok(domains.iter().map(|d| (d.clone(), Match::Found(d.clone()))).collect())
    }

    /// The file holds what the last run wrote: that is the accepted state already.
    async fn read(&mut self, _: &[(String, String)], _: &[String]) -> Result<HashMap<String, Desired>, SinkError> {
        Ok(HashMap::new())
    }

    async fn snapshot(&mut self, rows: &[(String, Desired)]) -> Result<(), SinkError> {
        let bytes = self.render(rows)?;
        let io = |source| SinkError::Io { path: self.path.clone(), source };
        if let Some(parent) = self.path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let tmp = temp_path(&self.path);
        let written = (|| {
            let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.map_err(io)
    }

    /// The snapshot already holds every record.
    async fn write(&mut self, batch: &[WriteRecord]) -> Result<Vec<WriteOutcome>, SinkError> {
        Ok(batch.iter().map(|r| WriteOutcome::Written { crm_id: r.domain.clone(), created: false }).collect())
    }

    async fn fire(&mut self, firing: &Firing, _: Option<&str>) -> Result<(), SinkError> {
        Err(SinkError::Api(format!("a file connector cannot run the action {}", firing.action)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two processes running the same file connector (before leases kept them apart, or
    /// two configs naming one output) each write a temporary file and rename it: with
    /// one shared temporary name, one renamed the other's half-written file or found it
    /// gone.
    #[test]
    fn two_writers_of_one_output_never_clash_and_leave_a_whole_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out/rows.csv");
        let writers: Vec<_> = (0..2)
            .map(|w| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
                    let mut sink = FileSink { path, format: FileFormat::Csv, columns: vec!["stage".into()] };
                    let rows: Vec<(String, Desired)> =
                        (0..2000).map(|i| (format!("w{w}-{i}.com"), [("stage".to_owned(), serde_json::json!("investigation"))].into_iter().collect())).collect();
                    for _ in 0..100 {
                        rt.block_on(sink.snapshot(&rows)).unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2001, "one writer's whole snapshot");
        let first = text.lines().nth(1).unwrap().split('-').next().unwrap().to_owned();
        assert!(text.lines().skip(1).all(|l| l.starts_with(&first)), "never a mix of two snapshots");
        let left: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 1, "no temporary file left behind: {left:?}");
    }
}
