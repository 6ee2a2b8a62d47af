//! Members kept as text while a pruned tree is built, for a consumer that builds them later,
//! one at a time (extract does so for the items of a descendant search, `extract::collect`).
//!
//! A rule marked `collect` (`Need::collect`) keeps each member it finds as a slice of the
//! body and leaves a placeholder (its number, in the order kept) in the tree. Wherever the
//! parse cannot show that a placeholder stands for all the tree would hold there (another
//! need or rule reaches the member, a subtree read whole holds one, a member found may hold
//! another), the collector is spoiled and the parse stops, to be read as a plain tree.

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use serde::de;
use serde_json::Value;

/// Where the members found lie in the body, gathered while it is parsed.
pub(crate) struct Collector {
    /// The address of the body's first byte: what is kept is a slice of it.
    base: usize,
    /// The names the collecting rules search for.
    names: Arc<[String]>,
    /// (offset, length) of each member kept, by placeholder number.
    found: RefCell<Vec<(usize, usize)>>,
    spoiled: Cell<bool>,
}

impl Collector {
    /// A collector over `text` for the rules that search for `names`; `None` if there are
    /// none.
    pub(crate) fn new(text: &str, names: Arc<[String]>) -> Option<Self> {
        (!names.is_empty()).then(|| Self {
            base: text.as_ptr() as usize,
            names,
            found: RefCell::new(Vec::new()),
            spoiled: Cell::new(false),
        })
    }

    /// Whether a collecting rule searches for members called `key`.
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
    /// member a collecting rule searches for, the tree would show it, not a placeholder.
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
