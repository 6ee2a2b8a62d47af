//! Label values: templates rendered from an item, its captures and the root.

use serde_json::Value;

use super::body::DocRoot;
use super::error::ItemError;
use super::filters::{Absence, Filters, Piece, number_text};
use super::labels::{Labels, LabelsBuilder};
use super::selector::Selected;
use super::spec::{Bound, Item, Lookup, MetricSpec, Part, Template};
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
    if let Some(n) = &block.name {
        if let Err(e) = render(&n.template, "__name__", root, item, caps, b.value()) {
            b.clear();
            return Err(e);
        }
        b.commit();
    }
    Ok(b.finish())
}

/// A template rendered from a node of a parsed document (a fan-out list's item), outside
/// any block: `escape` rewrites what each placeholder gives (percent-encoding for a URL),
/// literal text is kept as written. `what` names it in errors.
pub fn render_node(
    t: &Template,
    what: &str,
    item: &Value,
    doc: &Value,
    caps: &[Bound<'_>],
    escape: Option<fn(&str, &mut String)>,
) -> Result<String, ItemError> {
    let root = DocRoot {
        tree: doc,
        folds: None,
        parent: &[],
    };
    let mut out = String::new();
    let mut piece = String::new();
    for part in &t.parts {
        match (part, escape) {
            (Part::Literal(s), _) => out.push_str(s),
            (_, None) => render_part(part, what, root, Item::Node(item), caps, &mut out)?,
            (_, Some(escape)) => {
                piece.clear();
                render_part(part, what, root, Item::Node(item), caps, &mut piece)?;
                escape(&piece, &mut out);
            }
        }
    }
    Ok(out)
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
        render_part(part, label, root, item, caps, out)?;
    }
    Ok(())
}

#[inline]
fn render_part(
    part: &Part,
    label: &str,
    root: DocRoot<'_>,
    item: Item<'_>,
    caps: &[Bound<'_>],
    out: &mut String,
) -> Result<(), ItemError> {
    match part {
        Part::Literal(s) => out.push_str(s),
        Part::Parent(i) => out.push_str(root.parent.get(*i).map_or("", String::as_str)),
        Part::Capture(i, f) if f.is_empty() => out.push_str(&caps[*i].key),
        Part::Capture(i, f) => {
            let piece = Piece::Text(std::borrow::Cow::Borrowed(caps[*i].key.as_ref()));
            let what = || format!("{{{}}}", caps[*i].key);
            filtered(f, piece, label, &what, out)?;
        }
        Part::Lookup(l, f) if !f.is_empty() => {
            let piece = match scalar(l, label, l.select(item, root.tree, caps))? {
                Some(Value::String(s)) => Piece::Text(s.as_str().into()),
                Some(Value::Number(n)) => Piece::Text(n.to_string().into()),
                Some(Value::Bool(b)) => Piece::Text(if *b { "true" } else { "false" }.into()),
                Some(_) => Piece::Absent(Absence::Null),
                None => Piece::Absent(Absence::Missing),
            };
            filtered(f, piece, label, &|| l.display().to_string(), out)?;
        }
        Part::Lookup(l, _) => match scalar(l, label, l.select(item, root.tree, caps))? {
            Some(Value::String(s)) => out.push_str(s),
            Some(Value::Number(n)) => {
                use std::fmt::Write;
                // Written in place: a numeric label (a port, an id) is common enough not to
                // allocate a string per item for it.
                let _ = write!(out, "{n}");
            }
            Some(Value::Bool(b)) => out.push_str(if *b { "true" } else { "false" }),
            Some(_) => return Err(absent(label, l.display().into(), Absence::Null)),
            None => return Err(absent(label, l.display().into(), Absence::Missing)),
        },
    }
    Ok(())
}

/// What a label's lookup found: a scalar or `null` (`Some`), nothing (`None`), or an error
/// for an object, an array or several nodes.
#[inline]
fn scalar<'a>(
    l: &Lookup,
    label: &str,
    found: Selected<'a>,
) -> Result<Option<&'a Value>, ItemError> {
    match found {
        Selected::None => Ok(None),
        Selected::One(v @ (Value::Array(_) | Value::Object(_))) => Err(ItemError::LabelNotScalar {
            label: label.into(),
            path: l.display().into(),
            found: describe_value(v),
        }),
        Selected::One(v) => Ok(Some(v)),
        Selected::Many(count) => Err(ItemError::LabelAmbiguous {
            label: label.into(),
            path: l.display().into(),
            count,
        }),
    }
}

/// Why a label with nothing to show skips the item.
fn absent(label: &str, path: String, a: Absence) -> ItemError {
    match a {
        Absence::Missing => ItemError::LabelMissing {
            label: label.into(),
            path,
        },
        Absence::Null => ItemError::LabelMissing {
            label: label.into(),
            path: format!("{path} (null)"),
        },
        Absence::NoMatch { pattern, found } => ItemError::NoMatch {
            at: format!("label {label}"),
            pattern,
            found,
        },
    }
}

/// A part with filters: the piece through them, then written, or why the item is skipped.
fn filtered(
    f: &Filters,
    piece: Piece<'_>,
    label: &str,
    path: &dyn Fn() -> String,
    out: &mut String,
) -> Result<(), ItemError> {
    match f.apply(piece) {
        Ok(Piece::Text(t)) => out.push_str(&t),
        Ok(Piece::Number(n)) => out.push_str(&number_text(n)),
        Ok(Piece::Absent(a)) => return Err(absent(label, path(), a)),
        Err(e) => return Err(ItemError::filter(format!("label {label}:"), path(), e)),
    }
    Ok(())
}
