//! The read plan: what of a document the reader builds, hands over or folds, node by node.
//!
//! A [`Need`] mirrors the document: which members and elements lead to something wanted, and
//! where whole subtrees are wanted. Everything else is checked for syntax and skipped. The
//! numbers it carries (items, slots, folds, collect) are the consumer's own ids: the reader
//! hands them back and gives them no meaning.

use std::borrow::Cow;
use std::collections::HashSet;

/// One step of a path through a document: a member by name, an element by index (negative
/// from the end), or every member or element.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step {
    Name(String),
    Index(i64),
    Wildcard,
}

/// The parts of one node (and below) that are read.
#[derive(Debug, Clone, Default)]
pub struct Need {
    /// The whole subtree is read.
    pub(crate) all: bool,
    /// Members of an object, by name (each already merged with `any`).
    pub(crate) keys: Vec<(String, Need)>,
    /// Elements of an array by index, negative ones from the end (each merged with `any`).
    pub(crate) indexes: Vec<(i64, Need)>,
    /// What every member or element needs.
    pub(crate) any: Option<Box<Need>>,
    /// The consumer's item kinds whose items are the nodes here (streamed reads only).
    pub(crate) items: Vec<usize>,
    /// Items here or below.
    pub(crate) has_items: bool,
    /// Some index counts from the end: the array's length must be known first.
    pub(crate) from_end: bool,
    /// Every index counts from the end and there is no wildcard: only this many elements at
    /// the end of the array can be read.
    pub(crate) tail: Option<usize>,
    /// Slots of the enclosing slotted item that this node fills (see [`Slotted`]).
    pub(crate) slots: Vec<usize>,
    /// Set on item nodes whose items are read into slots.
    pub(crate) slotted: Option<SlotRef>,
    /// The node must be in the tree even if nothing below it is read (it is counted, or
    /// is an element of something whose length is taken).
    pub(crate) present: bool,
    /// Aggregates that fold this node (ids into [`ReadPlan::folds`]; see [`super::fold`]).
    pub(crate) folds: Vec<usize>,
    /// Folds here or below (worked out by `mark_folds`).
    pub(crate) has_folds: bool,
    /// Only folds read this node and what is below it: a folding pass keeps none of it.
    pub(crate) fold_only: bool,
    /// Descendant searches from here (`..name`): every member called `name` at any depth
    /// below gets the need that goes with it (see `tree`).
    pub(crate) deep: Vec<(String, Need)>,
    /// On the need of a descendant search's rule: the members it finds are kept as text
    /// instead of built, for the consumer's collection `collect` (see `collector`). Merging
    /// with any other need takes it off.
    pub(crate) collect: Option<usize>,
}

/// A slotted item node: its entry in [`ReadPlan`]'s list, and how many slots its items have.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SlotRef {
    pub(crate) id: usize,
    pub(crate) count: usize,
}

impl Need {
    /// The node reached by `steps` from here, created as needed.
    pub(crate) fn at(&mut self, steps: &[Step]) -> &mut Need {
        let Some((first, rest)) = steps.split_first() else {
            return self;
        };
        let next = match first {
            Step::Wildcard => &mut **self.any.get_or_insert_with(Default::default),
            Step::Name(n) => {
                let pos = match self.keys.iter().position(|(k, _)| k == n) {
                    Some(p) => p,
                    None => {
                        self.keys.push((n.clone(), Need::default()));
                        self.keys.len() - 1
                    }
                };
                &mut self.keys[pos].1
            }
            Step::Index(i) => {
                let pos = match self.indexes.iter().position(|(j, _)| j == i) {
                    Some(p) => p,
                    None => {
                        self.indexes.push((*i, Need::default()));
                        self.indexes.len() - 1
                    }
                };
                &mut self.indexes[pos].1
            }
        };
        next.at(rest)
    }

    pub(crate) fn merge(&mut self, other: &Need) {
        self.all |= other.all;
        for (k, n) in &other.keys {
            self.at(&[Step::Name(k.clone())]).merge(n);
        }
        for (i, n) in &other.indexes {
            self.at(&[Step::Index(*i)]).merge(n);
        }
        if let Some(n) = &other.any {
            self.at(&[Step::Wildcard]).merge(n);
        }
        for b in &other.items {
            if !self.items.contains(b) {
                self.items.push(*b);
            }
        }
        for s in &other.slots {
            if !self.slots.contains(s) {
                self.slots.push(*s);
            }
        }
        self.present |= other.present;
        for (name, n) in &other.deep {
            match self.deep.iter_mut().find(|(k, _)| k == name) {
                Some((_, mine)) => mine.merge(n),
                None => self.deep.push((name.clone(), n.clone())),
            }
        }
        for f in &other.folds {
            if !self.folds.contains(f) {
                self.folds.push(*f);
            }
        }
        if self.collect != other.collect {
            self.collect = None;
        }
    }

    /// Nothing at or below this node is read.
    pub(crate) fn is_empty(&self) -> bool {
        !self.all
            && !self.present
            && self.keys.is_empty()
            && self.indexes.is_empty()
            && self.any.is_none()
            && self.items.is_empty()
            && self.folds.is_empty()
            && self.deep.is_empty()
    }

    /// Works out `has_folds` and `fold_only`, all the way down.
    pub(crate) fn mark_folds(&mut self) {
        let mut below = false;
        let mut only = true;
        for c in self.children_mut() {
            c.mark_folds();
            below |= c.has_folds;
            only &= c.fold_only || !c.has_folds && c.is_empty();
        }
        self.has_folds = below || !self.folds.is_empty();
        self.fold_only = self.has_folds
            && only
            && !self.all
            && !self.present
            && self.items.is_empty()
            && self.deep.is_empty();
    }

    /// Whether a descendant search starts at or below this node.
    pub(crate) fn has_deep(&self) -> bool {
        !self.deep.is_empty() || self.children().any(Need::has_deep)
    }

    /// Takes fold `id` off every node (it is computed from the tree instead).
    pub(crate) fn drop_fold(&mut self, id: usize) {
        self.folds.retain(|f| *f != id);
        self.children_mut().for_each(|c| c.drop_fold(id));
    }

    /// Whether the walk along `steps` from here meets a node read whole (whose subtree is
    /// then built without looking at its needs, so folds below it would never be met).
    pub(crate) fn whole_on_the_way(&self, steps: &[Step]) -> bool {
        if self.all {
            return true;
        }
        match steps.split_first() {
            None => false,
            Some((step, rest)) => self.child(step).is_none_or(|c| c.whole_on_the_way(rest)),
        }
    }

    /// The node `steps` lead to, if the plan has it.
    pub(crate) fn get(&self, steps: &[Step]) -> Option<&Need> {
        match steps.split_first() {
            None => Some(self),
            Some((step, rest)) => self.child(step)?.get(rest),
        }
    }

    pub(crate) fn child(&self, step: &Step) -> Option<&Need> {
        match step {
            Step::Name(n) => self.keys.iter().find(|(k, _)| k == n).map(|(_, c)| c),
            Step::Index(i) => self.indexes.iter().find(|(j, _)| j == i).map(|(_, c)| c),
            Step::Wildcard => self.any.as_deref(),
        }
    }

    pub(crate) fn children_mut(&mut self) -> impl Iterator<Item = &mut Need> {
        let keys = self.keys.iter_mut().map(|(_, n)| n);
        keys.chain(self.indexes.iter_mut().map(|(_, n)| n))
            .chain(self.any.as_deref_mut())
    }

    pub(crate) fn children(&self) -> impl Iterator<Item = &Need> {
        let keys = self.keys.iter().map(|(_, n)| n);
        keys.chain(self.indexes.iter().map(|(_, n)| n))
            .chain(self.any.as_deref())
    }

    /// Every slot filled at or below this node.
    pub(crate) fn slots_below(&self, out: &mut Vec<usize>) {
        out.extend_from_slice(&self.slots);
        self.children().for_each(|c| c.slots_below(out));
    }

    /// Gives a slot to each outermost node read whole, at or below this one.
    pub(crate) fn assign_slots(&mut self, count: &mut usize) {
        if self.all {
            self.slots = vec![*count];
            *count += 1;
            return;
        }
        self.children_mut().for_each(|c| c.assign_slots(count));
    }

    /// Folds `any` into the named members and indexes (so a path finds one entry), and
    /// works out `has_items` and `from_end`, all the way down.
    pub(crate) fn finish(&mut self) {
        if let Some(any) = self.any.as_deref() {
            let any = any.clone();
            let children = self.keys.iter_mut().map(|(_, n)| n);
            for n in children.chain(self.indexes.iter_mut().map(|(_, n)| n)) {
                n.merge(&any);
            }
        }
        let mut below = false;
        let children = self.keys.iter_mut().map(|(_, n)| n);
        for n in children.chain(self.indexes.iter_mut().map(|(_, n)| n)) {
            n.finish();
            below |= n.has_items;
        }
        if let Some(n) = self.any.as_deref_mut() {
            n.finish();
            below |= n.has_items;
        }
        for (_, n) in &mut self.deep {
            n.finish();
        }
        self.has_items = below || !self.items.is_empty();
        self.from_end = self.indexes.iter().any(|(i, _)| *i < 0);
        self.tail = (self.any.is_none() && self.indexes.iter().all(|(i, _)| *i < 0))
            .then(|| {
                self.indexes
                    .iter()
                    .map(|(i, _)| i.unsigned_abs() as usize)
                    .max()
            })
            .flatten();
    }

    /// What member `key` of an object needs, if anything.
    pub(crate) fn member(&self, key: &str) -> Option<&Need> {
        match self.keys.iter().find(|(k, _)| k == key) {
            Some((_, n)) => Some(n),
            None => self.any.as_deref(),
        }
    }

    /// What element `i` of an array of `len` elements needs (`len` is only looked at when
    /// `from_end`).
    pub(crate) fn element(&self, i: usize, len: usize) -> Option<Cow<'_, Need>> {
        if self.indexes.is_empty() {
            // Arrays of items, and arrays read whole: asked once per element.
            return self.any.as_deref().map(Cow::Borrowed);
        }
        let i = i as i64;
        let len = len as i64;
        let mut found = self
            .indexes
            .iter()
            .filter(|(j, _)| *j == i || (*j < 0 && len + *j == i));
        match (found.next(), found.next()) {
            (Some((_, a)), Some((_, b))) => {
                let mut m = a.clone();
                m.merge(b);
                // Each node's slots belong to its own items: an element that two indexes
                // share is read as a tree.
                m.slotted = None;
                Some(Cow::Owned(m))
            }
            (Some((_, a)), None) => Some(Cow::Borrowed(a)),
            _ => self.any.as_deref().map(Cow::Borrowed),
        }
    }
}

/// Which of a `Need`'s keys an object has shown so far, to notice a repeated member (whose
/// last occurrence wins, as in a built tree). Any number of keys: the first 64 in a word,
/// the rest (rare: an item with 64 reads or more) in words allocated when first needed.
#[derive(Default)]
pub(crate) struct KeysSeen {
    low: u64,
    high: Vec<u64>,
}

impl KeysSeen {
    /// Marks key `p` as seen; `true` if it had been seen already.
    pub(crate) fn repeat(&mut self, p: usize) -> bool {
        let (word, bit) = match p.checked_sub(64) {
            None => (&mut self.low, p),
            Some(q) => {
                if self.high.len() <= q / 64 {
                    self.high.resize(q / 64 + 1, 0);
                }
                (&mut self.high[q / 64], q % 64)
            }
        };
        let mask = 1u64 << bit;
        let was = *word & mask != 0;
        *word |= mask;
        was
    }
}

/// The members of one object that lead to items, to catch one that appears twice. Named
/// members are told apart by their place in the plan; only a wildcard needs the names.
#[derive(Default)]
pub(crate) struct Seen<'a> {
    named: KeysSeen,
    names: HashSet<Cow<'a, str>>,
}

impl<'a> Seen<'a> {
    /// Whether `key`, a member of an object read with `need`, is met for the first time.
    pub(crate) fn first(&mut self, need: &Need, key: Cow<'a, str>) -> bool {
        match need.keys.iter().position(|(k, _)| *k == key) {
            Some(p) => !self.named.repeat(p),
            None => self.names.insert(key),
        }
    }
}
