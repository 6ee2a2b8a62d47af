//! Wiring: load the config, start the sources, the watcher and the HTTP server; stop them.
//!
//! [`start`] returns once the server listens (so tests can use port 0 and read the address);
//! [`Running::wait`] ends after a graceful shutdown: the server stops accepting, in-flight
//! scrapes complete, polls are cancelled.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{self, ConfigError};
use crate::expose::{self, Exposer, ReloadRequest};
use crate::reload::{self, Reloader, Trigger};
use crate::schedule::{ScheduleError, Scheduler};
use crate::store::Store;
use crate::telemetry::Telemetry;

#[derive(Debug, Clone)]
pub struct Options {
    pub config_file: PathBuf,
    pub listen_address: String,
    pub enable_lifecycle: bool,
    /// Watch the config directory for changes (on by default).
    pub watch_config: bool,
    /// exporter-toolkit style web config: TLS and basic auth.
    pub web_config: Option<PathBuf>,
    /// Poll only this replica's share of the sources.
    pub shard: Option<config::Shard>,
    /// Protective limits (`--config.max-bytes`, `--web.*`, `--probe.max-concurrent`...).
    pub limits: Limits,
    /// Serve `/metrics`, push to `remote_write`, or both.
    pub mode: Mode,
}

/// What jsonbridge does with its snapshots (`--mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Mode {
    /// Serve `/metrics`, and push to the config's `remote_write` endpoints if it has any.
    #[default]
    Both,
    /// Serve `/metrics` only; `remote_write` is ignored.
    Serve,
    /// Push only: `/metrics` shows jsonbridge's own metrics, the series go to
    /// `remote_write` (health, readiness, the status page and `/probe` stay).
    Push,
}

/// Protective limits, each with a flag (see `main`) and a row in docs/reliability.md's
/// table; a hit is counted in `jsonbridge_limit_hits_total`.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest config file read.
    pub config_max_bytes: u64,
    /// `/probe` polls at once.
    pub max_concurrent_probes: usize,
    /// Server connection limits.
    pub server: expose::web::ServerLimits,
    /// Response bodies held at once, process-wide (see `fetch::budget`).
    pub body_bytes_in_flight: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            config_max_bytes: config::DEFAULT_MAX_CONFIG_BYTES,
            max_concurrent_probes: expose::DEFAULT_MAX_CONCURRENT_PROBES,
            server: expose::web::ServerLimits::default(),
            body_bytes_in_flight: crate::fetch::budget::DEFAULT_BODY_BYTES_IN_FLIGHT,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: String,
        source: std::io::Error,
    },
    #[error("cannot watch the config directory: {0}")]
    Watch(#[from] notify::Error),
    #[error(transparent)]
    Web(#[from] crate::expose::web::WebConfigError),
}

pub struct Running {
    pub addr: SocketAddr,
    pub store: Arc<Store>,
    pub reloader: Arc<Reloader>,
    cancel: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    scheduler: Arc<Scheduler>,
    _watcher: Option<notify::RecommendedWatcher>,
}

impl Running {
    /// Asks for a graceful shutdown.
    pub fn shutdown(&self) {
        self.cancel.cancel();
    }

    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Waits for the shutdown to finish.
    pub async fn wait(self) -> std::io::Result<()> {
        let served = match self.server.await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        };
        self.scheduler.shutdown().await;
        tracing::info!("stopped");
        served
    }
}

/// Loads the config and starts everything. A config that does not compile is an error here:
/// at start-up there is no previous config to fall back to.
pub async fn start(opts: Options) -> Result<Running, StartError> {
    let web = match &opts.web_config {
        Some(p) => crate::expose::web::WebConfig::load(p)?,
        None => crate::expose::web::WebConfig::default(),
    };
    crate::fetch::budget::set(opts.limits.body_bytes_in_flight);
    let origin = config::Origin::file(&opts.config_file);
    let (path, max, o) = (
        opts.config_file.clone(),
        opts.limits.config_max_bytes,
        origin.clone(),
    );
    // Off the async workers, as every reload is: the file may be large or slow to read.
    let (text, mut config) = reload::off_workers(move || {
        let text = config::read_limited(&path, max)?;
        let config = config::parse(&text, &o, &|k| std::env::var(k).ok())?;
        Ok((text, config))
    })
    .await?;
    if let Some(shard) = opts.shard {
        let total = config.sources.len();
        config.keep_shard(shard);
        tracing::info!(
            shard = %format!("{}/{}", shard.index, shard.count),
            sources = config.sources.len(),
            of = total,
            "sharding: polling this replica's sources only"
        );
    }
    let config = Arc::new(config);
    let cancel = CancellationToken::new();
    let store = Arc::new(Store::new(config.clone()));
    let telemetry = Arc::new(Telemetry::new(store.clone()));
    if opts.mode == Mode::Push && config.remote_write.is_empty() {
        tracing::warn!(
            "--mode push, but the config has no remote_write endpoint: the series go nowhere"
        );
    }
    if opts.mode == Mode::Serve && !config.remote_write.is_empty() {
        tracing::info!("--mode serve: the config's remote_write endpoints are not used");
    }
    let pusher = crate::push::Pusher::start(
        &config,
        telemetry.clone(),
        cancel.child_token(),
        opts.mode != Mode::Serve,
    );
    let scheduler = Arc::new(
        Scheduler::new(
            store.clone(),
            telemetry.clone(),
            pusher.clone(),
            cancel.child_token(),
        )
        .await?,
    );
    tracing::info!(
        version = crate::VERSION,
        config = %origin.name,
        sources = config.sources.len(),
        "starting jsonbridge"
    );
    for w in &config.warnings {
        tracing::warn!(warning = %w, "config lint");
    }
    for s in &config.sources {
        scheduler.start(s.clone()).await?;
    }
    let reloader = Arc::new(Reloader::new(
        opts.config_file.clone(),
        opts.limits.config_max_bytes,
        opts.shard,
        text,
        reload::Applied {
            store: store.clone(),
            telemetry: telemetry.clone(),
            scheduler: scheduler.clone(),
            pusher,
        },
    ));
    let watcher = if opts.watch_config {
        Some(reload::watch(
            &opts.config_file,
            reloader.clone(),
            cancel.clone(),
        )?)
    } else {
        None
    };
    let reload_tx = opts
        .enable_lifecycle
        .then(|| spawn_reload_requests(reloader.clone(), cancel.clone()));
    spawn_sighup(reloader.clone(), cancel.clone());

    let exposer = Arc::new(
        Exposer::new(store.clone(), telemetry.clone(), reload_tx, origin.name)
            .with_self_metrics_only(opts.mode == Mode::Push)
            .with_max_concurrent_probes(opts.limits.max_concurrent_probes),
    );
    let listener = tokio::net::TcpListener::bind(&opts.listen_address)
        .await
        .map_err(|source| StartError::Listen {
            address: opts.listen_address.clone(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Listen {
        address: opts.listen_address.clone(),
        source,
    })?;
    tracing::info!(
        address = %addr,
        tls = web.tls.is_some(),
        basic_auth = web.auth.is_some(),
        "listening"
    );
    let router = expose::web::protect(expose::router(exposer), &web);
    let server = tokio::spawn(expose::web::serve(
        listener,
        router,
        web,
        opts.limits.server.clone(),
        cancel.clone(),
    ));
    Ok(Running {
        addr,
        store,
        reloader,
        cancel,
        server,
        scheduler,
        _watcher: watcher,
    })
}

fn spawn_reload_requests(
    reloader: Arc<Reloader>,
    cancel: CancellationToken,
) -> mpsc::Sender<ReloadRequest> {
    let (tx, mut rx) = mpsc::channel::<ReloadRequest>(8);
    tokio::spawn(async move {
        loop {
            let req = tokio::select! {
                _ = cancel.cancelled() => return,
                r = rx.recv() => match r { Some(r) => r, None => return },
            };
            let result = reloader.reload(Trigger::Request).await;
            let _ = req.reply.send(result);
        }
    });
    tx
}

#[cfg(unix)]
fn spawn_sighup(reloader: Arc<Reloader>, cancel: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; reload by file change or POST /-/reload");
        return;
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                s = hup.recv() => if s.is_none() { return },
            }
            tracing::info!("SIGHUP: reloading the config");
            let _ = reloader.reload(Trigger::Request).await;
        }
    });
}

#[cfg(not(unix))]
fn spawn_sighup(_: Arc<Reloader>, _: CancellationToken) {}

/// Resolves on SIGTERM or ctrl-c.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("interrupt: shutting down"),
        _ = term => tracing::info!("SIGTERM: shutting down"),
    }
}
