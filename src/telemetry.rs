//! `telemetry`: what jsonbridge says about itself, in one place.
//!
//! Each event (a poll ended, a poll was skipped because the previous one still ran, a reload
//! succeeded or failed) is one method here that both logs and counts, so a log line and its
//! self-metric cannot drift apart. [`crate::expose`] renders the counts as `jsonbridge_*`
//! metrics and the status page; labels come from closed sets (`kind()` of error enums, source
//! and metric names from the config), never from error text.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::extract::{Merged, MetricReport, Problem};
use crate::store::Store;

/// Counters and last-poll facts of one source.
#[derive(Debug, Clone, Default)]
pub struct SourceStats {
    /// At least one poll ended (successfully or not) since start-up.
    pub polled: bool,
    pub up: bool,
    pub last_poll_at: Option<SystemTime>,
    pub last_duration: Duration,
    /// Of the last good poll's duration, the time until every body was in.
    pub last_fetch: Duration,
    pub last_success_at: Option<SystemTime>,
    /// Series in the snapshot being served.
    pub series: usize,
    /// Series the last good poll dropped because of `max_series`.
    pub series_dropped: usize,
    /// Polls by result: `success` or an error kind.
    pub polls: BTreeMap<&'static str, u64>,
    /// Skipped items, by (metric, kind).
    pub extraction_errors: BTreeMap<(String, &'static str), u64>,
    /// Series merged by a chosen `on_duplicate` policy, by (metric, policy).
    pub duplicates_merged: BTreeMap<(String, &'static str), u64>,
    /// Samples with data timestamps too old for a Prometheus scrape, by family.
    pub too_old: BTreeMap<String, u64>,
    /// Ticks skipped because the previous poll was still running.
    pub overlaps: u64,
    /// Attempts beyond the first that led to a successful poll.
    pub retries: u64,
    /// Message of the last failed poll (never holds a secret: see `fetch`).
    pub last_error: Option<String>,
    /// Size of the last good response body (all its pages).
    pub last_response_bytes: Option<usize>,
    /// Pages the last good poll read (1 without `paginate`).
    pub last_pages: usize,
    /// Requests the last good poll made (pages, or the list and its items).
    pub last_requests: usize,
    /// Fan-out items left out, by kind.
    pub fan_out_skipped: BTreeMap<&'static str, u64>,
    /// The same body's size on the wire (compressed, where it was).
    pub last_wire_bytes: Option<u64>,
    /// Per metric of the last good poll: items matched and series produced.
    pub last_reports: Vec<MetricReport>,
    /// Skipped items of the last good poll, by metric and kind, with the first reason.
    pub last_problems: Vec<Problem>,
    /// Problem kinds seen in the last poll, to log only when they change.
    last_problem_kinds: BTreeSet<(String, &'static str)>,
}

#[derive(Debug, Clone)]
pub struct ReloadStats {
    pub last_successful: bool,
    pub last_success_at: SystemTime,
    pub reloads: BTreeMap<&'static str, u64>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct State {
    pub started_at: SystemTime,
    pub sources: BTreeMap<String, SourceStats>,
    pub reload: ReloadStats,
    /// Tokio tasks alive when the snapshot was taken (a leak shows as growth).
    pub alive_tasks: Option<usize>,
    /// Protective limits that bit, by limit (every limit listed).
    pub limit_hits: Vec<(&'static str, u64)>,
    /// Per remote write endpoint.
    pub remote_write: BTreeMap<String, RemoteWriteStats>,
}

/// Counters of one remote write endpoint.
#[derive(Debug, Clone, Default)]
pub struct RemoteWriteStats {
    /// Samples by what became of them: `sent`, `failed` (refused by the endpoint with a
    /// 4xx), `dropped` (pushed out of a full queue, or queued when the endpoint was removed).
    pub samples: BTreeMap<&'static str, u64>,
    /// Samples of sends that failed and were tried again (a batch counts at every retry).
    pub retried: u64,
    /// Samples waiting.
    pub queue: usize,
    /// Request bodies the endpoint took, as sent (snappy-compressed protobuf).
    pub bytes_sent: u64,
    pub last_success_at: Option<SystemTime>,
    pub last_error: Option<String>,
}

/// How a poll ended.
pub enum PollOutcome<'a> {
    Success {
        series: usize,
        /// Dropped by `max_series`.
        dropped: usize,
        /// Attempts beyond the first (`retries`).
        retries: u32,
        /// Response body size (decoded).
        bytes: usize,
        /// Its size on the wire.
        wire_bytes: u64,
        /// Of the poll's duration, the time until the whole body was in (retries included);
        /// the rest is reading it and publishing the snapshot.
        fetch: Duration,
        reports: &'a [MetricReport],
        problems: &'a [Problem],
        merged: &'a [Merged],
        /// Pages read (1 without `paginate`).
        pages: usize,
        /// A fan-out source's item requests.
        fan_out: Option<&'a crate::schedule::FanOutStats>,
        /// Per family: samples whose data timestamp a Prometheus scrape would drop.
        too_old: &'a [(String, u64)],
    },
    /// A conditional request answered 304: the served snapshot is current.
    NotModified {
        /// Attempts beyond the first (`retries`).
        retries: u32,
        /// Of the poll's duration, the time until the answer was in.
        fetch: Duration,
    },
    Failure {
        kind: &'static str,
        message: String,
    },
}

#[derive(Debug)]
pub struct Telemetry {
    state: Mutex<State>,
    store: Arc<Store>,
}

impl Telemetry {
    pub fn new(store: Arc<Store>) -> Self {
        let now = SystemTime::now();
        Self {
            state: Mutex::new(State {
                started_at: now,
                sources: BTreeMap::new(),
                reload: ReloadStats {
                    last_successful: true,
                    last_success_at: now,
                    reloads: BTreeMap::new(),
                    last_error: None,
                },
                alive_tasks: None,
                limit_hits: Vec::new(),
                remote_write: BTreeMap::new(),
            }),
            store,
        }
    }

    pub fn snapshot(&self) -> State {
        let mut s = self.lock().clone();
        s.alive_tasks = tokio::runtime::Handle::try_current()
            .ok()
            .map(|h| h.metrics().num_alive_tasks());
        s.limit_hits = limit_hits();
        s
    }

    /// True once every source of `names` has finished a poll.
    pub fn all_polled<'a>(&self, mut names: impl Iterator<Item = &'a str>) -> bool {
        let state = self.lock();
        names.all(|n| state.sources.get(n).is_some_and(|s| s.polled))
    }

    /// Registers a source so that it shows (as down, never polled) before its first poll.
    pub fn source_added(&self, source: &str) {
        self.lock().sources.entry(source.to_string()).or_default();
        self.store.touch();
    }

    /// Forgets a removed source: its self-metric series vanish with it.
    pub fn source_removed(&self, source: &str) {
        self.lock().sources.remove(source);
        self.store.touch();
    }

    /// `poll` numbers the source's polls since it started, to tie log lines together.
    pub fn poll_finished(
        &self,
        source: &str,
        poll: u64,
        duration: Duration,
        outcome: PollOutcome<'_>,
    ) {
        let now = SystemTime::now();
        let mut state = self.lock();
        let stats = state.sources.entry(source.to_string()).or_default();
        stats.polled = true;
        stats.last_poll_at = Some(now);
        stats.last_duration = duration;
        match outcome {
            PollOutcome::Success {
                series,
                dropped,
                retries,
                bytes,
                wire_bytes,
                fetch,
                reports,
                problems,
                merged,
                pages,
                fan_out,
                too_old,
            } => {
                stats.last_pages = pages;
                stats.last_fetch = fetch;
                stats.last_requests = pages + fan_out.map_or(0, |f| f.requests);
                if let Some(f) = fan_out {
                    let before: u64 = stats.fan_out_skipped.values().sum();
                    for (kind, n) in &f.skipped {
                        *stats.fan_out_skipped.entry(kind).or_default() += n;
                    }
                    if let Some(first) = &f.first_skip
                        && before == 0
                    {
                        tracing::warn!(
                            source,
                            poll,
                            skipped = f.skipped.values().sum::<u64>(),
                            first = %first,
                            "fan-out items left out (logged once; jsonbridge_fan_out_skipped_total counts them)"
                        );
                    }
                }
                for m in merged {
                    *stats
                        .duplicates_merged
                        .entry((m.metric.clone(), m.policy))
                        .or_default() += m.count;
                }
                for (family, n) in too_old {
                    let total = stats.too_old.entry(family.clone()).or_default();
                    // Said once per metric: the count tells the rest.
                    if *total == 0 {
                        tracing::warn!(
                            source,
                            metric = %family,
                            samples = n,
                            "data timestamps more than an hour old: a Prometheus scrape drops these samples as out of bounds (leave out `timestamp`, or push them with remote_write to a backend that accepts old samples)"
                        );
                    }
                    *total += n;
                }
                stats.retries += u64::from(retries);
                stats.last_response_bytes = Some(bytes);
                stats.last_wire_bytes = Some(wire_bytes);
                stats.last_reports = reports.to_vec();
                stats.last_problems = problems.to_vec();
                if dropped > 0 && stats.series_dropped == 0 {
                    tracing::warn!(
                        source,
                        kept = series,
                        dropped,
                        "max_series reached: the snapshot is truncated (raise max_series or narrow the selectors)"
                    );
                }
                stats.series_dropped = dropped;
                stats.up = true;
                stats.last_success_at = Some(now);
                stats.series = series;
                stats.last_error = None;
                *stats.polls.entry("success").or_default() += 1;
                let kinds: BTreeSet<(String, &'static str)> = problems
                    .iter()
                    .map(|p| (p.metric.clone(), p.kind))
                    .collect();
                let changed = kinds != stats.last_problem_kinds;
                for p in problems {
                    *stats
                        .extraction_errors
                        .entry((p.metric.clone(), p.kind))
                        .or_default() += p.count;
                    // One line per metric and kind per poll, and only when the set of problems
                    // changed: a permanently odd item does not flood the log.
                    if changed {
                        tracing::warn!(
                            source,
                            poll,
                            metric = %p.metric,
                            kind = p.kind,
                            skipped = p.count,
                            example = %p.example,
                            "items skipped"
                        );
                    }
                }
                stats.last_problem_kinds = kinds;
                tracing::debug!(
                    source,
                    poll,
                    series,
                    duration_ms = duration.as_millis() as u64,
                    fetch_ms = fetch.as_millis() as u64,
                    "poll succeeded"
                );
            }
            PollOutcome::NotModified { retries, fetch } => {
                stats.retries += u64::from(retries);
                stats.up = true;
                stats.last_success_at = Some(now);
                stats.last_error = None;
                *stats.polls.entry("not_modified").or_default() += 1;
                tracing::debug!(
                    source,
                    poll,
                    duration_ms = duration.as_millis() as u64,
                    fetch_ms = fetch.as_millis() as u64,
                    "poll: not modified, the snapshot is current"
                );
            }
            PollOutcome::Failure { kind, message } => {
                let was_up = stats.up;
                stats.up = false;
                *stats.polls.entry(kind).or_default() += 1;
                tracing::warn!(
                    source,
                    poll,
                    kind,
                    error = %message,
                    duration_ms = duration.as_millis() as u64,
                    was_up,
                    "poll failed; keeping the last good snapshot"
                );
                stats.last_error = Some(message);
            }
        }
        drop(state);
        self.store.touch();
    }

    /// The last good snapshot passed `max_staleness` while polls failed: its series are gone.
    pub fn snapshot_expired(&self, source: &str, max: Duration) {
        let mut state = self.lock();
        if let Some(s) = state.sources.get_mut(source) {
            s.series = 0;
        }
        drop(state);
        tracing::warn!(
            source,
            max_staleness_s = max.as_secs(),
            "last good snapshot is older than max_staleness: its series are no longer served"
        );
        self.store.touch();
    }

    pub fn poll_overlapped(&self, source: &str) {
        let mut state = self.lock();
        if let Some(s) = state.sources.get_mut(source) {
            s.overlaps += 1;
        }
        drop(state);
        tracing::warn!(source, "previous poll still running; skipping this tick");
        self.store.touch();
    }

    pub fn reload_succeeded(&self, summary: &str) {
        let mut state = self.lock();
        state.reload.last_successful = true;
        state.reload.last_success_at = SystemTime::now();
        state.reload.last_error = None;
        *state.reload.reloads.entry("success").or_default() += 1;
        drop(state);
        tracing::info!(changes = summary, "config reloaded");
        self.store.touch();
    }

    pub fn reload_failed(&self, kind: &'static str, message: &str) {
        let mut state = self.lock();
        state.reload.last_successful = false;
        state.reload.last_error = Some(message.to_string());
        *state.reload.reloads.entry(kind).or_default() += 1;
        drop(state);
        tracing::error!(kind, error = %message, "config reload failed; keeping the running config");
        self.store.touch();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn remote_write<R>(&self, endpoint: &str, f: impl FnOnce(&mut RemoteWriteStats) -> R) -> R {
        let r = f(self
            .lock()
            .remote_write
            .entry(endpoint.to_string())
            .or_default());
        self.store.touch();
        r
    }

    pub fn remote_write_added(&self, endpoint: &str) {
        self.remote_write(endpoint, |_| ());
        tracing::info!(endpoint, "remote write endpoint started");
    }

    /// The endpoint left the config; `dropped` samples were still queued.
    pub fn remote_write_removed(&self, endpoint: &str, dropped: u64) {
        self.lock().remote_write.remove(endpoint);
        self.store.touch();
        tracing::info!(endpoint, dropped, "remote write endpoint stopped");
    }

    /// A snapshot's `samples` were queued; `dropped` of the oldest made room; `queue` wait.
    pub fn remote_write_queued(&self, endpoint: &str, samples: u64, dropped: u64, queue: usize) {
        self.remote_write(endpoint, |s| {
            s.queue = queue;
            if dropped > 0 {
                *s.samples.entry("dropped").or_default() += dropped;
            }
        });
        if dropped > 0 {
            tracing::warn!(
                endpoint,
                samples,
                dropped,
                "remote write queue full: dropped the oldest samples"
            );
        }
    }

    pub fn remote_write_queue(&self, endpoint: &str, queue: usize) {
        self.remote_write(endpoint, |s| s.queue = queue);
    }

    pub fn remote_write_sent(&self, endpoint: &str, samples: u64, bytes: u64) {
        self.remote_write(endpoint, |s| {
            *s.samples.entry("sent").or_default() += samples;
            s.bytes_sent += bytes;
            s.last_success_at = Some(SystemTime::now());
            s.last_error = None;
        });
        tracing::debug!(endpoint, samples, "remote write sent");
    }

    /// The endpoint refused a batch for good (a 4xx other than 429): never retried.
    pub fn remote_write_refused(&self, endpoint: &str, samples: u64, status: u16, answer: &str) {
        let message = format!("HTTP status {status}: {answer}");
        self.remote_write(endpoint, |s| {
            *s.samples.entry("failed").or_default() += samples;
            s.last_error = Some(message.clone());
        });
        tracing::error!(
            endpoint,
            samples,
            status,
            answer,
            "remote write refused a batch; not retried"
        );
    }

    /// A send failed and will be tried again; `attempt` counts from 1 for each batch.
    pub fn remote_write_retrying(&self, endpoint: &str, samples: u64, attempt: u32, why: &str) {
        self.remote_write(endpoint, |s| {
            s.retried += samples;
            s.last_error = Some(why.to_string());
        });
        if attempt == 1 {
            tracing::warn!(
                endpoint,
                samples,
                error = why,
                "remote write failed; retrying with backoff"
            );
        } else {
            tracing::debug!(
                endpoint,
                samples,
                attempt,
                error = why,
                "remote write failed again"
            );
        }
    }
}

/// A protective limit that bit: each has a default, a flag or config field, a log line and a
/// count in `jsonbridge_limit_hits_total{limit}` (docs/reliability.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// A poll gave up because `Retry-After` asked for more than its timeout left.
    RetryAfter,
    /// A redirect hop was refused (outside a probe's allowlist, not http(s), or it would
    /// carry the request body to another origin).
    RedirectRefused,
    /// A connection was refused because `--web.max-connections` were open.
    Connections,
    /// A connection was closed for sending nothing (no request head, or none in time).
    IdleConnection,
    /// Accepting failed for lack of file descriptors (or memory); the server paused.
    AcceptError,
    /// A `/probe` waited for one of `--probe.max-concurrent` slots, or gave up waiting.
    ProbeConcurrency,
    /// A basic-auth check waited for one of the bcrypt slots.
    AuthConcurrency,
    /// A poll waited for room in `--limits.body-bytes-in-flight`.
    BodyBudget,
    /// A scrape of `/metrics` waited for one of the 16 slots.
    ScrapeConcurrency,
    /// A paginated poll stopped at `paginate.max_pages` with pages left.
    MaxPages,
    /// A paginated upstream gave a cursor it had given before: the pages stopped there.
    CursorRepeated,
    /// A paginated or fan-out poll held `max_series` series before its last request: it
    /// asked for no more.
    MaxSeries,
}

impl Limit {
    const ALL: [Limit; 12] = [
        Limit::RetryAfter,
        Limit::RedirectRefused,
        Limit::Connections,
        Limit::IdleConnection,
        Limit::AcceptError,
        Limit::ProbeConcurrency,
        Limit::AuthConcurrency,
        Limit::BodyBudget,
        Limit::ScrapeConcurrency,
        Limit::MaxPages,
        Limit::CursorRepeated,
        Limit::MaxSeries,
    ];

    /// Stable label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::RetryAfter => "retry_after",
            Limit::RedirectRefused => "redirect_refused",
            Limit::Connections => "connections",
            Limit::IdleConnection => "idle_connection",
            Limit::AcceptError => "accept_error",
            Limit::ProbeConcurrency => "probe_concurrency",
            Limit::AuthConcurrency => "auth_concurrency",
            Limit::BodyBudget => "body_budget",
            Limit::ScrapeConcurrency => "scrape_concurrency",
            Limit::MaxPages => "max_pages",
            Limit::CursorRepeated => "cursor_repeated",
            Limit::MaxSeries => "max_series",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Process-wide, as the limits are: a server guard or a fetch can count without a handle to
/// the [`Telemetry`] of one app.
static LIMIT_HITS: [AtomicU64; Limit::ALL.len()] = [const { AtomicU64::new(0) }; Limit::ALL.len()];
/// Last log line per limit, in seconds since the process started, so that a flood of hits
/// (3,000 idle connections) logs once per interval instead of once per hit.
static LIMIT_LOGGED: [AtomicU64; Limit::ALL.len()] =
    [const { AtomicU64::new(0) }; Limit::ALL.len()];
/// Bumped with every hit; the exposition cache keys on it too (see [`Store::generation`]).
pub(crate) static LIMIT_GENERATION: AtomicU64 = AtomicU64::new(0);
static STARTED: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

/// How often one limit may log.
const LIMIT_LOG_EVERY: Duration = Duration::from_secs(10);

/// Counts one hit of `limit` and logs it (at most once per `LIMIT_LOG_EVERY` per limit,
/// with the count so far). `context` names what hit it (a source's URL as written, a peer
/// address), never a secret.
pub fn limit_hit(limit: Limit, context: &str) {
    let i = limit.index();
    let n = LIMIT_HITS[i].fetch_add(1, Ordering::Relaxed) + 1;
    LIMIT_GENERATION.fetch_add(1, Ordering::Release);
    let started = *STARTED.get_or_init(std::time::Instant::now);
    // Stored as seconds + 1, so that 0 means "never logged".
    let now = started.elapsed().as_secs() + 1;
    let last = LIMIT_LOGGED[i].load(Ordering::Relaxed);
    if (last == 0 || now >= last + LIMIT_LOG_EVERY.as_secs())
        && LIMIT_LOGGED[i]
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(
            limit = limit.as_str(),
            context,
            hits = n,
            "limit reached (further hits within 10s are counted in jsonbridge_limit_hits_total, not logged)"
        );
    }
}

/// Hits per limit so far, every limit listed (0 included), in a stable order.
pub fn limit_hits() -> Vec<(&'static str, u64)> {
    Limit::ALL
        .iter()
        .map(|l| (l.as_str(), LIMIT_HITS[l.index()].load(Ordering::Relaxed)))
        .collect()
}
