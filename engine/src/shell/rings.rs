//! Bounded lock-free rings between threads, and the doorbell that wakes a shard's executor.
//!
//! A push onto a full ring fails and is counted: a producer never blocks. A shard sleeps in io_uring,
//! so a worker that pushed replies rings its doorbell once per batch: an `AtomicWaker` woken only
//! on the first ring after the shard last drained (glommio wakes foreign wakers through an eventfd).

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::Poll;

use atomic_waker::AtomicWaker;
use crossbeam::queue::ArrayQueue;

/// A bounded multi-producer queue that counts what it refused.
#[derive(Debug)]
pub struct Ring<T> {
    q: ArrayQueue<T>,
    dropped: AtomicU64,
}

impl<T> Ring<T> {
    pub fn new(capacity: usize) -> Self {
        Ring {
            q: ArrayQueue::new(capacity.max(1)),
            dropped: AtomicU64::new(0),
        }
    }

    /// Pushes, or hands the item back when full (counted).
    pub fn push(&self, item: T) -> Result<(), T> {
        self.q.push(item).inspect_err(|_| {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        })
    }

    pub fn pop(&self) -> Option<T> {
        self.q.pop()
    }

    pub fn len(&self) -> usize {
        self.q.len()
    }

    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.q.capacity()
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Wakes one async consumer from any thread; rings are coalesced until it drains.
#[derive(Debug, Default)]
pub struct Doorbell {
    waker: AtomicWaker,
    rung: AtomicBool,
}

impl Doorbell {
    pub fn ring(&self) {
        if !self.rung.swap(true, Ordering::AcqRel) {
            self.waker.wake();
        }
    }

    /// Resolves once the bell has rung since the last wait.
    pub async fn wait(&self) {
        poll_fn(|cx| {
            if self.rung.swap(false, Ordering::AcqRel) {
                return Poll::Ready(());
            }
            self.waker.register(cx.waker());
            if self.rung.swap(false, Ordering::AcqRel) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_ring_counts_and_returns_item() {
        let r = Ring::new(2);
        assert!(r.push(1).is_ok());
        assert!(r.push(2).is_ok());
        assert_eq!(r.push(3), Err(3));
        assert_eq!(r.dropped(), 1);
        assert_eq!(r.pop(), Some(1));
    }

    #[test]
    fn doorbell_wakes_across_threads() {
        let bell = std::sync::Arc::new(Doorbell::default());
        let b2 = bell.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            b2.ring();
            b2.ring(); // coalesced
        });
        futures_lite::future::block_on(bell.wait());
        t.join().unwrap();
    }
}
