//! Label values: templates rendered from an item, its captures and the root.

use serde_json::Value;

use super::body::DocRoot;
use super::error::ItemError;
use super::labels::{Labels, LabelsBuilder};
use super::selector::Selected;
use super::spec::{Bound, Item, MetricSpec, Part, Template};
use super::values::describe_value;

pub(super) fn render_labels(names: &[String], values: &Labels) -> String {
    names
        .iter()
        .zip(values.iter())
        .map(|(n, v)| format!("{n}={v:?}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[inline]
pub(super) fn labels_of(
    block: &MetricSpec,
    root: DocRoot<'_>,
    item: Item<'_>,
    caps: &[Bound<'_>],
    b: &mut LabelsBuilder,
) -> Result<Labels, ItemError> {
    for (t, name) in block.labels.iter().zip(block.label_names.iter()) {
        if let Err(e) = render(t, name, root, item, caps, b.value()) {
            b.clear();
            return Err(e);
        }
        b.commit();
    }
    Ok(b.finish())
}

#[inline]
pub(super) fn render(
    t: &Template,
    label: &str,
    root: DocRoot<'_>,
    item: Item<'_>,
    caps: &[Bound<'_>],
    out: &mut String,
) -> Result<(), ItemError> {
    for part in &t.parts {
        match part {
            Part::Literal(s) => out.push_str(s),
            Part::Capture(i) => out.push_str(&caps[*i].key),
            Part::Lookup(l) => match l.select(item, root.tree, caps) {
                Selected::One(v) => match v {
                    Value::String(s) => out.push_str(s),
                    Value::Number(n) => {
                        use std::fmt::Write;
                        // Written in place: a numeric label (a port, an id) is common enough
                        // not to allocate a string per item for it.
                        let _ = write!(out, "{n}");
                    }
                    Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
                    Value::Null => {
                        return Err(ItemError::LabelMissing {
                            label: label.into(),
                            path: format!("{} (null)", l.display()),
                        });
                    }
                    other => {
                        return Err(ItemError::LabelNotScalar {
                            label: label.into(),
                            path: l.display().into(),
                            found: describe_value(other),
                        });
                    }
                },
                Selected::None => {
                    return Err(ItemError::LabelMissing {
                        label: label.into(),
                        path: l.display().into(),
                    });
                }
                Selected::Many(count) => {
                    return Err(ItemError::LabelAmbiguous {
                        label: label.into(),
                        path: l.display().into(),
                        count,
                    });
                }
            },
        }
    }
    Ok(())
}
