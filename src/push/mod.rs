//! `push`: Prometheus remote write 1.0, beside [`crate::expose`]: after every good poll, the
//! source's series go to each `remote_write` endpoint (Mimir, VictoriaMetrics, Thanos
//! Receive, Cortex, Prometheus).
//!
//! The flow: [`Pusher::publish`] (called by `schedule` once a snapshot is served) turns the
//! snapshot into time series ([`series`]: the names and labels `/metrics` shows, the
//! external labels, the data timestamp where the metric has one and the poll's time
//! otherwise, and a staleness marker for each series the previous snapshot had and this one
//! has not) and appends them to each endpoint's queue. One task per endpoint sends the
//! queue in batches (protobuf, snappy block format, series metadata alongside).
//!
//! Guarantees: a slow or dead endpoint never blocks a poll or a scrape (publishing only
//! appends to a bounded queue); the queue holds at most `queue_capacity` samples, the oldest
//! dropped and counted beyond; a 5xx, a 429 and a failed connection are retried with
//! exponential backoff (doubling up to 5 s, or as `Retry-After` asks) until they succeed or
//! shutdown, the batch kept aside meanwhile, so a backend back after an outage gets
//! everything still queued, once; a 4xx other than 429 is never retried as it was: a 400 or
//! 413 splits the batch in halves, down to single series, so that a refused sample costs
//! only itself; what is refused alone is counted as failed and the endpoint's answer
//! logged. Every event is counted by [`crate::telemetry`] per endpoint.

pub mod proto;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use prost::Message;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderName};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Family, RemoteWrite};
use crate::extract::MetricKind;
use crate::fetch::Fetcher;
use crate::store::Snapshot;
use crate::telemetry::Telemetry;
use proto::{Label, MetricMetadata, MetricType, Sample, TimeSeries, WriteRequest};

/// Longest pause between two tries of a failed send (Prometheus' own `max_backoff`): a
/// backend back after an outage gets the queue within seconds.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The remote write endpoints of the running config.
pub struct Pusher {
    endpoints: Mutex<Vec<Arc<Endpoint>>>,
    telemetry: Arc<Telemetry>,
    cancel: CancellationToken,
    /// `false` with `--mode serve`: the config's endpoints are not used.
    enabled: bool,
}

struct Endpoint {
    config: Arc<RemoteWrite>,
    fetcher: Result<Fetcher, String>,
    queue: Mutex<Queue>,
    wake: Notify,
    /// Cancelled when the endpoint leaves the config (or at shutdown).
    stop: CancellationToken,
}

#[derive(Default)]
struct Queue {
    series: VecDeque<TimeSeries>,
    /// Metadata of the families queued, by exposed name.
    metadata: HashMap<String, MetricMetadata>,
}

impl Pusher {
    /// Starts a sender per endpoint of `config` (none unless `enabled`).
    pub fn start(
        config: &Config,
        telemetry: Arc<Telemetry>,
        cancel: CancellationToken,
        enabled: bool,
    ) -> Arc<Self> {
        let pusher = Arc::new(Self {
            endpoints: Mutex::new(Vec::new()),
            telemetry,
            cancel,
            enabled,
        });
        pusher.reconfigure(&config.remote_write);
        pusher
    }

    /// Applies a reloaded config: endpoints whose settings are unchanged keep their queue and
    /// task; removed or changed ones stop (what they had queued is dropped and counted).
    pub fn reconfigure(&self, wanted: &[Arc<RemoteWrite>]) {
        let wanted = if self.enabled { wanted } else { &[] };
        let mut endpoints = self.lock();
        let (kept, gone): (Vec<_>, Vec<_>) = endpoints
            .drain(..)
            .partition(|e| wanted.iter().any(|w| **w == *e.config));
        for e in gone {
            e.stop.cancel();
            let left = e
                .queue
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .series
                .len();
            self.telemetry
                .remote_write_removed(&e.config.name, left as u64);
        }
        *endpoints = kept;
        for w in wanted {
            if endpoints.iter().any(|e| *e.config == **w) {
                continue;
            }
            let e = Arc::new(Endpoint {
                config: w.clone(),
                fetcher: Fetcher::new(&w.request).map_err(|e| e.to_string()),
                queue: Mutex::new(Queue::default()),
                wake: Notify::new(),
                stop: self.cancel.child_token(),
            });
            self.telemetry.remote_write_added(&w.name);
            tokio::spawn(send_loop(e.clone(), self.telemetry.clone()));
            endpoints.push(e);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Endpoint>>> {
        self.endpoints.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether any endpoint is configured (polls skip the conversion otherwise).
    pub fn is_active(&self) -> bool {
        !self.lock().is_empty()
    }

    /// Queues `snapshot`'s series (and staleness markers for what `previous` had and it has
    /// not) for every endpoint. Builds the series once per endpoint's external labels; runs
    /// on the blocking pool (100k series take milliseconds).
    pub fn publish(&self, families: &[Family], snapshot: &Snapshot, previous: Option<&Snapshot>) {
        let endpoints = self.lock().clone();
        for e in endpoints {
            let (batch, metadata) = series(families, snapshot, previous, &e.config.external_labels);
            let n = batch.len();
            let mut q = e.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.series.extend(batch);
            q.metadata.extend(metadata);
            let over = q.series.len().saturating_sub(e.config.queue_capacity);
            q.series.drain(..over);
            let len = q.series.len();
            drop(q);
            self.telemetry
                .remote_write_queued(&e.config.name, n as u64, over as u64, len);
            e.wake.notify_one();
        }
    }
}

impl Pusher {
    /// The series of `gone` ended (its source was removed by a reload, or its snapshot aged
    /// out): each gets a staleness marker now, on the blocking pool.
    /// `config` is the one `gone` was made under (for its families' names and types).
    pub fn ended(self: &Arc<Self>, config: Arc<Config>, gone: Arc<Snapshot>) {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let now = Snapshot {
                taken_at: SystemTime::now(),
                families: Vec::new(),
            };
            me.publish(&config.families, &now, Some(&gone));
        });
    }
}

/// `snapshot` as remote write series, and the metadata of their families.
pub fn series(
    families: &[Family],
    snapshot: &Snapshot,
    previous: Option<&Snapshot>,
    external: &[(String, String)],
) -> (Vec<TimeSeries>, Vec<(String, MetricMetadata)>) {
    let kinds: HashMap<&str, &Family> = families.iter().map(|f| (f.name.as_str(), f)).collect();
    let poll_ms = millis(snapshot.taken_at);
    let mut out = Vec::with_capacity(snapshot.series());
    let mut metadata = Vec::new();
    let mut seen: HashSet<Vec<Label>> = HashSet::with_capacity(snapshot.series());
    // A family named by the data carries its own type and help.
    let name_of = |fs: &crate::extract::FamilySamples| -> (String, Option<Family>) {
        let family = &fs.family;
        let f = match &fs.dynamic {
            Some(d) => Some(Family {
                name: family.clone(),
                help: d.help.clone(),
                kind: d.kind,
            }),
            None => kinds.get(family.as_str()).map(|f| (*f).clone()),
        };
        match f.as_ref().map(|f| f.kind) {
            Some(MetricKind::Counter) => (format!("{family}_total"), f),
            _ => (family.to_string(), f),
        }
    };
    for fs in &snapshot.families {
        let (name, family) = name_of(fs);
        if let Some(f) = family {
            metadata.push((
                name.clone(),
                MetricMetadata {
                    r#type: match f.kind {
                        MetricKind::Counter => MetricType::Counter,
                        MetricKind::Gauge => MetricType::Gauge,
                        MetricKind::Untyped => MetricType::Unknown,
                    } as i32,
                    metric_family_name: name.clone(),
                    help: f.help.clone(),
                    unit: String::new(),
                },
            ));
        }
        for s in &fs.series {
            let labels = labels(&name, &fs.label_names, s.labels.iter(), external);
            // A family fed by two blocks shows each series once on /metrics: the same here.
            if !seen.insert(labels.clone()) {
                continue;
            }
            out.push(TimeSeries {
                labels,
                samples: vec![Sample {
                    value: s.value,
                    timestamp: s.timestamp_ms.unwrap_or(poll_ms),
                }],
            });
        }
    }
    if let Some(prev) = previous {
        for fs in &prev.families {
            let (name, _) = name_of(fs);
            for s in &fs.series {
                let labels = labels(&name, &fs.label_names, s.labels.iter(), external);
                if seen.insert(labels.clone()) {
                    out.push(TimeSeries {
                        labels,
                        samples: vec![Sample {
                            value: f64::from_bits(proto::STALE_NAN),
                            timestamp: poll_ms,
                        }],
                    });
                }
            }
        }
    }
    (out, metadata)
}

/// `__name__`, the series' labels, and the external labels it lacks; sorted by name, as
/// the protocol asks. Empty values are left out (Prometheus reads them as absent).
fn labels<'a>(
    name: &str,
    names: &[String],
    values: impl Iterator<Item = &'a str>,
    external: &[(String, String)],
) -> Vec<Label> {
    let mut out: Vec<Label> = Vec::with_capacity(names.len() + external.len() + 1);
    out.push(Label {
        name: "__name__".into(),
        value: name.to_string(),
    });
    for (n, v) in names.iter().zip(values) {
        if !v.is_empty() {
            out.push(Label {
                name: n.clone(),
                value: v.to_string(),
            });
        }
    }
    for (n, v) in external {
        if !out.iter().any(|l| l.name == *n) {
            out.push(Label {
                name: n.clone(),
                value: v.clone(),
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A write request as the protocol sends it: protobuf, then snappy's block format.
pub fn encode(req: &WriteRequest) -> Bytes {
    let raw = req.encode_to_vec();
    // Cannot fail: the input is far under snappy's 4 GiB block limit (a batch is bounded).
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .unwrap_or_default()
        .into()
}

/// The headers remote write 1.0 asks for.
fn headers() -> [(HeaderName, &'static str); 3] {
    [
        (CONTENT_ENCODING, "snappy"),
        (CONTENT_TYPE, "application/x-protobuf"),
        (
            HeaderName::from_static("x-prometheus-remote-write-version"),
            "0.1.0",
        ),
    ]
}

/// One endpoint's sender: takes a batch from the queue, sends it until it is taken or
/// refused, then the next.
async fn send_loop(e: Arc<Endpoint>, telemetry: Arc<Telemetry>) {
    let name = e.config.name.clone();
    let headers = headers();
    loop {
        let (batch, metadata, left) = {
            let mut q = e.queue.lock().unwrap_or_else(|p| p.into_inner());
            let n = q.series.len().min(e.config.max_samples_per_send);
            let batch: Vec<TimeSeries> = q.series.drain(..n).collect();
            let mut wanted: Vec<MetricMetadata> = Vec::new();
            let mut names = HashSet::new();
            for s in &batch {
                if let Some(n) = s.labels.iter().find(|l| l.name == "__name__")
                    && names.insert(n.value.clone())
                    && let Some(m) = q.metadata.get(&n.value)
                {
                    wanted.push(m.clone());
                }
            }
            (batch, wanted, q.series.len())
        };
        telemetry.remote_write_queue(&name, left);
        if batch.is_empty() {
            tokio::select! {
                _ = e.stop.cancelled() => return,
                _ = e.wake.notified() => continue,
            }
        }
        // A batch the endpoint refuses as a whole (400, 413) is split in halves and each
        // sent again, down to single series: one bad sample (too old for the backend, say)
        // costs only itself, whatever the backend does with the rest of a refused request.
        let mut pending = vec![batch];
        while let Some(part) = pending.pop() {
            match send(&e, &telemetry, &headers, part, &metadata).await {
                Delivery::Done => {}
                Delivery::Split(a, b) => {
                    pending.push(b);
                    pending.push(a);
                }
                Delivery::Stopped => return,
            }
        }
    }
}

enum Delivery {
    Done,
    /// Refused whole: send these halves instead.
    Split(Vec<TimeSeries>, Vec<TimeSeries>),
    Stopped,
}

/// Sends one batch until the endpoint takes it, refuses it, or the endpoint stops.
async fn send(
    e: &Endpoint,
    telemetry: &Telemetry,
    headers: &[(HeaderName, &'static str)],
    batch: Vec<TimeSeries>,
    metadata: &[MetricMetadata],
) -> Delivery {
    let name = &e.config.name;
    let request = &e.config.request;
    let n = batch.len() as u64;
    // Kept (not consumed by encoding) to be split if the endpoint refuses it whole.
    let req = WriteRequest {
        timeseries: batch,
        metadata: metadata.to_vec(),
    };
    let body = encode(&req);
    let mut pause = request.retry_backoff.max(Duration::from_millis(10));
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = match &e.fetcher {
            Ok(f) => f.send(request, body.clone(), headers).await,
            Err(m) => Err(crate::fetch::FetchError::Request(m.clone())),
        };
        let wait = match result {
            Ok(sent) if (200..300).contains(&sent.status) => {
                telemetry.remote_write_sent(name, n, body.len() as u64);
                return Delivery::Done;
            }
            Ok(sent) if matches!(sent.status, 400 | 413) && req.timeseries.len() > 1 => {
                tracing::debug!(endpoint = %name, samples = n, status = sent.status, "remote write refused a batch; sending its halves");
                let mut a = req.timeseries;
                let b = a.split_off(a.len() / 2);
                return Delivery::Split(a, b);
            }
            Ok(sent) if sent.status != 429 && sent.status < 500 => {
                telemetry.remote_write_refused(name, n, sent.status, &sent.message);
                return Delivery::Done;
            }
            Ok(sent) => {
                telemetry.remote_write_retrying(
                    name,
                    n,
                    attempt,
                    &format!("HTTP status {}: {}", sent.status, sent.message),
                );
                sent.retry_after.map_or(pause, |r| r.max(pause))
            }
            Err(err) => {
                telemetry.remote_write_retrying(name, n, attempt, &err.to_string());
                pause
            }
        };
        tokio::select! {
            _ = e.stop.cancelled() => return Delivery::Stopped,
            _ = tokio::time::sleep(wait.min(MAX_BACKOFF)) => {}
        }
        pause = (pause * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::{FamilySamples, Series};

    fn snap(at_ms: u64, pods: &[(&str, f64)]) -> Snapshot {
        Snapshot {
            taken_at: UNIX_EPOCH + Duration::from_millis(at_ms),
            families: vec![FamilySamples {
                family: "pod_restarts".into(),
                dynamic: None,
                label_names: vec!["pod".to_string(), "cluster".to_string()].into(),
                series: pods
                    .iter()
                    .map(|(p, v)| Series {
                        labels: [*p, "own"].into_iter().collect(),
                        value: *v,
                        timestamp_ms: None,
                    })
                    .collect(),
            }],
        }
    }

    fn families() -> Vec<Family> {
        vec![Family {
            name: "pod_restarts".into(),
            help: "Restarts.".into(),
            kind: MetricKind::Counter,
        }]
    }

    #[test]
    fn series_carry_names_labels_times_and_staleness_markers() {
        let external = vec![
            ("cluster".to_string(), "eu-1".to_string()),
            ("replica".to_string(), "a".to_string()),
        ];
        let before = snap(1_000, &[("a", 1.0), ("b", 2.0)]);
        let after = snap(2_000, &[("a", 3.0)]);
        let (out, meta) = series(&families(), &after, Some(&before), &external);
        let show = |t: &TimeSeries| {
            let l: Vec<String> = t
                .labels
                .iter()
                .map(|l| format!("{}={}", l.name, l.value))
                .collect();
            (
                l.join(","),
                t.samples[0].value.to_bits(),
                t.samples[0].timestamp,
            )
        };
        assert_eq!(
            out.iter().map(show).collect::<Vec<_>>(),
            [
                // The series' own `cluster` wins over the external label; sorted by name.
                (
                    "__name__=pod_restarts_total,cluster=own,pod=a,replica=a".to_string(),
                    3.0f64.to_bits(),
                    2_000
                ),
                (
                    "__name__=pod_restarts_total,cluster=own,pod=b,replica=a".to_string(),
                    proto::STALE_NAN,
                    2_000
                ),
            ]
        );
        assert_eq!(meta[0].1.r#type, MetricType::Counter as i32);
        assert_eq!(meta[0].1.metric_family_name, "pod_restarts_total");
    }

    #[test]
    fn requests_are_snappy_protobuf_that_decode_back() {
        let (out, _) = series(&families(), &snap(5, &[("a", 1.5)]), None, &[]);
        let req = WriteRequest {
            timeseries: out.clone(),
            metadata: Vec::new(),
        };
        let body = encode(&req);
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        let back = WriteRequest::decode(raw.as_slice()).unwrap();
        assert_eq!(back.timeseries, out);
    }
}
