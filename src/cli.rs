//! The command line (the stable contract of DESIGN.md's "CLI contract").

use std::path::PathBuf;

use chrono::NaiveDate;
use clap::{Parser, Subcommand, ValueEnum};

use crate::scoring::Stage;

#[derive(Debug, Parser)]
#[command(
    name = "oql-sync",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("OQL_COMMIT"), ")"),
    about = "Turns open-source usage signals into OQL stages and scores"
)]
pub struct Cli {
    /// Config directory (connectors/, mappings/, attribution.yaml, scoring.yaml).
    #[arg(long, global = true, env = "OQL_CONFIG_DIR", default_value = ".", value_name = "DIR")]
    pub config_dir: PathBuf,
    /// Store URL; default: sqlite://oql.db inside the config dir.
    #[arg(long, global = true, env = "OQL_DB", value_name = "URL")]
    pub db: Option<String>,
    /// Log format on stderr: human, or one JSON object a line.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ingest export files (format by extension or content: ndjson, csv, scarf).
    Import {
        /// Export files to import.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Take the format, source name and Scarf settings of this export connector.
        #[arg(long, value_name = "NAME")]
        connector: Option<String>,
    },
    /// Recompute and persist company scores.
    Score {
        /// Scoring date (YYYY-MM-DD); default today, UTC.
        #[arg(long, value_parser = parse_date, value_name = "DATE")]
        as_of: Option<NaiveDate>,
    },
    /// List companies by score with their stage and signals.
    Companies {
        /// Scoring date (YYYY-MM-DD); default today, UTC.
        #[arg(long, value_parser = parse_date, value_name = "DATE")]
        as_of: Option<NaiveDate>,
        /// Only companies in this stage: interest, investigation, experimentation, ongoing_usage
        /// or inactive.
        #[arg(long, value_parser = parse_stage, value_name = "S")]
        stage: Option<Stage>,
        /// Output format: a table for people, JSON (the scoring model's output contract) or CSV.
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
        /// Only the N highest-scoring companies.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// Every column of the table, however wide (default: what fits 80 columns).
        #[arg(long)]
        wide: bool,
    },
    /// Write a commented starter config into DIR.
    Init {
        /// Where to write it (default: the --config-dir); files that exist are kept.
        #[arg(value_name = "DIR")]
        dir: Option<PathBuf>,
        /// A writable folder for the drop folder and the file sink's output, when the
        /// config dir will be read-only to the daemon (systemd: /var/lib/oql-sync,
        /// Docker: /data). Default: inside DIR.
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
    },
    /// Validate the config; list connectors, their schedules and next runs.
    Check {
        /// Also ask each connector's service, read-only, whether the config works there:
        /// credentials and scopes, mapped fields and their types, list ids, repositories,
        /// channels. One line per connector, with the fix; exit 2 if any needs one.
        #[arg(long)]
        live: bool,
    },
    /// The daemon: every connector on its schedule; --once: poll, score, sync, exit.
    Run {
        /// One full cycle, then exit (non-zero if any connector failed).
        #[arg(long)]
        once: bool,
        /// Scoring date (YYYY-MM-DD); default today, UTC.
        #[arg(long, value_parser = parse_date, value_name = "DATE")]
        as_of: Option<NaiveDate>,
        /// Health and metrics endpoint: `HOST:PORT` (`localhost:9464`), `:PORT` for
        /// every interface, or `none`.
        #[arg(long, default_value = "127.0.0.1:9464", value_name = "ADDR")]
        listen: String,
        /// /readyz fails once a connector failed this many runs in a row (0: never).
        #[arg(long, default_value_t = 3, value_name = "N")]
        unready_after: u64,
        /// The environment variable holding the web console's token: needed to open
        /// the console when `--listen` is not a loopback address (docs/console.md).
        #[arg(long, value_name = "VAR")]
        console_token_env: Option<String>,
    },
    /// Ask a running daemon's /healthz; exit 0 when it answers healthy (container
    /// health checks: the image has no curl).
    Health {
        /// The daemon's `--listen` address (`HOST:PORT`, `localhost:PORT`, or `:PORT`,
        /// asked on loopback).
        #[arg(long, default_value = "127.0.0.1:9464", value_name = "ADDR")]
        listen: String,
    },
    /// Print a shell completion script (e.g. `oql-sync completions bash > /etc/bash_completion.d/oql-sync`).
    Completions {
        /// The shell to complete in.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff; e.g. `oql-sync man > /usr/local/share/man/man1/oql-sync.1`).
    Man,
    /// Print the JSON Schema of a config file, for editors (`init` writes them all to
    /// `<config dir>/schemas/` and points each starter file at its schema).
    Schema {
        /// Which file: connector (connectors/*.yaml), mapping (mappings/*.yaml),
        /// scoring (scoring.yaml) or attribution (attribution.yaml).
        #[arg(value_enum)]
        file: crate::schema::ConfigFile,
    },
    /// Write benchmark activities as NDJSON (deterministic; for `benches/`).
    #[command(hide = true)]
    Generate {
        #[arg(long, default_value_t = 1_000_000)]
        activities: u64,
        #[arg(long, default_value_t = 20_000)]
        companies: u32,
        /// Last day of the 180 days.
        #[arg(long, value_parser = parse_date, default_value = "2026-10-31")]
        end: NaiveDate,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Write an update of that data set instead: ACTIVITIES new lines spread over
        /// this many of its companies, in its last 7 days.
        #[arg(long, value_name = "COMPANIES")]
        touch: Option<u32>,
        /// Output file; `-` for stdout.
        #[arg(long, default_value = "-")]
        out: PathBuf,
    },
    /// Why a company has its stage and score.
    Explain {
        /// The company's domain.
        domain: String,
        /// Scoring date (YYYY-MM-DD); default today, UTC.
        #[arg(long, value_parser = parse_date, value_name = "DATE")]
        as_of: Option<NaiveDate>,
        /// Output format: a table for people, or JSON.
        #[arg(long, value_enum, default_value_t = PlanFormat::Table)]
        format: PlanFormat,
    },
    /// Poll sources once (GitHub, Slack, watched export folders).
    Poll {
        /// Only this source connector.
        #[arg(long, value_name = "NAME")]
        connector: Option<String>,
    },
    /// Push changed fields to sinks once.
    Sync {
        /// Only this sink connector.
        #[arg(long, value_name = "NAME")]
        connector: Option<String>,
        /// Print the plan; write nothing anywhere.
        #[arg(long)]
        dry_run: bool,
        /// With --dry-run: diff against the CRM's current values (read calls only).
        #[arg(long, requires = "dry_run")]
        live: bool,
        /// Give records parked as dead a new round of attempts.
        #[arg(long)]
        retry_dead: bool,
        /// Read the CRM's current values and write the mapped values over hand edits
        /// (fields with `update: if_empty` keep a value the CRM holds).
        #[arg(long)]
        reconcile: bool,
        /// Only these companies (their changes and pending triggers); repeat or list
        /// several: --domain acme.com initech.com.
        #[arg(long = "domain", value_name = "D", num_args = 1..)]
        domains: Vec<String>,
        /// Scoring date (YYYY-MM-DD); default today, UTC.
        #[arg(long, value_parser = parse_date, value_name = "DATE")]
        as_of: Option<NaiveDate>,
        /// Format of the --dry-run plan.
        #[arg(long, value_enum, default_value_t = PlanFormat::Table)]
        format: PlanFormat,
        /// The --dry-run plan's changes whole, whatever the terminal's width.
        #[arg(long)]
        wide: bool,
    },
    /// Write a consistent copy of the store to FILE (while daemons run, too).
    Backup {
        /// The copy to write; it must not exist yet.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Check the store: integrity, schema version, WAL size, leases, quarantined and
    /// unattributed counts; exit 1 when it is unhealthy.
    Doctor,
    /// Show the sync log: runs and their records.
    Log {
        /// Only this connector's runs and records.
        #[arg(long, value_name = "NAME")]
        connector: Option<String>,
        /// ok or failed (runs and records), a run's paused, skipped (another process
        /// held the connector) or running, or a record outcome: accepted, created, dead,
        /// ambiguous, not_found, trigger.
        #[arg(long, value_parser = parse_status, value_name = "STATUS")]
        status: Option<String>,
        /// Only entries from this date (YYYY-MM-DD, UTC) on.
        #[arg(long, value_parser = parse_date, value_name = "DATE")]
        since: Option<NaiveDate>,
        /// Most runs and records shown.
        #[arg(long, default_value_t = 200)]
        limit: i64,
        /// Output format: a table for people, or JSON.
        #[arg(long, value_enum, default_value_t = PlanFormat::Table)]
        format: PlanFormat,
        /// Every column, fields and errors whole, whatever the terminal's width.
        #[arg(long)]
        wide: bool,
    },
}

fn parse_status(s: &str) -> Result<String, String> {
    const KNOWN: [&str; 11] = ["ok", "failed", "paused", "skipped", "accepted", "created", "dead", "ambiguous", "not_found", "trigger", "running"];
    if KNOWN.contains(&s) {
        Ok(s.to_owned())
    } else {
        Err(format!("`{s}` is not a status (expected one of {})", KNOWN.join(", ")))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    Table,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
    Csv,
}

fn parse_date(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| format!("`{s}` is not a date (expected YYYY-MM-DD)"))
}

fn parse_stage(s: &str) -> Result<Stage, String> {
    Stage::parse(s).ok_or_else(|| {
        format!("`{s}` is not a stage (expected interest, investigation, experimentation, ongoing_usage or inactive)")
    })
}

/// Writes the completion script of `shell` for the whole command line.
pub fn write_completions(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
    let mut command = <Cli as clap::CommandFactory>::command();
    clap_complete::generate(shell, &mut command, "oql-sync", out);
}

/// Writes the manual page (roff), subcommands included.
pub fn write_man_page(out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let command = <Cli as clap::CommandFactory>::command();
    clap_mangen::Man::new(command.clone()).render(out)?;
    // One section per visible command, with its options, after the main page.
    for sub in command.get_subcommands().filter(|c| !c.is_hide_set()) {
        clap_mangen::Man::new(sub.clone()).title(format!("oql-sync-{}", sub.get_name())).render(out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn every_option_of_every_command_says_what_it_is_for() {
        let root = Cli::command();
        let mut missing = Vec::new();
        for command in std::iter::once(&root).chain(root.get_subcommands().filter(|c| !c.is_hide_set())) {
            for arg in command.get_arguments().filter(|a| !a.is_hide_set()) {
                if arg.get_help().is_none() && !["help", "version"].contains(&arg.get_id().as_str()) {
                    missing.push(format!("{} --{}", command.get_name(), arg.get_id()));
                }
            }
            if command.get_about().is_none() {
                missing.push(format!("{} (the command itself)", command.get_name()));
            }
        }
        assert!(missing.is_empty(), "without help text: {missing:?}");
    }

    #[test]
    fn the_version_names_the_commit_and_completions_and_man_page_cover_every_command() {
        assert!(Cli::command().get_version().unwrap().contains("(commit "));
        let mut bash = Vec::new();
        write_completions(clap_complete::Shell::Bash, &mut bash);
        let bash = String::from_utf8(bash).unwrap();
        let mut man = Vec::new();
        write_man_page(&mut man).unwrap();
        let man = String::from_utf8(man).unwrap();
        for command in Cli::command().get_subcommands().filter(|c| !c.is_hide_set()) {
            assert!(bash.contains(command.get_name()), "completion lacks {}", command.get_name());
            assert!(man.contains(&format!("oql\\-sync\\-{}", command.get_name().replace('-', "\\-"))), "man page lacks {}", command.get_name());
        }
    }
}
