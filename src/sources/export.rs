//! Export files: NDJSON activities, the same columns as CSV, and Scarf's raw event
//! export. Each file is read as a stream of [`Record`]s, one per line or row, so files
//! of millions of lines are read in bounded memory; an invalid line becomes a
//! [`Record::Invalid`] with its reason and never stops the rest of the file.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{NaiveDateTime, TimeZone, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::activity::{Activity, Invalid, Kind};
use crate::config::KindName;

/// Lines longer than this are quarantined without being held in memory.
pub const MAX_LINE_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// From the extension, then the content.
    #[default]
    Auto,
    Ndjson,
    Csv,
    Scarf,
}

impl ExportFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ExportFormat::Auto => "auto",
            ExportFormat::Ndjson => "ndjson",
            ExportFormat::Csv => "csv",
            ExportFormat::Scarf => "scarf",
        }
    }
}

/// How Scarf's columns map onto activities (`spec/activity-format.md`, "Scarf exports").
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ScarfSettings {
    /// Company fields are kept only from this identification confidence on (0 to 1).
    pub min_confidence: f64,
    /// Pixels (by id) placed on documentation pages: their views are `doc_view`.
    pub doc_pixels: Vec<String>,
    /// Event Collection (telemetry) packages: their events are `telemetry`.
    pub telemetry_packages: Vec<String>,
    /// Extra event types and the kind they map to (e.g. `file-download: download`).
    pub types: BTreeMap<String, KindName>,
}

impl Default for ScarfSettings {
    fn default() -> Self {
        ScarfSettings {
            min_confidence: 0.5,
            doc_pixels: Vec::new(),
            telemetry_packages: Vec::new(),
            types: BTreeMap::new(),
        }
    }
}

/// Options of one import, from the export connector in effect.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    pub format: ExportFormat,
    /// Replaces the `source` of every activity read (Scarf rows default to `scarf`).
    pub source: Option<String>,
    pub scarf: ScarfSettings,
}

/// One line (NDJSON) or row (CSV) of an export file.
#[derive(Debug)]
pub enum Record {
    Valid { line: u64, activity: Activity },
    Invalid { line: u64, reason: String, raw: String },
}

/// A whole file could not be read (as opposed to one bad line).
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Header {
        path: PathBuf,
        line: u64,
        message: String,
    },
}

/// Counts bytes as they are read, for the progress bar.
#[derive(Clone, Default)]
pub struct BytesRead(Arc<AtomicU64>);

impl BytesRead {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

struct CountingReader<R> {
    inner: R,
    count: BytesRead,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.0.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// An open export file, ready to stream records.
pub struct ExportFile {
    pub path: PathBuf,
    pub format: ExportFormat,
    pub size: u64,
    pub bytes_read: BytesRead,
    records: Box<dyn Iterator<Item = Result<Record, ExportError>>>,
    /// Where the last complete line (NDJSON) or row (CSV) read so far ends.
    complete: CompletePrefix,
    /// Added to the stream's byte offsets to make them the file's.
    offset_base: u64,
    /// Whether stream offsets are file offsets (not for gzip or UTF-16 text).
    resumable: bool,
}

/// Which part of a file a read covers: watched folders resume a grown file after its
/// last complete line, and read no further than the size the file was seen at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Where a read starts: a [`ResumePoint`] of an earlier read.
    pub from: ResumePoint,
    /// Read no further than this many bytes of the file (`None`: to its end).
    pub end: Option<u64>,
    /// Whether a last line without its newline is read. A writer may still be writing
    /// it: only a complete file's last line is taken (`import FILE`, a file unchanged
    /// over the settle interval). Only NDJSON stops short: a CSV row may span lines
    /// inside quotes, so a CSV is only ever read complete.
    pub take_unterminated: bool,
}

impl Span {
    /// The whole file, as `import FILE` reads it.
    pub const WHOLE: Span = Span { from: ResumePoint::START, end: None, take_unterminated: true };
}

/// The end of a file's last complete line or row: a byte offset and the lines before it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResumePoint {
    pub offset: u64,
    pub lines: u64,
}

impl ResumePoint {
    pub const START: ResumePoint = ResumePoint { offset: 0, lines: 0 };
}

/// Shared between a file's record iterator and the file: the stream offset and line
/// count at the end of the last complete line or row handed out, unless the stream's
/// offsets stopped being the file's (a cut CSV row).
#[derive(Clone, Default)]
struct CompletePrefix(std::rc::Rc<(std::cell::Cell<(u64, u64)>, std::cell::Cell<bool>)>);

impl CompletePrefix {
    fn set(&self, offset: u64, lines: u64) {
        self.0.0.set((offset, lines));
    }

    fn lose(&self) {
        self.0.1.set(true);
    }

    fn get(&self) -> Option<(u64, u64)> {
        (!self.0.1.get()).then(|| self.0.0.get())
    }
}

impl ExportFile {
    pub fn open(path: &Path, options: &ExportOptions) -> Result<ExportFile, ExportError> {
        ExportFile::open_span(path, options, Span::WHOLE)
    }

    /// Opens part of a file: from a resume point of an earlier read (the format, and a
    /// CSV's header, are still read from the file's start) up to a size. gzip files are
    /// decompressed, by extension or magic bytes, and always read whole.
    pub fn open_span(path: &Path, options: &ExportOptions, span: Span) -> Result<ExportFile, ExportError> {
        let io = |source| ExportError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if meta.is_dir() {
            return Err(io(std::io::Error::other("is a directory, not an export file")));
        }
        let end = span.end.unwrap_or(meta.len()).min(meta.len());
        let mut head = BufReader::with_capacity(64 * 1024, file.take(end));
        let gzip = head.fill_buf().map_err(io)?.starts_with(&GZIP_MAGIC) || has_gz_extension(path);
        if gzip {
            let reader = GzipReader(flate2::read::MultiGzDecoder::new(head));
            let mut file = ExportFile::build(path, reader, meta.len(), options, ResumePoint::START, span.take_unterminated)?;
            file.resumable = false;
            return Ok(file);
        }
        if span.from.offset == 0 || span.from.offset > end {
            return ExportFile::build(path, head, meta.len(), options, ResumePoint::START, span.take_unterminated);
        }
        // Resuming: the format and a CSV's header come from the file's start, the rows
        // from the resume point on.
        let format = match options.format {
            ExportFormat::Auto => detect_format(path, &mut head).map_err(io)?,
            f => f,
        };
        let header = match format {
            ExportFormat::Csv | ExportFormat::Scarf => first_row(&mut head).map_err(io)?,
            _ => Vec::new(),
        };
        let mut file = head.into_inner().into_inner();
        file.seek(SeekFrom::Start(span.from.offset)).map_err(io)?;
        let rest = std::io::Cursor::new(header).chain(file.take(end - span.from.offset));
        let options = ExportOptions { format, ..options.clone() };
        ExportFile::build(path, rest, meta.len(), &options, span.from, span.take_unterminated)
    }

    /// Reads an export from any reader; `path` names it in reasons and errors and its
    /// extension picks the format under `auto`. The one parsing entry point: `open`
    /// and the fuzz targets (`fuzz/`) both go through it.
    pub fn from_reader<R: Read + 'static>(
        path: &Path,
        inner: R,
        size: u64,
        options: &ExportOptions,
    ) -> Result<ExportFile, ExportError> {
        ExportFile::build(path, inner, size, options, ResumePoint::START, true)
    }

    /// Where the last complete line or row read so far ends in the file, so that a read
    /// of the file grown can start there; `None` when offsets in the text read are not
    /// offsets in the file (gzip, UTF-16).
    pub fn resume_point(&self) -> Option<ResumePoint> {
        let (offset, lines) = self.complete.get()?;
        self.resumable.then_some(ResumePoint { offset: self.offset_base + offset, lines })
    }

    /// `from` is where the stream starts in the file (its lines numbered on from there);
    /// a resumed CSV stream starts with its header row, which `from` does not count.
    fn build<R: Read + 'static>(
        path: &Path,
        inner: R,
        size: u64,
        options: &ExportOptions,
        from: ResumePoint,
        take_unterminated: bool,
    ) -> Result<ExportFile, ExportError> {
        let io = |source| ExportError::Io {
            path: path.to_path_buf(),
            source,
        };
        let bytes_read = BytesRead::default();
        let mut raw = BufReader::with_capacity(
            256 * 1024,
            CountingReader {
                inner,
                count: bytes_read.clone(),
            },
        );
        // UTF-16 (as some spreadsheet tools save "Unicode text") is read through a
        // transcoder, so the file imports instead of failing on every line.
        let utf16 = utf16_bom(&mut raw).map_err(io)?;
        let mut reader: Box<dyn BufRead> = match utf16 {
            Some(big_endian) => Box::new(BufReader::with_capacity(256 * 1024, Utf16Reader::new(raw, big_endian))),
            None => Box::new(raw),
        };
        let format = match options.format {
            ExportFormat::Auto => detect_format(path, &mut reader).map_err(io)?,
            f => f,
        };
        let complete = CompletePrefix::default();
        let mut offset_base = from.offset;
        let records: Box<dyn Iterator<Item = Result<Record, ExportError>>> = match format {
            ExportFormat::Ndjson | ExportFormat::Auto => {
                complete.set(0, from.lines);
                Box::new(NdjsonRecords {
                    path: path.to_path_buf(),
                    reader,
                    line: from.lines,
                    offset: 0,
                    complete: complete.clone(),
                    take_unterminated,
                    source: options.source.clone(),
                    done: false,
                })
            }
            ExportFormat::Csv | ExportFormat::Scarf => {
                let capped = RowCap::new(reader);
                let (cut, ends_with_newline) = (capped.cut.clone(), capped.ends_with_newline.clone());
                let mut csv = CsvRecords::new(path, capped, format, options)?;
                csv.cut = cut;
                csv.ends_with_newline = ends_with_newline;
                // A resumed stream is the header row, then the rows after `from`.
                let header_end = csv.reader.position().clone();
                if from.offset > 0 {
                    offset_base -= header_end.byte();
                    csv.line_shift = from.lines - (header_end.line() - 1);
                }
                csv.last_row_start = (header_end.byte(), header_end.line() - 1 + csv.line_shift);
                complete.set(csv.last_row_start.0, csv.last_row_start.1);
                csv.complete = complete.clone();
                Box::new(csv)
            }
        };
        Ok(ExportFile {
            path: path.to_path_buf(),
            format,
            size,
            bytes_read,
            records,
            complete,
            offset_base,
            resumable: utf16.is_none(),
        })
    }
}

/// The first bytes of every gzip member (RFC 1952).
const GZIP_MAGIC: [u8; 2] = [0x1F, 0x8B];

fn has_gz_extension(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gz"))
}

/// The extension that names a file's format: `activities.ndjson.gz` is NDJSON.
fn format_extension(path: &Path) -> Option<String> {
    let name = if has_gz_extension(path) { Path::new(path.file_stem()?) } else { path };
    name.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase)
}

/// Whether a file name is one of an export's: `.ndjson`, `.jsonl`, `.json`, `.csv`,
/// each also gzipped (`.csv.gz`). A watched folder reads only these, so a README, a
/// `.tmp` or `.part` file an exporter is still writing, or a checksum is left alone.
pub fn is_export_file_name(name: &str) -> bool {
    matches!(format_extension(Path::new(name)).as_deref(), Some("ndjson" | "jsonl" | "json" | "csv"))
}

/// gzip's errors, said as such (a damaged or cut-short compressed file).
struct GzipReader<R>(flate2::read::MultiGzDecoder<R>);

impl<R: BufRead> Read for GzipReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf).map_err(|e| {
            let what = if e.kind() == std::io::ErrorKind::UnexpectedEof { "the compressed data ends early (cut short or still being written?)".to_owned() } else { e.to_string() };
            std::io::Error::new(e.kind(), format!("not a readable gzip file: {what}"))
        })
    }
}

/// A CSV's first row, through its newline (quoted fields may hold line breaks).
fn first_row<R: BufRead>(reader: &mut R) -> std::io::Result<Vec<u8>> {
    let mut row = Vec::new();
    let mut quote = Quote::FieldStart;
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            return Ok(row);
        }
        let mut used = 0;
        for &b in chunk {
            used += 1;
            quote = quote.after(b, b',');
            row.push(b);
            if b == b'\n' && quote != Quote::Quoted {
                reader.consume(used);
                return Ok(row);
            }
        }
        reader.consume(used);
        if row.len() > MAX_LINE_BYTES {
            return Err(std::io::Error::other(format!("the CSV header is longer than {MAX_LINE_BYTES} bytes")));
        }
    }
}

/// Consumes a UTF-16 byte-order mark: `Some(big_endian)` when the text is UTF-16.
fn utf16_bom<R: BufRead>(reader: &mut R) -> std::io::Result<Option<bool>> {
    let bom = match reader.fill_buf()? {
        [0xFF, 0xFE, ..] => Some(false),
        [0xFE, 0xFF, ..] => Some(true),
        _ => None,
    };
    if bom.is_some() {
        reader.consume(2);
    }
    Ok(bom)
}

/// Turns UTF-16 (after its byte-order mark) into UTF-8; unpaired surrogates become
/// U+FFFD, so a damaged line is quarantined like any other.
struct Utf16Reader<R> {
    inner: R,
    big_endian: bool,
    /// Bytes of an incomplete code unit and an unpaired high surrogate, kept for the
    /// next read.
    pending: Vec<u8>,
    out: Vec<u8>,
    pos: usize,
}

impl<R: Read> Utf16Reader<R> {
    fn new(inner: R, big_endian: bool) -> Self {
        Utf16Reader { inner, big_endian, pending: Vec::new(), out: Vec::new(), pos: 0 }
    }

    fn refill(&mut self) -> std::io::Result<()> {
        self.out.clear();
        self.pos = 0;
        let mut chunk = [0u8; 64 * 1024];
        while self.out.is_empty() {
            let n = self.inner.read(&mut chunk)?;
            let eof = n == 0;
            self.pending.extend_from_slice(&chunk[..n]);
            let whole = self.pending.len() / 2 * 2;
            let mut units: Vec<u16> = self.pending[..whole]
                .chunks_exact(2)
                .map(|p| if self.big_endian { u16::from_be_bytes([p[0], p[1]]) } else { u16::from_le_bytes([p[0], p[1]]) })
                .collect();
            let mut keep = self.pending[whole..].to_vec();
            // A high surrogate at the end may pair with the next read's first unit.
            if !eof && units.last().is_some_and(|u| (0xD800..0xDC00).contains(u)) {
                let last = units.pop().expect("checked");
                let bytes = if self.big_endian { last.to_be_bytes() } else { last.to_le_bytes() };
                keep.splice(0..0, bytes);
            }
            for c in char::decode_utf16(units) {
                let mut buf = [0u8; 4];
                self.out.extend_from_slice(c.unwrap_or(char::REPLACEMENT_CHARACTER).encode_utf8(&mut buf).as_bytes());
            }
            self.pending = keep;
            if eof {
                if !self.pending.is_empty() {
                    self.pending.clear();
                    self.out.extend_from_slice(char::REPLACEMENT_CHARACTER.to_string().as_bytes());
                }
                break;
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for Utf16Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.out.len() {
            self.refill()?;
        }
        let n = buf.len().min(self.out.len() - self.pos);
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// An invalid line as the store keeps it: reason and raw text with emails and IP
/// addresses replaced by hashes (the quarantine holds no personal data either).
fn invalid_record(line: u64, reason: &str, raw: &str) -> Record {
    Record::Invalid {
        line,
        reason: printable_reason(&crate::activity::redact_personal_data(reason)),
        raw: crate::activity::redact_personal_data(raw).into_owned(),
    }
}

/// Reasons are printed to the operator's terminal one a line: control characters a
/// value carried (line breaks, escape sequences) are escaped, and a reason is at most
/// `MAX_REASON_CHARS` long however long the value it quotes.
fn printable_reason(reason: &str) -> String {
    const MAX_REASON_CHARS: usize = 400;
    let mut out = String::with_capacity(reason.len().min(MAX_REASON_CHARS + 8));
    for (i, c) in reason.chars().enumerate() {
        if i == MAX_REASON_CHARS {
            out.push('…');
            break;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    out
}

/// Why a CSV header is not text, if it is not: not UTF-8, or holding control bytes
/// (what a compressed or binary file read as CSV shows).
fn not_text(fields: &csv::ByteRecord) -> Option<String> {
    for field in fields {
        let control = field.iter().position(|&b| b < 0x20 && b != b'\t' && b != b'\r' && b != b'\n');
        let not_utf8 = std::str::from_utf8(field).err().map(|e| e.valid_up_to());
        match (control, not_utf8) {
            (Some(c), u) if u.is_none_or(|u| c < u) => return Some(format!("holds the control byte 0x{:02X}", field[c])),
            (_, Some(u)) => return Some(format!("is not UTF-8 (byte 0x{:02X})", field[u])),
            _ => {}
        }
    }
    None
}

/// Why bytes are not UTF-8, with the offending byte and where it is (1-based column).
fn not_utf8(what: &str, bytes: &[u8], e: std::str::Utf8Error) -> String {
    let at = e.valid_up_to();
    let byte = bytes.get(at).copied().unwrap_or_default();
    format!(
        "{what} is not valid UTF-8 (byte 0x{byte:02X} at column {}; export files must be UTF-8: convert e.g. Latin-1 with `iconv -f latin1 -t utf-8`)",
        at + 1
    )
}

impl Iterator for ExportFile {
    type Item = Result<Record, ExportError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.records.next()
    }
}

/// NDJSON by extension or a leading `{`; CSV otherwise, Scarf when its header says so.
fn detect_format<R: BufRead>(path: &Path, reader: &mut R) -> std::io::Result<ExportFormat> {
    if matches!(format_extension(path).as_deref(), Some("ndjson" | "jsonl" | "json")) {
        return Ok(ExportFormat::Ndjson);
    }
    let head = reader.fill_buf()?;
    let head = head.strip_prefix(b"\xEF\xBB\xBF".as_slice()).unwrap_or(head);
    let first = head.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'{') {
        return Ok(ExportFormat::Ndjson);
    }
    let header_line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let header = String::from_utf8_lossy(header_line).to_ascii_lowercase();
    let columns: Vec<&str> = header.split(',').map(|c| c.trim().trim_matches('"')).collect();
    let is_scarf = columns.contains(&"type") && columns.contains(&"time") && !columns.contains(&"kind");
    Ok(if is_scarf {
        ExportFormat::Scarf
    } else {
        ExportFormat::Csv
    })
}

struct NdjsonRecords<R> {
    path: PathBuf,
    reader: R,
    line: u64,
    /// Bytes of the stream read so far.
    offset: u64,
    complete: CompletePrefix,
    take_unterminated: bool,
    source: Option<String>,
    done: bool,
}

/// One line as `read_capped_line` saw it.
struct LineRead {
    /// Bytes of the line, its newline included.
    seen: usize,
    /// Longer than `MAX_LINE_BYTES`: only its start is in the buffer.
    too_long: bool,
    /// Ended by a newline (else by the end of the stream).
    terminated: bool,
}

/// Reads one line into `buf`, keeping at most `MAX_LINE_BYTES`.
fn read_capped_line<R: BufRead>(reader: &mut R, buf: &mut Vec<u8>) -> std::io::Result<LineRead> {
    buf.clear();
    let mut seen = 0;
    let mut too_long = false;
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            return Ok(LineRead { seen, too_long, terminated: false });
        }
        let (take, found) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        if buf.len() + take <= MAX_LINE_BYTES {
            buf.extend_from_slice(&chunk[..take]);
        } else {
            too_long = true;
        }
        seen += take;
        reader.consume(take);
        if found {
            return Ok(LineRead { seen, too_long, terminated: true });
        }
    }
}

impl<R: BufRead> Iterator for NdjsonRecords<R> {
    type Item = Result<Record, ExportError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut buf = Vec::new();
        while !self.done {
            let LineRead { seen, too_long, terminated } = match read_capped_line(&mut self.reader, &mut buf) {
                Ok(x) => x,
                Err(source) => {
                    self.done = true;
                    return Some(Err(ExportError::Io {
                        path: self.path.clone(),
                        source,
                    }));
                }
            };
            if seen == 0 || (!terminated && !self.take_unterminated) {
                // A last line without its newline may still be being written: it is
                // left for a read of the file once complete.
                self.done = true;
                break;
            }
            self.line += 1;
            self.offset += seen as u64;
            if terminated {
                self.complete.set(self.offset, self.line);
            }
            let line = self.line;
            if too_long {
                return Some(Ok(invalid_record(
                    line,
                    &format!("line is longer than {} bytes ({seen} bytes)", MAX_LINE_BYTES),
                    &String::from_utf8_lossy(&buf[..buf.len().min(1024)]),
                )));
            }
            let mut bytes = buf.as_slice();
            if line == 1 {
                bytes = bytes.strip_prefix(b"\xEF\xBB\xBF".as_slice()).unwrap_or(bytes);
            }
            let text = match std::str::from_utf8(bytes) {
                Ok(t) => t.trim(),
                Err(e) => {
                    return Some(Ok(invalid_record(
                        line,
                        &not_utf8("line", bytes, e),
                        String::from_utf8_lossy(bytes).trim(),
                    )));
                }
            };
            if text.is_empty() {
                continue;
            }
            let result = Activity::from_json_line(text, self.source.as_deref());
            return Some(Ok(match result {
                Ok(activity) => Record::Valid { line, activity },
                Err(reason) => invalid_record(line, &reason.0, text),
            }));
        }
        None
    }
}

/// Columns an activity CSV must have.
const REQUIRED_CSV_COLUMNS: [&str; 3] = ["source", "kind", "occurred_at"];
/// Columns a Scarf export must have; the others are optional (older exports lack some).
const REQUIRED_SCARF_COLUMNS: [&str; 3] = ["id", "type", "time"];

/// Bounds the memory a CSV row can take: a row (a line, or the lines a quoted field
/// spans) longer than `MAX_LINE_BYTES` is cut there; what follows up to the end of that
/// line is skipped and the row ended (closing an open quote), so an unbalanced `"`
/// early in a big file costs one quarantined row, not the file held in memory. The
/// start lines of cut rows are recorded for their reason.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Quote {
    FieldStart,
    Plain,
    Quoted,
    AfterQuote,
}

impl Quote {
    /// The quoting of the csv crate: a `"` opens a quoted field only at the start of a
    /// field, `""` inside one is a quote, anything after the closing `"` is plain.
    fn after(self, b: u8, delimiter: u8) -> Quote {
        match (self, b) {
            (Quote::FieldStart, b'"') => Quote::Quoted,
            (Quote::Quoted, b'"') => Quote::AfterQuote,
            (Quote::Quoted, _) => Quote::Quoted,
            (Quote::AfterQuote, b'"') => Quote::Quoted,
            (_, b'\n') => Quote::FieldStart,
            (_, b) if b == delimiter => Quote::FieldStart,
            _ => Quote::Plain,
        }
    }
}

struct RowCap<R> {
    inner: R,
    line: u64,
    row_start: u64,
    row_bytes: usize,
    in_quotes: bool,
    quote: Quote,
    skipping: bool,
    cut: std::rc::Rc<std::cell::RefCell<std::collections::BTreeSet<u64>>>,
    /// Whether the last byte handed out was a newline: at the end of the stream, tells
    /// whether the last row was complete.
    ends_with_newline: std::rc::Rc<std::cell::Cell<bool>>,
}

impl<R: BufRead> RowCap<R> {
    fn new(inner: R) -> Self {
        RowCap {
            inner,
            line: 1,
            row_start: 1,
            row_bytes: 0,
            in_quotes: false,
            quote: Quote::FieldStart,
            skipping: false,
            cut: Default::default(),
            ends_with_newline: Default::default(),
        }
    }
}

impl<R: BufRead> Read for RowCap<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let mut written = 0;
        // Room for a closing quote and the newline of a cut row.
        while written + 2 <= out.len() {
            let chunk = self.inner.fill_buf()?;
            if chunk.is_empty() {
                break;
            }
            let mut used = 0;
            for &b in chunk {
                if written + 2 > out.len() {
                    break;
                }
                used += 1;
                self.quote = self.quote.after(b, b',');
                self.in_quotes = self.quote == Quote::Quoted;
                if b == b'\n' {
                    self.line += 1;
                    if self.skipping {
                        if self.in_quotes {
                            out[written] = b'"';
                            written += 1;
                        }
                        self.skipping = false;
                        self.in_quotes = false;
                        self.quote = Quote::FieldStart;
                    }
                    out[written] = b'\n';
                    written += 1;
                    if !self.in_quotes {
                        self.row_start = self.line;
                        self.row_bytes = 0;
                    }
                    continue;
                }
                if self.skipping {
                    continue;
                }
                self.row_bytes += 1;
                if self.row_bytes > MAX_LINE_BYTES {
                    self.skipping = true;
                    self.cut.borrow_mut().insert(self.row_start);
                    continue;
                }
                out[written] = b;
                written += 1;
            }
            self.inner.consume(used);
        }
        if written > 0 {
            self.ends_with_newline.set(out[written - 1] == b'\n');
        }
        Ok(written)
    }
}

struct CsvRecords<R: Read> {
    path: PathBuf,
    reader: csv::Reader<R>,
    headers: Vec<String>,
    format: ExportFormat,
    options: ExportOptions,
    record: csv::ByteRecord,
    done: bool,
    /// Start lines of rows `RowCap` cut.
    cut: std::rc::Rc<std::cell::RefCell<std::collections::BTreeSet<u64>>>,
    ends_with_newline: std::rc::Rc<std::cell::Cell<bool>>,
    /// Added to the stream's line numbers to make them the file's (a resumed read).
    line_shift: u64,
    complete: CompletePrefix,
    /// Where the last row read starts: the end of the complete rows when that row
    /// turns out to be the last one and unterminated.
    last_row_start: (u64, u64),
}

impl<R: Read> CsvRecords<R> {
    fn new(path: &Path, inner: R, format: ExportFormat, options: &ExportOptions) -> Result<Self, ExportError> {
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .has_headers(true)
            .from_reader(inner);
        let headers = reader.byte_headers().map_err(|e| ExportError::Header {
            path: path.to_path_buf(),
            line: 1,
            message: format!("cannot read the CSV header: {e}"),
        })?;
        let header_error = |message: String| ExportError::Header { path: path.to_path_buf(), line: 1, message };
        if let Some(why) = not_text(headers) {
            return Err(header_error(format!(
                "the first line is not a CSV header: it {why} (is this a compressed or binary file? exports must be UTF-8 text, or gzip named `.gz`)"
            )));
        }
        let headers: Vec<String> = headers
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let h = String::from_utf8_lossy(h);
                let h = if i == 0 { h.trim_start_matches('\u{feff}') } else { &h };
                h.trim().to_ascii_lowercase()
            })
            .collect();
        // Two columns of one name would leave one of them unread: which one is the
        // exporter's meaning is not ours to guess.
        for (i, name) in headers.iter().enumerate() {
            if let Some(j) = headers[..i].iter().position(|h| h == name && !h.is_empty()) {
                return Err(header_error(printable_reason(&crate::activity::redact_personal_data(&format!(
                    "column `{name}` appears twice in the header (columns {} and {}): rename or remove one",
                    j + 1,
                    i + 1
                )))));
            }
        }
        let required: &[&str] = if format == ExportFormat::Scarf {
            &REQUIRED_SCARF_COLUMNS
        } else {
            &REQUIRED_CSV_COLUMNS
        };
        let missing: Vec<&str> = required
            .iter()
            .copied()
            .filter(|c| !headers.iter().any(|h| h == c))
            .collect();
        if !missing.is_empty() {
            let what = if format == ExportFormat::Scarf { "Scarf export" } else { "activity CSV" };
            return Err(ExportError::Header {
                path: path.to_path_buf(),
                line: 1,
                message: printable_reason(&crate::activity::redact_personal_data(&format!(
                    "{what} is missing column{} {} (header has: {})",
                    if missing.len() > 1 { "s" } else { "" },
                    missing.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", "),
                    headers.join(", ")
                ))),
            });
        }
        Ok(CsvRecords {
            path: path.to_path_buf(),
            reader,
            headers,
            format,
            options: options.clone(),
            record: csv::ByteRecord::new(),
            done: false,
            cut: Default::default(),
            ends_with_newline: Default::default(),
            line_shift: 0,
            complete: CompletePrefix::default(),
            last_row_start: (0, 0),
        })
    }

    fn row(&self) -> Result<BTreeMap<&str, String>, Invalid> {
        if self.record.len() != self.headers.len() {
            return Err(Invalid(format!(
                "row has {} fields, the header has {}",
                self.record.len(),
                self.headers.len()
            )));
        }
        let mut row = BTreeMap::new();
        for (name, field) in self.headers.iter().zip(self.record.iter()) {
            let value = std::str::from_utf8(field).map_err(|e| Invalid(not_utf8(&format!("column `{name}`"), field, e)))?;
            let value = value.trim();
            if !value.is_empty() {
                row.insert(name.as_str(), value.to_owned());
            }
        }
        Ok(row)
    }

    fn raw(&self) -> String {
        self.record
            .iter()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl<R: Read> Iterator for CsvRecords<R> {
    type Item = Result<Record, ExportError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let start = self.reader.position().clone();
        match self.reader.read_byte_record(&mut self.record) {
            Ok(false) => {
                self.done = true;
                // The last row had no line break: the end of the complete rows is its start.
                if !self.ends_with_newline.get() {
                    self.complete.set(self.last_row_start.0, self.last_row_start.1);
                }
                None
            }
            Err(e) => {
                let line = e.position().map(|p| p.line() + self.line_shift).unwrap_or(0);
                if e.is_io_error() {
                    self.done = true;
                    let source = match e.into_kind() {
                        csv::ErrorKind::Io(io) => io,
                        other => std::io::Error::other(format!("{other:?}")),
                    };
                    return Some(Err(ExportError::Io { path: self.path.clone(), source }));
                }
                Some(Ok(invalid_record(line, &format!("unreadable CSV row: {e}"), "")))
            }
            Ok(true) => {
                let stream_line = self.record.position().map(|p| p.line()).unwrap_or(0);
                let line = stream_line + self.line_shift;
                let cut = self.cut.borrow().contains(&stream_line);
                if cut {
                    self.complete.lose();
                }
                let end = self.reader.position();
                self.last_row_start = (start.byte(), start.line() - 1 + self.line_shift);
                self.complete.set(end.byte(), end.line() - 1 + self.line_shift);
                let result = if cut {
                    Err(Invalid(format!("row is longer than {MAX_LINE_BYTES} bytes; the rest of its last line was skipped")))
                } else {
                    self.row()
                };
                let result = result.and_then(|row| match self.format {
                    ExportFormat::Scarf => scarf_activity(row, &self.options),
                    _ => csv_activity(row, &self.options),
                });
                Some(Ok(match result {
                    Ok(activity) => Record::Valid { line, activity },
                    Err(reason) => {
                        // A quoted field may hold line breaks; when the row is invalid, an
                        // unbalanced `"` is the likely cause, and the lines it swallowed
                        // are in this row's raw text, not lost: say so.
                        let last = (self.reader.position().line() + self.line_shift).saturating_sub(1);
                        let reason = if last > line {
                            format!(
                                "{} (the row runs from line {line} to line {last} inside a quoted field: is a `\"` unbalanced?)",
                                reason.0
                            )
                        } else {
                            reason.0
                        };
                        invalid_record(line, &reason, &self.raw())
                    }
                }))
            }
        }
    }
}

/// A row of the activity CSV: the NDJSON fields as columns, `properties` as JSON text.
fn csv_activity(row: BTreeMap<&str, String>, options: &ExportOptions) -> Result<Activity, Invalid> {
    let mut obj = Map::new();
    for (name, value) in row {
        let value = if name == "properties" {
            match serde_json::from_str::<Value>(&value) {
                Ok(v @ Value::Object(_)) => v,
                _ => return Err(Invalid("column `properties` must hold a JSON object".into())),
            }
        } else {
            Value::String(value)
        };
        obj.insert(name.to_owned(), value);
    }
    if let Some(source) = &options.source {
        obj.insert("source".into(), Value::String(source.clone()));
    }
    Activity::from_object(obj)
}

/// Scarf's `time`: RFC 3339, or `YYYY-MM-DD HH:MM:SS[.fff]` in UTC as a database dump
/// writes it (Scarf documents the column only as "UTC").
fn scarf_time(text: &str) -> Result<String, Invalid> {
    if crate::activity::parse_timestamp(text).is_ok() {
        return Ok(text.to_owned());
    }
    let trimmed = text.trim().trim_end_matches(" UTC").trim_end_matches('Z').trim_end_matches("+00");
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(trimmed, fmt) {
            return Ok(Utc.from_utc_datetime(&naive).to_rfc3339());
        }
    }
    Err(Invalid(format!("column `time` is not a timestamp: `{}`", crate::activity::truncate(text, 60))))
}

fn truthy(v: Option<&String>) -> bool {
    v.is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "t" | "1" | "yes"))
}

/// Maps one Scarf row onto an activity (`spec/activity-format.md`, "Scarf exports";
/// columns per docs.scarf.sh/data-export and Scarf's scarf-postgres-exporter).
fn scarf_activity(mut row: BTreeMap<&str, String>, options: &ExportOptions) -> Result<Activity, Invalid> {
    let settings = &options.scarf;
    let event_type = row.remove("type").unwrap_or_default();
    let package = row.remove("package");
    let pixel = row.remove("pixel");
    let is_pixel = event_type == "pixel-fetch";
    let kind = if let Some(k) = settings.types.get(&event_type) {
        k.0
    } else if package.as_ref().is_some_and(|p| settings.telemetry_packages.contains(p)) {
        Kind::Telemetry
    } else {
        match event_type.as_str() {
            "binary-download" | "manifest-fetch" | "file-download" => Kind::Download,
            "pixel-fetch" if pixel.as_ref().is_some_and(|p| settings.doc_pixels.contains(p)) => Kind::DocView,
            "pixel-fetch" => Kind::PageView,
            other => {
                return Err(Invalid(format!(
                    "unknown Scarf event type `{}` (map it under `scarf.types` in the export connector)",
                    crate::activity::truncate(other, 60)
                )));
            }
        }
    };
    let mut obj = Map::new();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            obj.insert(k.to_owned(), Value::String(v));
        }
    };
    put("source", Some(options.source.clone().unwrap_or_else(|| "scarf".into())));
    put("id", row.remove("id"));
    put("kind", Some(kind.as_str().to_owned()));
    let time = row.remove("time").ok_or_else(|| Invalid("missing required column value `time`".into()))?;
    put("occurred_at", Some(scarf_time(&time)?));
    put("package", if is_pixel { pixel.clone().or(package) } else { package.or(pixel.clone()) });
    put("version", row.remove("version"));
    let referer = row.remove("referer");
    if is_pixel {
        put("url", referer.clone());
    }
    put("actor", row.remove("origin_id"));

    let confidence = row.get("confidence").and_then(|c| c.parse::<f64>().ok()).map(|c| {
        // A percentage (0 to 100) is read as a share: the column's range is undocumented.
        if c > 1.0 { c / 100.0 } else { c }
    });
    let trusted = confidence.is_some_and(|c| c >= settings.min_confidence)
        && row.get("origin_connection_type").is_none_or(|t| !t.eq_ignore_ascii_case("hosting"))
        && !truthy(row.get("dnt"))
        && !truthy(row.get("mtc_quota_exceeded"));
    if trusted {
        // A domain that does not normalize is dropped rather than losing the row.
        let domain = row.get("origin_domain").filter(|d| crate::activity::normalize_domain(d).is_some());
        put("company_domain", domain.cloned());
        put("company_name", row.get("origin_company").cloned());
    }
    let mut properties = Map::new();
    for key in [
        "platform",
        "user_agent",
        "origin_country",
        "origin_state",
        "origin_city",
        "origin_connection_type",
        "confidence",
        "endpoint_id",
        "variables",
    ] {
        if let Some(v) = row.remove(key) {
            properties.insert(key.to_owned(), Value::String(v));
        }
    }
    if let Some(r) = referer.filter(|_| !is_pixel) {
        properties.insert("referer".into(), Value::String(r));
    }
    if !properties.is_empty() {
        obj.insert("properties".into(), Value::Object(properties));
    }
    Activity::from_object(obj)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(name: &str, text: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::File::create(&path).unwrap().write_all(text).unwrap();
        (dir, path)
    }

    fn records(path: &Path, options: &ExportOptions) -> Vec<Record> {
        ExportFile::open(path, options).unwrap().map(|r| r.unwrap()).collect()
    }

    #[test]
    fn ndjson_keeps_valid_lines_around_bad_ones() {
        let (_d, path) = write(
            "a.ndjson",
            b"{\"source\":\"web\",\"id\":\"1\",\"kind\":\"page_view\",\"occurred_at\":\"2026-03-01T12:00:00Z\"}\n[1,2]\n\n{bad json\n\xff\xfe\n{\"source\":\"web\",\"id\":\"2\",\"kind\":\"page_view\",\"occurred_at\":\"2026-03-01T12:00:00Z\"}",
        );
        let recs = records(&path, &ExportOptions::default());
        let summary: Vec<(u64, bool)> = recs
            .iter()
            .map(|r| match r {
                Record::Valid { line, .. } => (*line, true),
                Record::Invalid { line, .. } => (*line, false),
            })
            .collect();
        assert_eq!(summary, vec![(1, true), (2, false), (4, false), (5, false), (6, true)]);
        let Record::Invalid { reason, .. } = &recs[1] else { panic!() };
        assert_eq!(reason, "line is a JSON array, not an object");
    }

    #[test]
    fn csv_reads_columns_by_name() {
        let (_d, path) = write(
            "a.csv",
            b"occurred_at,kind,source,id,company_domain,properties,extra\n2026-03-01T12:00:00Z,download,scarf,1,Acme.com,\"{\"\"a\"\":1}\",x\n2026-03-01T12:00:00Z,download,scarf\n",
        );
        let recs = records(&path, &ExportOptions::default());
        let Record::Valid { activity, .. } = &recs[0] else { panic!("{recs:?}") };
        assert_eq!(activity.company_domain.as_deref(), Some("acme.com"));
        assert_eq!(activity.properties.as_deref(), Some(r#"{"a":1,"extra":"x"}"#));
        let Record::Invalid { line, reason, .. } = &recs[1] else { panic!() };
        assert_eq!((*line, reason.as_str()), (3, "row has 3 fields, the header has 7"));
    }

    #[test]
    fn csv_without_a_required_column_is_rejected_whole() {
        let (_d, path) = write("a.csv", b"source,kind,id\nscarf,download,1\n");
        let err = ExportFile::open(&path, &ExportOptions::default()).err().unwrap().to_string();
        assert!(err.ends_with("a.csv:1: activity CSV is missing column `occurred_at` (header has: source, kind, id)"), "{err}");
    }

    fn lines_of(file: &mut ExportFile) -> Vec<u64> {
        file.by_ref().map(|r| match r.unwrap() {
            Record::Valid { line, .. } | Record::Invalid { line, .. } => line,
        })
        .collect()
    }

    #[test]
    fn a_csv_resumes_after_its_last_complete_row_with_its_line_numbers() {
        let header = "id,source,kind,occurred_at,properties\n";
        let complete = format!("{header}1,web,download,2026-03-01T12:00:00Z,\"{{\"\"a\"\":\n1}}\"\n2,web,download,2026-03-01T12:00:00Z,\n");
        let (_d, path) = write("a.csv", format!("{complete}3,web,down").as_bytes());
        let mut file = ExportFile::open(&path, &ExportOptions::default()).unwrap();
        assert_eq!(lines_of(&mut file), [2, 4, 5], "the unterminated row is read: the file is complete");
        let point = file.resume_point().unwrap();
        assert_eq!(point, ResumePoint { offset: complete.len() as u64, lines: 4 }, "the row spanning lines 2-3 counts both");
        std::fs::write(&path, format!("{complete}3,web,download,2026-03-01T12:00:00Z,\n4,web,download,x,\n")).unwrap();
        let span = Span { from: point, end: None, take_unterminated: true };
        let file = ExportFile::open_span(&path, &ExportOptions::default(), span).unwrap();
        let recs: Vec<Record> = file.map(|r| r.unwrap()).collect();
        assert!(matches!(&recs[0], Record::Valid { line: 5, activity } if activity.id == "3"), "{recs:?}");
        assert!(matches!(&recs[1], Record::Invalid { line: 6, .. }), "{recs:?}");
    }

    #[test]
    fn an_ndjson_read_can_leave_a_last_line_without_newline() {
        let first = "{\"source\":\"web\",\"id\":\"1\",\"kind\":\"page_view\",\"occurred_at\":\"2026-03-01T12:00:00Z\"}\n";
        let (_d, path) = write("a.ndjson", format!("{first}{{\"source\":\"web\",\"id\":\"2").as_bytes());
        let span = Span { from: ResumePoint::START, end: None, take_unterminated: false };
        let mut file = ExportFile::open_span(&path, &ExportOptions::default(), span).unwrap();
        assert_eq!(lines_of(&mut file), [1]);
        assert_eq!(file.resume_point(), Some(ResumePoint { offset: first.len() as u64, lines: 1 }));
        // Read to a size: bytes written after the look are not read.
        let span = Span { from: ResumePoint::START, end: Some(10), take_unterminated: true };
        let file = ExportFile::open_span(&path, &ExportOptions::default(), span).unwrap();
        assert!(matches!(file.map(|r| r.unwrap()).collect::<Vec<_>>()[..], [Record::Invalid { line: 1, .. }]));
    }

    #[test]
    fn a_cut_csv_row_makes_the_file_not_resumable() {
        let mut text = b"id,source,kind,occurred_at\n1,web,download,".to_vec();
        text.resize(text.len() + MAX_LINE_BYTES + 10, b'a');
        text.extend_from_slice(b"\n2,web,download,2026-03-01T12:00:00Z\n");
        let (_d, path) = write("a.csv", &text);
        let mut file = ExportFile::open(&path, &ExportOptions::default()).unwrap();
        assert_eq!(lines_of(&mut file), [2, 3]);
        assert_eq!(file.resume_point(), None, "offsets in the capped stream are not the file's");
    }

    #[test]
    fn gzip_is_read_by_magic_bytes_whatever_the_name() {
        use flate2::write::GzEncoder;
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"{\"source\":\"web\",\"id\":\"1\",\"kind\":\"page_view\",\"occurred_at\":\"2026-03-01T12:00:00Z\"}\n").unwrap();
        let (_d, path) = write("export", &gz.finish().unwrap());
        let mut file = ExportFile::open(&path, &ExportOptions::default()).unwrap();
        assert_eq!(file.format, ExportFormat::Ndjson);
        assert_eq!(lines_of(&mut file), [1]);
        assert_eq!(file.resume_point(), None, "a gzip file is read whole");
    }

    const SCARF_HEADER: &str = "id,type,package,pixel,version,time,referer,user_agent,platform,variables,origin_id,origin_latitude,origin_longitude,origin_country,origin_city,origin_postal,origin_connection_type,origin_company,origin_domain,dnt,confidence,endpoint_id,origin_state,mtc_quota_exceeded\n";

    #[test]
    fn scarf_rows_map_onto_activities() {
        let rows = [
            "e1,binary-download,oqldb,,1.4.2,2026-06-04T13:22:05.123456Z,,curl/8.5.0,linux,,o1,37.7,-122.4,United States,San Francisco,94107,business,Example Corp,example.com,false,0.92,ep1,California,false",
            "e2,pixel-fetch,,px-docs,,2026-06-04 14:01:17,https://oqldb.dev/docs/install,Mozilla/5.0,macos,,o2,52.5,13.4,Germany,Berlin,10115,business,Initech,initech.io,false,0.8,ep2,Berlin,false",
            "e3,manifest-fetch,oqldb/server,,v2.3.0,2026-06-05T02:44:09Z,,docker/24,linux,,o3,39.0,-77.4,United States,Ashburn,20147,hosting,Amazon Web Services,aws.amazon.com,false,0.9,ep3,Virginia,false",
            "e4,binary-download,oqldb,,1.4.2,2026-06-05T02:44:09Z,,curl,linux,,o4,,,,,,business,Low Conf,lowconf.com,false,0.3,ep4,,false",
            "e5,binary-download,oqldb,,1.4.2,2026-06-05T02:44:09Z,,curl,linux,,o5,,,,,,business,Private,private.com,true,0.9,ep5,,false",
            "e6,docs-search,oqldb,,1.4.2,2026-06-05T02:44:09Z,,curl,linux,,o6,,,,,,business,,,false,0.9,ep6,,false",
        ];
        let text = format!("{SCARF_HEADER}{}\n", rows.join("\n"));
        let (_d, path) = write("export.csv", text.as_bytes());
        let options = ExportOptions {
            scarf: ScarfSettings { doc_pixels: vec!["px-docs".into()], ..Default::default() },
            ..Default::default()
        };
        let file = ExportFile::open(&path, &options).unwrap();
        assert_eq!(file.format, ExportFormat::Scarf);
        let recs: Vec<Record> = file.map(|r| r.unwrap()).collect();
        let valid: Vec<&Activity> = recs.iter().filter_map(|r| match r { Record::Valid { activity, .. } => Some(activity), _ => None }).collect();
        assert_eq!(valid.len(), 5);
        let e1 = valid[0];
        assert_eq!((e1.source.as_str(), e1.id.as_str(), e1.kind), ("scarf", "e1", Kind::Download));
        assert_eq!(e1.company_domain.as_deref(), Some("example.com"));
        assert_eq!(e1.actor.as_deref(), Some("o1"));
        assert!(!e1.properties.as_deref().unwrap().contains("94107"), "postal code is not kept");
        assert!(!e1.properties.as_deref().unwrap().contains("37.7"), "latitude is not kept");
        let e2 = valid[1];
        assert_eq!(e2.kind, Kind::DocView);
        assert_eq!(e2.url.as_deref(), Some("https://oqldb.dev/docs/install"));
        assert_eq!(e2.package.as_deref(), Some("px-docs"));
        assert_eq!(crate::activity::format_timestamp(e2.occurred_at), "2026-06-04T14:01:17Z");
        assert_eq!(valid[2].company_domain, None, "hosting providers are not the customer");
        assert_eq!(valid[3].company_domain, None, "below the minimum confidence");
        assert_eq!(valid[4].company_domain, None, "do-not-track");
        let Record::Invalid { line, reason, .. } = &recs[5] else { panic!() };
        assert_eq!(*line, 7);
        assert!(reason.contains("unknown Scarf event type `docs-search`"), "{reason}");
    }
}
