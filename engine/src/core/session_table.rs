//! A shard's table of sessions: a bounded slab addressed by (slot, generation), plus an O(1) index
//! by peer address. The slot comes straight out of the server ufrag, so STUN routing needs no hash
//! lookup at all; the address index uses SipHash with a per-process random key (`RandomState`),
//! which a peer cannot aim collisions at.

use std::collections::HashMap;
use std::hash::RandomState;
use std::net::SocketAddr;

use super::session_id::SessionKey;

/// What a slot holds.
#[derive(Debug)]
pub enum Entry<T> {
    /// The session lives here.
    Live { secret: u64, value: T },
    /// The session was handed over to another shard, under that shard's key.
    Moved { secret: u64, shard: u16 },
}

#[derive(Debug)]
struct Slot<T> {
    generation: u16,
    entry: Option<Entry<T>>,
    /// Addresses bound to this slot, so that removal touches only its own index entries.
    addrs: Vec<SocketAddr>,
}

/// Why a lookup failed; each is counted separately by the shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    NoSuchSlot,
    StaleGeneration,
    BadSecret,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("session table is full ({0} sessions)")]
pub struct TableFull(pub usize);

/// Bounded slab of sessions with an address index.
#[derive(Debug)]
pub struct SessionTable<T> {
    /// The shard that owns the table: every key it gives out names it.
    shard: u16,
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    capacity: usize,
    live: usize,
    by_addr: HashMap<SocketAddr, SessionKey, RandomState>,
}

impl<T> SessionTable<T> {
    pub fn new(shard: u16, capacity: usize) -> Self {
        SessionTable {
            shard,
            slots: Vec::new(),
            free: Vec::new(),
            capacity,
            live: 0,
            by_addr: HashMap::with_hasher(RandomState::new()),
        }
    }

    /// Number of occupied slots (live or moved).
    pub fn occupied(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Number of sessions living here.
    pub fn live(&self) -> usize {
        self.live
    }

    /// The key the next `insert` will return (the table is single-threaded, so this is exact).
    pub fn next_key(&self) -> Result<SessionKey, TableFull> {
        match self.free.last() {
            Some(&slot) => Ok(SessionKey {
                shard: self.shard,
                slot,
                generation: self.slots[slot as usize].generation,
            }),
            None if self.slots.len() < self.capacity => Ok(SessionKey {
                shard: self.shard,
                slot: self.slots.len() as u32,
                generation: 0,
            }),
            None => Err(TableFull(self.capacity)),
        }
    }

    /// Reserves a slot and stores `value` in it.
    pub fn insert(&mut self, secret: u64, value: T) -> Result<SessionKey, TableFull> {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                if self.slots.len() >= self.capacity {
                    return Err(TableFull(self.capacity));
                }
                self.slots.push(Slot {
                    generation: 0,
                    entry: None,
                    addrs: Vec::new(),
                });
                (self.slots.len() - 1) as u32
            }
        };
        let s = &mut self.slots[slot as usize];
        s.entry = Some(Entry::Live { secret, value });
        self.live += 1;
        Ok(SessionKey {
            shard: self.shard,
            slot,
            generation: s.generation,
        })
    }

    fn slot(&self, key: SessionKey) -> Result<&Slot<T>, Miss> {
        if key.shard != self.shard {
            return Err(Miss::NoSuchSlot);
        }
        let s = self.slots.get(key.slot as usize).ok_or(Miss::NoSuchSlot)?;
        if s.entry.is_none() {
            return Err(Miss::NoSuchSlot);
        }
        if s.generation != key.generation {
            return Err(Miss::StaleGeneration);
        }
        Ok(s)
    }

    /// Looks a slot up and checks the secret carried in a tag.
    pub fn lookup(&self, key: SessionKey, secret: u64) -> Result<&Entry<T>, Miss> {
        let entry = self.slot(key)?.entry.as_ref().ok_or(Miss::NoSuchSlot)?;
        let s = match entry {
            Entry::Live { secret, .. } | Entry::Moved { secret, .. } => *secret,
        };
        if s != secret {
            return Err(Miss::BadSecret);
        }
        Ok(entry)
    }

    /// The live value at `key`, if any.
    pub fn get_mut(&mut self, key: SessionKey) -> Option<&mut T> {
        let s = self.slots.get_mut(key.slot as usize)?;
        if s.generation != key.generation {
            return None;
        }
        match s.entry.as_mut()? {
            Entry::Live { value, .. } => Some(value),
            Entry::Moved { .. } => None,
        }
    }

    /// Takes the live value out and leaves a forwarding entry behind.
    pub fn mark_moved(&mut self, key: SessionKey, shard: u16) -> Option<T> {
        let s = self.slots.get_mut(key.slot as usize)?;
        if s.generation != key.generation {
            return None;
        }
        match s.entry.take()? {
            Entry::Live { secret, value } => {
                s.entry = Some(Entry::Moved { secret, shard });
                self.live -= 1;
                Some(value)
            }
            moved => {
                s.entry = Some(moved);
                None
            }
        }
    }

    /// Undoes `mark_moved`: the slot holds `value` again, live. Gives the value back if the slot
    /// is not the moved entry of `key`.
    pub fn restore_moved(&mut self, key: SessionKey, value: T) -> Result<(), T> {
        let Some(s) = self.slots.get_mut(key.slot as usize) else {
            return Err(value);
        };
        match s.entry.take() {
            Some(Entry::Moved { secret, .. }) if s.generation == key.generation => {
                s.entry = Some(Entry::Live { secret, value });
                self.live += 1;
                Ok(())
            }
            other => {
                s.entry = other;
                Err(value)
            }
        }
    }

    /// Frees a slot; returns the live value if there was one. The generation advances so that old
    /// tags and keys stop matching.
    pub fn remove(&mut self, key: SessionKey) -> Option<Entry<T>> {
        let s = self.slots.get_mut(key.slot as usize)?;
        if s.generation != key.generation || s.entry.is_none() {
            return None;
        }
        let entry = s.entry.take();
        s.generation = s.generation.wrapping_add(1);
        self.free.push(key.slot);
        if matches!(entry, Some(Entry::Live { .. })) {
            self.live -= 1;
        }
        self.unbind_addrs(key);
        entry
    }

    /// Binds a peer address to a slot (after ICE has authenticated it).
    pub fn bind_addr(&mut self, addr: SocketAddr, key: SessionKey) {
        if key.slot as usize >= self.slots.len() {
            return;
        }
        if let Some(prev) = self.by_addr.insert(addr, key) {
            if prev == key {
                return;
            }
            if let Some(p) = self.slots.get_mut(prev.slot as usize) {
                p.addrs.retain(|a| *a != addr);
            }
        }
        self.slots[key.slot as usize].addrs.push(addr);
    }

    /// Drops every address bound to `key`.
    pub fn unbind_addrs(&mut self, key: SessionKey) {
        let Some(s) = self.slots.get_mut(key.slot as usize) else {
            return;
        };
        for a in s.addrs.drain(..) {
            if self.by_addr.get(&a) == Some(&key) {
                self.by_addr.remove(&a);
            }
        }
    }

    pub fn by_addr(&self, addr: &SocketAddr) -> Option<SessionKey> {
        self.by_addr.get(addr).copied()
    }

    pub fn addr_count(&self) -> usize {
        self.by_addr.len()
    }

    /// The live sessions themselves.
    pub fn live_values(&self) -> impl Iterator<Item = &T> + '_ {
        self.slots.iter().filter_map(|s| match &s.entry {
            Some(Entry::Live { value, .. }) => Some(value),
            _ => None,
        })
    }

    /// Keys of all live sessions (for housekeeping and shutdown).
    pub fn live_keys(&self) -> impl Iterator<Item = SessionKey> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s.entry {
                Some(Entry::Live { .. }) => Some(SessionKey {
                    shard: self.shard,
                    slot: i as u32,
                    generation: s.generation,
                }),
                _ => None,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn addr(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    #[test]
    fn insert_lookup_remove() {
        let mut t = SessionTable::new(0, 2);
        let a = t.insert(11, "a").unwrap();
        let b = t.insert(22, "b").unwrap();
        assert_eq!(t.insert(33, "c"), Err(TableFull(2)));
        assert!(matches!(t.lookup(a, 11), Ok(Entry::Live { value, .. }) if *value == "a"));
        assert_eq!(t.lookup(a, 12).err(), Some(Miss::BadSecret));
        t.bind_addr(addr(1), a);
        assert_eq!(t.by_addr(&addr(1)), Some(a));
        assert!(t.remove(a).is_some());
        assert_eq!(t.by_addr(&addr(1)), None);
        assert_eq!(t.lookup(a, 11).err(), Some(Miss::NoSuchSlot));
        let next = t.next_key().unwrap();
        let c = t.insert(33, "c").unwrap();
        assert_eq!(next, c);
        assert_eq!(c.slot, a.slot);
        assert_ne!(c.generation, a.generation);
        assert_eq!(t.lookup(a, 11).err(), Some(Miss::StaleGeneration));
        assert_eq!(t.live(), 2);
        assert_eq!(t.get_mut(b), Some(&mut "b"));
    }

    #[test]
    fn moved_entries_forward() {
        let mut t = SessionTable::new(0, 4);
        let a = t.insert(1, 5u8).unwrap();
        assert_eq!(t.mark_moved(a, 1), Some(5));
        assert_eq!(t.live(), 0);
        assert_eq!(t.occupied(), 1);
        assert!(matches!(t.lookup(a, 1), Ok(Entry::Moved { shard: 1, .. })));
        assert!(t.get_mut(a).is_none());
        assert!(matches!(t.remove(a), Some(Entry::Moved { .. })));
        assert_eq!(t.occupied(), 0);
    }

    proptest! {
        /// Random insert/remove sequences keep the counters consistent and never hand out a key twice.
        #[test]
        fn counters_consistent(ops in proptest::collection::vec(any::<(bool, u8)>(), 0..200)) {
            let mut t = SessionTable::new(0, 16);
            let mut keys: Vec<SessionKey> = Vec::new();
            for (ins, i) in ops {
                if ins {
                    if let Ok(k) = t.insert(0, ()) {
                        prop_assert!(!keys.contains(&k));
                        keys.push(k);
                    }
                } else if !keys.is_empty() {
                    let k = keys.remove(i as usize % keys.len());
                    prop_assert!(t.remove(k).is_some());
                    prop_assert!(t.remove(k).is_none());
                }
                prop_assert_eq!(t.live(), keys.len());
                prop_assert_eq!(t.occupied(), keys.len());
            }
        }
    }
}
