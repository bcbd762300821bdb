//! `RecordTable`: one tenant's keys in the memory store, packed for memory.
//!
//! A key and its value are one *record* of bytes:
//!
//! ```text
//! [flags][record length: u16][name length: u16][expiry: u64, if flagged]
//! [last use: u64, saved views only][name][stored value]
//! ```
//!
//! (`flags`: space, has-expiry, dead). A saved view's *last use* is a stamp
//! from its tenant's counter, rewritten in place when the view is read or
//! written: the memory store's least-recently-used queue tells live queue
//! records from stale ones by it (see [`super::memory`]). Records shorter than [`BIG`] bytes are
//! appended to chunks of up to 64 KiB; longer ones get an allocation of their
//! own. The hash table indexes records by a 4-byte locator (chunk and
//! offset, or a big-record slot), so a key costs its record plus about 9
//! bytes of table at hashbrown's usual load — no per-key allocation, no
//! pointers, no allocator headers.
//!
//! Overwriting or deleting a record marks it dead where it lies. A chunk
//! that is not being appended to and is at least half dead is *evacuated*:
//! its live records are copied to the active chunk (their locators updated)
//! and the chunk is freed. So dead bytes never exceed the live ones in any
//! finished chunk, and evacuation costs at most a chunk's copy, paid for by
//! the writes that killed half of it (amortized O(1) per write).
//!
//! Application state has no use stamp (it would cost every key 8 bytes
//! and every read a queue push). When the memory store must take room from
//! a tenant's application state ([`RecordTable::evict_data`]), it walks the
//! table's storage with a cursor — chunks in index order, each from its
//! start, then the big records — and removes the next live application
//! record: roughly the oldest written first, each record passed at most
//! once per walk of the table, no key scanned twice for one eviction.

use std::hash::{BuildHasher, Hasher, RandomState};

use hashbrown::HashTable;

use super::Value;

/// Records of at least this many bytes get their own allocation.
pub const BIG: usize = 4096;
/// Largest chunk.
pub const CHUNK_MAX: usize = 64 * 1024;
/// First chunk of a table (chunks double up to [`CHUNK_MAX`]).
pub const CHUNK_MIN: usize = 128;
/// Chunks one table may hold: 2 GiB of small records.
pub const MAX_CHUNKS: usize = 1 << 15;
const BIG_FLAG: u32 = 1 << 31;
const POS_BITS: u32 = 16;

const F_VIEW: u8 = 1;
const F_TTL: u8 = 2;
const F_DEAD: u8 = 4;
const HEADER: usize = 5;

/// The table cannot hold more records (locator space exhausted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableFull;

/// The hash of a key: `(space byte, name)`, with the store's keyed hasher.
pub fn key_hash(hasher: &RandomState, space: u8, name: &[u8]) -> u64 {
    let mut h = hasher.build_hasher();
    h.write_u8(space);
    h.write(name);
    h.finish()
}

/// A record, read in place.
#[derive(Clone, Copy)]
pub struct Record<'a>(&'a [u8]);

impl<'a> Record<'a> {
    fn flags(&self) -> u8 {
        self.0[0]
    }

    fn name_len(&self) -> usize {
        usize::from(u16::from_le_bytes([self.0[3], self.0[4]]))
    }

    fn body(&self) -> usize {
        stamp_at(self.flags()) + if self.flags() & F_VIEW != 0 { 8 } else { 0 }
    }

    /// The last-use stamp of a saved view; 0 for application state.
    pub fn stamp(&self) -> u64 {
        if self.flags() & F_VIEW == 0 {
            return 0;
        }
        let at = stamp_at(self.flags());
        let mut stamp = [0u8; 8];
        stamp.copy_from_slice(&self.0[at..at + 8]);
        u64::from_le_bytes(stamp)
    }

    /// 0 (data) or 1 (view).
    pub fn space(&self) -> u8 {
        self.flags() & F_VIEW
    }

    pub fn name(&self) -> &'a [u8] {
        let start = self.body();
        &self.0[start..start + self.name_len()]
    }

    /// The stored value (tag included).
    pub fn value(&self) -> &'a [u8] {
        &self.0[self.body() + self.name_len()..]
    }

    /// Milliseconds since the store's epoch, plus one; 0 = never.
    pub fn expires(&self) -> u64 {
        if self.flags() & F_TTL == 0 {
            return 0;
        }
        let mut at = [0u8; 8];
        at.copy_from_slice(&self.0[HEADER..HEADER + 8]);
        u64::from_le_bytes(at)
    }

    pub fn expired(&self, now: u64) -> bool {
        let at = self.expires();
        at != 0 && at <= now
    }

    pub fn is(&self, space: u8, name: &[u8]) -> bool {
        self.space() == space && self.name() == name
    }

    /// Bytes the record occupies.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// Where a record's last-use stamp starts (after the expiry, if any).
fn stamp_at(flags: u8) -> usize {
    HEADER + if flags & F_TTL != 0 { 8 } else { 0 }
}

/// Length of the record for these parts.
pub fn record_len(space: u8, name: &[u8], value: &Value<'_>, expires: u64) -> usize {
    HEADER
        + if expires != 0 { 8 } else { 0 }
        + if space & F_VIEW != 0 { 8 } else { 0 }
        + name.len()
        + value.encoded_len()
}

fn write_record(
    out: &mut Vec<u8>,
    space: u8,
    name: &[u8],
    value: &Value<'_>,
    at: Stamps,
    len: usize,
) {
    let Stamps { expires, used } = at;
    let mut flags = space & F_VIEW;
    if expires != 0 {
        flags |= F_TTL;
    }
    out.push(flags);
    // Big records do not need their length (their allocation has it).
    let small_len = if len < BIG { len as u16 } else { 0 };
    out.extend_from_slice(&small_len.to_le_bytes());
    // Names are at most MAX_NAME_LEN (1024) bytes: checked by callers.
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    if expires != 0 {
        out.extend_from_slice(&expires.to_le_bytes());
    }
    if flags & F_VIEW != 0 {
        out.extend_from_slice(&used.to_le_bytes());
    }
    out.extend_from_slice(name);
    value.write_to(out);
}

#[derive(Default)]
struct Chunk {
    data: Vec<u8>,
    dead: usize,
    /// Which life of this chunk slot (slots are reused): the eviction
    /// cursor trusts its offset only within the life it was taken in.
    life: u64,
}

/// Where [`RecordTable::evict_data`] looks next.
#[derive(Clone, Copy, Default)]
struct Cursor {
    chunk: u32,
    /// Offset of a record boundary in that chunk, valid for `life`.
    pos: u32,
    life: u64,
    /// Past the chunks: the next big-record slot.
    big: Option<u32>,
}

fn record_at<'a>(chunks: &'a [Chunk], big: &'a [Option<Box<[u8]>>], loc: u32) -> Record<'a> {
    if loc & BIG_FLAG != 0 {
        let bytes = big
            .get((loc & !BIG_FLAG) as usize)
            .and_then(Option::as_deref)
            .unwrap_or(&[]);
        return Record(bytes);
    }
    let data = &chunks[(loc >> POS_BITS) as usize].data;
    let pos = (loc & ((1 << POS_BITS) - 1)) as usize;
    let len = usize::from(u16::from_le_bytes([data[pos + 1], data[pos + 2]]));
    Record(&data[pos..pos + len])
}

#[derive(Default)]
pub struct RecordTable {
    index: HashTable<u32>,
    chunks: Vec<Chunk>,
    free_chunks: Vec<u32>,
    active: Option<u32>,
    big: Vec<Option<Box<[u8]>>>,
    free_big: Vec<u32>,
    /// Bytes held in chunks (live and dead), to size new chunks.
    chunk_bytes: usize,
    /// Finished chunks at least half dead, evacuated at the end of the
    /// current operation.
    pending: Vec<u32>,
    /// Chunk lives handed out (see [`Chunk::life`]).
    lives: u64,
    cursor: Cursor,
}

/// The times of a record: its expiry (0 = never) and, for a saved view,
/// its last-use stamp (ignored for application state).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stamps {
    pub expires: u64,
    pub used: u64,
}

/// What a removal took out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Removed {
    pub len: usize,
    pub expires: u64,
    pub space: u8,
}

impl RecordTable {
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The record at a locator from [`Self::locate`].
    pub fn record(&self, loc: u32) -> Record<'_> {
        record_at(&self.chunks, &self.big, loc)
    }

    /// The locator of the record of `(space, name)` (valid until the table
    /// is next changed).
    pub fn locate(&self, hash: u64, space: u8, name: &[u8]) -> Option<u32> {
        let (chunks, big) = (&self.chunks, &self.big);
        self.index
            .find(hash, |&loc| record_at(chunks, big, loc).is(space, name))
            .copied()
    }

    pub fn find(&self, hash: u64, space: u8, name: &[u8]) -> Option<Record<'_>> {
        self.locate(hash, space, name).map(|loc| self.record(loc))
    }

    /// Rewrites the last-use stamp of the saved view at `loc` in place
    /// (application state has none: nothing happens).
    pub fn set_stamp(&mut self, loc: u32, stamp: u64) {
        let bytes: &mut [u8] = if loc & BIG_FLAG != 0 {
            match self.big.get_mut((loc & !BIG_FLAG) as usize) {
                Some(Some(b)) => b,
                _ => return,
            }
        } else {
            let data = &mut self.chunks[(loc >> POS_BITS) as usize].data;
            &mut data[(loc & ((1 << POS_BITS) - 1)) as usize..]
        };
        let flags = bytes[0];
        if flags & F_VIEW != 0 {
            let at = stamp_at(flags);
            bytes[at..at + 8].copy_from_slice(&stamp.to_le_bytes());
        }
    }

    /// True when a saved view whose key hashes to `hash` has this stamp.
    pub fn has_stamp(&self, hash: u64, stamp: u64) -> bool {
        self.iter_hash(hash)
            .any(|r| r.flags() & F_VIEW != 0 && r.stamp() == stamp)
    }

    /// The records whose key hashes to `hash`.
    pub fn iter_hash(&self, hash: u64) -> impl Iterator<Item = Record<'_>> {
        self.index.iter_hash(hash).map(|&loc| self.record(loc))
    }

    pub fn iter(&self) -> impl Iterator<Item = Record<'_>> {
        self.index.iter().map(|&loc| self.record(loc))
    }

    /// Inserts or replaces the record of `(space, name)`; returns what it
    /// replaced.
    pub fn upsert(
        &mut self,
        hash: u64,
        space: u8,
        name: &[u8],
        value: &Value<'_>,
        at: Stamps,
        hasher: &RandomState,
    ) -> Result<Option<Removed>, TableFull> {
        let len = record_len(space, name, value, at.expires);
        let loc = self.place(len, |out| write_record(out, space, name, value, at, len))?;
        let (chunks, big) = (&self.chunks, &self.big);
        let replaced = match self.index.find_mut(hash, |&l| {
            l != loc && record_at(chunks, big, l).is(space, name)
        }) {
            Some(slot) => Some(std::mem::replace(slot, loc)),
            None => {
                self.index.insert_unique(hash, loc, |&l| {
                    let r = record_at(chunks, big, l);
                    key_hash(hasher, r.space(), r.name())
                });
                None
            }
        };
        let removed = replaced.map(|old| self.kill(old));
        self.settle(hasher);
        Ok(removed)
    }

    /// Removes the record of `(space, name)` for which `pred` holds.
    pub fn remove_if(
        &mut self,
        hash: u64,
        space: u8,
        name: &[u8],
        pred: impl Fn(&Record<'_>) -> bool,
        hasher: &RandomState,
    ) -> Option<Removed> {
        self.remove_first(hash, |r| r.is(space, name) && pred(r), hasher)
    }

    /// Removes the saved view whose key hashes to `hash` and whose last use
    /// is `stamp`, if it is still there.
    pub fn remove_stamped(
        &mut self,
        hash: u64,
        stamp: u64,
        hasher: &RandomState,
    ) -> Option<Removed> {
        self.remove_first(
            hash,
            |r| r.flags() & F_VIEW != 0 && r.stamp() == stamp,
            hasher,
        )
    }

    /// Removes the record hashed `hash` that `matches`.
    fn remove_first(
        &mut self,
        hash: u64,
        matches: impl Fn(&Record<'_>) -> bool,
        hasher: &RandomState,
    ) -> Option<Removed> {
        let (chunks, big) = (&self.chunks, &self.big);
        let found = self
            .index
            .find_entry(hash, |&l| matches(&record_at(chunks, big, l)))
            .ok()?;
        let (loc, _) = found.remove();
        let removed = self.kill(loc);
        self.settle(hasher);
        Some(removed)
    }

    /// Removes every record for which `drop` holds.
    pub fn remove_where(
        &mut self,
        mut drop: impl FnMut(&Record<'_>) -> bool,
        hasher: &RandomState,
    ) -> Vec<Removed> {
        let (chunks, big) = (&self.chunks, &self.big);
        let gone: Vec<u32> = self
            .index
            .extract_if(|l| drop(&record_at(chunks, big, *l)))
            .collect();
        let removed = gone.into_iter().map(|loc| self.kill(loc)).collect();
        self.settle(hasher);
        self.shrink(hasher);
        removed
    }

    /// Removes the next live application-state record (not a saved view)
    /// after the eviction cursor (see the module doc), walking round to
    /// the table's start at most once; None when there is none.
    pub fn evict_data(&mut self, hasher: &RandomState) -> Option<Removed> {
        let mut wrapped = false;
        loop {
            let at = self.cursor;
            if let Some(b) = at.big {
                let Some(slot) = self.big.get(b as usize) else {
                    if wrapped {
                        return None;
                    }
                    wrapped = true;
                    self.cursor = Cursor::default();
                    continue;
                };
                self.cursor.big = Some(b + 1);
                if slot.as_ref().is_some_and(|r| r[0] & (F_VIEW | F_DEAD) == 0) {
                    return Some(self.remove_at(BIG_FLAG | b, hasher));
                }
                continue;
            }
            let Some(chunk) = self.chunks.get(at.chunk as usize) else {
                self.cursor.big = Some(0);
                continue;
            };
            let pos = if chunk.life == at.life {
                at.pos as usize
            } else {
                0
            };
            let data = &chunk.data;
            if pos + HEADER > data.len() {
                self.cursor = Cursor {
                    chunk: at.chunk + 1,
                    ..Cursor::default()
                };
                continue;
            }
            let len = usize::from(u16::from_le_bytes([data[pos + 1], data[pos + 2]]));
            if len == 0 {
                // Cannot happen for chunk records; never loop forever.
                self.cursor.pos = data.len() as u32;
                continue;
            }
            let flags = data[pos];
            self.cursor = Cursor {
                chunk: at.chunk,
                pos: (pos + len) as u32,
                life: chunk.life,
                big: None,
            };
            if flags & (F_VIEW | F_DEAD) == 0 {
                return Some(self.remove_at((at.chunk << POS_BITS) | pos as u32, hasher));
            }
        }
    }

    /// Removes the live record at `loc` (unindexes it, marks it dead).
    fn remove_at(&mut self, loc: u32, hasher: &RandomState) -> Removed {
        let record = self.record(loc);
        let hash = key_hash(hasher, record.space(), record.name());
        if let Ok(found) = self.index.find_entry(hash, |&l| l == loc) {
            found.remove();
        }
        let removed = self.kill(loc);
        self.settle(hasher);
        removed
    }

    /// Gives memory back once the table has emptied a lot.
    pub fn shrink(&mut self, hasher: &RandomState) {
        if self.index.capacity() > 64 && self.index.len() * 4 < self.index.capacity() {
            let (chunks, big) = (&self.chunks, &self.big);
            self.index.shrink_to(self.index.len() * 2, |&l| {
                let r = record_at(chunks, big, l);
                key_hash(hasher, r.space(), r.name())
            });
        }
    }

    /// Bytes this table has allocated (records, chunks' spare room, table).
    pub fn allocated(&self) -> usize {
        let chunks: usize = self.chunks.iter().map(|c| c.data.capacity()).sum();
        let big: usize = self.big.iter().flatten().map(|b| b.len()).sum();
        chunks + big + self.index.allocation_size()
    }

    /// Stores a record of `len` bytes written by `write`; returns its locator.
    fn place(&mut self, len: usize, write: impl FnOnce(&mut Vec<u8>)) -> Result<u32, TableFull> {
        if len >= BIG {
            let mut bytes = Vec::with_capacity(len);
            write(&mut bytes);
            let bytes = Some(bytes.into_boxed_slice());
            let index = match self.free_big.pop() {
                Some(i) => {
                    self.big[i as usize] = bytes;
                    i
                }
                None => {
                    if self.big.len() >= BIG_FLAG as usize {
                        return Err(TableFull);
                    }
                    self.big.push(bytes);
                    (self.big.len() - 1) as u32
                }
            };
            return Ok(BIG_FLAG | index);
        }
        let room = self.active.map_or(0, |a| {
            let data = &self.chunks[a as usize].data;
            data.capacity() - data.len()
        });
        if room < len {
            self.start_chunk(len)?;
        }
        let active = self.active.ok_or(TableFull)?;
        let data = &mut self.chunks[active as usize].data;
        let pos = data.len();
        write(data);
        self.chunk_bytes += len;
        Ok((active << POS_BITS) | pos as u32)
    }

    /// Finishes the active chunk and starts a new one with room for `len`.
    fn start_chunk(&mut self, len: usize) -> Result<(), TableFull> {
        if self.free_chunks.is_empty() && self.chunks.len() >= MAX_CHUNKS {
            return Err(TableFull);
        }
        if let Some(old) = self.active.take() {
            let chunk = &mut self.chunks[old as usize];
            chunk.data.shrink_to_fit();
            if chunk.dead * 2 >= chunk.data.len() && !self.pending.contains(&old) {
                self.pending.push(old);
            }
        }
        let capacity = (self.chunk_bytes / 4)
            .next_power_of_two()
            .clamp(CHUNK_MIN, CHUNK_MAX)
            .max(len);
        self.lives += 1;
        let chunk = Chunk {
            data: Vec::with_capacity(capacity),
            dead: 0,
            life: self.lives,
        };
        let id = match self.free_chunks.pop() {
            Some(id) => {
                self.chunks[id as usize] = chunk;
                id
            }
            None => {
                self.chunks.push(chunk);
                (self.chunks.len() - 1) as u32
            }
        };
        self.active = Some(id);
        Ok(())
    }

    /// Marks the record at `loc` dead (it is no longer indexed).
    fn kill(&mut self, loc: u32) -> Removed {
        let record = self.record(loc);
        let removed = Removed {
            len: record.len(),
            expires: record.expires(),
            space: record.space(),
        };
        if loc & BIG_FLAG != 0 {
            let index = loc & !BIG_FLAG;
            if let Some(slot) = self.big.get_mut(index as usize) {
                *slot = None;
                self.free_big.push(index);
            }
            return removed;
        }
        let id = loc >> POS_BITS;
        let pos = (loc & ((1 << POS_BITS) - 1)) as usize;
        let chunk = &mut self.chunks[id as usize];
        chunk.data[pos] |= F_DEAD;
        chunk.dead += removed.len;
        if Some(id) != self.active
            && chunk.dead * 2 >= chunk.data.len()
            && !self.pending.contains(&id)
        {
            self.pending.push(id);
        }
        removed
    }

    /// Evacuates the pending chunks.
    fn settle(&mut self, hasher: &RandomState) {
        while let Some(id) = self.pending.pop() {
            let chunk = &self.chunks[id as usize];
            // Freed since, made active again, or no longer half dead.
            if Some(id) == self.active || chunk.data.is_empty() || chunk.dead * 2 < chunk.data.len()
            {
                continue;
            }
            if self.evacuate(id, hasher).is_err() {
                // No room for the moves: leave the chunk as it is.
                break;
            }
        }
    }

    /// Moves the live records of chunk `id` to the active chunk and frees it.
    fn evacuate(&mut self, id: u32, hasher: &RandomState) -> Result<(), TableFull> {
        let mut data = std::mem::take(&mut self.chunks[id as usize].data);
        self.chunk_bytes -= data.len();
        let mut pos = 0;
        while pos < data.len() {
            let len = usize::from(u16::from_le_bytes([data[pos + 1], data[pos + 2]]));
            if len == 0 {
                break; // cannot happen for chunk records; never loop forever
            }
            if data[pos] & F_DEAD == 0 {
                let record = Record(&data[pos..pos + len]);
                let hash = key_hash(hasher, record.space(), record.name());
                let old = (id << POS_BITS) | pos as u32;
                let moved = self.place(len, |out| out.extend_from_slice(record.0));
                let new = match moved {
                    Ok(new) => new,
                    Err(e) => {
                        self.chunk_bytes += data.len();
                        self.chunks[id as usize].data = data;
                        return Err(e);
                    }
                };
                if let Some(slot) = self.index.find_mut(hash, |&l| l == old) {
                    *slot = new;
                }
                data[pos] |= F_DEAD;
            }
            pos += len;
        }
        self.chunks[id as usize] = Chunk::default();
        self.free_chunks.push(id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(hasher: &RandomState, name: &str) -> u64 {
        key_hash(hasher, 0, name.as_bytes())
    }

    fn ttl(expires: u64) -> Stamps {
        Stamps { expires, used: 0 }
    }

    #[test]
    fn saved_views_carry_a_stamp_that_survives_evacuation() {
        let hasher = RandomState::new();
        let mut t = RecordTable::default();
        let vh = |name: &str| key_hash(&hasher, 1, name.as_bytes());
        let big = vec![3u8; BIG * 2];
        let at = |expires, used| Stamps { expires, used };
        t.upsert(vh("v"), 1, b"v", &Value::Bytes(b"view"), at(0, 7), &hasher)
            .unwrap();
        t.upsert(vh("w"), 1, b"w", &Value::Bytes(b"w"), at(99, 8), &hasher)
            .unwrap();
        t.upsert(vh("b"), 1, b"b", &Value::Bytes(&big), at(0, 9), &hasher)
            .unwrap();
        // The same name as data: no stamp, and apart from the view.
        t.upsert(h(&hasher, "v"), 0, b"v", &Value::Int(1), at(0, 5), &hasher)
            .unwrap();
        let v = t.find(vh("v"), 1, b"v").unwrap();
        assert_eq!(
            (v.stamp(), v.value(), v.name()),
            (7, &b"bview"[..], &b"v"[..])
        );
        assert_eq!(v.len(), record_len(1, b"v", &Value::Bytes(b"view"), 0));
        let w = t.find(vh("w"), 1, b"w").unwrap();
        assert_eq!((w.stamp(), w.expires(), w.value()), (8, 99, &b"bw"[..]));
        assert_eq!(t.find(h(&hasher, "v"), 0, b"v").unwrap().stamp(), 0);
        for (name, stamp) in [("v", 70), ("w", 80), ("b", 90)] {
            let loc = t.locate(vh(name), 1, name.as_bytes()).unwrap();
            t.set_stamp(loc, stamp);
            assert!(t.has_stamp(vh(name), stamp) && !t.has_stamp(vh(name), stamp / 10));
        }
        assert_eq!(t.find(vh("w"), 1, b"w").unwrap().expires(), 99);
        assert_eq!(t.find(vh("b"), 1, b"b").unwrap().value().len(), BIG * 2 + 1);
        // Churn moves the survivors to new chunks; stamps move with them.
        for i in 0..5000 {
            let name = format!("churn{}", i % 50);
            t.upsert(
                h(&hasher, &name),
                0,
                name.as_bytes(),
                &Value::Int(i),
                ttl(0),
                &hasher,
            )
            .unwrap();
        }
        assert!(t.has_stamp(vh("v"), 70) && t.has_stamp(vh("w"), 80));
        assert_eq!(t.remove_stamped(vh("v"), 7, &hasher), None, "stale stamp");
        let gone = t.remove_stamped(vh("v"), 70, &hasher).unwrap();
        let v_len = record_len(1, b"v", &Value::Bytes(b"view"), 0);
        assert_eq!((gone.space, gone.len), (1, v_len));
        assert!(t.find(vh("v"), 1, b"v").is_none());
        assert_eq!(t.find(h(&hasher, "v"), 0, b"v").unwrap().value(), b"1");
    }

    #[test]
    fn evict_data_takes_application_records_oldest_stored_first_never_views() {
        let hasher = RandomState::new();
        let mut t = RecordTable::default();
        let vh = |name: &str| key_hash(&hasher, 1, name.as_bytes());
        let big = vec![4u8; BIG * 2];
        let put = |t: &mut RecordTable, name: &str, value: &Value<'_>| {
            t.upsert(h(&hasher, name), 0, name.as_bytes(), value, ttl(0), &hasher)
                .unwrap();
        };
        for i in 0..300 {
            put(&mut t, &format!("d{i:03}"), &Value::Bytes(b"data"));
            let name = format!("v{i:03}");
            t.upsert(
                vh(&name),
                1,
                name.as_bytes(),
                &Value::Bytes(b"view"),
                ttl(0),
                &hasher,
            )
            .unwrap();
        }
        put(&mut t, "big", &Value::Bytes(&big));
        // The first ones stored go first.
        for i in 0..10 {
            let gone = t.evict_data(&hasher).unwrap();
            assert_eq!(gone.space, 0);
            assert!(t
                .find(
                    h(&hasher, &format!("d{i:03}")),
                    0,
                    format!("d{i:03}").as_bytes()
                )
                .is_none());
        }
        // Churn in between (overwrites, deletes, evacuations) keeps it sound.
        for i in 0..2000 {
            let name = format!("d{:03}", 100 + i % 150);
            put(&mut t, &name, &Value::Int(i));
            if i % 7 == 0 {
                t.remove_if(h(&hasher, &name), 0, name.as_bytes(), |_| true, &hasher);
            }
        }
        let views = t.iter().filter(|r| r.space() == 1).count();
        let mut evicted = 0;
        while let Some(gone) = t.evict_data(&hasher) {
            assert_eq!(gone.space, 0);
            evicted += 1;
            assert!(evicted < 1000, "never ends");
        }
        assert!(evicted > 100);
        assert!(t.iter().all(|r| r.space() == 1), "every data record went");
        assert_eq!(t.iter().count(), views, "every view stayed");
        assert!(t.find(vh("v000"), 1, b"v000").is_some());
        assert_eq!(t.evict_data(&hasher), None);
        // New data after a full walk is found again.
        put(&mut t, "late", &Value::Int(1));
        assert_eq!(t.evict_data(&hasher).map(|r| r.space), Some(0));
        assert!(t.find(h(&hasher, "late"), 0, b"late").is_none());
    }

    #[test]
    fn records_round_trip_small_and_big() {
        let hasher = RandomState::new();
        let mut t = RecordTable::default();
        let big = vec![9u8; BIG * 3];
        t.upsert(
            h(&hasher, "a"),
            0,
            b"a",
            &Value::Bytes(b"xyz"),
            ttl(0),
            &hasher,
        )
        .unwrap();
        t.upsert(
            h(&hasher, "b"),
            0,
            b"b",
            &Value::Bytes(&big),
            ttl(77),
            &hasher,
        )
        .unwrap();
        let a = t.find(h(&hasher, "a"), 0, b"a").unwrap();
        assert_eq!((a.value(), a.expires(), a.space()), (&b"bxyz"[..], 0, 0));
        let b = t.find(h(&hasher, "b"), 0, b"b").unwrap();
        assert_eq!((b.value().len(), b.expires()), (BIG * 3 + 1, 77));
        assert!(t.find(h(&hasher, "a"), 1, b"a").is_none(), "other space");
        let old = t
            .upsert(h(&hasher, "b"), 0, b"b", &Value::Int(5), ttl(0), &hasher)
            .unwrap()
            .unwrap();
        assert_eq!(old.expires, 77);
        assert_eq!(t.find(h(&hasher, "b"), 0, b"b").unwrap().value(), b"5");
        assert!(t
            .remove_if(h(&hasher, "a"), 0, b"a", |_| true, &hasher)
            .is_some());
        assert!(t.find(h(&hasher, "a"), 0, b"a").is_none());
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn dead_records_are_evacuated_and_memory_stays_bounded() {
        let hasher = RandomState::new();
        let mut t = RecordTable::default();
        let names: Vec<String> = (0..20_000).map(|i| format!("key{i}")).collect();
        for round in 0..5i64 {
            for (i, name) in names.iter().enumerate() {
                let value = Value::Int(round * 100_000 + i as i64);
                t.upsert(
                    h(&hasher, name),
                    0,
                    name.as_bytes(),
                    &value,
                    ttl(0),
                    &hasher,
                )
                .unwrap();
            }
        }
        for (i, name) in names.iter().enumerate() {
            let r = t.find(h(&hasher, name), 0, name.as_bytes()).unwrap();
            assert_eq!(r.value(), (400_000 + i).to_string().as_bytes());
        }
        let live: usize = t.iter().map(|r| r.len()).sum();
        let in_chunks: usize = t.chunks.iter().map(|c| c.data.len()).sum();
        assert!(
            in_chunks <= 2 * live + CHUNK_MAX,
            "{in_chunks} held for {live} live"
        );
        // Deleting most keys gives the chunks back.
        t.remove_where(|r| r.name() != b"key7", &hasher);
        assert_eq!(t.len(), 1);
        let in_chunks: usize = t.chunks.iter().map(|c| c.data.capacity()).sum();
        assert!(in_chunks <= 2 * CHUNK_MAX, "{in_chunks}");
        assert_eq!(
            t.find(h(&hasher, "key7"), 0, b"key7").unwrap().value(),
            b"400007"
        );
    }

    #[test]
    fn a_record_per_key_costs_about_its_bytes() {
        let hasher = RandomState::new();
        let mut t = RecordTable::default();
        let n = 100_000;
        for i in 0..n {
            let name = format!("{i:016}");
            t.upsert(
                h(&hasher, &name),
                0,
                name.as_bytes(),
                &Value::Bytes(&[1u8; 32]),
                ttl(0),
                &hasher,
            )
            .unwrap();
        }
        // 5 header + 16 name + 33 value = 54 bytes, plus the table.
        let per_key = t.allocated() as f64 / n as f64;
        assert!(per_key < 54.0 + 24.0, "{per_key}");
    }
}
