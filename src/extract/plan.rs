//! What the metric blocks of a source read from a document, worked out once from the
//! compiled specs, so that `crate::read` builds only those parts.
//!
//! A `Need` mirrors the document: which members and elements lead to something a block
//! reads, and where whole subtrees are needed (the end of every lookup, and wherever a path
//! turns into something the plan cannot follow: a slice, a union, a filter that reads the
//! root). Everything else is skipped by the parser without being built: on the energy API's
//! shape that is most of the document. Every step of a path is followed (wildcards as
//! `any`), an array read only by index keeps only the ends it needs, a filter keeps of each
//! candidate what it reads, and a descendant search by name is a rule (`Need::deep`) that
//! keeps only the way to the members it finds. Trees so built stay within a few times the
//! body (BENCHMARKS.md, "Memory per reader path").
//!
//! When every block reads only its item, the keys of its captures and the root, the plan is
//! *streamed*: items are handed to extraction as the parser reaches them, so no document tree
//! exists; an `each` that ends with a filter on the candidate streams too, each candidate
//! tried against the filter (`ReadPlan::lets_through`). What lookups from the root (`$.x`)
//! read may come later in the document than the items, so it is built by a first, pruned
//! pass, in which aggregates from the root are folded instead of built (`extract::fold`). A
//! lookup from a captured node (`pod.x`) reads around the items themselves, and other
//! filters or descendant searches in `each` need more than one item at a time: such sources
//! get a pruned tree instead, then the usual walk. The items of an `each` that ends with a
//! descendant search nothing else reads are kept out of that tree as text and built one at
//! a time (`Collect`, `extract::collect`).

use std::sync::Arc;

use super::selector::{Deep, FilterReads, Selector};
use super::spec::{Aggregate, Binding, Lookup, MetricSpec, Part, Scope, ValueSpec};
use crate::read::{Need, SlotRef, Step};

/// An item read without building it: only the nodes its blocks' lookups lead to are built,
/// each into a slot, as the parser meets them. Used where every lookup of the blocks there is
/// made of names, indexes and wildcards, and no other block's items lie below.
#[derive(Debug, Clone)]
pub struct Slotted {
    /// The blocks whose items these are.
    pub(crate) items: Vec<usize>,
    /// Per block of `items`, in that order: the bindings of its lookups, by lookup id.
    pub(crate) bindings: Vec<Vec<Binding>>,
}

/// How a source's documents are read: what to build, and whether items are streamed.
#[derive(Debug, Clone)]
pub struct ReadPlan {
    pub(crate) root: Need,
    /// Streamed plans whose blocks also look up from the root (`$.x`): what a first pass
    /// builds of the document for those lookups, before items are streamed.
    pub(crate) first: Option<Need>,
    pub(crate) streamed: bool,
    /// The slotted item nodes (see [`SlotRef`]).
    pub(crate) slotted: Vec<Slotted>,
    /// Streamed plans: per block, the depth of each capture's key in the item's path.
    pub(crate) capture_depths: Vec<Vec<usize>>,
    /// Items can be found by [`super::scan`] and read on several threads.
    pub(crate) scanned: bool,
    /// Aggregates from the root folded by the first pass (see [`super::fold`]), by id.
    pub(crate) folds: Vec<Aggregate>,
    /// `first` without folds: read when a member repeated on the way to folded nodes makes
    /// the folding pass give up.
    pub(crate) first_plain: Option<Need>,
    /// Per block of a streamed plan whose `each` ends with a filter: the filter, which each
    /// candidate streamed is tried against.
    pub(crate) item_filters: Vec<Option<Selector>>,
    /// Per block of a pruned-tree plan whose `each` ends with a descendant search that
    /// nothing else reads: how its items are kept as text and built one at a time.
    pub(crate) collects: Vec<Option<Collect>>,
    /// The names `collects` search for.
    collect_names: Arc<[String]>,
}

/// The items of an `each` ending with a descendant search by name (`$.apps..pods[*]`),
/// found as the parse goes and kept as text until extraction builds them one at a time:
/// a tree of them all would cost many times the body (a `serde_json::Value` is 72 bytes,
/// a number in the text about nine).
#[derive(Debug, Clone)]
pub(crate) struct Collect {
    /// The member name searched for.
    pub(crate) name: String,
    /// The steps from the last capture (or the root) to where the search starts.
    pub(crate) before: Vec<Step>,
    /// The steps from each member found to the items.
    pub(crate) after: Vec<Step>,
    /// What the block reads of each member found (the rule's need, without `collect`).
    pub(crate) need: Need,
}

/// Every lookup of a block: labels, values, timestamp.
fn lookups(block: &MetricSpec) -> impl Iterator<Item = &Lookup> {
    lookups_with_aggregates(block).map(|(l, _)| l)
}

/// [`lookups`], each with the aggregate its value is computed with, if any.
fn lookups_with_aggregates(
    block: &MetricSpec,
) -> impl Iterator<Item = (&Lookup, Option<Aggregate>)> {
    let labels = block
        .labels
        .iter()
        .chain(block.name.iter().map(|n| &n.template))
        .flat_map(|t| {
            t.parts.iter().filter_map(|p| match p {
                Part::Lookup(l, _) => Some((l, None)),
                _ => None,
            })
        });
    let values = block.outputs.iter().filter_map(|o| match &o.value {
        ValueSpec::Constant(_) => None,
        ValueSpec::Lookup(l) => Some((l, None)),
        ValueSpec::Aggregate(a, l) => Some((l, Some(*a))),
    });
    labels
        .chain(values)
        .chain(block.timestamp.iter().map(|t| (&t.lookup, None)))
}

/// Where a block's items are: the steps from the root, the depth of each capture's key,
/// whether the whole path is made of steps (no filter or the like), and for an `each` whose
/// last part has a filter the plan can follow (see [`Selector::filtered`]), the depth of the
/// candidates the filter runs on and what it reads of them.
struct ItemPath {
    path: Vec<Step>,
    depths: Vec<usize>,
    exact: bool,
    filtered: Option<(usize, FilterReads)>,
    /// The last part of `each` is a descendant search by name (`$.apps..pods[*]`): `path`
    /// ends where it starts; the items are what its rule reaches.
    deep: Option<Deep>,
    /// `each` ends with a filter the plan can follow (`$.pods[?@.phase == 'Running']`):
    /// the filter alone. A streamed plan then streams every candidate and keeps those it
    /// lets through, one at a time, instead of building them all first.
    test: Option<Selector>,
}

fn item_path(block: &MetricSpec) -> ItemPath {
    let mut path = Vec::new();
    let mut depths = Vec::new();
    let fragments = block.each.fragments();
    for (k, fragment) in fragments.iter().enumerate() {
        let (steps, exact) = fragment.steps();
        if !exact {
            let filtered = (k + 1 == fragments.len())
                .then(|| fragment.filtered())
                .flatten()
                .map(|f| {
                    path.extend(f.before);
                    let at = path.len();
                    path.push(Step::Wildcard);
                    let last = f.after.is_empty();
                    path.extend(f.after);
                    (at, f.reads, last.then_some(f.test))
                });
            let (filtered, test) = match filtered {
                Some((at, reads, test)) => (Some((at, reads)), test),
                None => (None, None),
            };
            let deep = (filtered.is_none() && k + 1 == fragments.len())
                .then(|| fragment.deep())
                .flatten();
            if filtered.is_none() {
                path.extend_from_slice(steps);
            }
            return ItemPath {
                path,
                depths,
                exact: false,
                filtered,
                deep,
                test,
            };
        }
        path.extend_from_slice(steps);
        if k + 1 < fragments.len() {
            depths.push(path.len());
            path.push(Step::Wildcard);
        }
    }
    ItemPath {
        path,
        depths,
        exact: true,
        filtered: None,
        deep: None,
        test: None,
    }
}

/// The same lookups as [`lookups`], in the same order, to number them.
fn lookups_mut(block: &mut MetricSpec) -> impl Iterator<Item = &mut Lookup> {
    let labels = block
        .labels
        .iter_mut()
        .chain(block.name.iter_mut().map(|n| &mut n.template))
        .flat_map(|t| {
            t.parts.iter_mut().filter_map(|p| match p {
                Part::Lookup(l, _) => Some(l),
                _ => None,
            })
        });
    let values = block.outputs.iter_mut().filter_map(|o| match &mut o.value {
        ValueSpec::Constant(_) => None,
        ValueSpec::Lookup(l) | ValueSpec::Aggregate(_, l) => Some(l),
    });
    labels
        .chain(values)
        .chain(block.timestamp.iter_mut().map(|t| &mut t.lookup))
}

impl ReadPlan {
    /// Works out what `blocks` read. Numbers their lookups, which the plan refers to.
    pub fn new(blocks: &mut [MetricSpec]) -> Self {
        for block in blocks.iter_mut() {
            for (id, l) in lookups_mut(block).enumerate() {
                l.id = id;
                l.fold = None;
            }
        }
        let (plan, folded) = Self::build(blocks);
        for (b, block) in blocks.iter_mut().enumerate() {
            for l in lookups_mut(block) {
                l.fold = folded
                    .iter()
                    .find(|(fb, fl, _)| *fb == b && *fl == l.id)
                    .map(|(_, _, id)| *id);
            }
        }
        plan
    }

    /// The plan, and the folded lookups as (block, lookup id, fold id).
    fn build(blocks: &[MetricSpec]) -> (Self, Vec<(usize, usize, usize)>) {
        let mut folds: Vec<Aggregate> = Vec::new();
        let mut folded: Vec<(usize, usize, usize, Vec<Step>)> = Vec::new();
        let paths: Vec<_> = blocks.iter().map(item_path).collect();
        let streamed = blocks.iter().zip(&paths).all(|(b, p)| {
            (p.exact || p.test.is_some())
                && lookups(b).all(|l| matches!(l.scope, Scope::Item | Scope::Root))
        });
        // Streamed: each candidate of such a block is tried against its filter as it comes.
        let item_filters: Vec<Option<Selector>> = paths
            .iter()
            .map(|p| p.test.clone().filter(|_| streamed))
            .collect();
        let mut root = Need::default();
        // Streamed plans read what lookups from the root need in a first pass.
        let mut first = Need::default();
        for (b, (block, p)) in blocks.iter().zip(&paths).enumerate() {
            let ItemPath {
                path,
                depths,
                exact,
                filtered,
                deep,
                test: _,
            } = p;
            // A descendant search in `each`: the items and what their lookups read are the
            // need of its rule, below the match (pushed once the lookups are in).
            let mut rule = deep.as_ref().map(|d| {
                let mut r = Need::default();
                r.at(&d.after).all |= !d.after_exact;
                r.collect = d.after_exact.then_some(b);
                r
            });
            match filtered {
                // A filter the plan can follow reads its paths of every candidate; the items
                // it lets through are read by their lookups below, as exact items are.
                Some((at, reads)) => {
                    for (read, value) in reads {
                        let node = root.at(&path[..=*at]).at(read);
                        node.all |= *value;
                    }
                    let item = root.at(path);
                    if item_filters[b].is_some() {
                        item.items.push(b);
                    }
                }
                // Any other filter or the like runs on the whole subtree where the steps end.
                None if deep.is_some() => {}
                None if !exact => root.at(path).all = true,
                None if streamed => root.at(path).items.push(b),
                None => {
                    root.at(path);
                }
            }
            let exact = *exact || filtered.is_some();
            for (l, aggregate) in lookups_with_aggregates(block) {
                let (steps, whole_path) = l.selector.steps();
                let base: Vec<Step> = match (l.scope, deep) {
                    (Scope::Root, _) => Vec::new(),
                    // Inside the descendant search's rule, from the node it finds.
                    (Scope::Item, Some(d)) if d.after_exact => d.after.clone(),
                    (Scope::Item, _) if exact => path.clone(),
                    (Scope::Capture(i), _) if i < depths.len() => path[..=depths[i]].to_vec(),
                    // Under a filter: inside the subtree read whole anyway.
                    (Scope::Item | Scope::Capture(_), _) => continue,
                };
                let mut full = base;
                let tree = match (&mut rule, l.scope) {
                    (Some(r), Scope::Item) => r,
                    _ if streamed && l.scope == Scope::Root => &mut first,
                    _ => &mut root,
                };
                if streamed && l.scope == Scope::Item {
                    // Up to the first wildcard: what is below is read whole, since the
                    // lookup's nodes are then many (an aggregate) and one slot holds them all
                    // (an item at a time, so the tree is as large as one item).
                    full.extend(steps.iter().take_while(|s| **s != Step::Wildcard).cloned());
                    tree.at(&full).all = true;
                    continue;
                }
                // Anywhere else the tree may span the whole document: follow every step,
                // wildcards too, so that only the nodes the lookup reaches are built.
                full.extend(steps.iter().cloned());
                let node = tree.at(&full);
                match (aggregate, l.selector.deep()) {
                    // A descendant search by name: a rule from here down (see `Need::deep`),
                    // with what the rest of the path reads at each node it finds.
                    (a, Some(d)) if !whole_path => {
                        let mut rule = Need::default();
                        let found = rule.at(&d.after);
                        match a {
                            _ if !d.after_exact => found.all = true,
                            Some(Aggregate::Count) => found.present = true,
                            Some(Aggregate::Length) => {
                                found.any.get_or_insert_with(Default::default).present = true;
                            }
                            _ => found.all = true,
                        }
                        match node.deep.iter_mut().find(|(k, _)| *k == d.name) {
                            Some((_, mine)) => mine.merge(&rule),
                            None => node.deep.push((d.name, rule)),
                        }
                    }
                    // The rest of the path needs the subtree where the steps end.
                    _ if !whole_path => node.all = true,
                    // An aggregate from the root of a streamed plan is folded while the
                    // first pass parses (unless `finish` finds that it cannot be).
                    (Some(a), _)
                        if streamed && l.scope == Scope::Root && a != Aggregate::Length =>
                    {
                        let id = folds.len();
                        folds.push(a);
                        node.folds.push(id);
                        folded.push((b, l.id, id, full));
                    }
                    // Counting needs the nodes to be there, not what they hold: an object
                    // or array is built empty.
                    (Some(Aggregate::Count), _) => node.present = true,
                    // A length needs the members or elements to be there (a string is built
                    // as it is).
                    (Some(Aggregate::Length), _) => {
                        node.any.get_or_insert_with(Default::default).present = true;
                    }
                    // The node found is read whole: a number to add up, an object to
                    // describe in an error, a string, a number.
                    _ => node.all = true,
                }
            }
            if let (Some(r), Some(d)) = (rule, deep) {
                let node = root.at(path);
                match node.deep.iter_mut().find(|(k, _)| *k == d.name) {
                    Some((_, mine)) => mine.merge(&r),
                    None => node.deep.push((d.name.clone(), r)),
                }
            }
        }
        root.finish();
        first.finish();
        // A block collects its items if its rule is still its own after every merge.
        let collects: Vec<Option<Collect>> = paths
            .iter()
            .enumerate()
            .map(|(b, p)| {
                let d = p.deep.as_ref().filter(|d| d.after_exact)?;
                let (_, rule) = root.get(&p.path)?.deep.iter().find(|(k, _)| *k == d.name)?;
                (rule.collect == Some(b)).then(|| Collect {
                    name: d.name.clone(),
                    before: d.before.clone(),
                    after: d.after.clone(),
                    need: Need {
                        collect: None,
                        ..rule.clone()
                    },
                })
            })
            .collect();
        // A fold below a node read whole would never be met: computed from the tree instead.
        // A descendant search can make any member it names read whole as the parse goes, so
        // beside one no fold is made.
        let deep = first.has_deep();
        folded.retain(|(_, _, id, path)| {
            let whole = deep || first.whole_on_the_way(path);
            if whole {
                first.drop_fold(*id);
            }
            !whole
        });
        first.mark_folds();
        let first_plain = (!folded.is_empty()).then(|| without_folds(&first, &folds));
        let first = (!first.is_empty()).then_some(first);
        let mut slotted = Vec::new();
        if streamed {
            slot_items(&mut root, blocks, &item_filters, &mut slotted);
        }
        let capture_depths = if streamed {
            paths.into_iter().map(|p| p.depths).collect()
        } else {
            Vec::new()
        };
        let mut plan = Self {
            root,
            first,
            streamed,
            slotted,
            capture_depths,
            scanned: false,
            folds,
            first_plain,
            item_filters,
            collect_names: collects.iter().flatten().map(|c| c.name.clone()).collect(),
            collects,
        };
        plan.scanned = plan.is_slotted() && crate::read::scan::scannable(&plan.root);
        let folded = folded.into_iter().map(|(b, l, id, _)| (b, l, id)).collect();
        (plan, folded)
    }

    /// The member names the collecting blocks search for (see [`Collect`]), made once with
    /// the plan: every poll's collector shares them.
    pub(crate) fn collect_names(&self) -> Arc<[String]> {
        self.collect_names.clone()
    }

    /// Whether a candidate streamed for block `b` is one of its items (see `item_filters`).
    pub(crate) fn lets_through(&self, b: usize, candidate: &serde_json::Value) -> bool {
        match self.item_filters.get(b) {
            Some(Some(test)) => test.keeps(candidate),
            _ => true,
        }
    }

    /// Whether items reach extraction while the document is parsed (no tree is built).
    pub fn is_streamed(&self) -> bool {
        self.streamed
    }

    /// Every item is read into slots (nothing is built but the nodes lookups lead to).
    pub fn is_slotted(&self) -> bool {
        fn all_slotted(n: &Need) -> bool {
            (n.items.is_empty() || n.slotted.is_some())
                && (n.slotted.is_some() || n.children().all(all_slotted))
        }
        self.streamed && all_slotted(&self.root)
    }

    /// Items are found by a scan (counting brackets, not parsing), then parsed and extracted
    /// on every core when the body is large.
    pub fn is_scanned(&self) -> bool {
        self.scanned
    }

    /// How documents are read, in a few words (for `check` and the status page).
    pub fn describe(&self) -> &'static str {
        match (self.streamed, self.is_slotted(), self.first.is_some()) {
            (false, _, _) if self.collects.iter().any(Option::is_some) => {
                "pruned tree, items of a descendant search built one at a time"
            }
            (false, _, _) => "pruned tree",
            (true, true, false) => "streamed, items read into slots",
            (true, false, false) => "streamed, items built",
            (true, true, true) => "root lookups first, then streamed, items read into slots",
            (true, false, true) => "root lookups first, then streamed, items built",
        }
    }
}

/// The same needs with every fold turned into what the tree needs for it: a node to
/// count, or a value read whole.
fn without_folds(need: &Need, kinds: &[Aggregate]) -> Need {
    let mut n = need.clone();
    fn unfold(n: &mut Need, kinds: &[Aggregate]) {
        for f in std::mem::take(&mut n.folds) {
            match kinds[f] {
                Aggregate::Count => n.present = true,
                _ => n.all = true,
            }
        }
        n.has_folds = false;
        n.fold_only = false;
        n.children_mut().for_each(|c| unfold(c, kinds));
    }
    unfold(&mut n, kinds);
    n
}

/// Makes item nodes slotted where they can be (see [`Slotted`]), all the way down.
fn slot_items(
    node: &mut Need,
    blocks: &[MetricSpec],
    filters: &[Option<Selector>],
    out: &mut Vec<Slotted>,
) {
    let below = node.children().any(|c| c.has_items);
    if !node.items.is_empty() && !below {
        let exact = node.items.iter().all(|b| {
            // Lookups from the root are read before (see `ReadPlan::first`); a filter
            // is tried on the candidate built as a tree.
            filters[*b].is_none()
                && lookups(&blocks[*b]).all(|l| l.scope != Scope::Item || l.selector.steps().1)
        });
        if exact {
            let mut count = 0;
            node.assign_slots(&mut count);
            let bindings = node
                .items
                .iter()
                .map(|b| {
                    lookups(&blocks[*b])
                        .map(|l| match l.scope {
                            Scope::Item => binding(node, l),
                            // Not read from slots: a placeholder keeps ids as indexes.
                            _ => Binding {
                                slot: 0,
                                rest: Selector::root(),
                            },
                        })
                        .collect()
                })
                .collect();
            node.slotted = Some(SlotRef {
                id: out.len(),
                count,
            });
            out.push(Slotted {
                items: node.items.clone(),
                bindings,
            });
            return;
        }
    }
    node.children_mut()
        .for_each(|c| slot_items(c, blocks, filters, out));
}

/// The slot an item lookup's node is in, from this (slotted item) node.
fn binding(item: &Need, l: &Lookup) -> Binding {
    let (steps, _) = l.selector.steps();
    let mut node = item;
    let mut used = 0;
    while !node.all {
        // `new` marked a node read whole on this path, so the walk ends on one.
        node = node
            .child(&steps[used])
            .expect("every lookup path ends on a node read whole");
        used += 1;
    }
    Binding {
        slot: node.slots[0],
        rest: Selector::from_steps(steps[used..].to_vec()),
    }
}
