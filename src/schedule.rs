//! `schedule`: one job per source, and the poll it runs (fetch -> extract -> store).
//!
//! Second step of the flow. Guarantees:
//! - a source polls once as soon as it starts, then on its cron line or interval;
//! - a poll never overlaps the previous poll of the same source: the tick is skipped and
//!   counted instead;
//! - each HTTP source keeps one client for its whole life, so connections are reused;
//! - stopping a source (reload, shutdown) cancels its in-flight poll, and a poll of a source
//!   version that is no longer configured cannot publish (see [`crate::store`]);
//! - JSON parsing and extraction run on the blocking pool, never on the async workers that
//!   serve scrapes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::config::{Schedule, Source};
use crate::extract::{ExtractError, Extraction, ReadError, Threads, extract_bytes};
use crate::fetch::{FetchError, Fetcher, Validators};
use crate::push::Pusher;
use crate::store::{Published, Snapshot, Store};
use crate::telemetry::{PollOutcome, Telemetry};

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("scheduler: {0}")]
    Scheduler(String),
}

impl ScheduleError {
    pub fn kind(&self) -> &'static str {
        match self {
            ScheduleError::Scheduler(_) => "scheduler",
        }
    }
}

/// Why a poll produced no snapshot.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("the response body is empty")]
    EmptyBody,
    #[error("invalid JSON{}: {error}", content_type.as_ref().map(|c| format!(" (Content-Type {c})")).unwrap_or_default())]
    InvalidJson {
        error: String,
        /// Shown when it is not a JSON type: the usual cause is an HTML error page.
        content_type: Option<String>,
    },
    /// Every item of every metric was skipped: the upstream sent something, but not what the
    /// config expects. The last good snapshot is kept.
    #[error("no series: every item was skipped ({0})")]
    NothingExtracted(String),
    #[error(transparent)]
    Extract(#[from] ExtractError),
    #[error("extraction task failed: {0}")]
    Internal(String),
    #[error("no HTTP client: {0}")]
    Client(String),
}

impl PollError {
    pub fn kind(&self) -> &'static str {
        match self {
            PollError::Fetch(e) => e.kind(),
            PollError::EmptyBody => "empty_body",
            PollError::InvalidJson { .. } => "invalid_json",
            PollError::NothingExtracted(_) => "no_series",
            PollError::Extract(e) => e.kind(),
            PollError::Internal(_) => "internal",
            PollError::Client(_) => "client",
        }
    }
}

struct Runner {
    source: Arc<Source>,
    /// `Err`: the HTTP client could not be built (e.g. no CA certificates on the system);
    /// every poll then fails with kind `client` instead of jsonbridge refusing to start.
    fetcher: Result<Fetcher, String>,
    /// Held for the whole poll: a tick that finds it taken is an overlap.
    busy: tokio::sync::Mutex<()>,
    /// Polls started so far (log lines carry the number).
    polls: std::sync::atomic::AtomicU64,
    /// What the response behind the served snapshot said of its version: the next poll asks
    /// whether it changed (only while that snapshot is served).
    validators: std::sync::Mutex<Option<Validators>>,
    cancel: CancellationToken,
    store: Arc<Store>,
    telemetry: Arc<Telemetry>,
    pusher: Arc<Pusher>,
}

impl Runner {
    fn validators(&self) -> std::sync::MutexGuard<'_, Option<Validators>> {
        self.validators.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn tick(self: Arc<Self>) {
        let Ok(_busy) = self.busy.try_lock() else {
            self.telemetry.poll_overlapped(&self.source.name);
            return;
        };
        tokio::select! {
            _ = self.cancel.cancelled() => {}
            _ = self.poll() => {}
        }
    }

    async fn poll(&self) {
        let poll = self
            .polls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let started = Instant::now();
        // Asked only while the snapshot that response gave is served: after it aged out (or
        // before any), a 304 would leave nothing to serve.
        let since = match self.store.has_snapshot(&self.source) {
            true => self.validators().clone(),
            false => None,
        };
        let result = match &self.fetcher {
            Ok(f) => poll_once_since(f, &self.source, since.as_ref()).await,
            Err(e) => Err(PollError::Client(e.clone())),
        };
        let name = &self.source.name;
        match result {
            Ok(Polled {
                not_modified: true,
                attempts,
                fetch,
                ..
            }) => {
                if self.store.confirm(&self.source) {
                    self.telemetry.poll_finished(
                        name,
                        poll,
                        started.elapsed(),
                        PollOutcome::NotModified {
                            retries: attempts.saturating_sub(1),
                            fetch,
                        },
                    );
                }
                clean_up(None);
            }
            Ok(Polled {
                extraction: x,
                attempts,
                bytes,
                wire_bytes,
                fetch,
                not_modified: false,
                validators,
            }) => {
                let series = x.series_count();
                let snapshot = Arc::new(Snapshot {
                    taken_at: std::time::SystemTime::now(),
                    families: x.families,
                });
                let published = self.store.publish(&self.source, snapshot.clone());
                // Fetch, parse, extract and swap: the new data is served from here on.
                let elapsed = started.elapsed();
                let replaced = match published {
                    Published::Done { replaced } => {
                        *self.validators() = (!validators.is_empty()).then_some(validators);
                        self.telemetry.poll_finished(
                            name,
                            poll,
                            elapsed,
                            PollOutcome::Success {
                                series,
                                dropped: x.dropped,
                                retries: attempts.saturating_sub(1),
                                bytes,
                                wire_bytes,
                                fetch,
                                reports: &x.reports,
                                problems: &x.problems,
                            },
                        );
                        replaced
                    }
                    Published::Stale => {
                        clean_up(None);
                        return;
                    }
                };
                if self.pusher.is_active() {
                    // Off the workers: 100k series take milliseconds to convert.
                    let (pusher, config) = (self.pusher.clone(), self.store.config());
                    tokio::task::spawn_blocking(move || {
                        pusher.publish(&config.families, &snapshot, replaced.as_deref());
                        drop(snapshot);
                        free(replaced);
                    });
                } else {
                    drop(snapshot);
                    clean_up(replaced);
                }
            }
            Err(e) => {
                self.telemetry.poll_finished(
                    name,
                    poll,
                    started.elapsed(),
                    PollOutcome::Failure {
                        kind: e.kind(),
                        message: e.to_string(),
                    },
                );
                if let Some(max) = self.source.max_staleness
                    && self.store.expire(&self.source, max)
                {
                    self.telemetry.snapshot_expired(name, max);
                }
                clean_up(None);
            }
        }
    }
}

/// After a poll, off the async workers and outside the poll's time (the new data is already
/// served): frees the snapshot it replaced, then hands freed heap pages back to the OS.
fn clean_up(replaced: Option<Arc<Snapshot>>) {
    tokio::task::spawn_blocking(move || free(replaced));
}

/// [`clean_up`]'s work, for code already on the blocking pool.
fn free(replaced: Option<Arc<Snapshot>>) {
    drop(replaced);
    release_free_memory();
}

/// Hands freed heap pages back to the OS. glibc keeps what a large poll freed (the parsed
/// document is the biggest allocation of all), so without this the resident size after a
/// 100k-pod poll stays near its peak (BENCHMARKS.md).
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own free lists; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// What one successful poll produced.
pub struct Polled {
    pub extraction: Extraction,
    pub attempts: u32,
    /// Size of the response body (decoded).
    pub bytes: usize,
    /// Its size on the wire (compressed, where it was).
    pub wire_bytes: u64,
    /// How long fetching it took (all attempts).
    pub fetch: std::time::Duration,
    /// The upstream answered 304 to a conditional request: the snapshot is current, and
    /// `extraction` is empty (nothing was read).
    pub not_modified: bool,
    /// What the response said of its version, to ask with next time.
    pub validators: Validators,
}

/// Parses a response body and extracts the source's metrics from it, building only the parts
/// of the document they read (see [`crate::extract::plan`]).
pub fn read(
    body: &[u8],
    content_type: Option<&str>,
    source: &Source,
) -> Result<Extraction, PollError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(PollError::EmptyBody);
    }
    extract_bytes(body, &source.metrics, &source.plan, Threads::Auto).map_err(|e| match e {
        ReadError::Extract(e) => PollError::Extract(e),
        e => PollError::InvalidJson {
            error: e.to_string(),
            content_type: content_type
                .filter(|c| !c.contains("json"))
                .map(str::to_string),
        },
    })
}

/// Fetches, parses and extracts one source, without touching any shared state.
pub async fn poll_once(fetcher: &Fetcher, source: &Arc<Source>) -> Result<Polled, PollError> {
    poll_once_since(fetcher, source, None).await
}

/// [`poll_once`], asking the upstream whether the version `since` describes changed: a 304
/// gives [`Polled::not_modified`], with nothing read.
pub async fn poll_once_since(
    fetcher: &Fetcher,
    source: &Arc<Source>,
    since: Option<&Validators>,
) -> Result<Polled, PollError> {
    let started = Instant::now();
    let fetched = fetcher.fetch_if_changed(&source.request, since).await?;
    let fetch = started.elapsed();
    let attempts = fetched.attempts;
    let bytes = fetched.body.len();
    let validators = fetched.validators.clone();
    let wire_bytes = fetched.wire_bytes;
    if fetched.not_modified {
        return Ok(Polled {
            extraction: Extraction::default(),
            attempts,
            bytes,
            wire_bytes: fetched.wire_bytes,
            fetch,
            not_modified: true,
            validators,
        });
    }
    let source = source.clone();
    let extraction = tokio::task::spawn_blocking(move || {
        let mut x = read(&fetched.body, fetched.content_type.as_deref(), &source)?;
        drop(fetched);
        if x.series_count() == 0 && !x.problems.is_empty() {
            let summary: Vec<String> = x
                .problems
                .iter()
                .take(3)
                .map(|p| format!("{} x{} in {}", p.kind, p.count, p.metric))
                .collect();
            return Err(PollError::NothingExtracted(summary.join(", ")));
        }
        x.truncate(source.max_series);
        Ok(x)
    })
    .await
    .map_err(|e| PollError::Internal(e.to_string()))??;
    Ok(Polled {
        extraction,
        attempts,
        bytes,
        wire_bytes,
        fetch,
        not_modified: false,
        validators,
    })
}

struct Running {
    runner: Arc<Runner>,
    job: Uuid,
}

/// The set of running sources.
pub struct Scheduler {
    jobs: JobScheduler,
    running: tokio::sync::Mutex<HashMap<String, Running>>,
    tasks: TaskTracker,
    cancel: CancellationToken,
    store: Arc<Store>,
    telemetry: Arc<Telemetry>,
    pusher: Arc<Pusher>,
}

impl Scheduler {
    /// `cancel` ends every poll (shutdown); `pusher` gets every snapshot published.
    pub async fn new(
        store: Arc<Store>,
        telemetry: Arc<Telemetry>,
        pusher: Arc<Pusher>,
        cancel: CancellationToken,
    ) -> Result<Self, ScheduleError> {
        let jobs = JobScheduler::new()
            .await
            .map_err(|e| ScheduleError::Scheduler(e.to_string()))?;
        jobs.start()
            .await
            .map_err(|e| ScheduleError::Scheduler(e.to_string()))?;
        Ok(Self {
            jobs,
            running: Default::default(),
            tasks: TaskTracker::new(),
            cancel,
            store,
            telemetry,
            pusher,
        })
    }

    /// Starts polling `source` now and on its schedule. A running source of the same name is
    /// stopped first.
    pub async fn start(&self, source: Arc<Source>) -> Result<(), ScheduleError> {
        self.stop(&source.name).await;
        let fetcher = Fetcher::new(&source.request).map_err(|e| {
            tracing::error!(source = %source.name, error = %e, "cannot build the HTTP client; polls will fail");
            e.to_string()
        });
        let runner = Arc::new(Runner {
            source: source.clone(),
            fetcher,
            busy: Default::default(),
            polls: Default::default(),
            validators: Default::default(),
            cancel: self.cancel.child_token(),
            store: self.store.clone(),
            telemetry: self.telemetry.clone(),
            pusher: self.pusher.clone(),
        });
        self.telemetry.source_added(&source.name);
        let tasks = self.tasks.clone();
        let r = runner.clone();
        let run = move |_id: Uuid, _jobs: JobScheduler| {
            let r = r.clone();
            // Spawned, so the scheduler never waits on a slow poll.
            tasks.spawn(r.tick());
            Box::pin(async {}) as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
        };
        let job = match &source.schedule {
            Schedule::Cron(expr) => Job::new_async(expr.as_str(), run),
            Schedule::Every(d) => Job::new_repeated_async(*d, run),
        }
        .map_err(|e| ScheduleError::Scheduler(e.to_string()))?;
        let id = self
            .jobs
            .add(job)
            .await
            .map_err(|e| ScheduleError::Scheduler(e.to_string()))?;
        self.tasks.spawn(runner.clone().tick());
        self.running
            .lock()
            .await
            .insert(source.name.clone(), Running { runner, job: id });
        tracing::info!(source = %source.name, schedule = %source.schedule, url = %source.request.display_url, "source started");
        Ok(())
    }

    /// Stops the job of source `name` and cancels its in-flight poll. Returns whether it ran.
    pub async fn stop(&self, name: &str) -> bool {
        let Some(r) = self.running.lock().await.remove(name) else {
            return false;
        };
        r.runner.cancel.cancel();
        if let Err(e) = self.jobs.remove(&r.job).await {
            tracing::warn!(source = name, error = %e, "removing the job failed");
        }
        true
    }

    /// Names of the running sources.
    pub async fn running(&self) -> Vec<String> {
        let mut names: Vec<String> = self.running.lock().await.keys().cloned().collect();
        names.sort();
        names
    }

    /// Stops every job and waits for in-flight polls to end (they are cancelled).
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        let names: Vec<String> = self.running.lock().await.keys().cloned().collect();
        for n in names {
            self.stop(&n).await;
        }
        let mut jobs = self.jobs.clone();
        if let Err(e) = jobs.shutdown().await {
            tracing::debug!(error = %e, "scheduler shutdown");
        }
        self.tasks.close();
        self.tasks.wait().await;
    }
}
