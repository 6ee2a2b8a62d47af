//! jsonbridge turns JSON HTTP APIs into Prometheus metrics, driven by one YAML file.
//!
//! The data flows through one module per step:
//!
//! ```text
//! config ──> schedule ──> fetch ──> read ──> extract ──> store ──> expose
//!   ^                                                    (snapshots)   (/metrics, /, /-/ready)
//!   |                                                         └──────> push (remote write)
//!   └── reload (file watch, SIGHUP, POST /-/reload)             telemetry (self-metrics + logs)
//! ```
//!
//! - [`config`] turns the YAML into a validated, compiled [`config::Config`]: every JSONPath
//!   compiled, every name checked, every error listed with its line and column.
//! - [`schedule`] runs one job per source (cron or interval) and never lets a poll overlap itself.
//! - [`fetch`] gets the body (HTTP or `file://`) within a timeout and a size limit.
//! - [`read`] reads the body along a read plan, building or handing over only what the plan
//!   asks for; it knows JSON, nothing of metrics.
//! - [`extract`] is a pure function from a JSON document to samples. It makes each source's
//!   read plan once per config ([`extract::plan`]), so that polls build only what the metrics
//!   look up (and fold aggregates from the root instead of building what they read).
//! - [`store`] keeps one immutable snapshot per source, replaced whole by each good poll.
//! - [`expose`] serves the snapshots through prometheus-client, cached until something changes.
//! - [`push`], beside it, sends each new snapshot to Prometheus remote write endpoints.
//! - [`reload`] validates a new file first, then applies it source by source.
//! - [`telemetry`] is the one place where an event is both logged and counted.
//! - [`inspect`] runs a source over a sample response offline (`jsonbridge test`).

pub mod app;
pub mod config;
pub mod expose;
pub mod extract;
pub mod fetch;
pub mod import;
pub mod inspect;
pub mod logging;
pub mod push;
pub mod read;
pub mod reload;
pub mod schedule;
pub mod store;
pub mod telemetry;

/// Version string shown by `--version`, in `jsonbridge_build_info` and in the User-Agent.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Git revision of the build (`unknown` outside a checkout).
pub const REVISION: &str = env!("JSONBRIDGE_REVISION");
/// Version of the compiler that built it.
pub const RUSTC: &str = env!("JSONBRIDGE_RUSTC");
/// `--version`'s text.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (revision ",
    env!("JSONBRIDGE_REVISION"),
    ", rustc ",
    env!("JSONBRIDGE_RUSTC"),
    ")"
);
