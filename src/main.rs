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
#[command(name = "jsonbridge", version = jsonbridge::LONG_VERSION, about, long_about)]
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

    /// Web config file (Prometheus exporter-toolkit format) for TLS and basic auth.
    #[arg(long = "web.config.file")]
    web_config: Option<PathBuf>,

    /// Poll only this replica's share of the sources: INDEX/COUNT (e.g. 0/3). Sources are
    /// assigned by a stable hash of their name, so every source lands on exactly one replica.
    #[arg(long = "shard", value_name = "INDEX/COUNT")]
    shard: Option<config::Shard>,

    /// What to do with the series: `both` serves /metrics and pushes to the config's
    /// remote_write endpoints (if any); `serve` only serves; `push` only pushes (/metrics
    /// then shows jsonbridge's own metrics; health, readiness and the status page stay).
    #[arg(long = "mode", value_enum, default_value = "both")]
    mode: app::Mode,

    /// Do not watch the config file for changes (SIGHUP and /-/reload still work).
    #[arg(long = "config.no-watch")]
    no_watch: bool,

    /// Largest config file read, in bytes (a larger one is refused with an error).
    #[arg(long = "config.max-bytes", default_value_t = config::DEFAULT_MAX_CONFIG_BYTES)]
    config_max_bytes: u64,

    /// Connections open at once; more are closed when accepted. Default: 1024, or half the
    /// open-file limit if that is less, so polls keep descriptors.
    #[arg(long = "web.max-connections")]
    max_connections: Option<usize>,

    /// A connection that sends no request this long after it was accepted (TLS handshake
    /// included) is closed.
    #[arg(long = "web.first-request-timeout", default_value = "10s", value_parser = duration)]
    first_request_timeout: std::time::Duration,

    /// A connection with no request in flight and no byte moving this long is closed.
    #[arg(long = "web.idle-timeout", default_value = "60s", value_parser = duration)]
    idle_timeout: std::time::Duration,

    /// Response bodies held at once by all polls and probes, in bytes (bodies under 1 MiB
    /// are not counted); a poll that would pass it waits, within its timeout.
    #[arg(long = "limits.body-bytes-in-flight", default_value_t = jsonbridge::fetch::budget::DEFAULT_BODY_BYTES_IN_FLIGHT)]
    body_bytes_in_flight: u64,

    /// /probe polls at once; more wait for a slot within their timeout, then get 503.
    #[arg(long = "probe.max-concurrent", default_value_t = jsonbridge::expose::DEFAULT_MAX_CONCURRENT_PROBES)]
    max_concurrent_probes: usize,

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
    /// Validate a config file: prints every error and lint warning with its line and column;
    /// exit code 1 on errors (or on warnings with --strict).
    Check {
        /// The config file to check (default: --config.file).
        file: Option<PathBuf>,
        /// Fail on lint warnings too (naming conventions, units, help text).
        #[arg(long)]
        strict: bool,
        /// Report an unset `${VAR}` as a warning (checked with a stand-in value) instead of
        /// an error: for CI, where the secrets are not set.
        #[arg(long)]
        allow_missing_env: bool,
    },
    /// Run one source's metrics over a sample response, without network: prints the
    /// exposition on stdout and, on stderr, per metric how many items matched and which were
    /// skipped and why.
    Test {
        /// The config file (default: --config.file).
        file: Option<PathBuf>,
        /// The source to run (optional when the config has only one).
        #[arg(long)]
        source: Option<String>,
        /// A saved response body (JSON); `-` reads standard input. For a paginated source,
        /// the pages in order (`--input p1.json --input p2.json`); for a fan-out source, the
        /// list, then each item's answer in the list's order; or a directory whose files are
        /// those in name order.
        #[arg(long, required = true, num_args = 1..)]
        input: Vec<PathBuf>,
        /// Exposition format to print.
        #[arg(long, value_enum, default_value = "text")]
        format: OutputFormat,
    },
    /// Print the JSON Schema of the config file (for editors: see docs/configuration.md).
    Schema,
    /// Translate a json_exporter config to jsonbridge YAML (stdout); what cannot be
    /// translated is listed on stderr.
    ImportJsonExporter {
        /// The json_exporter config file.
        file: PathBuf,
        /// Poll this URL with every module (each becomes a source); without it the modules
        /// serve /probe?module=NAME&target=URL.
        #[arg(long)]
        target: Option<String>,
    },
    /// Print a shell completion script: `jsonbridge completions bash > /etc/bash_completion.d/jsonbridge`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum OutputFormat {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0.
    Openmetrics,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check {
            file,
            strict,
            allow_missing_env,
        }) => check(&file.unwrap_or(cli.config_file), strict, allow_missing_env),
        Some(Command::Test {
            file,
            source,
            input,
            format,
        }) => test(
            &file.unwrap_or(cli.config_file),
            source.as_deref(),
            &input,
            format,
        ),
        Some(Command::Completions { shell }) => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "jsonbridge",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Some(Command::ImportJsonExporter { file, target }) => import(&file, target.as_deref()),
        Some(Command::Schema) => {
            print!("{}", config::raw::schema());
            ExitCode::SUCCESS
        }
        None => {
            logging::init(cli.log_level, cli.log_format);
            let listen = normalize_listen(&cli.listen_address);
            let opts = app::Options {
                config_file: cli.config_file,
                listen_address: listen,
                enable_lifecycle: cli.enable_lifecycle,
                watch_config: !cli.no_watch,
                web_config: cli.web_config,
                shard: cli.shard,
                mode: cli.mode,
                limits: app::Limits {
                    config_max_bytes: cli.config_max_bytes,
                    max_concurrent_probes: cli.max_concurrent_probes,
                    body_bytes_in_flight: cli.body_bytes_in_flight,
                    server: jsonbridge::expose::web::ServerLimits {
                        max_connections: cli
                            .max_connections
                            .unwrap_or_else(jsonbridge::expose::web::default_max_connections),
                        first_request_timeout: cli.first_request_timeout,
                        idle_timeout: cli.idle_timeout,
                    },
                },
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

fn duration(text: &str) -> Result<std::time::Duration, String> {
    config::text::parse_duration(text)
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

fn check(file: &std::path::Path, strict: bool, allow_missing_env: bool) -> ExitCode {
    let loaded = if allow_missing_env {
        config::load_allowing_missing_env(file)
    } else {
        config::load(file)
    };
    match loaded {
        Ok(c) => {
            let metrics: usize = c
                .sources
                .iter()
                .chain(&c.modules)
                .flat_map(|s| &s.metrics)
                .map(|m| m.outputs.len())
                .sum();
            for w in &c.warnings {
                eprintln!("warning: {w}");
            }
            if strict && !c.warnings.is_empty() {
                eprintln!(
                    "{}: {} warnings (--strict)",
                    file.display(),
                    c.warnings.len()
                );
                return ExitCode::FAILURE;
            }
            let count = |n: usize, one: &str, many: &str| {
                format!("{n} {}", if n == 1 { one } else { many })
            };
            let modules = match c.modules.len() {
                0 => String::new(),
                n => format!(", {}", count(n, "module", "modules")),
            };
            println!(
                "{}: OK ({}{modules}, {}, {}{})",
                file.display(),
                count(c.sources.len(), "source", "sources"),
                count(metrics, "metric", "metrics"),
                count(c.families.len(), "family", "families"),
                match c.warnings.len() {
                    0 => String::new(),
                    n => format!(", {}", count(n, "warning", "warnings")),
                }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn test(
    file: &std::path::Path,
    source: Option<&str>,
    inputs: &[PathBuf],
    format: OutputFormat,
) -> ExitCode {
    let fail = |msg: String| {
        eprintln!("{msg}");
        ExitCode::FAILURE
    };
    let c = match config::load(file) {
        Ok(c) => c,
        Err(e) => return fail(e.to_string()),
    };
    let mut files = Vec::new();
    for input in inputs {
        match std::fs::read_dir(input) {
            Ok(dir) => {
                let mut names: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
                names.retain(|p| p.is_file());
                names.sort();
                files.extend(names);
            }
            Err(_) => files.push(input.clone()),
        }
    }
    let mut bodies = Vec::new();
    for input in &files {
        bodies.push(if input.as_os_str() == "-" {
            let mut buf = Vec::new();
            match std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf) {
                Ok(_) => buf,
                Err(e) => return fail(format!("cannot read standard input: {e}")),
            }
        } else {
            match std::fs::read(input) {
                Ok(b) => b,
                Err(e) => return fail(format!("cannot read {}: {e}", input.display())),
            }
        });
    }
    let src = match jsonbridge::inspect::pick(&c, source) {
        Ok(s) => s,
        Err(e) => return fail(e.to_string()),
    };
    let format = match format {
        OutputFormat::Text => jsonbridge::expose::Format::Text,
        OutputFormat::Openmetrics => jsonbridge::expose::Format::OpenMetrics,
    };
    match jsonbridge::inspect::run_pages(&c, src, &bodies, format) {
        Ok(out) => {
            print!("{}", out.exposition);
            eprint!("{}", out.report);
            match out.failure {
                None => ExitCode::SUCCESS,
                Some(_) => ExitCode::FAILURE,
            }
        }
        Err(e) => fail(format!("source {}: {e}", src.name)),
    }
}

/// `:PORT` (Prometheus style) means every interface.
fn normalize_listen(addr: &str) -> String {
    match addr.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => addr.to_string(),
    }
}

fn import(file: &std::path::Path, target: Option<&str>) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot read {}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let out = match jsonbridge::import::json_exporter(&text, target) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    print!("{}", out.yaml);
    for w in &out.warnings {
        eprintln!("warning: {w}");
    }
    // The translation must be a valid jsonbridge config; say so if it is not.
    let origin = config::Origin {
        name: "the converted config".into(),
        base_dir: ".".into(),
    };
    match config::parse(&out.yaml, &origin, &|_| Some(String::new())) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
