//! One metric block over its items: labels, values and timestamps per item, problems counted
//! by kind, duplicates resolved at the end ([`super::duplicates`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::body::DocRoot;
use super::duplicates::{Duplicates, Merge, counts, fill, in_order, resolve_duplicates};
use super::error::{ExtractError, ItemError};
use super::label_templates::{labels_of, render_labels};
use super::labels::Labels;
use super::labels::LabelsBuilder;
use super::samples::{
    Extraction, FamilySamples, Merged, MetricReport, Problem, Problems, Series, note,
};
use super::spec::{
    Bound, DynamicName, Item, MetricKind, MetricSpec, OnDuplicate, Output, OutputKind,
};
use super::values::truncate_quoted;
use super::values::{state_of, timestamp_of, value_of, value_path};

/// One block's extraction in progress: items go in one at a time, in document order.
pub(super) struct BlockRun<'b> {
    pub(super) block: &'b MetricSpec,
    pub(super) problems: Problems,
    /// Per output.
    pub(super) series: Vec<Vec<Series>>,
    pub(super) items: usize,
    pub(super) labels: LabelsBuilder,
    /// Per output: whether its series are known to be in strict label order (no duplicate),
    /// so that [`BlockRun::finish`] need not check. Only [`BlockRun::check_order`] sets it.
    pub(super) ordered: Vec<bool>,
}

/// A run's state without its block: what one page made, kept between pages (see
/// [`super::Pages`]).
pub(crate) struct RunState {
    problems: Problems,
    series: Vec<Vec<Series>>,
    pub(super) items: usize,
    ordered: Vec<bool>,
}

impl RunState {
    pub(super) fn series(&self) -> usize {
        self.series.iter().map(Vec::len).sum()
    }

    /// Adds what the same block made of the next page.
    pub(super) fn join(&mut self, later: RunState) {
        for (s, l) in self.series.iter_mut().zip(later.series) {
            s.extend(l);
        }
        // Each page was in order; across pages, only `finish` can tell.
        self.ordered.iter_mut().for_each(|o| *o = false);
        for (k, (count, example)) in later.problems {
            self.problems.entry(k).or_insert((0, example)).0 += count;
        }
        self.items += later.items;
    }
}

impl<'b> BlockRun<'b> {
    pub(super) fn into_state(self) -> RunState {
        RunState {
            problems: self.problems,
            series: self.series,
            items: self.items,
            ordered: self.ordered,
        }
    }

    pub(super) fn from_state(block: &'b MetricSpec, state: RunState) -> Self {
        Self {
            block,
            problems: state.problems,
            series: state.series,
            items: state.items,
            labels: LabelsBuilder::default(),
            ordered: state.ordered,
        }
    }

    pub(super) fn new(block: &'b MetricSpec) -> Self {
        Self {
            block,
            problems: BTreeMap::new(),
            series: vec![Vec::new(); block.outputs.len()],
            items: 0,
            labels: LabelsBuilder::default(),
            ordered: vec![false; block.outputs.len()],
        }
    }

    /// Checks whether each output's series are in strict label order (on the thread that
    /// extracted them: a large body's runs are checked in parallel, batch by batch, instead
    /// of all at the end).
    pub(super) fn check_order(&mut self) {
        for (ordered, series) in self.ordered.iter_mut().zip(&self.series) {
            *ordered = in_order(series);
        }
    }

    #[inline]
    pub(super) fn item(&mut self, item: Item<'_>, doc: DocRoot<'_>, caps: &[Bound<'_>]) {
        let block = self.block;
        let n = block.outputs.len();
        let problems = &mut self.problems;
        let series = &mut self.series;
        self.items += 1;
        let ordinal = self.items;
        let describe = || describe_item(&block.each.captures, caps, ordinal);
        let prepared = labels_of(block, doc, item, caps, &mut self.labels).and_then(|labels| {
            let ts = match &block.timestamp {
                Some(t) => Some(timestamp_of(t, item, doc, caps)?),
                None => None,
            };
            Ok((labels, ts))
        });
        let (mut labels, ts) = match prepared {
            Ok(p) => p,
            Err(e) => {
                (0..n).for_each(|k| note(problems, k, &e, &describe));
                return;
            }
        };
        for (k, output) in block.outputs.iter().enumerate() {
            match &output.kind {
                OutputKind::StateSet { states, .. } => match state_of(output, item, doc, caps) {
                    Ok(current) => {
                        if !states.contains(&current) {
                            let e = ItemError::ValueUnmapped {
                                path: value_path(&output.value),
                                found: format!("{current:?}"),
                            };
                            note(problems, k, &e, &describe);
                        }
                        for s in states {
                            series[k].push(Series {
                                labels: labels.with(s),
                                value: if *s == current { 1.0 } else { 0.0 },
                                timestamp_ms: ts,
                            });
                        }
                    }
                    Err(e) => note(problems, k, &e, &describe),
                },
                kind => match value_of(output, item, doc, caps) {
                    Ok(v) if *kind == OutputKind::Counter && v < 0.0 => {
                        note(
                            problems,
                            k,
                            &ItemError::CounterNegative { value: v },
                            &describe,
                        );
                    }
                    Ok(value) => series[k].push(Series {
                        value: if counts(block) { 1.0 } else { value },
                        // The last output takes the labels instead of a copy.
                        labels: if k + 1 == n {
                            std::mem::take(&mut labels)
                        } else {
                            labels.clone()
                        },
                        timestamp_ms: ts,
                    }),
                    Err(e) => note(problems, k, &e, &describe),
                },
            }
        }
    }

    /// Adds what the same block made of the items right after this run's.
    pub(super) fn absorb(&mut self, later: BlockRun<'b>) {
        for (k, (s, l)) in self.series.iter_mut().zip(later.series).enumerate() {
            // Still in order if both parts are and the seam is.
            self.ordered[k] = self.ordered[k]
                && later.ordered[k]
                && match (s.last(), l.first()) {
                    (Some(a), Some(b)) => a.labels < b.labels,
                    _ => true,
                };
            s.extend(l);
        }
        for (k, (count, example)) in later.problems {
            self.problems.entry(k).or_insert((0, example)).0 += count;
        }
        self.items = later.items;
    }

    pub(super) fn finish(self, out: &mut Extraction) -> Result<(), ExtractError> {
        let BlockRun {
            block,
            mut problems,
            series,
            items,
            labels: _,
            ordered,
        } = self;
        for (k, (output, mut s)) in block.outputs.iter().zip(series).enumerate() {
            let label_names = output_label_names(block, output);
            let dups = if ordered[k] {
                Duplicates {
                    dropped: 0,
                    first_example: None,
                }
            } else {
                resolve_duplicates(&mut s, Merge::of(block))
            };
            if block.aggregate.is_some() {
                // Grouping is what was asked for: no duplicate to report.
                fill(&mut s, &block.fill, block.label_names.len());
            } else if block.on_duplicate_chosen
                && block.on_duplicate != OnDuplicate::Error
                && dups.dropped > 0
            {
                out.merged.push(Merged {
                    metric: output.name.clone(),
                    policy: block.on_duplicate.as_str(),
                    count: dups.dropped,
                });
            } else if let Some((labels, count)) = dups.first_example {
                let err = ItemError::DuplicateSeries {
                    labels: render_labels(&label_names, &labels),
                    count,
                    policy: match block.on_duplicate {
                        OnDuplicate::First => "the first one is kept",
                        OnDuplicate::Last => "the last one is kept",
                        OnDuplicate::Sum => "their values are summed",
                        OnDuplicate::Min => "the least value is kept",
                        OnDuplicate::Max => "the greatest value is kept",
                        OnDuplicate::Count => "the value is how many there are",
                        OnDuplicate::Error => "on_duplicate: error fails the poll",
                    },
                };
                if block.on_duplicate == OnDuplicate::Error {
                    return Err(ExtractError {
                        metric: output.name.clone(),
                        error: err,
                    });
                }
                problems.insert((k, err.kind()), (dups.dropped, err.to_string()));
            }
            let before = out.families.len();
            let report = out.reports.len();
            out.reports.push(MetricReport {
                metric: output.name.clone(),
                items,
                series: s.len(),
            });
            match &block.name {
                None => out.families.push(FamilySamples {
                    family: output.family.clone(),
                    dynamic: None,
                    label_names,
                    series: s,
                }),
                Some(name) => {
                    for (family, refused) in by_name(name, s, &label_names, &mut out.families) {
                        note_refused(&mut problems, k, &family, refused);
                    }
                    // What is served: the series of the names taken.
                    out.reports[report].series =
                        out.families[before..].iter().map(|f| f.series.len()).sum();
                }
            }
        }
        out.problems.extend(
            problems
                .into_iter()
                .map(|((k, kind), (count, example))| Problem {
                    metric: block.outputs[k].name.clone(),
                    kind,
                    count,
                    example,
                }),
        );
        Ok(())
    }
}

pub(super) fn output_label_names(block: &MetricSpec, output: &Output) -> Arc<[String]> {
    match &output.kind {
        OutputKind::StateSet { label, .. } => {
            let mut names = block.label_names.to_vec();
            names.push(label.clone());
            names.into()
        }
        _ => block.label_names.clone(),
    }
}

pub(super) fn describe_item(names: &[String], caps: &[Bound<'_>], ordinal: usize) -> String {
    if names.is_empty() {
        return format!("item #{ordinal}");
    }
    let caps: Vec<String> = names
        .iter()
        .zip(caps)
        .map(|(n, b)| format!("{n}={:?}", b.key))
        .collect();
    format!("item #{ordinal} ({})", caps.join(", "))
}

/// Splits the series of a block with a name from the data by that name (their last label
/// value, removed here) into families; gives the names refused, with the series they had.
fn by_name(
    name: &DynamicName,
    mut series: Vec<Series>,
    label_names: &Arc<[String]>,
    out: &mut Vec<FamilySamples>,
) -> Vec<(String, (String, u64))> {
    // Stable: within one name the series keep their label order.
    series.sort_by(|a, b| last(&a.labels).cmp(last(&b.labels)));
    let mut refused = Vec::new();
    let mut rest = series.into_iter().peekable();
    while let Some(first) = rest.next() {
        let written = last(&first.labels).to_string();
        let mut group = vec![first];
        while let Some(s) = rest.next_if(|s| last(&s.labels) == written) {
            group.push(s);
        }
        // As for a configured name: a counter's `_total` is the encoder's to add.
        let family = match name.family.kind {
            MetricKind::Counter => written.strip_suffix("_total").unwrap_or(&written),
            _ => &written,
        }
        .to_string();
        if let Some(why) = name.refuse(&family) {
            refused.push((written, (why, group.len() as u64)));
            continue;
        }
        let width = label_names.len();
        out.push(FamilySamples {
            family,
            dynamic: Some(name.family.clone()),
            label_names: label_names.clone(),
            series: group
                .into_iter()
                .map(|s| Series {
                    labels: s.labels.iter().take(width).collect(),
                    ..s
                })
                .collect(),
        });
    }
    refused
}

/// The name a series of a dynamic block carries as its last label value.
fn last(labels: &Labels) -> &str {
    labels.iter().last().unwrap_or("")
}

fn note_refused(problems: &mut Problems, output: usize, family: &str, refused: (String, u64)) {
    let (why, count) = refused;
    let err = ItemError::NameInvalid {
        name: truncate_quoted(family),
        reason: why,
    };
    let e = problems
        .entry((output, err.kind()))
        .or_insert((0, String::new()));
    if e.0 == 0 {
        e.1 = err.to_string();
    }
    e.0 += count;
}
