//! The `oql-sync` binary: parse the command line, set up logging, run, map errors to
//! the exit codes of the CLI contract. `anyhow` lives here only.

use clap::Parser;
use oql_sync::app;
use oql_sync::cli::Cli;

/// An import allocates and frees a few strings per activity on one thread while another
/// frees whole batches; glibc's allocator spends a tenth of the parsing thread on that
/// and holds on to freed memory (peak RSS), mimalloc neither.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = Cli::try_parse().unwrap_or_else(|e| {
        // A usage error of a run asked for JSON logs is a JSON line too; help and
        // --version print as always.
        if e.use_stderr() && oql_sync::logging::json_requested(std::env::args()) {
            oql_sync::logging::init(oql_sync::cli::LogFormat::Json, "warn");
            oql_sync::logging::fatal(e.render().to_string().trim_end(), e.exit_code());
            std::process::exit(e.exit_code());
        }
        e.exit()
    });
    // The daemon tells what it does at info; one-shot commands only warn.
    let default_level = if matches!(cli.command, oql_sync::cli::Command::Run { once: false, .. }) { "info" } else { "warn" };
    oql_sync::logging::init(cli.log_format, default_level);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    let result = runtime.block_on(app::run(cli));
    if let Err(e) = result {
        // `oql-sync companies | head`: the reader is gone, which is nobody's error.
        if is_broken_pipe(&e) {
            std::process::exit(0);
        }
        let code = e.exit_code();
        oql_sync::logging::fatal(&said_once(&anyhow::Error::from(e)), code);
        std::process::exit(code);
    }
}

/// An error and its causes, each cause said once: a cause whose text its wrapper
/// already quotes adds nothing but the same words again.
fn said_once(e: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !message.contains(&text) {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&text);
        }
    }
    message
}

fn is_broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) {
            return true;
        }
        cause = c.source();
    }
    false
}
