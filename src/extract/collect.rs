//! Items found by a descendant search at the end of `each` (`$.apps..energy_consumed`), for
//! sources read as a pruned tree (inside `extract`: [`super::stream`] keeps them, the block
//! walk builds them).
//!
//! Built into the tree, every member such a search finds would cost many times its text (a
//! `serde_json::Value` is 72 bytes, a number in the body about nine). Instead the parse keeps
//! where each lies in the body and leaves a placeholder in the tree, and extraction builds
//! them one at a time, in the order the search gives (an object's own member before those of
//! its descendants, RFC 9535), which is not document order.
//!
//! Guarantee: the same extraction as from the tree. Wherever the parse cannot show that
//! nothing else reads those members (another lookup or rule reaches them, a subtree read
//! whole holds them, a member found may hold another one), the collector is spoiled and the
//! document is read as the plain pruned tree.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};

use serde::de;
use serde_json::Value;

use super::plan::ReadPlan;
use super::selector::{descendants_named, walk};
use super::spec::{Item, MetricSpec};
use super::{BlockRun, DocRoot, Extraction, ReadError, stream, value_error};

/// Where the members found lie in the body, gathered while it is parsed.
pub(crate) struct Collector {
    /// The address of the body's first byte: what is kept is a slice of it.
    base: usize,
    /// The names the collecting blocks search for.
    names: Vec<String>,
    /// (offset, length) of each member kept, by placeholder number.
    found: RefCell<Vec<(usize, usize)>>,
    spoiled: Cell<bool>,
}

impl Collector {
    /// A collector for `plan`'s collecting blocks over `text`; `None` if it has none.
    pub(crate) fn new(text: &str, plan: &ReadPlan) -> Option<Self> {
        let names: Vec<String> = plan
            .collects
            .iter()
            .flatten()
            .map(|c| c.name.clone())
            .collect();
        (!names.is_empty()).then(|| Self {
            base: text.as_ptr() as usize,
            names,
            found: RefCell::new(Vec::new()),
            spoiled: Cell::new(false),
        })
    }

    /// Whether a collecting block searches for members called `key`.
    pub(crate) fn names(&self, key: &str) -> bool {
        self.names.iter().any(|n| n == key)
    }

    /// Marks the parse as one whose members cannot be kept; the error stops it.
    pub(crate) fn spoil<E: de::Error>(&self) -> E {
        self.spoiled.set(true);
        E::custom("members found by a descendant search are read as a tree")
    }

    pub(crate) fn is_spoiled(&self) -> bool {
        self.spoiled.get()
    }

    /// Keeps `text` (a member's value, a slice of the body), found while the searches for
    /// `searched` were in force, and gives its placeholder. A value that may hold a member
    /// one of them finds spoils the parse: the searches would have to look inside it, in
    /// their order.
    pub(crate) fn keep<'s, E: de::Error>(
        &self,
        text: &str,
        searched: impl Iterator<Item = &'s str>,
    ) -> Result<Value, E> {
        if may_hold(text, searched) {
            return Err(self.spoil());
        }
        let mut found = self.found.borrow_mut();
        found.push((text.as_ptr() as usize - self.base, text.len()));
        Ok(Value::from(found.len() - 1))
    }

    /// Checks a subtree read whole (`text`) where `searched` are in force: if it may hold a
    /// member a collecting block searches for, the tree would show it, not a placeholder.
    pub(crate) fn check_whole<'s, E: de::Error>(
        &self,
        text: &str,
        searched: impl Iterator<Item = &'s str>,
    ) -> Result<(), E> {
        match may_hold(text, searched.filter(|n| self.names(n))) {
            true => Err(self.spoil()),
            false => Ok(()),
        }
    }

    pub(crate) fn into_found(self) -> Vec<(usize, usize)> {
        self.found.into_inner()
    }
}

/// Whether the JSON value `text` may hold a member called one of `names`: it is an object or
/// an array, and holds one of them quoted, or any escape (a name can be written with one).
fn may_hold<'s>(text: &str, mut names: impl Iterator<Item = &'s str>) -> bool {
    matches!(text.as_bytes().first(), Some(b'{' | b'['))
        && (text.contains('\\')
            || names.any(|name| {
                let quoted = serde_json::to_string(name).unwrap_or_default();
                text.contains(quoted.as_str())
            }))
}

/// Runs every block over `doc` as [`super::extract`] does, building the items of collecting
/// blocks from the slices of `body` that `found` lists (by placeholder number).
pub(crate) fn extract(
    body: &str,
    doc: &Value,
    blocks: &[MetricSpec],
    plan: &ReadPlan,
    found: &[(usize, usize)],
) -> Result<Extraction, ReadError> {
    let mut out = Extraction::default();
    let root = DocRoot {
        tree: doc,
        folds: None,
    };
    for (b, block) in blocks.iter().enumerate() {
        let mut run = BlockRun::new(block);
        let Some(c) = plan.collects.get(b).and_then(Option::as_ref) else {
            block.each.for_each(doc, &mut |item, caps| {
                run.item(Item::Node(item), root, caps)
            });
            run.finish(&mut out)?;
            continue;
        };
        let mut failed = None;
        let (mut starts, mut members) = (Vec::new(), Vec::new());
        block.each.for_each_bound(doc, &mut |node, caps| {
            if failed.is_some() {
                return;
            }
            starts.clear();
            walk(&c.before, node, &mut starts);
            members.clear();
            for s in &starts {
                descendants_named(s, &c.name, &mut members);
            }
            for m in &members {
                // Every member the search finds is a placeholder (else the collector was
                // spoiled); one that is not would be a built member, and is read as such.
                let placeholder = m.as_u64().and_then(|i| found.get(i as usize));
                debug_assert!(placeholder.is_some(), "a member found is a placeholder");
                let built = match placeholder {
                    Some((start, len)) => {
                        let text = &body[*start..start + len];
                        match stream::parse_need(text, &c.need) {
                            Ok(v) => Cow::Owned(v),
                            Err(e) => {
                                failed = Some(value_error(body, text, e));
                                return;
                            }
                        }
                    }
                    None => Cow::Borrowed(*m),
                };
                let mut items = Vec::new();
                walk(&c.after, &built, &mut items);
                for item in items {
                    run.item(Item::Node(item), root, caps);
                }
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        run.finish(&mut out)?;
    }
    Ok(out)
}
