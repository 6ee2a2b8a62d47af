//! Sources: name, request, schedule, limits and metric blocks of each, and its read plan.

use std::collections::HashMap;
use std::sync::Arc;

use super::Compiler;
use super::metrics::raw_outputs;
use crate::config::raw::{RawConfig, RawSource};
use std::time::Duration;

use crate::config::{DEFAULT_EVERY, DEFAULT_MAX_SERIES, Schedule, Source, text};
use crate::extract::ReadPlan;

impl Compiler<'_> {
    /// The `sources` list, each name once.
    pub(super) fn sources(&mut self, raw: &RawConfig) -> Vec<Arc<Source>> {
        let mut sources = Vec::new();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, rs) in raw.sources.iter().enumerate() {
            let at = format!("sources[{i}]");
            if let Some(first) = seen.insert(&rs.name, i) {
                self.error(
                    format!("{at}.name"),
                    format!(
                        "duplicate source name {:?} (also sources[{first}])",
                        rs.name
                    ),
                );
            }
            if let Some(s) = self.source(&at, rs) {
                sources.push(Arc::new(s));
            }
        }
        sources
    }

    pub(super) fn source(&mut self, at: &str, rs: &RawSource) -> Option<Source> {
        let before = self.diagnostics.len();
        if !text::is_source_name(&rs.name) {
            self.error(
                format!("{at}.name"),
                format!(
                    "invalid source name {:?}: use letters, digits, '_', '-' and '.' (at most 128)",
                    rs.name
                ),
            );
        }
        let request = self.request(at, rs);
        let schedule = self.schedule(at, rs);
        if rs.metrics.is_empty() {
            self.error(
                format!("{at}.metrics"),
                "a source needs at least one metric",
            );
        }
        let mut names: HashMap<String, String> = HashMap::new();
        let mut metrics = Vec::new();
        for (j, rm) in rs.metrics.iter().enumerate() {
            let mat = format!("{at}.metrics[{j}]");
            for o in raw_outputs(&mat, rm) {
                let here =
                    o.at.strip_prefix(&format!("{at}."))
                        .unwrap_or(&o.at)
                        .to_string();
                if let Some(first) = names.insert(o.name.clone(), here) {
                    self.error(
                        o.name_at,
                        format!(
                            "metric {} is defined twice in this source (also {first})",
                            o.name
                        ),
                    );
                }
            }
            if let Some(m) = self.metric(&mat, rm) {
                metrics.push(m);
            }
        }
        if self.diagnostics.len() > before {
            return None;
        }
        let max_series = rs.max_series.unwrap_or(DEFAULT_MAX_SERIES);
        if max_series == 0 {
            self.error(
                format!("{at}.max_series"),
                "max_series must be more than zero",
            );
            return None;
        }
        let max_staleness = self
            .optional_duration(format!("{at}.max_staleness"), rs.max_staleness.as_deref())
            .ok()?;
        let paginate = match &rs.paginate {
            None => None,
            Some(p) => Some(self.paginate(at, p)?),
        };
        let request = request?;
        let fan_out = match &rs.fan_out {
            None => None,
            Some(f) => {
                let mut f = self.fan_out(at, rs, f)?;
                if f.timeout.is_zero() || f.timeout > request.timeout {
                    f.timeout = request.timeout;
                }
                self.parent_labels(at, &f, &mut metrics);
                if self.diagnostics.len() > before {
                    return None;
                }
                Some(f)
            }
        };
        Some(Source {
            paginate,
            fan_out,
            name: rs.name.clone(),
            request,
            schedule: schedule?,
            plan: ReadPlan::new(&mut metrics),
            metrics,
            max_series,
            max_staleness,
            raw: rs.clone(),
        })
    }

    pub(super) fn schedule(&mut self, at: &str, rs: &RawSource) -> Option<Schedule> {
        match (&rs.schedule, &rs.every) {
            (Some(_), Some(_)) => {
                self.error(
                    format!("{at}.every"),
                    "set either `schedule` (cron) or `every` (interval), not both",
                );
                None
            }
            (None, None) => Some(Schedule::Every(DEFAULT_EVERY)),
            (None, Some(every)) => match text::parse_duration(every) {
                Ok(d) if d < Duration::from_secs(1) => {
                    self.error(format!("{at}.every"), "`every` must be at least 1s");
                    None
                }
                Ok(d) => Some(Schedule::Every(d)),
                Err(e) => {
                    self.error(format!("{at}.every"), e);
                    None
                }
            },
            (Some(cron), None) => match check_cron(cron) {
                Ok(c) => Some(Schedule::Cron(c)),
                Err(e) => {
                    self.error(format!("{at}.schedule"), e);
                    None
                }
            },
        }
    }
}

/// Validates a cron line with the parser the scheduler uses; returns it normalized.
fn check_cron(expr: &str) -> Result<String, String> {
    let expr = expr.split_whitespace().collect::<Vec<_>>().join(" ");
    let fields = expr.split(' ').count();
    if fields == 5 && !expr.starts_with('@') {
        return Err(format!(
            "cron {expr:?} has 5 fields; jsonbridge's cron starts with seconds (6 fields): \"0 {expr}\""
        ));
    }
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(&expr)
        .map_err(|e| format!("invalid cron {expr:?}: {e}"))?;
    Ok(expr)
}
