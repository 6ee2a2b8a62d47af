//! Offline tooling behind `jsonbridge test`: run one source's metrics over a sample response,
//! without network, and say what matched and what was skipped and why.
//!
//! It drives the same code as a poll (parse, [`crate::extract`], `max_series`, encoding), so
//! what it prints is what `/metrics` would serve for that response.

use std::fmt::Write as _;
use std::sync::Arc;

use crate::config::{Config, Source};
use crate::expose::{Format, encode};
use crate::extract::Extraction;
use crate::store::{Snapshot, View};

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("no source named {name:?} (the config has: {available})")]
    NoSuchSource { name: String, available: String },
    #[error("the config has {count} sources ({names}): choose one with --source")]
    ChooseSource { count: usize, names: String },
    #[error("the input cannot be used: {0}")]
    InvalidJson(String),
    #[error("{0} inputs, but the source has neither `paginate` nor `fan_out`: give one response")]
    NotPaginated(usize),
    #[error("{0}")]
    Extract(#[from] crate::extract::ExtractError),
}

/// The exposition for one source, and a human report on the extraction.
pub struct Outcome {
    /// Empty when a live poll would fail (`failure`).
    pub exposition: String,
    pub report: String,
    pub extraction: Extraction,
    /// Why a live poll of the same body would fail (`no_series`): the source would keep its
    /// last snapshot and report `up` 0.
    pub failure: Option<crate::schedule::PollError>,
}

/// Picks the source: the named one, or the only one.
pub fn pick<'a>(config: &'a Config, name: Option<&str>) -> Result<&'a Arc<Source>, InspectError> {
    match name {
        Some(n) => {
            config
                .sources
                .iter()
                .find(|s| s.name == n)
                .ok_or_else(|| InspectError::NoSuchSource {
                    name: n.to_string(),
                    available: names(config),
                })
        }
        None if config.sources.len() == 1 => Ok(&config.sources[0]),
        None => Err(InspectError::ChooseSource {
            count: config.sources.len(),
            names: names(config),
        }),
    }
}

/// The sources' names, for messages.
fn names(config: &Config) -> String {
    let names: Vec<&str> = config.sources.iter().map(|s| s.name.as_str()).collect();
    names.join(", ")
}

/// Runs `source` over `input` (a response body).
pub fn run(
    config: &Config,
    source: &Arc<Source>,
    input: &[u8],
    format: Format,
) -> Result<Outcome, InspectError> {
    run_pages(config, source, &[input.to_vec()], format)
}

/// Runs `source` over `inputs`: one response body, or the pages of a paginated source in
/// order (the report then says which request each page answers).
pub fn run_pages(
    config: &Config,
    source: &Arc<Source>,
    inputs: &[Vec<u8>],
    format: Format,
) -> Result<Outcome, InspectError> {
    let as_input = |e: crate::schedule::PollError| match e {
        crate::schedule::PollError::Extract(e) => InspectError::Extract(e),
        e => InspectError::InvalidJson(e.to_string()),
    };
    // The daemon's own readers, so what this shows is what a poll would give.
    let (mut x, requests) = match (inputs, &source.paginate) {
        (bodies, _) if source.fan_out.is_some() => {
            crate::schedule::read_fan_out(bodies, source).map_err(as_input)?
        }
        ([one], None) => (
            crate::schedule::read(one, None, source).map_err(as_input)?,
            Vec::new(),
        ),
        (_, None) => return Err(InspectError::NotPaginated(inputs.len())),
        (pages, Some(_)) => crate::schedule::read_pages(pages, source).map_err(as_input)?,
    };
    // The poll's own rule: what fails a poll fails the test.
    let failure = crate::schedule::settle(&mut x, source, std::time::SystemTime::now()).err();
    let exposition = match failure {
        Some(_) => String::new(),
        None => exposition(config, source, &x, format),
    };
    let mut report = String::new();
    for r in &requests {
        let _ = writeln!(report, "{r}");
    }
    report.push_str(&self::report(source, &x));
    if let Some(e) = &failure {
        let _ = writeln!(
            report,
            "a live poll of this body fails ({}): {e}; the source keeps its last snapshot and jsonbridge_source_up is 0",
            e.kind()
        );
    }
    Ok(Outcome {
        exposition,
        report,
        extraction: x,
        failure,
    })
}

/// The exposition of one source's extraction alone (no self-metrics): what `jsonbridge test`
/// prints and what `/probe` answers.
pub fn exposition(config: &Config, source: &Arc<Source>, x: &Extraction, format: Format) -> String {
    let families = config
        .families
        .iter()
        .filter(|f| x.families.iter().any(|s| s.family == f.name))
        .cloned()
        .collect();
    let view = View {
        config: Arc::new(Config {
            sources: vec![source.clone()],
            families,
            warnings: Vec::new(),
            modules: Vec::new(),
            probe_allow: Vec::new().into(),
            remote_write: Vec::new(),
        }),
        snapshots: vec![(
            source.clone(),
            Arc::new(Snapshot {
                taken_at: std::time::SystemTime::now(),
                families: x.families.clone(),
            }),
        )],
    };
    encode::encode(&view, None, format)
}

fn report(source: &Source, x: &Extraction) -> String {
    let mut r = String::new();
    let _ = writeln!(
        r,
        "source {}: {} from {} (read: {})",
        source.name,
        count(x.series_count() as u64, "series", "series"),
        count(x.reports.len() as u64, "metric", "metrics"),
        source.plan.describe()
    );
    let width = x.reports.iter().map(|m| m.metric.len()).max().unwrap_or(0);
    for m in &x.reports {
        let skipped: u64 = x
            .problems
            .iter()
            .filter(|p| p.metric == m.metric && p.kind != "duplicate_series")
            .map(|p| p.count)
            .sum();
        let _ = write!(
            r,
            "  {:width$}  {} matched, {}",
            m.metric,
            count(m.items as u64, "item", "items"),
            count(m.series as u64, "series", "series"),
        );
        if skipped > 0 {
            let _ = write!(r, ", {} skipped", count(skipped, "item", "items"));
        }
        if m.items == 0 {
            r.push_str("  <- `each` matched nothing: check the path against the input");
        }
        r.push('\n');
        for p in x.problems.iter().filter(|p| p.metric == m.metric) {
            let _ = writeln!(r, "      {} x{}: {}", p.kind, p.count, p.example);
        }
        for g in x.merged.iter().filter(|g| g.metric == m.metric) {
            let _ = writeln!(
                r,
                "      {} merged into others (on_duplicate: {})",
                count(g.count, "series", "series"),
                g.policy
            );
        }
    }
    for (family, n) in &x.too_old {
        let _ = writeln!(
            r,
            "  warning: {family}: {} with a data timestamp more than an hour old; a Prometheus scrape drops them as out of bounds (leave out `timestamp`, or push with remote_write to a backend that accepts old samples)",
            count(*n, "sample", "samples"),
        );
    }
    if x.dropped > 0 {
        let _ = writeln!(
            r,
            "  max_series ({}) reached: {} series dropped",
            source.max_series, x.dropped
        );
    }
    r
}

/// `1 item`, `2 items`.
fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
