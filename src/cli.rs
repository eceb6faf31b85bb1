//! The command line (the stable contract of DESIGN.md's "CLI contract").

use std::path::PathBuf;

use chrono::NaiveDate;
use clap::{Parser, Subcommand, ValueEnum};

use crate::scoring::Stage;

#[derive(Debug, Parser)]
#[command(name = "oql-sync", version, about = "Turns open-source usage signals into OQL stages and scores")]
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
        /// Only companies in this stage.
        #[arg(long, value_parser = parse_stage, value_name = "S")]
        stage: Option<Stage>,
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
    /// Write a commented starter config into DIR.
    Init {
        #[arg(default_value = ".", value_name = "DIR")]
        dir: PathBuf,
    },
    /// Validate the config; list connectors, their schedules and next runs.
    Check,
    /// The daemon: every connector on its schedule; --once: poll, score, sync, exit.
    Run {
        /// One full cycle, then exit (non-zero if any connector failed).
        #[arg(long)]
        once: bool,
        /// Scoring date (YYYY-MM-DD); default today, UTC.
        #[arg(long, value_parser = parse_date, value_name = "DATE")]
        as_of: Option<NaiveDate>,
        /// Health and metrics endpoint address, or `none`.
        #[arg(long, default_value = "127.0.0.1:9464", value_name = "ADDR")]
        listen: String,
    },
    /// Ask a running daemon's /healthz; exit 0 when it answers healthy (container
    /// health checks: the image has no curl).
    Health {
        /// The daemon's `--listen` address (`HOST:PORT`, or `:PORT` for loopback).
        #[arg(long, default_value = "127.0.0.1:9464", value_name = "ADDR")]
        listen: String,
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
        /// Scoring date (YYYY-MM-DD); default today, UTC.
        #[arg(long, value_parser = parse_date, value_name = "DATE")]
        as_of: Option<NaiveDate>,
        /// Format of the --dry-run plan.
        #[arg(long, value_enum, default_value_t = PlanFormat::Table)]
        format: PlanFormat,
    },
    /// Show the sync log: runs and their records.
    Log {
        #[arg(long, value_name = "NAME")]
        connector: Option<String>,
        /// ok or failed (runs and records), or a record outcome: accepted, created,
        /// dead, ambiguous, not_found, trigger.
        #[arg(long, value_parser = parse_status, value_name = "STATUS")]
        status: Option<String>,
        /// Only entries from this date (YYYY-MM-DD, UTC) on.
        #[arg(long, value_parser = parse_date, value_name = "DATE")]
        since: Option<NaiveDate>,
        /// Most runs and records shown.
        #[arg(long, default_value_t = 200)]
        limit: i64,
        #[arg(long, value_enum, default_value_t = PlanFormat::Table)]
        format: PlanFormat,
    },
}

fn parse_status(s: &str) -> Result<String, String> {
    const KNOWN: [&str; 10] = ["ok", "failed", "paused", "accepted", "created", "dead", "ambiguous", "not_found", "trigger", "running"];
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
