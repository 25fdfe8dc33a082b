//! A counting wrapper around the global allocator, so `/metrics` can report live heap bytes and
//! the bench can measure heap per session without guessing from RSS.
//!
//! Counting is per thread slot (cache-padded), so shards never contend on one counter; the hot
//! path does not allocate anyway. Reading sums the slots, which is exact once threads are quiet.
//!
//! Allocations made inside [`in_dependency`] (the session's calls into str0m) are also counted
//! apart ([`dependency_allocations`]), so Tern's own allocations per packet can be told from its
//! WebRTC stack's.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

use crossbeam::utils::CachePadded;

const SLOTS: usize = 64;

static LIVE: [CachePadded<AtomicIsize>; SLOTS] =
    [const { CachePadded::new(AtomicIsize::new(0)) }; SLOTS];
static ALLOCS: [CachePadded<AtomicUsize>; SLOTS] =
    [const { CachePadded::new(AtomicUsize::new(0)) }; SLOTS];
static DEPENDENCY_ALLOCS: [CachePadded<AtomicUsize>; SLOTS] =
    [const { CachePadded::new(AtomicUsize::new(0)) }; SLOTS];
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // usize::MAX: not assigned yet. Const-initialized, no destructor: safe inside an allocator.
    static SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
    // Inside a call into a dependency (see `in_dependency`).
    static IN_DEPENDENCY: Cell<bool> = const { Cell::new(false) };
}

fn slot() -> usize {
    SLOT.try_with(|s| {
        let v = s.get();
        if v != usize::MAX {
            return v;
        }
        let v = NEXT_SLOT.fetch_add(1, Ordering::Relaxed) % SLOTS;
        s.set(v);
        v
    })
    // Thread teardown: any slot is fine, the sum stays right.
    .unwrap_or(0)
}

fn count(delta: isize, allocs: usize) {
    let i = slot();
    LIVE[i].fetch_add(delta, Ordering::Relaxed);
    if allocs > 0 {
        ALLOCS[i].fetch_add(allocs, Ordering::Relaxed);
        if IN_DEPENDENCY.try_with(Cell::get).unwrap_or(false) {
            DEPENDENCY_ALLOCS[i].fetch_add(allocs, Ordering::Relaxed);
        }
    }
}

/// Runs `f`, a call into a dependency (str0m), counting its allocations apart as well.
#[inline]
pub fn in_dependency<R>(f: impl FnOnce() -> R) -> R {
    /// Restores the flag however `f` returns (a panic included).
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = IN_DEPENDENCY.try_with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(IN_DEPENDENCY.try_with(|c| c.replace(true)).unwrap_or(false));
    f()
}

/// Allocations made inside [`in_dependency`] since start (all threads; a part of
/// [`allocations`]).
pub fn dependency_allocations() -> u64 {
    DEPENDENCY_ALLOCS
        .iter()
        .map(|c| c.load(Ordering::Relaxed) as u64)
        .sum()
}

/// Bytes currently allocated through [`CountingAlloc`] (all threads).
pub fn live_bytes() -> i64 {
    LIVE.iter().map(|c| c.load(Ordering::Relaxed) as i64).sum()
}

/// Allocations made through [`CountingAlloc`] since start (all threads).
pub fn allocations() -> u64 {
    ALLOCS
        .iter()
        .map(|c| c.load(Ordering::Relaxed) as u64)
        .sum()
}

/// Wraps an allocator and counts live bytes and allocations. The `tern` binary wraps mimalloc.
pub struct CountingAlloc<A>(pub A);

// SAFETY: every call is forwarded unchanged to the inner allocator; only counters are added.
unsafe impl<A: GlobalAlloc> GlobalAlloc for CountingAlloc<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { self.0.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as isize, 1);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { self.0.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size() as isize, 1);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { self.0.dealloc(ptr, layout) };
        count(-(layout.size() as isize), 0);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { self.0.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(new_size as isize - layout.size() as isize, 1);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::System;

    #[test]
    fn counts_live_bytes_and_allocations() {
        let a = CountingAlloc(System);
        let before = (live_bytes(), allocations());
        let layout = Layout::from_size_align(1000, 8).unwrap();
        // SAFETY: non-zero layout; the pointer is freed with the same layout.
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null());
            let p = a.realloc(p, layout, 3000);
            assert!(!p.is_null());
            // The test binary's global allocator is not counted, so the deltas are exact.
            let bigger = Layout::from_size_align(3000, 8).unwrap();
            let mid = live_bytes() - before.0;
            a.dealloc(p, bigger);
            assert_eq!(mid, 3000);
        }
        assert_eq!(live_bytes(), before.0);
        assert_eq!(allocations() - before.1, 2);
    }

    #[test]
    fn allocations_inside_a_dependency_call_are_counted_apart() {
        let a = CountingAlloc(System);
        let layout = Layout::from_size_align(64, 8).unwrap();
        let alloc_free = || {
            // SAFETY: non-zero layout; freed with the same layout.
            unsafe { a.dealloc(a.alloc(layout), layout) }
        };
        let before = (allocations(), dependency_allocations());
        alloc_free();
        in_dependency(|| {
            alloc_free();
            in_dependency(alloc_free);
            alloc_free();
        });
        alloc_free();
        assert_eq!(allocations() - before.0, 5);
        assert_eq!(dependency_allocations() - before.1, 3);
    }
}
