//! The `import` pipeline: read export files, attribute, insert in large transactions.
//!
//! Reading and parsing run on a blocking thread and hand batches over a bounded channel
//! to the store, so parsing one batch overlaps inserting the previous one (two cores,
//! two stages) while memory stays bounded by a few batches (one filling, one queued, one
//! being inserted, inserted ones on their way back to be freed) whatever the file size.
//! Batches are committed two million activities at a time.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::mpsc;

use crate::attribution::AttributionRules;
use crate::sources::export::{BytesRead, ExportError, ExportFile, ExportFormat, ExportOptions, Record, ResumePoint, Span};
use crate::store::{InsertOutcome, NewActivity, QuarantinedLine, SortedActivities, Store, StoreError};

/// Activities per batch handed from the parsing thread to the inserting one.
pub const BATCH_SIZE: usize = 100_000;
/// Activities per transaction: large, because each transaction writes every company
/// its activities name once (a store's companies, nearly all of them, at 200k) and
/// every index page it dirtied once. At ten million activities, one transaction per
/// 100k took 50 s, per million 34.5 s, per two million 30.8 s (peak RSS 800 MiB, from
/// the page cache holding the transaction's pages).
pub const COMMIT_EVERY: u64 = 2_000_000;
/// Quarantine reasons shown per file in the summary.
pub const REASONS_SHOWN: usize = 5;

/// What importing one file did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileSummary {
    pub path: PathBuf,
    pub format: Option<ExportFormat>,
    pub imported: u64,
    pub duplicate: u64,
    pub quarantined: u64,
    pub unattributed: u64,
    /// The first few quarantined lines: (line number, reason).
    pub reasons: Vec<(u64, String)>,
    /// Set when the file could not be read (or stopped being readable).
    pub error: Option<String>,
    /// Where the last complete line or row read ends, when the read went to the end of
    /// its span and the file can be resumed there.
    pub resume_point: Option<ResumePoint>,
    /// Why a watched file was left for a later poll (it is still being written).
    pub deferred: Option<String>,
    /// What a watched file that holds no activities gave instead (Scarf's rollup).
    pub note: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The store failed part way through a file; what was committed before stays.
    #[error("{error}")]
    Store {
        /// The file's summary up to the last commit (its counts are what is stored).
        committed: Box<FileSummary>,
        error: StoreError,
    },
}

impl ImportError {
    pub fn store_error(&self) -> &StoreError {
        match self {
            ImportError::Store { error, .. } => error,
        }
    }
}

struct Batch {
    activities: SortedActivities,
    quarantined: Vec<QuarantinedLine>,
}

enum Message {
    Opened { format: ExportFormat, size: u64, bytes: BytesRead },
    Batch(Batch),
    Failed(ExportError),
    /// The whole span was read.
    Finished(Option<ResumePoint>),
}

/// The key quarantined lines are stored under: the absolute path, so that importing
/// the same file from another directory is still recognized.
fn file_key(path: &Path) -> String {
    std::fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

/// Parses a file on the current (blocking) thread, sending batches as they fill. Each
/// batch is sorted and its companies listed here, and comes back through `done` to be
/// freed here too: the inserting thread, the import's bottleneck, only inserts.
fn read_file(path: &Path, options: &ExportOptions, span: Span, rules: &AttributionRules, tx: &mpsc::Sender<Message>, done: &std::sync::mpsc::Receiver<Batch>) {
    let mut file = match ExportFile::open_span(path, options, span) {
        Ok(f) => f,
        Err(e) => {
            let _ = tx.blocking_send(Message::Failed(e));
            return;
        }
    };
    let key = file_key(path);
    let opened = Message::Opened {
        format: file.format,
        size: file.size,
        bytes: file.bytes_read.clone(),
    };
    if tx.blocking_send(opened).is_err() {
        return;
    }
    let mut activities: Vec<NewActivity> = Vec::with_capacity(BATCH_SIZE);
    let mut quarantined: Vec<QuarantinedLine> = Vec::new();
    let send = |activities: &mut Vec<NewActivity>, quarantined: &mut Vec<QuarantinedLine>| {
        while let Ok(freed) = done.try_recv() {
            drop(freed);
        }
        let batch = Batch {
            activities: SortedActivities::new(std::mem::replace(activities, Vec::with_capacity(BATCH_SIZE))),
            quarantined: std::mem::take(quarantined),
        };
        tx.blocking_send(Message::Batch(batch)).is_ok()
    };
    for record in file.by_ref() {
        match record {
            Ok(Record::Valid { activity, .. }) => {
                let company = rules.attribute(
                    activity.company_domain.as_deref(),
                    activity.actor.as_deref(),
                    activity.email_domain.as_deref(),
                    activity.occurred_at,
                );
                activities.push(NewActivity { activity, company });
            }
            Ok(Record::Invalid { line, reason, raw }) => quarantined.push(QuarantinedLine {
                file: key.clone(),
                line,
                reason,
                raw,
            }),
            Err(e) => {
                send(&mut activities, &mut quarantined);
                let _ = tx.blocking_send(Message::Failed(e));
                return;
            }
        }
        if activities.len() + quarantined.len() >= BATCH_SIZE && !send(&mut activities, &mut quarantined) {
            return;
        }
    }
    if send(&mut activities, &mut quarantined) {
        let _ = tx.blocking_send(Message::Finished(file.resume_point()));
    }
}

/// The import's progress on a terminal, in at most 80 columns (a wider line wraps and
/// every redraw leaves a copy behind): the file's name elided to 20 columns, the bar, the
/// bytes read of the total, and the activities read so far.
fn progress_bar(path: &Path, size: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(size);
    bar.set_style(
        ProgressStyle::with_template("{prefix:20} [{bar:16}] {bytes:>9}/{total_bytes:<9} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    bar.set_prefix(elide_middle(&name, 20));
    bar.set_message("0 activities");
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// `text` in at most `width` characters, its middle replaced by `…` when longer: a
/// file's name differs from its neighbours' at its start and its end (the date, the
/// extension).
fn elide_middle(text: &str, width: usize) -> String {
    let count = text.chars().count();
    if count <= width {
        return text.to_owned();
    }
    let head = (width - 1) / 2;
    let tail = width - 1 - head;
    let start: String = text.chars().take(head).collect();
    let end: String = text.chars().skip(count - tail).collect();
    format!("{start}…{end}")
}

/// Imports one file whole (its last line too, newline or not: the file is complete). A
/// file that cannot be read is reported in its summary; what was read before a read
/// error stays imported.
pub async fn import_file(
    store: &Store,
    path: &Path,
    options: &ExportOptions,
    rules: &AttributionRules,
) -> Result<FileSummary, ImportError> {
    import_span(store, path, options, rules, Span::WHOLE).await
}

/// Imports part of a file (a watched folder's file, resumed or still being written).
pub async fn import_span(
    store: &Store,
    path: &Path,
    options: &ExportOptions,
    rules: &AttributionRules,
    span: Span,
) -> Result<FileSummary, ImportError> {
    let (tx, mut rx) = mpsc::channel::<Message>(1);
    let (done, freed) = std::sync::mpsc::channel::<Batch>();
    let reader = {
        let (path, options, rules) = (path.to_path_buf(), options.clone(), rules.clone());
        tokio::task::spawn_blocking(move || read_file(&path, &options, span, &rules, &tx, &freed))
    };
    let mut summary = FileSummary {
        path: path.to_path_buf(),
        ..Default::default()
    };
    let mut committed = summary.clone();
    let inserted = insert_messages(store, path, &mut rx, &done, &mut summary, &mut committed).await;
    if let Err(error) = inserted {
        // The reader stops when the channel closes.
        drop(rx);
        let _ = reader.await;
        return Err(ImportError::Store { committed: Box::new(committed), error });
    }
    let _ = reader.await;
    Ok(summary)
}

/// Inserts what the reader sends; `committed` follows `summary` at every commit.
async fn insert_messages(
    store: &Store,
    path: &Path,
    rx: &mut mpsc::Receiver<Message>,
    done: &std::sync::mpsc::Sender<Batch>,
    summary: &mut FileSummary,
    committed: &mut FileSummary,
) -> Result<(), StoreError> {
    let mut bar = ProgressBar::hidden();
    let mut bytes = BytesRead::default();
    let mut insert = store.begin_insert().await?;
    while let Some(message) = rx.recv().await {
        match message {
            Message::Opened { format, size, bytes: b } => {
                summary.format = Some(format);
                committed.format = Some(format);
                bar = progress_bar(path, size);
                bytes = b;
            }
            Message::Failed(e) => summary.error = Some(e.to_string()),
            Message::Finished(resume_point) => summary.resume_point = resume_point,
            Message::Batch(batch) => {
                let outcome: InsertOutcome = insert.insert(&batch.activities, &batch.quarantined).await?;
                summary.imported += outcome.inserted;
                summary.duplicate += outcome.duplicate;
                summary.unattributed += outcome.unattributed;
                summary.quarantined += batch.quarantined.len() as u64;
                for q in &batch.quarantined {
                    if summary.reasons.len() < REASONS_SHOWN {
                        summary.reasons.push((q.line, q.reason.clone()));
                    }
                }
                if insert.activities() >= COMMIT_EVERY {
                    insert.commit().await?;
                    *committed = summary.clone();
                    insert = store.begin_insert().await?;
                }
                let _ = done.send(batch);
                bar.set_position(bytes.get());
                bar.set_message(format!("{} activities", summary.imported + summary.duplicate));
            }
        }
    }
    insert.commit().await?;
    *committed = summary.clone();
    bar.finish_and_clear();
    Ok(())
}

/// A file's lines in the summary of `import` and of a watched folder's poll.
pub fn file_summary(s: &FileSummary) -> String {
    if let Some(why) = s.deferred.as_ref().or(s.note.as_ref()) {
        return format!("{}: {why}\n", s.path.display());
    }
    let mut out = format!(
        "{} ({}): {} imported, {} duplicate, {} quarantined, {} unattributed\n",
        s.path.display(),
        s.format.map(|f| f.as_str()).unwrap_or("unread"),
        s.imported,
        s.duplicate,
        s.quarantined,
        s.unattributed
    );
    for (line, reason) in &s.reasons {
        out.push_str(&format!("  quarantined {}:{line}: {reason}\n", s.path.display()));
    }
    if s.quarantined > s.reasons.len() as u64 {
        out.push_str(&format!("  … and {} more quarantined lines\n", s.quarantined - s.reasons.len() as u64));
    }
    if let Some(e) = &s.error {
        out.push_str(&format!("  error: {e}\n"));
        crate::logging::error(e);
    }
    out
}
