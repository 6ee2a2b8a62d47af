//! The `jsonbridge` binary: flags, logging, and the two sub-commands. The work is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use jsonbridge::logging::{self, LogFormat, LogLevel};
use jsonbridge::{app, config};

/// Default port: outside the 9100-9999 range that Prometheus' exporter port list has
/// allocated, and not used by json_exporter (7979).
const DEFAULT_LISTEN: &str = ":10795";

/// Turns JSON HTTP APIs into Prometheus metrics, driven by one YAML file.
///
/// Polls every configured source on its schedule, extracts metrics with JSONPath, and serves
/// the latest values on /metrics. The config file is reloaded when it changes, on SIGHUP, and
/// on POST /-/reload (with --web.enable-lifecycle).
#[derive(Debug, Parser)]
#[command(name = "jsonbridge", version, about, long_about)]
struct Cli {
    /// Path to the YAML config file.
    #[arg(
        long = "config.file",
        default_value = "config/jsonbridge.yaml",
        global = true
    )]
    config_file: PathBuf,

    /// Address to listen on for /metrics, the status page and health endpoints.
    #[arg(long = "web.listen-address", default_value = DEFAULT_LISTEN)]
    listen_address: String,

    /// Enable POST /-/reload (off by default, as in Prometheus).
    #[arg(long = "web.enable-lifecycle")]
    enable_lifecycle: bool,

    /// Do not watch the config file for changes (SIGHUP and /-/reload still work).
    #[arg(long = "config.no-watch")]
    no_watch: bool,

    /// Only log messages of this level and above.
    #[arg(long = "log.level", value_enum, default_value = "info", global = true)]
    log_level: LogLevel,

    /// Log line format.
    #[arg(
        long = "log.format",
        value_enum,
        default_value = "logfmt",
        global = true
    )]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a config file: prints every error with its line and column; exit code 1 if any.
    Check {
        /// The config file to check (default: --config.file).
        file: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check { file }) => check(&file.unwrap_or(cli.config_file)),
        None => {
            logging::init(cli.log_level, cli.log_format);
            let listen = normalize_listen(&cli.listen_address);
            let opts = app::Options {
                config_file: cli.config_file,
                listen_address: listen,
                enable_lifecycle: cli.enable_lifecycle,
                watch_config: !cli.no_watch,
            };
            match serve(opts) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("jsonbridge: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

#[tokio::main]
async fn serve(opts: app::Options) -> anyhow::Result<()> {
    let running = app::start(opts).await?;
    let cancel = running.cancel_token();
    tokio::spawn(async move {
        app::shutdown_signal().await;
        cancel.cancel();
    });
    running.wait().await?;
    Ok(())
}

fn check(file: &std::path::Path) -> ExitCode {
    match config::load(file) {
        Ok(c) => {
            let metrics: usize = c.sources.iter().map(|s| s.metrics.len()).sum();
            println!(
                "{}: OK ({} sources, {} metrics, {} families)",
                file.display(),
                c.sources.len(),
                metrics,
                c.families.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// `:PORT` (Prometheus style) means every interface.
fn normalize_listen(addr: &str) -> String {
    match addr.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => addr.to_string(),
    }
}
