//! The key-value store: integer keys, byte-string values, one table in the
//! segment shared by every worker, behind one reader-writer bakery lock.
//!
//! The table is an open-addressing hash index (linear probing, at most half
//! full, backward-shift deletion: no tombstones) over dense entries: keys
//! `0..count` are live, and a delete moves the last entry into the hole. The
//! index is consistent whenever no writer is inside a change.
//!
//! Crash safety comes from the journal, not from the order of stores.
//! Changes are made in groups ([`ChangeGroup`]: one change, or a run of
//! pipelined ones) under one hold of the write lock: each is checked,
//! staged in the [`Journal`] and made in the table, with `changing` naming
//! the writer; then the group's records are written to the journal
//! (database.txt) in one append, and only then is the lock released and
//! `OK` sent. A failed append undoes the group's changes in the table. A
//! writer killed inside a group leaves `changing` set and the write lock
//! held; whoever reaps it rebuilds the table from the journal
//! ([`crate::Database::recover`]) before its lock entry is cleared, so no
//! reader ever sees a change the journal does not hold, and the table
//! holds exactly what the journal holds.

use std::io;
use std::ops::Range;
use std::sync::atomic::{AtomicU32, Ordering};

use thiserror::Error;

use crate::error::LockError;
use crate::layout::{KvEntry, KvHeader};
use crate::lock::Deadline;
use crate::mailbox_lock::{LockGuard, MailboxLock, Participant};

/// One change to the store, as the journal records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change<'v> {
    Put { key: i64, value: &'v [u8] },
    Del { key: i64 },
}

/// Why a store operation did not happen. The store is then as it was.
#[derive(Debug, Error)]
pub enum KvError {
    #[error("key exists")]
    Exists,
    #[error("no such key")]
    NotFound,
    #[error("store full: {capacity} keys")]
    Full { capacity: usize },
    #[error("value of {len} bytes is over the {limit}-byte limit")]
    TooLong { len: usize, limit: usize },
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("journal: {0}")]
    Journal(io::Error),
}

/// Why a key is not a key.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    #[error("missing key")]
    Missing,
    #[error("key is not an integer")]
    NotInteger,
    #[error("key out of range")]
    OutOfRange,
}

/// Parses a key: an optional sign and decimal digits, within i64.
pub fn parse_key(token: &[u8]) -> Result<i64, KeyError> {
    let digits = token.strip_prefix(b"-").or(token.strip_prefix(b"+"));
    let digits = digits.unwrap_or(token);
    if token.is_empty() {
        return Err(KeyError::Missing);
    }
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(KeyError::NotInteger);
    }
    std::str::from_utf8(token)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or(KeyError::OutOfRange)
}

/// Makes changes durable. Called under the store's write lock.
pub trait Journal {
    /// Adds a change's record to the group being written; no I/O yet.
    fn stage(&mut self, change: &Change<'_>);
    /// Writes the staged records and empties the stage. On error none of
    /// them is in the journal, and the error is the clients'.
    fn commit(&mut self, table: &Table<'_>) -> io::Result<()>;
    /// Empties the stage without writing it (the group was undone).
    fn discard(&mut self);
    /// After a group: the whole table, e.g. to compact the journal.
    fn after(&mut self, _table: &Table<'_>) {}
}

/// No journal: the table alone (tests and benchmarks).
pub struct InMemory;

impl Journal for InMemory {
    fn stage(&mut self, _change: &Change<'_>) {}

    fn commit(&mut self, _table: &Table<'_>) -> io::Result<()> {
        Ok(())
    }

    fn discard(&mut self) {}
}

/// How to undo a group's changes in the table; kept from group to group so
/// that its memory is reused.
#[derive(Debug, Default)]
pub struct UndoLog {
    steps: Vec<Undo>,
    /// The values of the pairs the group removed.
    values: Vec<u8>,
}

#[derive(Debug)]
enum Undo {
    Inserted { key: i64 },
    Removed { key: i64, value: Range<usize> },
}

/// Bytes of buffer a session keeps between groups; a larger group's
/// buffers are given back, so an idle connection costs little.
pub const KEPT_BUFFER: usize = 64 * 1024;

impl UndoLog {
    fn clear(&mut self) {
        self.steps.clear();
        self.values.clear();
        self.values.shrink_to(KEPT_BUFFER);
    }
}

/// The store's table in the segment, without its lock. Reading it needs the
/// read lock, changing it the write lock, or proof that no one else can be
/// inside (see [`KeyValue::exclusive`]).
pub struct Table<'a> {
    header: &'a KvHeader,
    buckets: &'a [AtomicU32],
    entries: &'a [KvEntry],
    /// `entries.len()` values of `value_size` bytes each.
    values: *mut u8,
    value_size: usize,
}

/// The key-value store: the table and its lock.
pub struct KeyValue<'a> {
    lock: MailboxLock<'a>,
    table: Table<'a>,
}

/// splitmix64's finaliser: every key bit moves every hash bit.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl<'a> Table<'a> {
    /// # Safety
    /// `values` points to `entries.len() * value_size` bytes of the same
    /// mapping as the other references; `buckets.len()` is a power of two
    /// at least twice `entries.len()` (or zero with no entries).
    pub(crate) unsafe fn new(
        header: &'a KvHeader,
        buckets: &'a [AtomicU32],
        entries: &'a [KvEntry],
        values: *mut u8,
        value_size: usize,
    ) -> Table<'a> {
        Table {
            header,
            buckets,
            entries,
            values,
            value_size,
        }
    }

    /// How many keys it can hold.
    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    /// The longest value it takes.
    pub fn value_limit(&self) -> usize {
        self.value_size
    }

    /// Keys stored (a snapshot when read without the lock).
    pub fn len(&self) -> usize {
        (self.header.count.load(Ordering::Acquire) as usize).min(self.capacity())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of all values stored.
    pub fn value_bytes(&self) -> u64 {
        self.header.value_bytes.load(Ordering::Relaxed)
    }

    /// The journal's size in bytes, as the journal last recorded it.
    pub fn journal_bytes(&self) -> u64 {
        self.header.journal_bytes.load(Ordering::Relaxed)
    }

    pub(crate) fn set_journal_bytes(&self, bytes: u64) {
        self.header.journal_bytes.store(bytes, Ordering::Relaxed);
    }

    pub(crate) fn compact_after(&self) -> u64 {
        self.header.compact_after.load(Ordering::Relaxed)
    }

    pub(crate) fn set_compact_after(&self, bytes: u64) {
        self.header.compact_after.store(bytes, Ordering::Relaxed);
    }

    /// How many compactions the journal went through.
    pub(crate) fn generation(&self) -> u64 {
        self.header.generation.load(Ordering::Acquire)
    }

    /// Counts a compaction; returns the new generation.
    pub(crate) fn next_generation(&self) -> u64 {
        self.header.generation.fetch_add(1, Ordering::AcqRel) + 1
    }

    pub(crate) fn unsynced(&self) -> &AtomicU32 {
        &self.header.unsynced
    }

    fn mask(&self) -> usize {
        self.buckets.len() - 1
    }

    fn home(&self, key: i64) -> usize {
        mix(key as u64 ^ self.header.seed) as usize & self.mask()
    }

    fn key_at(&self, index: usize) -> i64 {
        self.entries[index].key.load(Ordering::Relaxed)
    }

    fn value_ptr(&self, index: usize) -> *mut u8 {
        // SAFETY (of the arithmetic): index < capacity, and the values area
        // holds capacity values of value_size bytes (contract of `new`).
        unsafe { self.values.add(index * self.value_size) }
    }

    fn value_at(&self, index: usize) -> &[u8] {
        let len = (self.entries[index].len.load(Ordering::Relaxed) as usize).min(self.value_size);
        // SAFETY: len <= value_size bytes of entry `index`'s value, which
        // only a writer holding the lock (excluding us) changes.
        unsafe { std::slice::from_raw_parts(self.value_ptr(index), len) }
    }

    /// The bucket and entry of `key`.
    fn find(&self, key: i64) -> Option<(usize, usize)> {
        if self.buckets.is_empty() {
            return None;
        }
        let mut bucket = self.home(key);
        // At most half full, so an empty bucket ends every probe; the bound
        // only guards against a table corrupted from outside.
        for _ in 0..self.buckets.len() {
            let slot = self.buckets[bucket].load(Ordering::Relaxed) as usize;
            if slot == 0 {
                return None;
            }
            let index = slot - 1;
            if index < self.capacity() && self.key_at(index) == key {
                return Some((bucket, index));
            }
            bucket = (bucket + 1) & self.mask();
        }
        None
    }

    /// The value of `key`.
    pub fn get(&self, key: i64) -> Option<&[u8]> {
        self.find(key).map(|(_, index)| self.value_at(index))
    }

    pub fn contains(&self, key: i64) -> bool {
        self.find(key).is_some()
    }

    /// Every pair, in storage order.
    pub fn pairs(&self) -> impl Iterator<Item = (i64, &[u8])> + '_ {
        (0..self.len()).map(|i| (self.key_at(i), self.value_at(i)))
    }

    fn store_value(&self, index: usize, value: &[u8]) {
        assert!(value.len() <= self.value_size, "value over the limit");
        // SAFETY: value fits entry `index`'s value area; the caller holds the
        // write lock (or exclusive access), so no one reads it meanwhile.
        unsafe {
            std::ptr::copy_nonoverlapping(value.as_ptr(), self.value_ptr(index), value.len())
        };
        self.entries[index]
            .len
            .store(value.len() as u64, Ordering::Relaxed);
    }

    /// Stores a pair whose key is not stored yet. Needs the write lock or
    /// exclusive access; the caller checked that the key is new, the
    /// capacity and the value's length.
    pub(crate) fn insert(&self, key: i64, value: &[u8]) {
        let index = self.len();
        assert!(index < self.capacity(), "store full");
        self.entries[index].key.store(key, Ordering::Relaxed);
        self.store_value(index, value);
        let mut bucket = self.home(key);
        while self.buckets[bucket].load(Ordering::Relaxed) != 0 {
            bucket = (bucket + 1) & self.mask();
        }
        self.buckets[bucket].store(index as u32 + 1, Ordering::Relaxed);
        self.header
            .value_bytes
            .fetch_add(value.len() as u64, Ordering::Relaxed);
        self.header.count.store(index as u32 + 1, Ordering::Release);
    }

    /// Removes a pair; false when there was none. Needs the write lock or
    /// exclusive access.
    pub(crate) fn remove(&self, key: i64) -> bool {
        let Some((bucket, index)) = self.find(key) else {
            return false;
        };
        let removed = self.value_at(index).len() as u64;
        self.close_gap(bucket);
        let last = self.len() - 1;
        if index != last {
            // The last entry moves into the hole, and its bucket follows.
            let (moved_bucket, _) = self
                .find(self.key_at(last))
                .expect("every live entry has a bucket");
            self.entries[index]
                .key
                .store(self.key_at(last), Ordering::Relaxed);
            // SAFETY: two distinct entries' value areas (index != last), both
            // within the values area; exclusive access as above.
            unsafe {
                let len = self.value_at(last).len();
                std::ptr::copy_nonoverlapping(self.value_ptr(last), self.value_ptr(index), len);
                self.entries[index].len.store(len as u64, Ordering::Relaxed);
            }
            self.buckets[moved_bucket].store(index as u32 + 1, Ordering::Relaxed);
        }
        self.header
            .value_bytes
            .fetch_sub(removed, Ordering::Relaxed);
        self.header.count.store(last as u32, Ordering::Release);
        true
    }

    /// Empties `bucket` and shifts back the entries after it that would
    /// otherwise no longer be found (linear probing's deletion).
    fn close_gap(&self, bucket: usize) {
        let mask = self.mask();
        let mut hole = bucket;
        let mut next = bucket;
        loop {
            next = (next + 1) & mask;
            let slot = self.buckets[next].load(Ordering::Relaxed);
            if slot == 0 {
                break;
            }
            let home = self.home(self.key_at(slot as usize - 1));
            // It may fill the hole unless its home lies cyclically in
            // (hole, next]: then the hole is before its home.
            let home_after_hole = if hole <= next {
                hole < home && home <= next
            } else {
                hole < home || home <= next
            };
            if !home_after_hole {
                self.buckets[hole].store(slot, Ordering::Relaxed);
                hole = next;
            }
        }
        self.buckets[hole].store(0, Ordering::Relaxed);
    }

    /// Removes every pair. Needs exclusive access.
    pub(crate) fn clear(&self) {
        for bucket in self.buckets {
            bucket.store(0, Ordering::Relaxed);
        }
        self.header.value_bytes.store(0, Ordering::Relaxed);
        self.header.count.store(0, Ordering::Release);
    }
}

struct AbortOnUnwind;

impl Drop for AbortOnUnwind {
    fn drop(&mut self) {
        if std::thread::panicking() {
            std::process::abort();
        }
    }
}

impl<'a> KeyValue<'a> {
    pub(crate) fn new(lock: MailboxLock<'a>, table: Table<'a>) -> KeyValue<'a> {
        KeyValue { lock, table }
    }

    /// The table, for figures read without the lock (`len`, `capacity`).
    pub fn table(&self) -> &Table<'a> {
        &self.table
    }

    /// Calls `f` with the value of `key` under the read lock.
    pub fn get_with<R>(
        &self,
        me: Participant,
        deadline: &Deadline<'_>,
        key: i64,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, KvError> {
        let _guard = self.lock.read(me, deadline)?;
        self.table.get(key).map(f).ok_or(KvError::NotFound)
    }

    /// Takes the write lock for a group of changes.
    pub fn begin<'k>(
        &'k self,
        me: Participant,
        deadline: &Deadline<'_>,
        journal: &'k mut dyn Journal,
        undo: &'k mut UndoLog,
    ) -> Result<ChangeGroup<'k, 'a>, KvError> {
        let guard = self.lock.write(me, deadline)?;
        undo.clear();
        Ok(ChangeGroup {
            table: &self.table,
            me,
            journal,
            undo,
            _abort: AbortOnUnwind,
            _guard: guard,
        })
    }

    /// Stores a new pair (a group of one): an existing key is refused.
    pub fn put(
        &self,
        me: Participant,
        deadline: &Deadline<'_>,
        key: i64,
        value: &[u8],
        journal: &mut dyn Journal,
    ) -> Result<(), KvError> {
        let mut undo = UndoLog::default();
        let mut group = self.begin(me, deadline, journal, &mut undo)?;
        group.put(key, value)?;
        group.commit()
    }

    /// Removes a pair (a group of one).
    pub fn del(
        &self,
        me: Participant,
        deadline: &Deadline<'_>,
        key: i64,
        journal: &mut dyn Journal,
    ) -> Result<(), KvError> {
        let mut undo = UndoLog::default();
        let mut group = self.begin(me, deadline, journal, &mut undo)?;
        group.del(key)?;
        group.commit()
    }

    /// The participant that died (or may have) inside a change, if any.
    pub fn changing(&self) -> Option<Participant> {
        match self.table.header.changing.load(Ordering::SeqCst) {
            0 => None,
            n => Some(Participant(n as usize - 1)),
        }
    }

    /// The table for loading or rebuilding it without the lock.
    ///
    /// # Safety
    /// No other process or thread may use the store meanwhile: the daemon
    /// has not started its workers yet, or the only participant that could
    /// be inside (holding the write lock) is dead and not yet repaired.
    pub(crate) unsafe fn exclusive(&self) -> &Table<'a> {
        &self.table
    }

    pub(crate) fn clear_changing(&self) {
        self.table.header.changing.store(0, Ordering::SeqCst);
    }

    /// Clears a dead participant's state from the store's lock, unless it
    /// died inside a change that no rebuild has undone yet
    /// ([`crate::Database::recover`] clears the marker): the store then
    /// stays locked rather than show a table the journal does not hold.
    pub(crate) fn repair(&self, dead: Participant) -> bool {
        self.changing() != Some(dead) && self.lock.repair(dead)
    }
}

/// Changes made under one hold of the store's write lock and written to
/// the journal in one append by [`ChangeGroup::commit`]. Until then they
/// are in the table but nobody else can see them; dropped without a
/// commit, the group undoes them.
pub struct ChangeGroup<'k, 'a> {
    table: &'k Table<'a>,
    me: Participant,
    journal: &'k mut dyn Journal,
    undo: &'k mut UndoLog,
    // Declared before the guard, so dropped before it: a panic in a change
    // aborts the process while the lock is still held, and whoever reaps it
    // rebuilds the table, instead of unwinding through the guard and
    // letting others into a half-changed table.
    _abort: AbortOnUnwind,
    _guard: LockGuard<'a>,
}

impl ChangeGroup<'_, '_> {
    /// Stores a new pair: an existing key is refused.
    pub fn put(&mut self, key: i64, value: &[u8]) -> Result<(), KvError> {
        let table = self.table;
        if value.len() > table.value_size {
            return Err(KvError::TooLong {
                len: value.len(),
                limit: table.value_size,
            });
        }
        if table.contains(key) {
            return Err(KvError::Exists);
        }
        if table.len() >= table.capacity() {
            return Err(KvError::Full {
                capacity: table.capacity(),
            });
        }
        self.mark_changing();
        self.journal.stage(&Change::Put { key, value });
        table.insert(key, value);
        self.undo.steps.push(Undo::Inserted { key });
        Ok(())
    }

    /// Removes a pair.
    pub fn del(&mut self, key: i64) -> Result<(), KvError> {
        let table = self.table;
        let Some(value) = table.get(key) else {
            return Err(KvError::NotFound);
        };
        self.mark_changing();
        self.journal.stage(&Change::Del { key });
        let start = self.undo.values.len();
        self.undo.values.extend_from_slice(value);
        let value = start..self.undo.values.len();
        self.undo.steps.push(Undo::Removed { key, value });
        table.remove(key);
        Ok(())
    }

    /// How many changes the group holds.
    pub fn len(&self) -> usize {
        self.undo.steps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.undo.steps.is_empty()
    }

    fn mark_changing(&self) {
        if self.undo.steps.is_empty() {
            let marker = self.me.0 as u32 + 1;
            self.table.header.changing.store(marker, Ordering::SeqCst);
        }
    }

    /// Writes the group's records to the journal, then releases the lock.
    /// On error every change of the group is undone: the store is as it
    /// was before the group.
    pub fn commit(mut self) -> Result<(), KvError> {
        if self.undo.steps.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.journal.commit(self.table) {
            self.undo_all();
            return Err(KvError::Journal(e));
        }
        self.undo.clear();
        self.table.header.changing.store(0, Ordering::SeqCst);
        self.journal.after(self.table);
        Ok(())
    }

    /// Undoes the group's changes, newest first.
    fn undo_all(&mut self) {
        self.journal.discard();
        while let Some(step) = self.undo.steps.pop() {
            match step {
                Undo::Inserted { key } => {
                    self.table.remove(key);
                }
                Undo::Removed { key, value } => {
                    self.table.insert(key, &self.undo.values[value]);
                }
            }
        }
        self.undo.clear();
        self.table.header.changing.store(0, Ordering::SeqCst);
    }
}

impl Drop for ChangeGroup<'_, '_> {
    fn drop(&mut self) {
        if !self.undo.steps.is_empty() && !std::thread::panicking() {
            self.undo_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_within_i64() {
        assert_eq!(parse_key(b"5"), Ok(5));
        assert_eq!(parse_key(b"-12"), Ok(-12));
        assert_eq!(parse_key(b"+7"), Ok(7));
        assert_eq!(parse_key(b"007"), Ok(7));
        assert_eq!(parse_key(b"9223372036854775807"), Ok(i64::MAX));
        assert_eq!(parse_key(b"-9223372036854775808"), Ok(i64::MIN));
        assert_eq!(parse_key(b"9223372036854775808"), Err(KeyError::OutOfRange));
        assert_eq!(parse_key(b""), Err(KeyError::Missing));
        assert_eq!(parse_key(b"-"), Err(KeyError::NotInteger));
        assert_eq!(parse_key(b"1.5"), Err(KeyError::NotInteger));
        assert_eq!(parse_key(b"abc"), Err(KeyError::NotInteger));
        assert_eq!(parse_key(b"--1"), Err(KeyError::NotInteger));
    }
}
