//! Encoding snapshots and self-metrics through prometheus-client.
//!
//! Families come from the current config (name, type, help), series from the snapshots of the
//! sources that feed them. A family fed by several metric blocks (several sources, say) is
//! written once; should two blocks yield the same label set, the first source in config order
//! wins, so the exposition stays valid.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabel, EncodeLabelSet, LabelSetEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::extract::{FamilySamples, Labels, MetricKind};
use crate::store::View;
use crate::telemetry::{SourceStats, State};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text, ending with `# EOF`.
    OpenMetrics,
    /// Prometheus text format 0.0.4.
    Text,
}

impl Format {
    pub const OPENMETRICS_CONTENT_TYPE: &str =
        "application/openmetrics-text; version=1.0.0; charset=utf-8";

    /// OpenMetrics when the client lists it in `Accept` (Prometheus does), else 0.0.4 text.
    pub fn negotiate(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => Self::OPENMETRICS_CONTENT_TYPE,
            Format::Text => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }
}

/// Encodes the snapshots of `view`, and the self-metrics when `telemetry` is given.
pub fn encode(view: &View, telemetry: Option<&State>, format: Format) -> String {
    let timestamps = Arc::new(Mutex::new(Vec::new()));
    let mut samples = Registry::default();
    samples.register_collector(Box::new(Samples {
        view: view.clone(),
        // The 0.0.4 encoder escapes HELP itself; the OpenMetrics one writes it verbatim.
        escape_help: format == Format::OpenMetrics,
        timestamps: timestamps.clone(),
    }));
    let mut out = String::new();
    write_registry(&mut out, &samples, format);
    let timestamps = std::mem::take(&mut *timestamps.lock().unwrap_or_else(|e| e.into_inner()));
    if timestamps.iter().any(Option::is_some) {
        out = add_timestamps(&out, &timestamps, format);
    }
    if let Some(state) = telemetry {
        let mut own = Registry::default();
        own.register_collector(Box::new(SelfMetrics(state.clone())));
        write_registry(&mut out, &own, format);
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

fn write_registry(out: &mut String, registry: &Registry, format: Format) {
    let result = match format {
        Format::OpenMetrics => prometheus_client::encoding::text::encode_registry(out, registry),
        Format::Text => prometheus_client::encoding::prometheus_text::encode(out, registry),
    };
    // Writing to a String cannot fail, and our collectors only fail when the writer does.
    debug_assert!(result.is_ok());
}

/// prometheus-client writes no sample timestamps, so they are appended here: its sample lines
/// come out one per series, in the order the collector recorded `timestamps`. OpenMetrics
/// takes seconds, the 0.0.4 format milliseconds.
fn add_timestamps(text: &str, timestamps: &[Option<i64>], format: Format) -> String {
    let mut out = String::with_capacity(text.len() + timestamps.len() * 16);
    let mut ts = timestamps.iter();
    for line in text.split_inclusive('\n') {
        if line.starts_with('#') {
            out.push_str(line);
            continue;
        }
        let body = line.strip_suffix('\n').unwrap_or(line);
        out.push_str(body);
        if let Some(Some(ms)) = ts.next() {
            match format {
                Format::OpenMetrics => {
                    let _ = write!(out, " {}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000));
                }
                Format::Text => {
                    let _ = write!(out, " {ms}");
                }
            }
        }
        out.push('\n');
    }
    out
}

/// Labels of one series: the family's names zipped with the series' values. An empty value is
/// left out: Prometheus reads `l=""` as no label `l`, and a label left out by `optional`
/// is empty.
struct Pairs<'a> {
    names: &'a [String],
    values: &'a Labels,
}

impl EncodeLabelSet for Pairs<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        for (n, v) in self.names.iter().zip(self.values.iter()) {
            if !v.is_empty() {
                (n.as_str(), v).encode(encoder.encode_label())?;
            }
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Samples {
    view: View,
    escape_help: bool,
    /// The timestamp of each series written, in order (see [`add_timestamps`]).
    timestamps: Arc<Mutex<Vec<Option<i64>>>>,
}

/// OpenMetrics HELP escaping: backslash, double quote and newline.
fn escape_openmetrics(help: &str) -> std::borrow::Cow<'_, str> {
    if !help.contains(['\\', '"', '\n']) {
        return help.into();
    }
    help.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .into()
}

fn metric_type(kind: MetricKind) -> MetricType {
    match kind {
        MetricKind::Gauge => MetricType::Gauge,
        MetricKind::Counter => MetricType::Counter,
        MetricKind::Untyped => MetricType::Unknown,
    }
}

impl prometheus_client::collector::Collector for Samples {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut stamps = self.timestamps.lock().unwrap_or_else(|e| e.into_inner());
        let all = || {
            self.view
                .snapshots
                .iter()
                .flat_map(|(_, snap)| snap.families.iter())
        };
        for family in &self.view.config.families {
            let parts: Vec<&FamilySamples> = all()
                .filter(|f| f.dynamic.is_none() && f.family == family.name)
                .collect();
            self.family(
                &mut encoder,
                &mut stamps,
                &family.name,
                &family.help,
                family.kind,
                &parts,
            )?;
        }
        // Families named by the data, by name; should two blocks name one family with other
        // types, the first in config order decides and the other's series are left out.
        let mut dynamic: std::collections::BTreeMap<&str, Vec<&FamilySamples>> = Default::default();
        for f in all().filter(|f| f.dynamic.is_some()) {
            dynamic.entry(f.family.as_str()).or_default().push(f);
        }
        for (name, mut parts) in dynamic {
            let Some(first) = parts[0].dynamic.clone() else {
                continue;
            };
            parts.retain(|p| p.dynamic.as_ref().is_some_and(|d| d.kind == first.kind));
            self.family(
                &mut encoder,
                &mut stamps,
                name,
                &first.help,
                first.kind,
                &parts,
            )?;
        }
        Ok(())
    }
}

impl Samples {
    /// One family: its descriptor, then the series of every part that feeds it.
    fn family(
        &self,
        encoder: &mut DescriptorEncoder,
        stamps: &mut Vec<Option<i64>>,
        name: &str,
        help: &str,
        kind: MetricKind,
        parts: &[&FamilySamples],
    ) -> Result<(), std::fmt::Error> {
        let help = if self.escape_help {
            escape_openmetrics(help)
        } else {
            help.into()
        };
        let mut m = encoder.encode_descriptor(name, &help, None, metric_type(kind))?;
        // One block's series are already unique (extract dedups); only merged families
        // need checking across blocks.
        let mut seen: Option<HashSet<Vec<(&str, &str)>>> = (parts.len() > 1).then(HashSet::new);
        for part in parts {
            for s in &part.series {
                if let Some(seen) = seen.as_mut() {
                    let mut key: Vec<(&str, &str)> = part
                        .label_names
                        .iter()
                        .map(String::as_str)
                        .zip(s.labels.iter())
                        .filter(|(_, v)| !v.is_empty())
                        .collect();
                    key.sort_unstable();
                    if !seen.insert(key) {
                        continue;
                    }
                }
                stamps.push(s.timestamp_ms);
                let labels = Pairs {
                    names: &part.label_names,
                    values: &s.labels,
                };
                let mut series = m.encode_family(&labels)?;
                match kind {
                    MetricKind::Gauge | MetricKind::Untyped => series.encode_gauge(&s.value)?,
                    MetricKind::Counter => {
                        series.encode_counter::<NoLabelSet, f64, f64>(&s.value, None)?
                    }
                }
            }
        }
        Ok(())
    }
}

#[derive(Debug)]
struct SelfMetrics(State);

fn seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl prometheus_client::collector::Collector for SelfMetrics {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let st = &self.0;
        {
            let mut m = enc.encode_descriptor(
                "jsonbridge_build_info",
                "A metric with a constant 1 value labeled by the version, revision and compiler of jsonbridge.",
                None,
                MetricType::Gauge,
            )?;
            m.encode_family(&[
                ("version", crate::VERSION),
                ("revision", crate::REVISION),
                ("rustc", crate::RUSTC),
            ])?
            .encode_gauge(&1i64)?;
        }
        let rows: Vec<(&str, &SourceStats)> =
            st.sources.iter().map(|(k, v)| (k.as_str(), v)).collect();
        type Getter = fn(&SourceStats) -> f64;
        let gauges: [(&str, &str, Getter); 10] = [
            (
                "jsonbridge_source_up",
                "1 if the last poll of the source succeeded, 0 if it failed or none ended yet.",
                |s| if s.up { 1.0 } else { 0.0 },
            ),
            (
                "jsonbridge_source_last_poll_duration_seconds",
                "Duration of the last poll (fetch, parse, extract and swap).",
                |s| s.last_duration.as_secs_f64(),
            ),
            (
                "jsonbridge_source_last_poll_fetch_seconds",
                "Of the last good poll's duration, the time until every response body was in (all pages or items); the rest is reading them and swapping the snapshot.",
                |s| s.last_fetch.as_secs_f64(),
            ),
            (
                "jsonbridge_source_last_success_timestamp_seconds",
                "Unix time of the last successful poll (0: never).",
                |s| s.last_success_at.map(seconds).unwrap_or(0.0),
            ),
            (
                "jsonbridge_source_series",
                "Series in the snapshot currently served for the source.",
                |s| s.series as f64,
            ),
            (
                "jsonbridge_source_series_dropped",
                "Series the last good poll dropped because the source reached max_series.",
                |s| s.series_dropped as f64,
            ),
            (
                "jsonbridge_source_response_bytes",
                "Size of the last response body read, decoded (0: none yet).",
                |s| s.last_response_bytes.unwrap_or(0) as f64,
            ),
            (
                "jsonbridge_source_last_poll_pages",
                "Pages the last good poll read (1 without paginate).",
                |s| s.last_pages as f64,
            ),
            (
                "jsonbridge_source_last_poll_requests",
                "Requests the last good poll made: 1, its pages, or the fan-out list and its items.",
                |s| s.last_requests as f64,
            ),
            (
                "jsonbridge_source_response_wire_bytes",
                "Size of the last response body on the wire, compressed where it was (0: none yet).",
                |s| s.last_wire_bytes.unwrap_or(0) as f64,
            ),
        ];
        for (name, help, get) in gauges {
            let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (src, s) in &rows {
                m.encode_family(&[("source", *src)])?
                    .encode_gauge(&get(s))?;
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "jsonbridge_source_polls",
                "Polls that ended, by result: success or the error kind.",
                None,
                MetricType::Counter,
            )?;
            for (src, s) in &rows {
                if !s.polls.contains_key("success") {
                    m.encode_family(&[("source", *src), ("result", "success")])?
                        .encode_counter::<NoLabelSet, u64, f64>(&0, None)?;
                }
                for (result, n) in &s.polls {
                    m.encode_family(&[("source", *src), ("result", *result)])?
                        .encode_counter::<NoLabelSet, u64, f64>(n, None)?;
                }
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "jsonbridge_source_retries",
                "Attempts beyond the first (retries) that ended in a successful poll.",
                None,
                MetricType::Counter,
            )?;
            for (src, s) in &rows {
                m.encode_family(&[("source", *src)])?
                    .encode_counter::<NoLabelSet, u64, f64>(&s.retries, None)?;
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "jsonbridge_source_poll_overlaps",
                "Scheduled polls skipped because the previous poll of the source was still running.",
                None,
                MetricType::Counter,
            )?;
            for (src, s) in &rows {
                m.encode_family(&[("source", *src)])?
                    .encode_counter::<NoLabelSet, u64, f64>(&s.overlaps, None)?;
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "jsonbridge_fan_out_skipped",
                "Fan-out items left out of a poll, by kind: template (the item's request could not be made) or a failed request's kind (with on_error: skip).",
                None,
                MetricType::Counter,
            )?;
            for (src, s) in &rows {
                for (kind, n) in &s.fan_out_skipped {
                    m.encode_family(&[("source", *src), ("kind", *kind)])?
                        .encode_counter::<NoLabelSet, u64, f64>(n, None)?;
                }
            }
        }
        type PerMetric = fn(&SourceStats) -> Vec<(&str, Option<&str>, u64)>;
        let per_metric: [(&str, &str, &str, PerMetric); 3] = [
            (
                "jsonbridge_extraction_errors",
                "Items skipped during extraction, by metric and kind.",
                "kind",
                |s| {
                    let e = s.extraction_errors.iter();
                    e.map(|((m, k), n)| (m.as_str(), Some(*k), *n)).collect()
                },
            ),
            (
                "jsonbridge_duplicates_merged",
                "Series merged into another by the on_duplicate policy the config chose (not an extraction error), by metric and policy.",
                "policy",
                |s| {
                    let d = s.duplicates_merged.iter();
                    d.map(|((m, p), n)| (m.as_str(), Some(*p), *n)).collect()
                },
            ),
            (
                "jsonbridge_samples_too_old",
                "Samples whose data timestamp was more than an hour old when polled: a Prometheus scrape drops them as out of bounds.",
                "",
                |s| {
                    s.too_old
                        .iter()
                        .map(|(m, n)| (m.as_str(), None, *n))
                        .collect()
                },
            ),
        ];
        for (name, help, by, get) in per_metric {
            let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (src, s) in &rows {
                for (metric, what, n) in get(s) {
                    let mut labels = vec![("source", *src), ("metric", metric)];
                    labels.extend(what.map(|w| (by, w)));
                    m.encode_family(&labels)?
                        .encode_counter::<NoLabelSet, u64, f64>(&n, None)?;
                }
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "jsonbridge_limit_hits",
                "Times a protective limit bit, by limit (README: what is promised).",
                None,
                MetricType::Counter,
            )?;
            for (limit, n) in &st.limit_hits {
                m.encode_family(&[("limit", *limit)])?
                    .encode_counter::<NoLabelSet, u64, f64>(n, None)?;
            }
        }
        if let Some(n) = st.alive_tasks {
            let mut m = enc.encode_descriptor(
                "jsonbridge_runtime_alive_tasks",
                "Tokio tasks alive when the exposition was last rendered.",
                None,
                MetricType::Gauge,
            )?;
            m.encode_gauge(&(n as i64))?;
        }
        {
            let mut m = enc.encode_descriptor(
                "jsonbridge_config_last_reload_successful",
                "Whether the last configuration reload attempt was successful.",
                None,
                MetricType::Gauge,
            )?;
            m.encode_gauge(&i64::from(st.reload.last_successful))?;
        }
        {
            let mut m = enc.encode_descriptor(
                "jsonbridge_config_last_reload_success_timestamp_seconds",
                "Unix time of the last successful configuration load.",
                None,
                MetricType::Gauge,
            )?;
            m.encode_gauge(&seconds(st.reload.last_success_at))?;
        }
        {
            let mut m = enc.encode_descriptor(
                "jsonbridge_config_reloads",
                "Configuration reload attempts, by result: success or the error kind.",
                None,
                MetricType::Counter,
            )?;
            if !st.reload.reloads.contains_key("success") {
                m.encode_family(&[("result", "success")])?
                    .encode_counter::<NoLabelSet, u64, f64>(&0, None)?;
            }
            for (result, n) in &st.reload.reloads {
                m.encode_family(&[("result", *result)])?
                    .encode_counter::<NoLabelSet, u64, f64>(n, None)?;
            }
        }
        if !st.remote_write.is_empty() {
            remote_write(&mut enc, st)?;
        }
        Ok(())
    }
}

/// The remote write endpoints' self-metrics (only when some are configured).
fn remote_write(enc: &mut DescriptorEncoder, st: &State) -> Result<(), std::fmt::Error> {
    {
        let mut m = enc.encode_descriptor(
            "jsonbridge_remote_write_samples",
            "Samples by what became of them: sent, failed (refused by the endpoint, not retried), dropped (out of a full queue).",
            None,
            MetricType::Counter,
        )?;
        for (name, s) in &st.remote_write {
            for result in ["sent", "failed", "dropped"] {
                let n = s.samples.get(result).copied().unwrap_or(0);
                m.encode_family(&[("endpoint", name.as_str()), ("result", result)])?
                    .encode_counter::<NoLabelSet, u64, f64>(&n, None)?;
            }
        }
    }
    {
        let mut m = enc.encode_descriptor(
            "jsonbridge_remote_write_retried_samples",
            "Samples of sends that failed (5xx, 429, connection) and were tried again, at every retry.",
            None,
            MetricType::Counter,
        )?;
        for (name, s) in &st.remote_write {
            m.encode_family(&[("endpoint", name.as_str())])?
                .encode_counter::<NoLabelSet, u64, f64>(&s.retried, None)?;
        }
    }
    {
        let mut m = enc.encode_descriptor(
            "jsonbridge_remote_write_sent_bytes",
            "Request bodies the endpoint took, as sent (snappy-compressed protobuf).",
            None,
            MetricType::Counter,
        )?;
        for (name, s) in &st.remote_write {
            m.encode_family(&[("endpoint", name.as_str())])?
                .encode_counter::<NoLabelSet, u64, f64>(&s.bytes_sent, None)?;
        }
    }
    {
        let mut m = enc.encode_descriptor(
            "jsonbridge_remote_write_queue_samples",
            "Samples waiting to be sent.",
            None,
            MetricType::Gauge,
        )?;
        for (name, s) in &st.remote_write {
            m.encode_family(&[("endpoint", name.as_str())])?
                .encode_gauge(&(s.queue as i64))?;
        }
    }
    {
        let mut m = enc.encode_descriptor(
            "jsonbridge_remote_write_last_success_timestamp_seconds",
            "Unix time of the last send the endpoint took (0: never).",
            None,
            MetricType::Gauge,
        )?;
        for (name, s) in &st.remote_write {
            m.encode_family(&[("endpoint", name.as_str())])?
                .encode_gauge(&s.last_success_at.map(seconds).unwrap_or(0.0))?;
        }
    }
    Ok(())
}
