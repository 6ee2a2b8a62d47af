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

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Schedule, Source};
use crate::extract::{ExtractError, Extraction, Pages, ReadError, Threads, extract_bytes};
use crate::fetch::{FetchError, Fetcher, Validators};
use crate::push::Pusher;
use crate::store::{Published, Snapshot, Store};
use crate::telemetry::{PollOutcome, Telemetry};

mod fan_out;
mod pages;
pub use fan_out::{FanOutStats, read_fan_out};
pub use pages::read_pages;

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
    /// A page of a paginated source failed: the poll fails with it.
    #[error("page {page}: {error}")]
    OnPage { page: usize, error: Box<PollError> },
    /// Pagination went wrong: a next URL that is none, or leaves the source's origin.
    #[error("{0}")]
    Pagination(String),
    /// A fan-out source's list failed.
    #[error("the list: {0}")]
    OnList(Box<PollError>),
    /// A fan-out item's request failed (with `on_error: fail`).
    #[error("item {item} ({path}): {error}")]
    OnItem {
        item: usize,
        path: String,
        error: Box<PollError>,
    },
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
            PollError::OnPage { error, .. } => error.kind(),
            PollError::Pagination(_) => "pagination",
            PollError::OnList(e) => e.kind(),
            PollError::OnItem { error, .. } => error.kind(),
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
                clean_up(None, false);
            }
            Ok(Polled {
                extraction: x,
                attempts,
                bytes,
                wire_bytes,
                fetch,
                not_modified: false,
                validators,
                pages,
                fan_out,
            }) => {
                let series = x.series_count();
                let large = bytes >= TRIM_AFTER_BYTES || series >= TRIM_AFTER_SERIES;
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
                                merged: &x.merged,
                                pages,
                                fan_out: fan_out.as_ref(),
                                too_old: &x.too_old,
                            },
                        );
                        replaced
                    }
                    Published::Stale => {
                        clean_up(None, large);
                        return;
                    }
                };
                if self.pusher.is_active() {
                    // Off the workers: 100k series take milliseconds to convert.
                    let (pusher, config) = (self.pusher.clone(), self.store.config());
                    tokio::task::spawn_blocking(move || {
                        pusher.publish(&config.families, &snapshot, replaced.as_deref());
                        drop(snapshot);
                        free(replaced, large);
                    });
                } else {
                    drop(snapshot);
                    clean_up(replaced, large);
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
                    && let Some(gone) = self.store.take_expired(&self.source, max)
                {
                    self.telemetry.snapshot_expired(name, max);
                    if self.pusher.is_active() {
                        self.pusher.ended(self.store.config(), gone);
                    }
                }
                // A failed poll may have read a large body before it failed.
                clean_up(None, false);
            }
        }
    }
}

/// The ticks of one source after its first poll, until it stops: a timer of its own (tokio's timer wheel makes a
/// tick cost the same whatever the number of sources; a scheduler that looks at every job
/// on each of its own ticks fell behind at 10,000 sources). An interval keeps its phase and
/// skips the ticks a stalled process missed; a cron line is asked for its next time after
/// each tick, in UTC.
async fn clock(runner: Arc<Runner>, tasks: TaskTracker) {
    let schedule = runner.source.schedule.clone();
    let Some(mut next) = first_tick(&runner.source.name, &schedule) else {
        tracing::error!(source = %runner.source.name, schedule = %schedule, "the schedule has no next time; the source polls no more");
        return;
    };
    loop {
        tokio::select! {
            _ = runner.cancel.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {}
        }
        // Spawned, so a slow poll never delays the clock (an overlap is skipped and counted).
        tasks.spawn(runner.clone().tick());
        next = match &schedule {
            Schedule::Every(d) => {
                let mut n = next + *d;
                let now = tokio::time::Instant::now();
                if n <= now {
                    let behind = (now - n).as_nanos() / d.as_nanos().max(1) + 1;
                    n += d.saturating_mul(u32::try_from(behind).unwrap_or(u32::MAX));
                }
                n
            }
            Schedule::Cron(_) => match cron_tick(&schedule) {
                Some(n) => n,
                None => return,
            },
        };
    }
}

/// An interval's first tick comes after a share of the interval fixed by the source's name
/// (as Prometheus spreads its scrape targets), so that the ticks of many sources are spread
/// over the interval instead of all falling at the same instant.
fn first_tick(name: &str, schedule: &Schedule) -> Option<tokio::time::Instant> {
    match schedule {
        Schedule::Every(d) => Some(tokio::time::Instant::now() + phase(name, *d)),
        Schedule::Cron(_) => cron_tick(schedule),
    }
}

/// A point in `(0, every]` from a stable hash (FNV-1a) of `name`.
fn phase(name: &str, every: std::time::Duration) -> std::time::Duration {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    let share = ((h >> 11) % 1_000_000 + 1) as f64 / 1_000_000.0;
    every.mul_f64(share)
}

/// The next time of a cron line, as a tokio instant.
fn cron_tick(schedule: &Schedule) -> Option<tokio::time::Instant> {
    let now = std::time::SystemTime::now();
    let at = schedule.next_poll(None, now)?;
    let wait = at.duration_since(now).unwrap_or_default();
    Some(tokio::time::Instant::now() + wait)
}

/// A poll that read a body this large, or made this many series, hands the memory it freed
/// back to the OS at once (see [`release_free_memory`]).
const TRIM_AFTER_BYTES: usize = 1 << 20;
const TRIM_AFTER_SERIES: usize = 10_000;

/// After a poll, off the async workers and outside the poll's time (the new data is already
/// served): frees the snapshot it replaced, then hands freed heap pages back to the OS, at
/// once after a `large` poll, at most once a second process-wide after others: trimming
/// walks the whole heap, so 10,000 small sources trimming at every poll cost a core.
fn clean_up(replaced: Option<Arc<Snapshot>>, large: bool) {
    tokio::task::spawn_blocking(move || free(replaced, large));
}

/// [`clean_up`]'s work, for code already on the blocking pool.
fn free(replaced: Option<Arc<Snapshot>>, large: bool) {
    drop(replaced);
    static LAST_TRIM_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let now_ms = EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1_000;
    let last = LAST_TRIM_MS.load(std::sync::atomic::Ordering::Relaxed);
    if large
        || (now_ms >= last + 1_000
            && LAST_TRIM_MS
                .compare_exchange(
                    last,
                    now_ms,
                    std::sync::atomic::Ordering::Relaxed,
                    std::sync::atomic::Ordering::Relaxed,
                )
                .is_ok())
    {
        release_free_memory();
    }
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
    /// Pages read (1 without `paginate`).
    pub pages: usize,
    /// A fan-out source's item requests.
    pub fan_out: Option<FanOutStats>,
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
    extract_bytes(body, &source.metrics, &source.plan, Threads::Auto)
        .map_err(|e| read_error(e, content_type))
}

/// [`read`] of one page of a paginated source (or one fan-out item's answer, with the
/// item's `labels`), left unfinished to join the others.
pub(crate) fn read_page(
    body: &[u8],
    content_type: Option<&str>,
    source: &Source,
    labels: &[String],
) -> Result<Pages, PollError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(PollError::EmptyBody);
    }
    Pages::read(body, &source.metrics, &source.plan, Threads::Auto, labels)
        .map_err(|e| read_error(e, content_type))
}

impl Polled {
    /// What a poll of several requests (pages, or a list and its items) gives.
    fn of_requests(
        extraction: Extraction,
        (attempts, bytes, wire_bytes): (u32, usize, u64),
        fetch: std::time::Duration,
        pages: usize,
        fan_out: Option<FanOutStats>,
    ) -> Self {
        Self {
            extraction,
            attempts,
            bytes,
            wire_bytes,
            fetch,
            not_modified: false,
            validators: Validators::default(),
            pages,
            fan_out,
        }
    }
}

pub(super) fn read_error(e: ReadError, content_type: Option<&str>) -> PollError {
    match e {
        ReadError::Extract(e) => PollError::Extract(e),
        e => PollError::InvalidJson {
            error: e.to_string(),
            content_type: content_type
                .filter(|c| !c.contains("json"))
                .map(str::to_string),
        },
    }
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
    if let Some(p) = &source.paginate {
        return pages::poll_pages(fetcher, source, p).await;
    }
    if let Some(f) = &source.fan_out {
        return fan_out::poll_fan_out(fetcher, source, f).await;
    }
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
            pages: 1,
            fan_out: None,
        });
    }
    let source = source.clone();
    let extraction = tokio::task::spawn_blocking(move || {
        let mut x = read(&fetched.body, fetched.content_type.as_deref(), &source)?;
        drop(fetched);
        settle(&mut x, &source, std::time::SystemTime::now())?;
        Ok::<_, PollError>(x)
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
        pages: 1,
        fan_out: None,
    })
}

/// What a poll makes of an extraction, the one rule `jsonbridge test` applies too: no series
/// while items were skipped fails the poll (`no_series`: the upstream sent something, not
/// what the config expects); beyond `max_series` the snapshot is truncated; samples whose
/// data timestamp Prometheus would drop on a scrape are counted.
pub fn settle(
    x: &mut Extraction,
    source: &Source,
    now: std::time::SystemTime,
) -> Result<(), PollError> {
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
    let now_ms = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    // Only blocks with `timestamp` give samples a time of their own.
    if source.metrics.iter().any(|m| m.timestamp.is_some()) {
        x.too_old = x.older_than(now_ms - TOO_OLD.as_millis() as i64);
    }
    Ok(())
}

/// How far behind the time of a poll a data timestamp may be before a Prometheus scrape
/// drops it: its head takes samples down to an hour (half its 2-hour block) before its
/// newest, and refuses older ones as out of bounds.
pub const TOO_OLD: std::time::Duration = std::time::Duration::from_secs(3600);

struct Running {
    runner: Arc<Runner>,
}

/// The set of running sources.
pub struct Scheduler {
    running: tokio::sync::Mutex<HashMap<String, Running>>,
    tasks: TaskTracker,
    cancel: CancellationToken,
    store: Arc<Store>,
    telemetry: Arc<Telemetry>,
    pusher: Arc<Pusher>,
    /// Start-up polls running at once ([`FIRST_POLLS_AT_ONCE`]).
    first_polls: Arc<tokio::sync::Semaphore>,
}

/// Sources making their first poll together, at most: the rest wait their turn.
pub const FIRST_POLLS_AT_ONCE: usize = 256;

impl Scheduler {
    /// `cancel` ends every poll (shutdown); `pusher` gets every snapshot published.
    pub async fn new(
        store: Arc<Store>,
        telemetry: Arc<Telemetry>,
        pusher: Arc<Pusher>,
        cancel: CancellationToken,
    ) -> Result<Self, ScheduleError> {
        Ok(Self {
            running: Default::default(),
            tasks: TaskTracker::new(),
            cancel,
            store,
            telemetry,
            pusher,
            first_polls: Arc::new(tokio::sync::Semaphore::new(FIRST_POLLS_AT_ONCE)),
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
        // The first poll, now; at most FIRST_POLLS_AT_ONCE of them run together, so that
        // 30,000 sources starting at once do not open 30,000 files or connections at once.
        let (r, first) = (runner.clone(), self.first_polls.clone());
        self.tasks.spawn(async move {
            let permit = tokio::select! {
                _ = r.cancel.cancelled() => return,
                p = first.acquire_owned() => p,
            };
            r.tick().await;
            drop(permit);
        });
        self.tasks.spawn(clock(runner.clone(), self.tasks.clone()));
        self.running
            .lock()
            .await
            .insert(source.name.clone(), Running { runner });
        tracing::info!(source = %source.name, schedule = %source.schedule, url = %source.request.display_url, "source started");
        Ok(())
    }

    /// Stops the job of source `name` and cancels its in-flight poll. Returns whether it ran.
    pub async fn stop(&self, name: &str) -> bool {
        let Some(r) = self.running.lock().await.remove(name) else {
            return false;
        };
        // Ends its clock and its poll in flight.
        r.runner.cancel.cancel();
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
        self.tasks.close();
        self.tasks.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn interval_phases_are_stable_within_the_interval_and_spread() {
        let every = Duration::from_secs(10);
        let phases: Vec<Duration> = (0..10_000)
            .map(|i| phase(&format!("source-{i}"), every))
            .collect();
        assert!(phases.iter().all(|p| !p.is_zero() && *p <= every));
        assert_eq!(phase("energy", every), phase("energy", every));
        // Spread over the interval: each tenth of it holds about a tenth of the sources.
        let mut tenths = [0usize; 10];
        for p in &phases {
            tenths[((p.as_secs_f64() / 10.0 * 10.0) as usize).min(9)] += 1;
        }
        assert!(
            tenths.iter().all(|&n| (800..1200).contains(&n)),
            "{tenths:?}"
        );
    }
}
