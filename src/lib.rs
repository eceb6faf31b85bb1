//! oql-sync: turns open-source usage signals into Open Source Qualified Lead stages and
//! scores. Data flows one way: sources → activities → store → attribution → scoring.
//! See `README.md` for the tour.

pub mod activity;
pub mod auth;
pub mod cycle;
pub mod daemon;
pub mod generate;
pub mod health;
pub mod init;
pub mod http;
pub mod sinks;
pub mod attribution;
pub mod config;
pub mod console;
pub mod scoring;
pub mod sources;
pub mod store;
pub mod app;
pub mod cli;
pub mod import;
pub mod json_object;
pub mod live_check;
pub mod logging;
pub mod output;
pub mod personal_data;
pub mod redaction;
pub mod preflight;
pub mod schema;
