//! The `oql-sync` binary: parse the command line, set up logging, run, map errors to
//! the exit codes of the CLI contract. `anyhow` lives here only.

use clap::Parser;
use oql_sync::app;
use oql_sync::cli::Cli;

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    let result = runtime.block_on(app::run(cli));
    if let Err(e) = result {
        let code = e.exit_code();
        eprintln!("oql-sync: {:#}", anyhow::Error::from(e));
        std::process::exit(code);
    }
}
