//! Watched buckets: an `export` connector whose `path` is `s3://bucket/prefix` or
//! `gs://bucket/prefix` imports the export files there, as a watched folder does, so
//! Scarf's scheduled exports (which it writes to a bucket of yours) need no person.
//!
//! The guarantees are a folder's: each object is imported once, known by its key and
//! ETag (an object written again under the same key has a new ETag and is read again,
//! activity ids making its old rows duplicates); a partial object is never read (a
//! bucket lists an object only once its upload completed, and the read asks for the
//! ETag listed, so an object replaced between the listing and the read is left for the
//! next poll); gzip is read as in a folder. One object that cannot be read is reported
//! with its key and tried again next poll; the others are imported all the same.
//!
//! Scarf writes to the bucket's root (<https://docs.scarf.sh/data-export/#daily-scheduled-exports>):
//! a header-only `scarf-test.csv` first, skipped without a word; then
//! `events-scarf-export-<start>-<end>.csv`, imported as Scarf events; and
//! `company-rollups-scarf-export-<start>-<end>.csv`, read into Scarf's stages (the
//! `scarf_stage` signals) like the API's company rollup.
//!
//! Credentials come from the environment as each cloud's tools read them, through
//! `object_store`: for S3 `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` (and
//! `AWS_SESSION_TOKEN`), a web identity token (`AWS_WEB_IDENTITY_TOKEN_FILE`), or the
//! instance's or container's role, with `AWS_REGION` and `AWS_ENDPOINT_URL` (an
//! S3-compatible server); for Google Cloud Storage `GOOGLE_APPLICATION_CREDENTIALS`
//! (or `GOOGLE_SERVICE_ACCOUNT`), else the machine's service account.

use std::path::PathBuf;
use std::sync::Arc;

use futures_util::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, ObjectMeta, ObjectStore};

use crate::attribution::AttributionRules;
use crate::config::ExportConnector;
use crate::import::{FileSummary, import_span};
use crate::sources::export::{ExportOptions, Span, is_export_file_name};
use crate::store::{ExportFileState, Store};

/// Where Scarf writes its connectivity check: a header and nothing else.
const SCARF_TEST_FILE: &str = "scarf-test.csv";
/// Scarf's company rollup exports: stages, not activities.
const SCARF_ROLLUP_PREFIX: &str = "company-rollups-scarf-export-";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cloud {
    S3,
    Gcs,
}

/// A watched bucket location: `s3://bucket/prefix` or `gs://bucket/prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub cloud: Cloud,
    pub bucket: String,
    /// The "folder" inside the bucket (no leading or trailing `/`; empty: the root).
    pub prefix: String,
}

impl Location {
    /// `None` when `path` is no URL (a local folder); an error for a URL that is not a
    /// bucket oql-sync reads.
    pub fn parse(path: &str) -> Option<Result<Location, String>> {
        let (scheme, rest) = path.split_once("://")?;
        let cloud = match scheme {
            "s3" => Cloud::S3,
            "gs" => Cloud::Gcs,
            other => return Some(Err(format!("`{other}://` is not a location oql-sync watches (a folder, `s3://bucket/prefix` or `gs://bucket/prefix`)"))),
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() || !bucket.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
            return Some(Err(format!("`{path}` names no bucket (expected {scheme}://bucket/prefix)")));
        }
        if prefix.contains('*') {
            return Some(Err(format!("`{path}`: a bucket location is a prefix, without `*`")));
        }
        Some(Ok(Location { cloud, bucket: bucket.to_owned(), prefix: prefix.trim_matches('/').to_owned() }))
    }

    fn scheme(&self) -> &'static str {
        match self.cloud {
            Cloud::S3 => "s3",
            Cloud::Gcs => "gs",
        }
    }

    /// An object's URL: how it is named in summaries and remembered in the store.
    fn url(&self, key: &ObjectPath) -> String {
        format!("{}://{}/{key}", self.scheme(), self.bucket)
    }

    fn display(&self) -> String {
        format!("{}://{}/{}", self.scheme(), self.bucket, self.prefix)
    }

    /// The bucket's client, configured from the environment.
    fn client(&self) -> Result<Arc<dyn ObjectStore>, String> {
        let built: Result<Arc<dyn ObjectStore>, object_store::Error> = match self.cloud {
            Cloud::S3 => object_store::aws::AmazonS3Builder::from_env().with_bucket_name(&self.bucket).build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>),
            Cloud::Gcs => object_store::gcp::GoogleCloudStorageBuilder::from_env().with_bucket_name(&self.bucket).build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>),
        };
        built.map_err(|e| format!("cannot reach {}: {}", self.display(), said(&e)))
    }
}

/// An object store error in one line, without the request's URL query.
fn said(e: &object_store::Error) -> String {
    crate::redaction::redact(&e.to_string().replace('\n', " ")).into_owned()
}

/// What an object (or a watched folder's file) is.
#[derive(Debug, PartialEq, Eq)]
pub enum Role {
    Activities,
    ScarfRollup,
    Ignored,
}

pub fn role(name: &str) -> Role {
    if name == SCARF_TEST_FILE || name.starts_with('.') {
        Role::Ignored
    } else if name.starts_with(SCARF_ROLLUP_PREFIX) && name.to_ascii_lowercase().ends_with(".csv") {
        Role::ScarfRollup
    } else if is_export_file_name(name) {
        Role::Activities
    } else {
        Role::Ignored
    }
}

/// How an object is remembered: its ETag (the size and time when a store gives none).
fn version(meta: &ObjectMeta) -> String {
    match &meta.e_tag {
        Some(tag) => format!("etag:{tag}"),
        None => format!("size-time:{}-{}", meta.size, meta.last_modified.timestamp_nanos_opt().unwrap_or(0)),
    }
}

/// Lists the prefix and lists its objects (not those of deeper "folders", as a folder's
/// subfolders are not read), oldest key first.
pub async fn list(location: &Location) -> Result<(Arc<dyn ObjectStore>, Vec<ObjectMeta>), String> {
    let client = location.client()?;
    let prefix = (!location.prefix.is_empty()).then(|| ObjectPath::from(location.prefix.as_str()));
    let listed = client.list_with_delimiter(prefix.as_ref()).await.map_err(|e| format!("cannot list {}: {}", location.display(), said(&e)))?;
    let mut objects = listed.objects;
    objects.sort_by(|a, b| a.location.cmp(&b.location));
    Ok((client, objects))
}

/// Imports the new and changed objects of one connector's bucket location.
pub async fn poll_bucket(store: &Store, name: &str, connector: &ExportConnector, location: &Location, rules: &AttributionRules) -> Result<Vec<FileSummary>, String> {
    let (client, objects) = list(location).await?;
    let options = ExportOptions { format: connector.format, source: connector.source.clone(), scarf: connector.scarf.clone() };
    let mut out = Vec::new();
    for meta in objects {
        let file_name = meta.location.filename().unwrap_or_default().to_owned();
        let role = role(&file_name);
        if role == Role::Ignored {
            continue;
        }
        let key = location.url(&meta.location);
        let version = version(&meta);
        let stored = store.export_file(name, &key).await.map_err(|e| e.to_string())?;
        if stored.is_some_and(|s| s.sha256 == version) {
            continue;
        }
        let summary = match read_object(store, name, &client, &meta, &key, &file_name, role, &options, rules).await {
            Ok(summary) => summary,
            Err(e) => FileSummary { error: Some(e), ..Default::default() },
        };
        let summary = FileSummary { path: PathBuf::from(&key), error: summary.error.map(|e| format!("{key}: {e}")), ..summary };
        if summary.error.is_none() && summary.deferred.is_none() {
            let state = ExportFileState { imported_bytes: meta.size, sha256: version, lines: 0, resumable: false, seen: None };
            store.save_export_file(name, &key, &state).await.map_err(|e| e.to_string())?;
        }
        out.push(summary);
    }
    Ok(out)
}

/// A download's folder, removed with what it holds once the object is read.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Downloads one object (the version listed, nothing else) to a scratch file under its
/// own name, so that its extension and gzip are read as a folder's file's are, then
/// imports it.
#[allow(clippy::too_many_arguments)]
async fn read_object(
    store: &Store,
    name: &str,
    client: &Arc<dyn ObjectStore>,
    meta: &ObjectMeta,
    key: &str,
    file_name: &str,
    role: Role,
    options: &ExportOptions,
    rules: &AttributionRules,
) -> Result<FileSummary, String> {
    static SCRATCHES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SCRATCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let scratch = Scratch(std::env::temp_dir().join(format!("oql-sync-bucket-{}-{n}", std::process::id())));
    std::fs::create_dir_all(&scratch.0).map_err(|e| format!("cannot make a scratch folder in {}: {e}", scratch.0.display()))?;
    let path = scratch.0.join(file_name);
    let get = GetOptions { if_match: meta.e_tag.clone(), ..Default::default() };
    let result = match client.get_opts(&meta.location, get).await {
        Ok(r) => r,
        Err(object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. }) => {
            return Ok(FileSummary { deferred: Some("replaced or removed since it was listed; read next poll".into()), ..Default::default() });
        }
        Err(e) => return Err(said(&e)),
    };
    let mut stream = result.into_stream();
    {
        use std::io::Write as _;
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path).map_err(|e| format!("cannot write {}: {e}", path.display()))?);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| said(&e))?;
            file.write_all(&chunk).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        file.flush().map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    match role {
        Role::ScarfRollup => {
            let body = std::fs::read(&path).map_err(|e| e.to_string())?;
            let rows = crate::sources::scarf::read_rollup(&body)?;
            store.save_scarf_stages(name, &rows, false, None).await.map_err(|e| e.to_string())?;
            Ok(FileSummary { note: Some(format!("Scarf company rollup: the stages of {} companies", rows.len())), ..Default::default() })
        }
        _ => {
            // The scratch file is no name for the operator: the object's URL is.
            let scratch_name = path.display().to_string();
            let url = |text: String| text.replace(&scratch_name, &format!("object {}", meta.location));
            let summary = import_span(store, &path, options, rules, Span::WHOLE).await.map_err(|e| url(e.to_string()))?;
            if summary.quarantined > 0 {
                let scratch_key = std::fs::canonicalize(&path).unwrap_or(path.clone()).display().to_string();
                store.rename_quarantined(&scratch_key, key).await.map_err(|e| e.to_string())?;
            }
            Ok(FileSummary { error: summary.error.clone().map(url), ..summary })
        }
    }
}

/// `check --live`: the location can be listed with the credentials at hand.
pub async fn check(location: &Location) -> Result<String, String> {
    let (_, objects) = list(location).await?;
    let readable = objects.iter().filter(|o| role(o.location.filename().unwrap_or_default()) != Role::Ignored).count();
    Ok(format!("lists {}: {readable} export objects there", location.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_locations_parse_and_others_are_refused() {
        let l = Location::parse("s3://scarf-exports/daily/").unwrap().unwrap();
        assert_eq!((l.cloud, l.bucket.as_str(), l.prefix.as_str()), (Cloud::S3, "scarf-exports", "daily"));
        let l = Location::parse("gs://b").unwrap().unwrap();
        assert_eq!((l.cloud, l.prefix.as_str()), (Cloud::Gcs, ""));
        assert!(Location::parse("exports/*.csv").is_none());
        assert!(Location::parse("az://c/p").unwrap().unwrap_err().contains("az://"));
        assert!(Location::parse("s3:///p").unwrap().is_err());
    }

    #[test]
    fn scarfs_objects_are_told_apart() {
        assert_eq!(role("scarf-test.csv"), Role::Ignored);
        assert_eq!(role("events-scarf-export-2026-12-01-2026-12-02.csv"), Role::Activities);
        assert_eq!(role("company-rollups-scarf-export-2026-12-01-2026-12-02.csv"), Role::ScarfRollup);
        assert_eq!(role("notes.txt"), Role::Ignored);
        assert_eq!(role("a.ndjson.gz"), Role::Activities);
    }
}
