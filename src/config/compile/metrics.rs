//! Metric blocks: `each`, labels, values and their outputs, checked against Prometheus'
//! naming rules; and the families they make across all sources and modules.

use std::collections::{BTreeMap, HashMap};

use super::Compiler;
use crate::config::raw::{self, RawValue};
use crate::config::raw::{RawMetric, RawMetricKind, RawSource};
use crate::config::{Family, SELF_PREFIX, text};
use crate::extract::filters::Filters;
use std::sync::Arc;

use crate::extract::{
    Conversion, Each, GroupBy, Lookup, MetricKind, MetricSpec, OnDuplicate, Output, OutputKind,
    Template, TimestampFormat, TimestampSpec, ValueSpec,
};
use crate::extract::{DynamicFamily, DynamicName};

impl Compiler<'_> {
    /// Families across all sources: one name, one type, one help. A counter `x` also owns
    /// `x_total` and `x_created`, so no other family may use those.
    pub(super) fn families(&mut self, raw: &[(String, RawSource)]) -> Vec<Family> {
        let mut families: BTreeMap<String, (Family, String)> = BTreeMap::new();
        let mut owned: HashMap<String, (String, String)> = HashMap::new();
        for (prefix, rs) in raw {
            for (j, rm) in rs.metrics.iter().enumerate() {
                for o in raw_outputs(&format!("{prefix}.metrics[{j}]"), rm) {
                    // Families named by the data are made as the data comes.
                    if is_dynamic(&o.name) {
                        continue;
                    }
                    let kind = metric_kind(o.settings.kind);
                    let family = family_name(&o.name, kind);
                    let help = match o.settings.help.as_deref().map(str::trim_end) {
                        Some(h) if !h.is_empty() => h.to_string(),
                        // As the reference says and json_exporter does: the name.
                        _ => o.name.clone(),
                    };
                    let at = o.at;
                    if let Some((prev, prev_at)) = families.get(&family) {
                        if prev.kind != kind {
                            self.error(
                                format!("{at}.type"),
                                format!(
                                    "metric {} is a {} here but a {} at {prev_at}; one name has one type",
                                    o.name,
                                    kind.as_str(),
                                    prev.kind.as_str()
                                ),
                            );
                        } else if prev.help != help {
                            self.error(
                                format!("{at}.help"),
                                format!(
                                    "metric {} has a different help text at {prev_at}; one name has one help",
                                    o.name
                                ),
                            );
                        }
                        continue;
                    }
                    let series_names: Vec<String> = match kind {
                        MetricKind::Gauge | MetricKind::Untyped => vec![family.clone()],
                        MetricKind::Counter => vec![
                            family.clone(),
                            format!("{family}_total"),
                            format!("{family}_created"),
                        ],
                    };
                    for s in &series_names {
                        if let Some((other, other_at)) = owned.get(s)
                            && other != &family
                        {
                            self.error(
                                o.name_at.clone(),
                                format!(
                                    "metric {} clashes with metric {other} at {other_at}: both would expose {s}",
                                    o.name
                                ),
                            );
                        }
                    }
                    for s in series_names {
                        owned.entry(s).or_insert((family.clone(), at.clone()));
                    }
                    let f = Family {
                        name: family.clone(),
                        help,
                        kind,
                    };
                    families.insert(family, (f, at));
                }
            }
        }
        families.into_values().map(|(f, _)| f).collect()
    }

    pub(super) fn metric(&mut self, at: &str, rm: &RawMetric) -> Option<MetricSpec> {
        let before = self.diagnostics.len();
        match (&rm.name, &rm.value, &rm.values) {
            (_, _, Some(values)) => {
                if rm.name.is_some() || rm.value.is_some() || !rm.settings().is_empty() {
                    self.error(
                        format!("{at}.values"),
                        "with `values`, each entry is one metric: put its value, help, type, \
                         mapping, default, scale and states under the entry, not next to `values`",
                    );
                }
                if values.is_empty() {
                    self.error(format!("{at}.values"), "`values` is empty");
                }
            }
            (Some(_), Some(_), None) => {}
            // The value of a count is the number of items.
            (Some(_), None, None) if rm.aggregate == Some(raw::RawAggregate::Count) => {}
            (Some(_), None, None) => self.error(at, "missing field `value`"),
            (None, _, None) => self.error(
                at,
                "a metric needs `name` and `value`, or `values` (name -> value) for several",
            ),
        }
        let each = match &rm.each {
            None => Some(Each::root()),
            Some(e) => match Each::compile(e) {
                Ok(each) => Some(each),
                Err(msg) => {
                    self.error(format!("{at}.each"), msg);
                    None
                }
            },
        };
        let captures = each
            .as_ref()
            .map(|e| e.captures.clone())
            .unwrap_or_default();
        let mut label_names = Vec::new();
        let mut labels = Vec::new();
        for (name, template) in &rm.labels {
            let lat = format!("{at}.labels.{name}");
            if !text::is_label_name(name) {
                self.error(
                    &lat,
                    format!(
                        "invalid label name {name:?}: use [a-zA-Z_][a-zA-Z0-9_]*, not starting with __"
                    ),
                );
            } else if name.chars().any(|c| c.is_ascii_uppercase()) {
                self.warn(&lat, format!("label {name}: use snake_case (lower case)"));
            }
            // Without a compiled `each` the captures are unknown: skip, its error is reported.
            if each.is_none() {
                continue;
            }
            match Template::compile(template, &captures) {
                Ok(t) => {
                    label_names.push(name.clone());
                    labels.push(t);
                }
                Err(msg) => self.error(&lat, msg),
            }
        }
        let mut outputs = Vec::new();
        if each.is_some() {
            for mut o in raw_outputs(at, rm) {
                // A count needs no value: each item counts one.
                static ONE: RawValue = RawValue::Number(1.0);
                if o.value.is_none() && rm.aggregate == Some(raw::RawAggregate::Count) {
                    o.value = Some(&ONE);
                }
                if let Some(out) = self.output(&o, &captures, &label_names) {
                    outputs.push(out);
                }
            }
        }
        let timestamp = match &rm.timestamp {
            None => {
                if rm.timestamp_format.is_some() {
                    self.error(
                        format!("{at}.timestamp_format"),
                        "`timestamp_format` needs `timestamp` (the path of the time in each item)",
                    );
                }
                None
            }
            Some(path) => match Lookup::compile(path, &captures) {
                Ok(lookup) => Some(TimestampSpec {
                    lookup,
                    format: match rm.timestamp_format {
                        None | Some(raw::RawTimestampFormat::Rfc3339) => TimestampFormat::Rfc3339,
                        Some(raw::RawTimestampFormat::Unix) => TimestampFormat::Unix,
                        Some(raw::RawTimestampFormat::UnixMs) => TimestampFormat::UnixMs,
                    },
                }),
                Err(msg) => {
                    self.error(format!("{at}.timestamp"), msg);
                    None
                }
            },
        };
        let aggregate = rm.aggregate.map(|a| match a {
            raw::RawAggregate::Count => GroupBy::Count,
            raw::RawAggregate::Sum => GroupBy::Sum,
            raw::RawAggregate::Min => GroupBy::Min,
            raw::RawAggregate::Max => GroupBy::Max,
            raw::RawAggregate::Avg => GroupBy::Avg,
        });
        if aggregate.is_some() {
            if rm.on_duplicate.is_some() {
                self.error(
                    format!("{at}.on_duplicate"),
                    "with `aggregate`, items with the same labels are grouped, not duplicates: drop `on_duplicate`",
                );
            }
            for o in raw_outputs(at, rm) {
                if matches!(
                    o.settings.kind,
                    Some(RawMetricKind::Stateset | RawMetricKind::Counter)
                ) {
                    self.error(
                        format!("{at}.aggregate"),
                        format!(
                            "`aggregate` makes gauges (or untyped metrics); {} is a {}",
                            o.name,
                            metric_kind(o.settings.kind).as_str()
                        ),
                    );
                }
            }
        }
        let name = match &rm.name {
            Some(n) if is_dynamic(n) => {
                if rm.values.is_some() {
                    None
                } else {
                    self.dynamic_name(at, rm, n, &captures)
                }
            }
            _ => None,
        };
        let mut fill = Vec::new();
        if !rm.fill.is_empty() && !matches!(aggregate, Some(GroupBy::Count | GroupBy::Sum)) {
            self.error(
                format!("{at}.fill"),
                "`fill` needs `aggregate: count` or `aggregate: sum` (0 is what no item counts or sums to)",
            );
        }
        for (label, values) in &rm.fill {
            match label_names.iter().position(|n| n == label) {
                Some(i) => {
                    let mut seen = std::collections::HashSet::new();
                    for v in values {
                        if !seen.insert(v) {
                            self.error(
                                format!("{at}.fill.{label}"),
                                format!("{v:?} is listed twice"),
                            );
                        }
                    }
                    if values.is_empty() {
                        self.error(format!("{at}.fill.{label}"), "the list is empty");
                    }
                    fill.push((i, values.clone()));
                }
                None => self.error(
                    format!("{at}.fill.{label}"),
                    format!("{label} is not a label of this block"),
                ),
            }
        }
        if self.diagnostics.len() > before {
            return None;
        }
        Some(MetricSpec {
            name,
            aggregate,
            fill,
            on_duplicate_chosen: rm.on_duplicate.is_some(),
            each: each?,
            label_names: label_names.into(),
            labels,
            outputs,
            on_duplicate: match rm.on_duplicate {
                None | Some(raw::RawOnDuplicate::First) => OnDuplicate::First,
                Some(raw::RawOnDuplicate::Last) => OnDuplicate::Last,
                Some(raw::RawOnDuplicate::Sum) => OnDuplicate::Sum,
                Some(raw::RawOnDuplicate::Min) => OnDuplicate::Min,
                Some(raw::RawOnDuplicate::Max) => OnDuplicate::Max,
                Some(raw::RawOnDuplicate::Count) => OnDuplicate::Count,
                Some(raw::RawOnDuplicate::Error) => OnDuplicate::Error,
            },
            timestamp,
        })
    }

    /// `name: "app_{key}"`: a template rendered per item, checked per series.
    fn dynamic_name(
        &mut self,
        at: &str,
        rm: &RawMetric,
        text: &str,
        captures: &[String],
    ) -> Option<DynamicName> {
        let name_at = format!("{at}.name");
        let template = match Template::compile(text, captures) {
            Ok(t) => t,
            Err(msg) => {
                self.error(&name_at, msg);
                return None;
            }
        };
        if rm.kind == Some(RawMetricKind::Stateset) {
            self.error(
                &name_at,
                "a state set cannot take its name from the data (its states are declared)",
            );
        }
        if !rm.fill.is_empty() {
            self.error(
                format!("{at}.fill"),
                "`fill` cannot be used with a name from the data",
            );
        }
        let kind = metric_kind(rm.kind);
        let help = match rm.help.as_deref().map(str::trim_end) {
            Some(h) if !h.is_empty() => h.to_string(),
            _ => {
                self.warn(&name_at, format!("metric {text} has no help text"));
                text.to_string()
            }
        };
        Some(DynamicName {
            template,
            family: Arc::new(DynamicFamily { kind, help }),
            taken: self.taken.clone(),
        })
    }

    pub(super) fn output(
        &mut self,
        o: &RawOut<'_>,
        captures: &[String],
        labels: &[String],
    ) -> Option<Output> {
        let before = self.diagnostics.len();
        let at = &o.at;
        let st = &o.settings;
        let kind = metric_kind(st.kind);
        if is_dynamic(&o.name) && o.from_values {
            self.error(
                &o.name_at,
                "a name from the data goes in `name` (one metric per block), not among the keys of `values`",
            );
        } else if is_dynamic(&o.name) {
            // Checked per series, as the data names them.
        } else if !text::is_metric_name(&o.name) {
            self.error(
                &o.name_at,
                format!(
                    "invalid metric name {:?}: use [a-zA-Z_:][a-zA-Z0-9_:]*",
                    o.name
                ),
            );
        } else if o.name.starts_with(SELF_PREFIX) {
            self.error(
                &o.name_at,
                format!("metric names starting with {SELF_PREFIX} are reserved for self-metrics"),
            );
        } else if kind == MetricKind::Counter && family_name(&o.name, kind).is_empty() {
            self.error(&o.name_at, "a counter needs a name before `_total`");
        } else {
            self.lint_output(o, kind, st.kind == Some(RawMetricKind::Stateset));
        }
        if let Some(help) = &st.help
            && help.chars().any(|c| c.is_control() && c != '\n')
        {
            self.error(
                format!("{at}.help"),
                "help text may not contain control characters other than newline",
            );
        }
        let mut filters = Filters::default();
        let value = match o.value {
            None => None,
            Some(RawValue::Number(v)) => Some(ValueSpec::Constant(*v)),
            Some(RawValue::Text(t)) => match ValueSpec::compile_filtered(t, captures) {
                Ok((v, f)) => {
                    filters = f;
                    Some(v)
                }
                Err(msg) => {
                    self.error(format!("{at}.value"), msg);
                    None
                }
            },
        };
        if let Some(ValueSpec::Constant(v)) = value
            && kind == MetricKind::Counter
            && v < 0.0
        {
            self.error(
                format!("{at}.value"),
                "a counter cannot have a negative value",
            );
        }
        if let Some(f) = st.scale
            && !f.is_finite()
        {
            self.error(format!("{at}.scale"), "scale must be a finite number");
        }
        let out_kind = match st.kind {
            Some(RawMetricKind::Stateset) => {
                let label = st.state_label.clone().unwrap_or_else(|| "state".into());
                if !text::is_label_name(&label) {
                    self.error(
                        format!("{at}.state_label"),
                        format!("invalid label name {label:?}"),
                    );
                } else if labels.contains(&label) {
                    self.error(
                        format!("{at}.state_label"),
                        format!(
                            "the state label {label:?} is also a label of the block (set state_label to another name)"
                        ),
                    );
                }
                let states = st.states.clone().unwrap_or_default();
                if states.is_empty() {
                    self.error(
                        format!("{at}.states"),
                        "a stateset needs `states`: the list of possible values",
                    );
                }
                let mut seen = std::collections::HashSet::new();
                for s in &states {
                    if !seen.insert(s) {
                        self.error(
                            format!("{at}.states"),
                            format!("state {s:?} is listed twice"),
                        );
                    }
                }
                if !matches!(value, None | Some(ValueSpec::Lookup(_))) {
                    self.error(
                        format!("{at}.value"),
                        "a stateset's value must be a JSONPath to the current state",
                    );
                }
                for field in [
                    ("mapping", st.mapping.is_some()),
                    ("default", st.default.is_some()),
                    ("scale", st.scale.is_some()),
                ] {
                    if field.1 {
                        self.error(
                            format!("{at}.{}", field.0),
                            format!("`{}` does not apply to a stateset", field.0),
                        );
                    }
                }
                OutputKind::StateSet { label, states }
            }
            _ => {
                for (field, set) in [
                    ("states", st.states.is_some()),
                    ("state_label", st.state_label.is_some()),
                ] {
                    if set {
                        self.error(
                            format!("{at}.{field}"),
                            format!("`{field}` applies to `type: stateset` only"),
                        );
                    }
                }
                match kind {
                    MetricKind::Counter => OutputKind::Counter,
                    MetricKind::Untyped => OutputKind::Untyped,
                    MetricKind::Gauge => OutputKind::Gauge,
                }
            }
        };
        if self.diagnostics.len() > before {
            return None;
        }
        Some(Output {
            name: o.name.clone(),
            family: family_name(&o.name, kind),
            kind: out_kind,
            value: value?,
            conversion: Conversion {
                filters,
                mapping: st
                    .mapping
                    .as_ref()
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect()),
                default: st.default,
                scale: st.scale,
            },
        })
    }

    /// Prometheus naming conventions (https://prometheus.io/docs/practices/naming/).
    pub(super) fn lint_output(&mut self, o: &RawOut<'_>, kind: MetricKind, stateset: bool) {
        let name = &o.name;
        if kind == MetricKind::Gauge && !stateset && name.ends_with("_total") {
            self.warn(
                &o.name_at,
                format!(
                    "gauge {name} ends in _total, which is for counters (promtool: non-counter metrics should not have \"_total\" suffix); drop the suffix or use type: counter"
                ),
            );
        }
        if name.chars().any(|c| c.is_ascii_uppercase()) {
            self.warn(
                &o.name_at,
                format!("metric {name}: use snake_case (lower case)"),
            );
        }
        if name.contains(':') {
            self.warn(
                &o.name_at,
                format!("metric {name}: colons are reserved for recording rules"),
            );
        }
        const UNITS: &[(&str, &str)] = &[
            ("_ms", "seconds"),
            ("_msec", "seconds"),
            ("_millis", "seconds"),
            ("_milliseconds", "seconds"),
            ("_us", "seconds"),
            ("_microseconds", "seconds"),
            ("_ns", "seconds"),
            ("_nanoseconds", "seconds"),
            ("_minutes", "seconds"),
            ("_hours", "seconds"),
            ("_days", "seconds"),
            ("_kb", "bytes"),
            ("_kib", "bytes"),
            ("_kilobytes", "bytes"),
            ("_mb", "bytes"),
            ("_mib", "bytes"),
            ("_megabytes", "bytes"),
            ("_gb", "bytes"),
            ("_gib", "bytes"),
            ("_gigabytes", "bytes"),
            ("_percent", "ratio (0-1)"),
            ("_pct", "ratio (0-1)"),
        ];
        let base = name.strip_suffix("_total").unwrap_or(name);
        if let Some((suffix, unit)) = UNITS.iter().find(|(s, _)| base.ends_with(s)) {
            self.warn(
                &o.name_at,
                format!(
                    "metric {name}: unit {} is not a base unit; Prometheus uses {unit} (convert with `scale:`)",
                    &suffix[1..]
                ),
            );
        }
        if o.settings
            .help
            .as_deref()
            .is_none_or(|h| h.trim().is_empty())
        {
            self.warn(&o.name_at, format!("metric {name} has no help text"));
        }
    }
}

/// Whether a configured name is a template (`app_{key}`): the name comes from the data.
pub(super) fn is_dynamic(name: &str) -> bool {
    name.contains('{')
}

/// Every series name the config's own (not data-named) families expose: a counter `x` also
/// exposes `x_total` and `x_created`.
pub(super) fn taken_names(raw: &raw::RawConfig) -> std::collections::HashSet<String> {
    let mut taken = std::collections::HashSet::new();
    let all = raw
        .sources
        .iter()
        .map(|s| &s.metrics)
        .chain(raw.modules.iter().map(|m| &m.metrics));
    for metrics in all {
        for rm in metrics {
            for o in raw_outputs("", rm) {
                if is_dynamic(&o.name) {
                    continue;
                }
                let kind = metric_kind(o.settings.kind);
                let family = family_name(&o.name, kind);
                if kind == MetricKind::Counter {
                    taken.insert(format!("{family}_total"));
                    taken.insert(format!("{family}_created"));
                }
                taken.insert(family);
            }
        }
    }
    taken
}

/// One output of a raw metric block, with where it was written.
pub(super) struct RawOut<'a> {
    /// Path of the output's settings (the block, or `values.NAME`).
    pub(super) at: String,
    /// Path to point at for name errors.
    pub(super) name_at: String,
    pub(super) name: String,
    /// A `values` entry (else the block's `name`/`value`).
    pub(super) from_values: bool,
    pub(super) value: Option<&'a RawValue>,
    pub(super) settings: raw::RawOutputSettings,
}

/// The outputs a block declares: its `name`/`value`, or each entry of `values`.
pub(super) fn raw_outputs<'a>(at: &str, rm: &'a RawMetric) -> Vec<RawOut<'a>> {
    match &rm.values {
        Some(values) => values
            .iter()
            .map(|(name, e)| RawOut {
                at: format!("{at}.values.{name}"),
                name_at: format!("{at}.values.{name}"),
                name: name.clone(),
                from_values: true,
                value: Some(&e.value),
                settings: e.settings.clone(),
            })
            .collect(),
        None => match &rm.name {
            Some(name) => vec![RawOut {
                at: at.to_string(),
                name_at: format!("{at}.name"),
                name: name.clone(),
                from_values: false,
                value: rm.value.as_ref(),
                settings: rm.settings(),
            }],
            None => Vec::new(),
        },
    }
}

pub(super) fn metric_kind(kind: Option<RawMetricKind>) -> MetricKind {
    match kind {
        Some(RawMetricKind::Counter) => MetricKind::Counter,
        Some(RawMetricKind::Untyped) => MetricKind::Untyped,
        _ => MetricKind::Gauge,
    }
}

/// The exposition family of a configured name: the encoder appends `_total` to counters, so
/// a counter configured as `x_total` is the family `x`.
pub(super) fn family_name(name: &str, kind: MetricKind) -> String {
    match kind {
        MetricKind::Counter => name.strip_suffix("_total").unwrap_or(name).to_string(),
        MetricKind::Gauge | MetricKind::Untyped => name.to_string(),
    }
}
