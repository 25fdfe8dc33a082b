//! Admission against `--max-sessions`: one count for the node, taken once per session (never per
//! packet). A `Permit` is one admitted session. The shard core takes it before answering an offer
//! and the session owns it; dropping it gives the place back. So however a session ends (hangup,
//! expiry, panic, a refused handoff, an offer that failed after admission) its place is released
//! exactly once, with no counting code on any of those paths.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The node's admission count and limit; clones share the count (one per shard and the HTTP side).
#[derive(Debug, Clone)]
pub struct Admission {
    admitted: Arc<AtomicUsize>,
    max: usize,
}

impl Admission {
    pub fn new(max_sessions: usize) -> Self {
        Admission {
            admitted: Arc::new(AtomicUsize::new(0)),
            max: max_sessions,
        }
    }

    /// No limit (tests and tools that build a shard core on its own).
    pub fn unlimited() -> Self {
        Self::new(usize::MAX)
    }

    /// A place for one more session, if the node has one.
    pub fn try_admit(&self) -> Option<Permit> {
        if self.admitted.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.admitted.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Permit {
            admitted: self.admitted.clone(),
        })
    }

    /// Sessions admitted now (live or connecting).
    pub fn admitted(&self) -> usize {
        self.admitted.load(Ordering::Acquire)
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn is_full(&self) -> bool {
        self.admitted() >= self.max
    }
}

impl Default for Admission {
    fn default() -> Self {
        Self::unlimited()
    }
}

/// One admitted session's place; given back when dropped.
#[derive(Debug)]
pub struct Permit {
    admitted: Arc<AtomicUsize>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_limit_and_each_drop_gives_one_place_back() {
        let a = Admission::new(2);
        let p1 = a.try_admit().expect("first");
        let p2 = a.clone().try_admit().expect("second, through a clone");
        assert!(a.try_admit().is_none());
        assert_eq!(a.admitted(), 2);
        assert!(a.is_full());
        drop(p1);
        assert_eq!(a.admitted(), 1);
        let p3 = a.try_admit().expect("the freed place");
        drop(p2);
        drop(p3);
        assert_eq!(a.admitted(), 0);
    }

    #[test]
    fn a_permit_dropped_while_unwinding_is_released() {
        let a = Admission::new(1);
        let p = a.try_admit().expect("admitted");
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _held = p;
            panic!("a session panics");
        }));
        assert!(r.is_err());
        assert_eq!(a.admitted(), 0);
    }
}
