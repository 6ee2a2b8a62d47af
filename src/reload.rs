//! `reload`: a new config file is validated first, then applied source by source.
//!
//! Triggers: a change in the config file's directory (an in-place write, an editor's
//! save-by-rename, a Kubernetes ConfigMap's `..data` symlink swap), SIGHUP and
//! `POST /-/reload`. Guarantees:
//! - a file that does not compile changes nothing: the running config keeps serving, and
//!   `jsonbridge_config_last_reload_successful` drops to 0;
//! - a good file is applied by diff: unchanged sources keep their job and snapshot (no gap in
//!   their series), changed ones restart, removed ones and their series vanish, new ones poll
//!   at once;
//! - file events are debounced and compared by content, so a burst of writes or a touch
//!   causes at most one reload;
//! - after a file event, the file is read only once it has not changed for [`QUIET`], and a
//!   read during which its size or modification time changed is thrown away, so a file
//!   written in pieces is not applied piece by piece (writing it elsewhere and renaming it
//!   over the config, as editors and Kubernetes do, is the safe way: see docs/configuration.md);
//! - the file is read and compiled on the blocking pool, never on the async workers that
//!   answer scrapes and health checks; only a regular file up to `--config.max-bytes` is read;
//! - reloads never run concurrently.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config, ConfigError};
use crate::schedule::Scheduler;
use crate::store::Store;
use crate::telemetry::Telemetry;

/// What a reload did, for logs and the HTTP answer.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Changes {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: Vec<String>,
}

impl std::fmt::Display for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "added [{}], changed [{}], removed [{}], unchanged [{}]",
            self.added.join(" "),
            self.changed.join(" "),
            self.removed.join(" "),
            self.unchanged.join(" ")
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Schedule(#[from] crate::schedule::ScheduleError),
}

impl ReloadError {
    pub fn kind(&self) -> &'static str {
        match self {
            ReloadError::Config(e) => e.kind(),
            ReloadError::Schedule(e) => e.kind(),
        }
    }
}

/// Why a reload was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The watcher saw a change: skipped when the content is what was last read.
    FileEvent,
    /// SIGHUP or `POST /-/reload`: always re-applied.
    Request,
}

/// How long a changed file must stay unchanged before a file event reads it.
pub const QUIET: Duration = Duration::from_millis(500);
/// The longest a file event waits for the file to settle; then it is read as it stands
/// (a file written without pause for that long is still guarded by the read's own check).
const SETTLE_MAX: Duration = Duration::from_secs(10);

pub struct Reloader {
    path: PathBuf,
    max_bytes: u64,
    shard: Option<config::Shard>,
    store: Arc<Store>,
    telemetry: Arc<Telemetry>,
    scheduler: Arc<Scheduler>,
    pusher: Arc<crate::push::Pusher>,
    /// The text last read (applied or rejected), and the reload lock.
    last_text: Mutex<Option<String>>,
}

/// What a reload changes: the served config, the running sources, the push endpoints.
pub struct Applied {
    pub store: Arc<Store>,
    pub telemetry: Arc<Telemetry>,
    pub scheduler: Arc<Scheduler>,
    pub pusher: Arc<crate::push::Pusher>,
}

impl Reloader {
    pub fn new(
        path: PathBuf,
        max_bytes: u64,
        shard: Option<config::Shard>,
        initial_text: String,
        to: Applied,
    ) -> Self {
        Self {
            path,
            max_bytes,
            shard,
            store: to.store,
            telemetry: to.telemetry,
            scheduler: to.scheduler,
            pusher: to.pusher,
            last_text: Mutex::new(Some(initial_text)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads, validates and applies the config file. `Ok(None)`: nothing to do (a file event
    /// whose content did not change).
    pub async fn reload(&self, trigger: Trigger) -> Result<Option<Changes>, ReloadError> {
        let mut last = self.last_text.lock().await;
        if trigger == Trigger::FileEvent {
            settle(&self.path).await;
        }
        let (path, max) = (self.path.clone(), self.max_bytes);
        let text = match off_workers(move || read_whole(&path, max)).await {
            Ok(t) => t,
            Err(e) => {
                // A ConfigMap swap or an editor can leave the path briefly missing; a later
                // event re-reads it. Count it all the same: the file as it stands is unusable.
                self.telemetry.reload_failed(e.kind(), &e.to_string());
                *last = None;
                return Err(e.into());
            }
        };
        if trigger == Trigger::FileEvent && last.as_deref() == Some(text.as_str()) {
            return Ok(None);
        }
        *last = Some(text.clone());
        let (origin, shard) = (config::Origin::file(&self.path), self.shard);
        let parsed = off_workers(move || {
            let mut c = config::parse(&text, &origin, &|k| std::env::var(k).ok())?;
            if let Some(shard) = shard {
                c.keep_shard(shard);
            }
            Ok(c)
        })
        .await;
        let new = match parsed {
            Ok(c) => c,
            Err(e) => {
                self.telemetry.reload_failed(e.kind(), &e.to_string());
                return Err(e.into());
            }
        };
        match self.apply(new).await {
            Ok(changes) => {
                self.telemetry.reload_succeeded(&changes.to_string());
                Ok(Some(changes))
            }
            Err(e) => {
                self.telemetry.reload_failed(e.kind(), &e.to_string());
                Err(e)
            }
        }
    }

    async fn apply(&self, new: Config) -> Result<Changes, ReloadError> {
        let old = self.store.config();
        let mut changes = Changes::default();
        let mut sources = Vec::with_capacity(new.sources.len());
        let mut to_start = Vec::new();
        for src in new.sources {
            match old.sources.iter().find(|o| o.name == src.name) {
                // Keep the running instance: its job, client and snapshot stay as they are.
                Some(o) if o.same_as(&src) => {
                    changes.unchanged.push(src.name.clone());
                    sources.push(o.clone());
                }
                Some(_) => {
                    changes.changed.push(src.name.clone());
                    to_start.push(src.clone());
                    sources.push(src);
                }
                None => {
                    changes.added.push(src.name.clone());
                    to_start.push(src.clone());
                    sources.push(src);
                }
            }
        }
        for o in &old.sources {
            if !sources.iter().any(|s| s.name == o.name) {
                changes.removed.push(o.name.clone());
            }
        }
        for name in changes.removed.iter().chain(&changes.changed) {
            self.scheduler.stop(name).await;
        }
        for w in &new.warnings {
            tracing::warn!(warning = %w, "config lint");
        }
        let before = self.store.config();
        let ended = self.store.swap_config(Arc::new(Config {
            sources,
            families: new.families,
            warnings: new.warnings,
            modules: new.modules,
            probe_allow: new.probe_allow,
            remote_write: new.remote_write.clone(),
        }));
        // Unchanged endpoints keep their queue and connection; the series of removed
        // sources end there as they end on /metrics.
        self.pusher.reconfigure(&new.remote_write);
        for gone in ended {
            self.pusher.ended(before.clone(), gone);
        }
        for name in &changes.removed {
            self.telemetry.source_removed(name);
        }
        for src in to_start {
            self.scheduler.start(src).await?;
        }
        Ok(changes)
    }
}

/// Runs blocking config work (reading, compiling) on the blocking pool.
pub(crate) async fn off_workers<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ConfigError> + Send + 'static,
) -> Result<T, ConfigError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(ConfigError::Read {
            path: PathBuf::new(),
            source: std::io::Error::other(format!("the config task failed: {e}")),
        })
    })
}

/// What tells one version of the file from the next without reading it.
fn stamp(path: &Path) -> Option<(u64, std::time::SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let ino = 0;
    Some((m.len(), m.modified().ok()?, ino))
}

/// Reads the file, refusing a read during which it changed (a writer still at work).
fn read_whole(path: &Path, max_bytes: u64) -> Result<String, ConfigError> {
    let before = stamp(path);
    let text = config::read_limited(path, max_bytes)?;
    if stamp(path) != before {
        return Err(ConfigError::Read {
            path: path.to_path_buf(),
            source: std::io::Error::other(
                "the file changed while it was read (a writer is still at work); waiting for the next change",
            ),
        });
    }
    Ok(text)
}

/// Waits until the file has not changed for [`QUIET`] (at most [`SETTLE_MAX`]).
async fn settle(path: &Path) {
    // The file's stamp and how long ago it changed, looked up on the blocking pool.
    async fn look(path: &Path) -> (Option<(u64, std::time::SystemTime, u64)>, Option<Duration>) {
        let p = path.to_path_buf();
        tokio::task::spawn_blocking(move || {
            let s = stamp(&p);
            (s, s.and_then(|(_, m, _)| m.elapsed().ok()))
        })
        .await
        .unwrap_or((None, None))
    }
    let start = tokio::time::Instant::now();
    let (mut prev, age) = look(path).await;
    if age.is_some_and(|a| a >= QUIET) {
        return;
    }
    while start.elapsed() < SETTLE_MAX {
        tokio::time::sleep(QUIET).await;
        let (now, _) = look(path).await;
        if now == prev {
            return;
        }
        prev = now;
    }
    tracing::warn!(file = %path.display(), "the config file kept changing for 10s; reading it as it stands");
}

/// Watches the directory of `path` and asks for a reload after each burst of changes.
///
/// The directory, not the file, is watched: editors and Kubernetes replace the file (or the
/// symlink above it), which a watch on the file itself would not survive.
pub fn watch(
    path: &Path,
    reloader: Arc<Reloader>,
    cancel: CancellationToken,
) -> notify::Result<notify::RecommendedWatcher> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let mut watcher =
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
            Ok(ev) if matches!(ev.kind, EventKind::Access(_)) => {}
            Ok(_) => {
                let _ = tx.send(());
            }
            Err(e) => tracing::warn!(error = %e, "config watcher error"),
        })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    // A config that is a symlink to a file elsewhere is edited there: watch that directory
    // too. (Inside a ConfigMap the target directory is replaced on each update; the `..data`
    // swap is seen in `dir` anyway, so losing that second watch is harmless.)
    if let Some(target_dir) = std::fs::canonicalize(path)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        && std::fs::canonicalize(&dir).ok().as_ref() != Some(&target_dir)
        && let Err(e) = watcher.watch(&target_dir, RecursiveMode::NonRecursive)
    {
        tracing::debug!(dir = %target_dir.display(), error = %e, "cannot watch the symlink target's directory");
    }
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                ev = rx.recv() => if ev.is_none() { return },
            }
            // Debounce: wait until the directory is quiet for a moment.
            loop {
                match tokio::time::timeout(Duration::from_millis(150), rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            // Errors were logged and counted by the reloader.
            let _ = reloader.reload(Trigger::FileEvent).await;
        }
    });
    tracing::info!(dir = %dir.display(), "watching the config directory");
    Ok(watcher)
}
