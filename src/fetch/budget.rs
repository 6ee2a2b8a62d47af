//! The process-wide budget for response bodies in flight (inside `fetch`, while a body
//! arrives, and until the poll has read it).
//!
//! Each poll holds its body and, while reading it, up to a few times that in trees and
//! series. Many large polls at once (1,000 sources on one schedule, a burst of `/probe`
//! calls) would add all of that up; the budget makes them queue instead. Guarantees:
//! - bodies under [`FREE_BYTES`] take nothing from it (the common small poll never waits);
//! - a body with an announced length takes it all at once, before the first byte is read,
//!   so two such polls never each hold part of what the other waits for;
//! - a body of unknown length takes more as it grows;
//! - one body never needs more than the whole budget (a body larger than the budget is let
//!   through alone, limited by `max_body_bytes` as always);
//! - waiting is counted (`jsonbridge_limit_hits_total{limit="body_budget"}`) and bounded by
//!   the poll's own timeout, like every other step of a fetch.

use std::sync::{Arc, OnceLock};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::telemetry::{self, Limit};

/// Default of `--limits.body-bytes-in-flight`: four bodies at the default `max_body_bytes`.
pub const DEFAULT_BODY_BYTES_IN_FLIGHT: u64 = 256 << 20;
/// Bodies up to this size are not counted.
pub const FREE_BYTES: u64 = 1 << 20;
/// The budget is kept in units of this many bytes (a semaphore's permits are a `u32`).
const UNIT: u64 = 64 << 10;

static BUDGET: OnceLock<Arc<Semaphore>> = OnceLock::new();
static UNITS: OnceLock<u32> = OnceLock::new();

/// Sets the budget; only the first call counts (a process has one).
pub fn set(bytes: u64) {
    let units = u32::try_from((bytes / UNIT).max(1)).unwrap_or(u32::MAX >> 3);
    let units = units.min(Semaphore::MAX_PERMITS as u32);
    if UNITS.set(units).is_ok() {
        let _ = BUDGET.set(Arc::new(Semaphore::new(units as usize)));
    }
}

fn budget() -> (&'static Arc<Semaphore>, u32) {
    let units = *UNITS.get_or_init(|| (DEFAULT_BODY_BYTES_IN_FLIGHT / UNIT) as u32);
    (
        BUDGET.get_or_init(|| Arc::new(Semaphore::new(units as usize))),
        units,
    )
}

/// The share of the budget one body holds; given back when dropped.
#[derive(Debug, Default)]
pub struct BodyPermit {
    held: Option<OwnedSemaphorePermit>,
    units: u32,
}

impl BodyPermit {
    /// Makes sure `bytes` are covered, waiting for the budget if needed. `context` names the
    /// source (as written) in the log line when it waits.
    pub async fn cover(&mut self, bytes: u64, context: &str) {
        if bytes <= FREE_BYTES {
            return;
        }
        let (sem, total) = budget();
        let want = u32::try_from(bytes.div_ceil(UNIT))
            .unwrap_or(u32::MAX)
            .min(total);
        if want <= self.units {
            return;
        }
        let more = want - self.units;
        let permit = match sem.clone().try_acquire_many_owned(more) {
            Ok(p) => p,
            Err(_) => {
                telemetry::limit_hit(Limit::BodyBudget, context);
                match sem.clone().acquire_many_owned(more).await {
                    Ok(p) => p,
                    // Never closed.
                    Err(_) => return,
                }
            }
        };
        match &mut self.held {
            Some(h) => h.merge(permit),
            None => self.held = Some(permit),
        }
        self.units = want;
    }

    /// Bytes of the budget held.
    #[cfg(test)]
    pub fn bytes(&self) -> u64 {
        u64::from(self.units) * UNIT
    }
}

/// Bytes of the budget free now.
#[cfg(test)]
fn available() -> u64 {
    budget().0.available_permits() as u64 * UNIT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bodies_take_their_size_and_give_it_back() {
        let free = available();
        let mut small = BodyPermit::default();
        small.cover(FREE_BYTES, "small").await;
        assert_eq!(small.bytes(), 0);
        let mut big = BodyPermit::default();
        big.cover(10 << 20, "big").await;
        assert_eq!(big.bytes(), 10 << 20);
        big.cover(5 << 20, "big").await;
        assert_eq!(big.bytes(), 10 << 20, "never less than it holds");
        big.cover(12 << 20, "big").await;
        assert_eq!(big.bytes(), 12 << 20);
        assert!(available() <= free - (12 << 20));
        // One body larger than the whole budget still gets it all, not more.
        drop(big);
        let mut huge = BodyPermit::default();
        huge.cover(u64::MAX / 2, "huge").await;
        assert_eq!(huge.bytes(), u64::from(budget().1) * UNIT);
        // A second one waits until the first is done.
        let mut second = BodyPermit::default();
        let waiting = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            second.cover(8 << 20, "second"),
        )
        .await;
        assert!(
            waiting.is_err(),
            "the budget was spent: the second body waits"
        );
        drop(huge);
        second.cover(8 << 20, "second").await;
        assert_eq!(second.bytes(), 8 << 20);
    }
}
