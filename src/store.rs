//! `store`: the current config and one immutable snapshot per source.
//!
//! Sits between [`crate::extract`] (polls publish here) and [`crate::expose`] (scrapes read
//! here). Guarantees:
//! - a snapshot is replaced whole, so a series that left the API leaves /metrics at the next
//!   good poll, and a scrape never sees half a poll;
//! - a failed poll publishes nothing, so the last good snapshot stays;
//! - a poll started under an older version of a source (changed or removed by a reload since)
//!   cannot publish: publishing checks, under the same lock that reloads take, that the
//!   source is still the configured one;
//! - every change bumps a generation number, which the exposition cache keys on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use crate::config::{Config, Source};
use crate::extract::FamilySamples;

/// What one good poll of one source produced.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub taken_at: SystemTime,
    pub families: Vec<FamilySamples>,
}

/// What [`Store::publish`] did.
#[must_use]
#[derive(Debug)]
pub enum Published {
    /// The snapshot is served. The one it replaced comes back to be freed by the caller: 100k
    /// series take milliseconds to free, which neither the store's lock (scrapes wait on it)
    /// nor an async worker should spend.
    Done { replaced: Option<Arc<Snapshot>> },
    /// `source` is no longer the configured instance (a reload replaced it): nothing changed.
    Stale,
}

impl Published {
    pub fn done(&self) -> bool {
        matches!(self, Published::Done { .. })
    }
}

impl Snapshot {
    pub fn series(&self) -> usize {
        self.families.iter().map(|f| f.series.len()).sum()
    }
}

/// A consistent view for one encoding: the config and the snapshots of its sources.
#[derive(Debug, Clone)]
pub struct View {
    pub config: Arc<Config>,
    /// In config order; sources that never polled successfully are absent.
    pub snapshots: Vec<(Arc<Source>, Arc<Snapshot>)>,
}

#[derive(Debug)]
struct Inner {
    config: Arc<Config>,
    /// The config's sources by name: a poll's "am I still configured?" is one lookup, not
    /// a walk over every source (which made 30,000 sources quadratic).
    current: HashMap<String, Arc<Source>>,
    snapshots: HashMap<String, Arc<Snapshot>>,
    /// When an upstream last said (with a 304) that a source's snapshot is still current.
    confirmed: HashMap<String, SystemTime>,
}

impl Inner {
    /// Whether `source` (this instance, not only its name) is configured.
    fn is_current(&self, source: &Arc<Source>) -> bool {
        self.current
            .get(&source.name)
            .is_some_and(|s| Arc::ptr_eq(s, source))
    }
}

fn index(config: &Config) -> HashMap<String, Arc<Source>> {
    config
        .sources
        .iter()
        .map(|s| (s.name.clone(), s.clone()))
        .collect()
}

#[derive(Debug)]
pub struct Store {
    inner: RwLock<Inner>,
    generation: AtomicU64,
}

impl Store {
    pub fn new(config: Arc<Config>) -> Self {
        Self {
            inner: RwLock::new(Inner {
                current: index(&config),
                config,
                snapshots: HashMap::new(),
                confirmed: HashMap::new(),
            }),
            generation: AtomicU64::new(1),
        }
    }

    /// Changes whenever anything a scrape shows may have changed.
    pub fn generation(&self) -> u64 {
        // Limit hits are counted process-wide (see `telemetry::limit_hit`); both numbers only
        // grow, so their sum changes whenever either does.
        self.generation.load(Ordering::Acquire)
            + crate::telemetry::LIMIT_GENERATION.load(Ordering::Acquire)
    }

    /// Marks the exposition stale (telemetry calls this after counting an event).
    pub fn touch(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    pub fn config(&self) -> Arc<Config> {
        self.read().config.clone()
    }

    /// Replaces `source`'s snapshot, unless `source` is no longer the configured instance.
    pub fn publish(&self, source: &Arc<Source>, snapshot: impl Into<Arc<Snapshot>>) -> Published {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if !inner.is_current(source) {
            return Published::Stale;
        }
        let replaced = inner.snapshots.insert(source.name.clone(), snapshot.into());
        inner.confirmed.remove(&source.name);
        drop(inner);
        self.touch();
        Published::Done { replaced }
    }

    /// Whether `source` (this instance) has a snapshot served: a poll may then ask the
    /// upstream whether it changed.
    pub fn has_snapshot(&self, source: &Arc<Source>) -> bool {
        let inner = self.read();
        inner.is_current(source) && inner.snapshots.contains_key(&source.name)
    }

    /// The upstream said `source`'s snapshot is still current (a 304): it ages from now, for
    /// `max_staleness`. Returns whether there was one to confirm.
    pub fn confirm(&self, source: &Arc<Source>) -> bool {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let current = inner.is_current(source) && inner.snapshots.contains_key(&source.name);
        if current {
            inner
                .confirmed
                .insert(source.name.clone(), SystemTime::now());
        }
        current
    }

    /// Drops `source`'s snapshot if it is older than `max_age`, and hands it back (its
    /// series end: a pusher marks them stale).
    pub fn take_expired(
        &self,
        source: &Arc<Source>,
        max_age: std::time::Duration,
    ) -> Option<Arc<Snapshot>> {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let confirmed = inner.confirmed.get(&source.name).copied();
        let old = inner.snapshots.get(&source.name).is_some_and(|s| {
            let current_at = confirmed.map_or(s.taken_at, |c| c.max(s.taken_at));
            current_at.elapsed().unwrap_or_default() > max_age
        });
        let taken = if old {
            inner.confirmed.remove(&source.name);
            inner.snapshots.remove(&source.name)
        } else {
            None
        };
        drop(inner);
        if taken.is_some() {
            self.touch();
        }
        taken
    }

    /// Installs a new config; snapshots of sources it no longer has are dropped and handed
    /// back (their series end). Snapshots of sources kept by name stay until their next good
    /// poll replaces them.
    pub fn swap_config(&self, config: Arc<Config>) -> Vec<Arc<Snapshot>> {
        let current = index(&config);
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let gone: Vec<String> = inner
            .snapshots
            .keys()
            .filter(|name| !current.contains_key(*name))
            .cloned()
            .collect();
        let dropped: Vec<Arc<Snapshot>> = gone
            .iter()
            .filter_map(|name| inner.snapshots.remove(name))
            .collect();
        inner.confirmed.retain(|name, _| current.contains_key(name));
        inner.current = current;
        inner.config = config;
        drop(inner);
        self.touch();
        dropped
    }

    pub fn view(&self) -> View {
        let inner = self.read();
        let snapshots = inner
            .config
            .sources
            .iter()
            .filter_map(|s| {
                inner
                    .snapshots
                    .get(&s.name)
                    .map(|snap| (s.clone(), snap.clone()))
            })
            .collect();
        View {
            config: inner.config.clone(),
            snapshots,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn config() -> Arc<Config> {
        let text =
            "sources:\n  - name: a\n    url: file:///x\n    metrics: [{name: m, value: 1}]\n";
        let origin = crate::config::Origin::file(std::path::Path::new("x.yaml"));
        Arc::new(crate::config::parse(text, &origin, &|_| None).unwrap())
    }

    fn taken(ago: Duration) -> Snapshot {
        Snapshot {
            taken_at: SystemTime::now() - ago,
            families: Vec::new(),
        }
    }

    #[test]
    fn a_confirmed_snapshot_ages_from_its_confirmation() {
        let config = config();
        let store = Store::new(config.clone());
        let a = config.sources[0].clone();
        // Nothing to confirm, or to ask about, before a first snapshot.
        assert!(!store.has_snapshot(&a));
        assert!(!store.confirm(&a));
        assert!(store.publish(&a, taken(Duration::from_secs(10))).done());
        assert!(store.has_snapshot(&a));
        // Taken 10 s ago, confirmed now: current for a 5 s max_staleness.
        assert!(store.confirm(&a));
        assert!(store.take_expired(&a, Duration::from_secs(5)).is_none());
        // A new snapshot drops the confirmation: its own age counts again.
        assert!(store.publish(&a, taken(Duration::from_secs(10))).done());
        assert!(store.take_expired(&a, Duration::from_secs(5)).is_some());
        assert!(!store.has_snapshot(&a));
        // An instance a reload replaced neither has a snapshot nor confirms one.
        let other = Arc::new((*a).clone());
        assert!(store.publish(&a, taken(Duration::ZERO)).done());
        assert!(!store.has_snapshot(&other) && !store.confirm(&other));
    }
}
