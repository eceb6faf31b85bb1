//! Every secret value the process knows, and the one redaction that keeps them out of
//! every output (`docs/privacy.md`).
//!
//! Secrets enter only through environment variables and files named in the config
//! (`*_env`, `*_file`); each value is registered when the config is loaded and again
//! wherever it is read (and minted access tokens when they arrive), with the parts of
//! it a server could echo on its own: a secret URL's path, query and their segments,
//! a private key's lines, the percent-encoded spelling. `redact` replaces each by
//! `[REDACTED]`, and is applied where text is made from what crosses the wire: HTTP
//! response bodies as they are read, URLs as they are shown, token-endpoint errors,
//! and at the last edge, every log line written and the error printed on exit.
//!
//! A registry rather than a type: an API's echo of a secret is plain text that no
//! type can mark; only knowing the value finds it.

use std::borrow::Cow;
use std::path::Path;
use std::sync::{Arc, RwLock};

use aho_corasick::{AhoCorasick, MatchKind};

/// What a secret is replaced by.
pub const MARK: &str = "[REDACTED]";

/// Registered values shorter than this are not searched for: they would blank common
/// words, and no credential is that short.
const MIN_LEN: usize = 6;

#[derive(Default)]
struct Known {
    values: Vec<String>,
    matcher: Option<Arc<AhoCorasick>>,
}

static KNOWN: RwLock<Known> = RwLock::new(Known { values: Vec::new(), matcher: None });

/// Registers a secret value, and the parts of it that could be echoed alone.
pub fn register(secret: &str) {
    let secret = secret.trim();
    if secret.len() < MIN_LEN {
        return;
    }
    let mut parts = vec![secret.to_owned()];
    parts.extend(url_parts(secret));
    parts.extend(key_lines(secret));
    // As a query string or form body spells them, and as a JSON log line or a `Debug`
    // field escapes them.
    let spellings: Vec<String> = parts
        .iter()
        .flat_map(|p| [percent_encode(p), escaped(&serde_json::to_string(p).unwrap_or_default()), escaped(&format!("{p:?}"))])
        .filter(|e| !parts.contains(e))
        .collect();
    parts.extend(spellings);
    let mut known = KNOWN.write().unwrap_or_else(|e| e.into_inner());
    let before = known.values.len();
    for part in parts {
        if part.len() >= MIN_LEN && !known.values.contains(&part) {
            known.values.push(part);
        }
    }
    if known.values.len() != before {
        // Longest first among overlapping matches: a whole URL, not only its path.
        known.matcher = AhoCorasick::builder().match_kind(MatchKind::LeftmostLongest).build(&known.values).ok().map(Arc::new);
    }
}

/// The parts of a secret URL a server echoes on their own: the path when it holds an id
/// or key, the query, each query value and path segment that looks like one (not a
/// plain word such as `services`, `webhook` or `json`, which would blank that word in
/// every log line), and any credentials. The host is no secret.
fn url_parts(secret: &str) -> Vec<String> {
    let Ok(url) = reqwest::Url::parse(secret) else { return Vec::new() };
    if url.host_str().is_none() {
        return Vec::new();
    }
    let mut parts = Vec::new();
    // Without its leading slash, so a redacted URL still reads as one (`https://host/[REDACTED]`).
    let path = url.path().trim_start_matches('/');
    let secret_segments: Vec<&str> = path.split('/').filter(|s| looks_secret(s)).collect();
    if !secret_segments.is_empty() {
        parts.push(path.to_owned());
        parts.extend(secret_segments.iter().map(|s| s.to_string()));
    }
    if let Some(query) = url.query() {
        parts.push(query.to_owned());
        parts.push(format!("{path}?{query}"));
        let decoded = url.query_pairs().map(|(_, v)| v.into_owned());
        let raw = query.split('&').filter_map(|pair| pair.split_once('=').map(|(_, v)| v.to_owned()));
        parts.extend(decoded.chain(raw).filter(|v| looks_secret(v)));
    }
    if !url.username().is_empty() {
        parts.push(url.username().to_owned());
    }
    if let Some(password) = url.password() {
        parts.push(password.to_owned());
    }
    parts
}

/// An id or key rather than a word: long, or holding a digit, a capital or a symbol.
fn looks_secret(part: &str) -> bool {
    let word = part.bytes().all(|b| b.is_ascii_lowercase() || b == b'-' || b == b'_');
    part.len() >= 20 || (part.len() >= MIN_LEN && !word)
}

/// A PEM key's base64 lines, each of which is key material.
fn key_lines(secret: &str) -> Vec<String> {
    if !secret.starts_with("-----BEGIN") {
        return Vec::new();
    }
    secret.lines().map(str::trim).filter(|l| l.len() >= 16 && !l.starts_with("-----")).map(str::to_owned).collect()
}

/// The spelling of a value in a query string or form body.
pub fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A quoted string's inside.
fn escaped(quoted: &str) -> String {
    quoted.strip_prefix('"').and_then(|q| q.strip_suffix('"')).unwrap_or(quoted).to_owned()
}

fn matcher() -> Option<Arc<AhoCorasick>> {
    KNOWN.read().unwrap_or_else(|e| e.into_inner()).matcher.clone()
}

/// `text` with every known secret replaced by `[REDACTED]`.
pub fn redact(text: &str) -> Cow<'_, str> {
    let Some(m) = matcher() else { return Cow::Borrowed(text) };
    if !m.is_match(text) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(m.replace_all(text, &vec![MARK; m.patterns_len()]))
}

/// `bytes` with every known secret replaced (response bodies, before anything reads
/// them).
pub fn redact_bytes(bytes: Vec<u8>) -> Vec<u8> {
    let Some(m) = matcher() else { return bytes };
    if !m.is_match(&bytes) {
        return bytes;
    }
    m.replace_all_bytes(&bytes, &vec![MARK.as_bytes(); m.patterns_len()])
}

/// Registers what every `*_env` and `*_file` key of the config's YAML files names,
/// at any depth (tokens, client secrets, private keys, webhook URLs): from here on no
/// output shows them, whichever connector's error or log line would. Values that cannot
/// be read are left to the connector that needs them to report.
pub fn register_config(dir: &Path, yaml_texts: &[&str]) {
    fn walk(dir: &Path, value: &serde_json::Value) {
        let serde_json::Value::Object(map) = value else { return };
        for (key, v) in map {
            match v {
                serde_json::Value::String(name) if key.ends_with("_env") => {
                    if let Ok(secret) = std::env::var(name) {
                        register(&secret);
                    }
                }
                serde_json::Value::String(path) if key.ends_with("_file") => {
                    let path = dir.join(path);
                    // Secrets are small; a large file named by mistake is not read whole.
                    if std::fs::metadata(&path).is_ok_and(|m| m.len() <= 64 * 1024)
                        && let Ok(secret) = std::fs::read_to_string(&path)
                    {
                        register(&secret);
                    }
                }
                _ => walk(dir, v),
            }
        }
    }
    for text in yaml_texts {
        if let Ok(value) = serde_saphyr::from_str::<serde_json::Value>(text) {
            walk(dir, &value);
        }
    }
}

/// A log writer that redacts each line: the last edge, for what no other place caught
/// (a library's own debug line quoting a URL). `tracing`'s formatter writes each event
/// in one call, so no secret is split across two.
pub struct RedactingWriter<W>(pub W);

impl<W: std::io::Write> std::io::Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write_all(&redact_bytes(buf.to_vec()))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Standard error, redacted: the writer `main` gives `tracing`.
pub fn redacting_stderr() -> RedactingWriter<std::io::Stderr> {
    RedactingWriter(std::io::stderr())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_and_the_parts_of_a_secret_url_are_redacted_wherever_they_appear() {
        register("http://hooks.example.net/services/T0UNITTEST1/B0UNITTEST2/unitxyzsecret3?key=unitquery4&mode=x");
        register("unit-token-5");
        register("unit/tok+en=6");
        register("unit\"quoted\\7");
        let echoed = [
            "POST http://hooks.example.net/services/T0UNITTEST1/B0UNITTEST2/unitxyzsecret3?key=unitquery4&mode=x failed",
            "POST /services/T0UNITTEST1/B0UNITTEST2/unitxyzsecret3 failed",
            "bad key unitquery4",
            "401: Bearer unit-token-5",
            "form client_secret=unit%2Ftok%2Ben%3D6",
            "segment B0UNITTEST2 alone",
            r#"{"error":"bad unit\"quoted\\7"}"#,
        ];
        for text in echoed {
            let out = redact(text);
            for secret in ["T0UNITTEST1", "B0UNITTEST2", "unitxyzsecret3", "unitquery4", "unit-token-5", "unit%2Ftok%2Ben%3D6", r#"unit\"quoted"#] {
                assert!(!out.contains(secret), "{text} → {out}");
            }
            assert!(out.contains(MARK), "{text} → {out}");
        }
        // The host and plain words of the path stay readable, also when the secret is
        // only in the query.
        assert_eq!(redact("http://hooks.example.net/services/"), "http://hooks.example.net/services/");
        register("https://automation.example.net/webhook?format=json&token=unitquery8");
        assert_eq!(redact("webhook format json"), "webhook format json");
        assert_eq!(redact("bad token unitquery8"), "bad token [REDACTED]");
        assert_eq!(redact_bytes(b"x unit-token-5 y".to_vec()), b"x [REDACTED] y");
        assert_eq!(
            redact(&crate::http::redact_url("http://hooks.example.net/services/T0UNITTEST1/B0UNITTEST2/unitxyzsecret3?key=unitquery4")),
            "http://hooks.example.net/[REDACTED]"
        );
    }

    #[test]
    fn each_line_of_a_private_key_is_key_material() {
        register("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCUNITPEMLINE1\nUNITPEMLINE2kqhkiG9w0BAQEFAASCBKcwggSjAgEA\n-----END PRIVATE KEY-----\n");
        let out = redact("parse error near UNITPEMLINE2kqhkiG9w0BAQEFAASCBKcwggSjAgEA at line 3");
        assert_eq!(out, "parse error near [REDACTED] at line 3");
        assert_eq!(redact("-----BEGIN PRIVATE KEY-----"), "-----BEGIN PRIVATE KEY-----");
    }

    #[test]
    fn short_values_are_not_searched_for() {
        register("abc");
        assert_eq!(redact("abc abcabc"), "abc abcabc");
    }
}
