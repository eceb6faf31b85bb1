//! Logging on stderr, set up once for the whole process. With `--log-format json` every
//! line a command writes to stderr is one JSON object with the message at the top level
//! (`{"timestamp", "level", "message", fields..., "target"}`): log collectors (Loki,
//! CloudWatch, journald's JSON export) read it without a parser of their own. That
//! includes what is not a `tracing` event elsewhere: warnings, the fatal error at the
//! process's edge.

use std::sync::OnceLock;

use crate::cli::LogFormat;

static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// Installs the subscriber. `RUST_LOG` wins over `default_level`; JSON logs default to
/// `info` whatever the command, since a machine reads them and the run summaries are
/// at info.
pub fn init(format: LogFormat, default_level: &str) {
    let _ = FORMAT.set(format);
    let default_level = if format == LogFormat::Json { "info" } else { default_level };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default_level.into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(crate::redaction::redacting_stderr);
    // (Every log line passes the secret redaction on its way out.)
    match format {
        // Flattened: the message and the event's fields beside `level`, not under "fields".
        LogFormat::Json => {
            builder.json().flatten_event(true).with_current_span(false).with_span_list(false).init();
            // A panic is a fatal error like any other: one JSON line, not Rust's text.
            std::panic::set_hook(Box::new(|info| {
                let what = info.payload().downcast_ref::<&str>().map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
                // A panic in a task does not end the process: no exit code here.
                write_json("ERROR", &format!("panic{at}: {what}"), None);
            }));
        }
        LogFormat::Human => builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
    }
}

/// Whether a command line asks for JSON logs, read from the raw arguments: for the
/// errors that come before they parse.
pub fn json_requested(args: impl IntoIterator<Item = String>) -> bool {
    let args: Vec<String> = args.into_iter().collect();
    args.windows(2).any(|w| w[0] == "--log-format" && w[1] == "json") || args.iter().any(|a| a == "--log-format=json")
}

pub fn is_json() -> bool {
    FORMAT.get() == Some(&LogFormat::Json)
}

/// A warning for the operator outside any run: `warning: ...` on a terminal, a WARN
/// event in JSON.
pub fn warning(message: &str) {
    say(tracing::Level::WARN, "warning: ", message);
}

/// An error for the operator that does not end the command (one file of several).
pub fn error(message: &str) {
    say(tracing::Level::ERROR, "error: ", message);
}

/// Something the operator should know that is neither a warning nor an error.
pub fn notice(message: &str) {
    say(tracing::Level::INFO, "", message);
}

/// A prefixed line on a terminal, an event at `level` in JSON; redacted first either
/// way (a JSON line escapes what it quotes, so its writer's redaction alone could miss a
/// secret that holds a quote or a newline).
fn say(level: tracing::Level, prefix: &str, message: &str) {
    let message = &*crate::redaction::redact(message);
    if !is_json() {
        eprintln!("{prefix}{message}");
    } else if level == tracing::Level::WARN {
        tracing::warn!("{message}");
    } else if level == tracing::Level::ERROR {
        tracing::error!("{message}");
    } else {
        tracing::info!("{message}");
    }
}

/// The error that ends the process, as the last line on stderr. In JSON it is written
/// directly, not through the filter: `RUST_LOG=off` must not hide why the process died.
pub fn fatal(message: &str, exit_code: i32) {
    let message = &*crate::redaction::redact(message);
    if is_json() {
        write_json("ERROR", message, Some(exit_code));
    } else {
        eprintln!("oql-sync: {message}");
    }
}

/// One line in the shape of the JSON subscriber's, written directly.
fn write_json(level: &str, message: &str, exit_code: Option<i32>) {
    let mut line = serde_json::json!({
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "level": level,
        "message": message,
    });
    if let Some(code) = exit_code {
        line["exit_code"] = code.into();
    }
    line["target"] = "oql_sync".into();
    eprintln!("{line}");
}

/// The store's address as logged: a password in a URL is never shown.
pub fn store_for_log(db: &str) -> String {
    match db.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((_, host)) if !rest.starts_with('/') => format!("{scheme}://***@{host}"),
            _ => db.to_owned(),
        },
        None => db.to_owned(),
    }
}

/// The daemon's first lines: what runs, from where, and when each connector runs next.
pub fn daemon_start(config: &crate::config::Config, db: &str) {
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        commit = env!("OQL_COMMIT"),
        config_dir = %config.dir.display(),
        store = %store_for_log(db),
        connectors = config.connectors.len(),
        "oql-sync daemon starting"
    );
    connectors(config);
}

/// One line per connector with its schedule and next run (at start and after a reload).
pub fn connectors(config: &crate::config::Config) {
    let now = chrono::Utc::now();
    for c in &config.connectors {
        let next = match crate::cycle::runs_on_schedule(c) {
            true => crate::daemon::next_runs(&c.schedule, now, 1).first().map(|t| t.to_rfc3339()).unwrap_or_default(),
            false => "never (read by `import` only)".to_owned(),
        };
        tracing::info!(connector = %c.name, kind = c.kind.as_str(), schedule = %c.schedule, next_run = %next, "connector scheduled");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_the_store_url_is_not_logged() {
        assert_eq!(store_for_log("postgres://oql:hunter2@db:5432/oql"), "postgres://***@db:5432/oql");
        assert_eq!(store_for_log("sqlite:///data/oql.db"), "sqlite:///data/oql.db");
        assert_eq!(store_for_log("/var/lib/oql-sync/oql.db"), "/var/lib/oql-sync/oql.db");
    }
}
