//! `LruTable`: a hash table whose entries also form a list ordered by their
//! last touch. It is the building block of the in-memory presence store: a
//! room is an `LruTable` of members (oldest heartbeat first, so expiry pops
//! from the front), and a shard is an `LruTable` of rooms (least recently
//! written first, so whole expired rooms are reclaimed from the front).
//!
//! Every operation is O(1): entries live densely in a `Vec` (removal is a
//! `swap_remove` that patches the moved entry's neighbours and index slot),
//! the list links are indices into that `Vec`, and lookups go through a
//! `hashbrown::HashTable` keyed by a hash the caller computed once. Memory
//! follows the live entries: the `Vec` and the index shrink when they fall
//! to a quarter of their capacity.

use std::time::Instant;

use hashbrown::HashTable;

const NIL: u32 = u32::MAX;

struct Node<T> {
    hash: u64,
    stamp: Instant,
    prev: u32,
    next: u32,
    item: T,
}

pub(crate) struct LruTable<T> {
    index: HashTable<u32>,
    nodes: Vec<Node<T>>,
    head: u32,
    tail: u32,
}

impl<T> Default for LruTable<T> {
    fn default() -> Self {
        LruTable {
            index: HashTable::new(),
            nodes: Vec::new(),
            head: NIL,
            tail: NIL,
        }
    }
}

impl<T> LruTable<T> {
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The position of the entry with this hash for which `eq` is true.
    pub fn find(&self, hash: u64, mut eq: impl FnMut(&T) -> bool) -> Option<usize> {
        let nodes = &self.nodes;
        self.index
            .find(hash, |&i| eq(&nodes[i as usize].item))
            .map(|&i| i as usize)
    }

    pub fn get(&self, pos: usize) -> &T {
        &self.nodes[pos].item
    }

    pub fn get_mut(&mut self, pos: usize) -> &mut T {
        &mut self.nodes[pos].item
    }

    pub fn stamp(&self, pos: usize) -> Instant {
        self.nodes[pos].stamp
    }

    /// The least recently touched entry.
    pub fn front(&self) -> Option<usize> {
        (self.head != NIL).then_some(self.head as usize)
    }

    /// Adds an entry as the most recently touched one; returns its position.
    /// The caller has checked (with [`find`](Self::find)) that it is new.
    pub fn push_back(&mut self, hash: u64, stamp: Instant, item: T) -> usize {
        let pos = self.nodes.len() as u32;
        self.nodes.push(Node {
            hash,
            stamp,
            prev: self.tail,
            next: NIL,
            item,
        });
        self.link_back(pos);
        let nodes = &self.nodes;
        self.index
            .insert_unique(hash, pos, |&i| nodes[i as usize].hash);
        pos as usize
    }

    /// Marks the entry as touched at `stamp` (moves it to the back).
    /// Stamps must not go backwards for the list to stay ordered; callers
    /// use a monotonic clock.
    pub fn touch(&mut self, pos: usize, stamp: Instant) {
        self.nodes[pos].stamp = stamp;
        if self.tail as usize != pos {
            self.unlink(pos as u32);
            self.nodes[pos].prev = self.tail;
            self.nodes[pos].next = NIL;
            self.link_back(pos as u32);
        }
    }

    /// Removes the entry at `pos` and returns it. The entry that was last in
    /// the `Vec` moves to `pos` (positions of other entries are unchanged).
    pub fn remove(&mut self, pos: usize) -> T {
        let p = pos as u32;
        self.unlink(p);
        let hash = self.nodes[pos].hash;
        if let Ok(entry) = self.index.find_entry(hash, |&i| i == p) {
            entry.remove();
        }
        let last = (self.nodes.len() - 1) as u32;
        let node = self.nodes.swap_remove(pos);
        if p != last {
            // The former last entry now lives at `pos`: repoint its neighbours
            // and its index slot.
            let (prev, next, moved_hash) = {
                let moved = &self.nodes[pos];
                (moved.prev, moved.next, moved.hash)
            };
            match prev {
                NIL => self.head = p,
                prev => self.nodes[prev as usize].next = p,
            }
            match next {
                NIL => self.tail = p,
                next => self.nodes[next as usize].prev = p,
            }
            if let Some(slot) = self.index.find_mut(moved_hash, |&i| i == last) {
                *slot = p;
            }
        }
        self.maybe_shrink();
        node.item
    }

    /// Every entry, least recently touched first.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter {
            table: self,
            pos: self.head,
        }
    }

    /// Positions in `Vec` order (not list order), for scans that remove.
    pub fn positions_rev(&self) -> std::iter::Rev<std::ops::Range<usize>> {
        (0..self.nodes.len()).rev()
    }

    /// Takes every entry out, leaving the table empty (and unallocated).
    pub fn drain_all(&mut self) -> impl Iterator<Item = T> {
        self.index = HashTable::new();
        self.head = NIL;
        self.tail = NIL;
        std::mem::take(&mut self.nodes)
            .into_iter()
            .map(|node| node.item)
    }

    fn link_back(&mut self, pos: u32) {
        match self.tail {
            NIL => self.head = pos,
            tail => self.nodes[tail as usize].next = pos,
        }
        self.tail = pos;
    }

    fn unlink(&mut self, pos: u32) {
        let (prev, next) = {
            let node = &self.nodes[pos as usize];
            (node.prev, node.next)
        };
        match prev {
            NIL => self.head = next,
            prev => self.nodes[prev as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            next => self.nodes[next as usize].prev = prev,
        }
        let node = &mut self.nodes[pos as usize];
        node.prev = NIL;
        node.next = NIL;
    }

    fn maybe_shrink(&mut self) {
        const MIN_CAPACITY: usize = 16;
        let len = self.nodes.len();
        if self.nodes.capacity() > MIN_CAPACITY && len < self.nodes.capacity() / 4 {
            let target = (len * 2).max(MIN_CAPACITY);
            self.nodes.shrink_to(target);
            let nodes = &self.nodes;
            self.index.shrink_to(target, |&i| nodes[i as usize].hash);
        }
        if len == 0 {
            self.nodes = Vec::new();
            self.index = HashTable::new();
        }
    }
}

pub(crate) struct Iter<'a, T> {
    table: &'a LruTable<T>,
    pos: u32,
}

impl<'a, T> Iterator for Iter<'a, T> {
    type Item = (&'a T, Instant);

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos == NIL {
            return None;
        }
        let node = &self.table.nodes[self.pos as usize];
        self.pos = node.next;
        Some((&node.item, node.stamp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;
    use std::hash::BuildHasher;
    use std::time::Duration;

    fn h(key: u32) -> u64 {
        // A deliberately weak hash so collisions are exercised too.
        std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
            .hash_one(key % 7)
    }

    #[derive(Debug, Clone)]
    enum Op {
        Upsert(u32),
        Remove(u32),
        PopFront,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u32..40).prop_map(Op::Upsert),
            (0u32..40).prop_map(Op::Remove),
            Just(Op::PopFront),
        ]
    }

    proptest! {
        /// The table behaves like a reference model: a queue of keys in
        /// last-touch order.
        #[test]
        fn matches_a_reference_model(ops in prop::collection::vec(op(), 0..300)) {
            let t0 = Instant::now();
            let mut table: LruTable<u32> = LruTable::default();
            let mut model: VecDeque<u32> = VecDeque::new();
            for (step, op) in ops.into_iter().enumerate() {
                let stamp = t0 + Duration::from_micros(step as u64);
                match op {
                    Op::Upsert(k) => {
                        match table.find(h(k), |&v| v == k) {
                            Some(pos) => table.touch(pos, stamp),
                            None => { table.push_back(h(k), stamp, k); }
                        }
                        model.retain(|&m| m != k);
                        model.push_back(k);
                    }
                    Op::Remove(k) => {
                        let got = table.find(h(k), |&v| v == k).map(|pos| table.remove(pos));
                        let had = model.iter().position(|&m| m == k).map(|i| model.remove(i));
                        prop_assert_eq!(got, had.flatten());
                    }
                    Op::PopFront => {
                        let got = table.front().map(|pos| table.remove(pos));
                        prop_assert_eq!(got, model.pop_front());
                    }
                }
                let order: Vec<u32> = table.iter().map(|(v, _)| *v).collect();
                prop_assert_eq!(&order, &model.iter().copied().collect::<Vec<_>>());
                prop_assert_eq!(table.len(), model.len());
                for &k in &model {
                    prop_assert!(table.find(h(k), |&v| v == k).is_some());
                }
            }
        }
    }

    #[test]
    fn memory_is_released_when_entries_go() {
        let t0 = Instant::now();
        let mut table: LruTable<u32> = LruTable::default();
        for k in 0..10_000 {
            table.push_back(h(k), t0, k);
        }
        while let Some(pos) = table.front() {
            table.remove(pos);
        }
        assert_eq!(table.nodes.capacity(), 0);
        assert_eq!(table.index.capacity(), 0);
        for k in 0..10_000 {
            table.push_back(h(k), t0, k);
        }
        for k in 10..10_000 {
            let pos = table.find(h(k), |&v| v == k).unwrap();
            table.remove(pos);
        }
        assert!(table.nodes.capacity() <= 64, "{}", table.nodes.capacity());
    }
}
