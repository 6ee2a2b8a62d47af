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

use serde_json::Value;

use super::block::BlockRun;
use super::body::DocRoot;
use super::error::{ReadError, value_error};
use super::plan::ReadPlan;
use super::selector::{descendants_named, walk};
use super::spec::{Item, MetricSpec};
use crate::read::tree;

/// Runs every block over `doc` as [`super::extract`] does, building the items of collecting
/// blocks from the slices of `body` that `found` lists (by placeholder number).
pub(crate) fn runs<'b>(
    body: &str,
    doc: &Value,
    blocks: &'b [MetricSpec],
    plan: &ReadPlan,
    found: &[(usize, usize)],
    parent: &[String],
) -> Result<Vec<BlockRun<'b>>, ReadError> {
    let mut out = Vec::with_capacity(blocks.len());
    let root = DocRoot {
        tree: doc,
        folds: None,
        parent,
    };
    for (b, block) in blocks.iter().enumerate() {
        let mut run = BlockRun::new(block);
        let Some(c) = plan.collects.get(b).and_then(Option::as_ref) else {
            block.each.for_each(doc, &mut |item, caps| {
                run.item(Item::Node(item), root, caps)
            });
            out.push(run);
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
                        match tree::parse(text, &c.need) {
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
        out.push(run);
    }
    Ok(out)
}
