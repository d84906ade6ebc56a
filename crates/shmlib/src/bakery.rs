//! A crash-repairable, first-come-first-served reader-writer lock: Lamport's
//! bakery algorithm with reader sharing.
//!
//! Every participant (a worker slot) owns one [`Entry`] per lock, a single
//! 64-bit word, and writes only its own word; everything the lock knows about
//! a participant's place in line is in that word (besides it, one bit of the
//! shared sleep mask says whether it sleeps, set and cleared with atomic
//! read-modify-writes). So when a participant dies, at any instant, even
//! inside the doorway, the supervisor repairs the lock by clearing the dead
//! one's word and bit ([`BakeryLock::repair`]), and a waiter that gives up
//! clears its own: in both cases the lock is exactly as if it had never come.
//!
//! - Doorway: announce `CHOOSING` and the kind, take a ticket one above every
//!   ticket in sight, publish it (clearing `CHOOSING` in the same store).
//! - Then, for every other participant j: wait while j is in its doorway, or
//!   holds a smaller (ticket, index) while either of us is a writer. Readers
//!   therefore share the lock with readers and wait only for earlier writers;
//!   writers wait for everyone earlier: service is in ticket order, so nobody
//!   starves and there is no cycle to deadlock on.
//!
//! Memory order: the two store-then-load points of the doorway, and every
//! change followed by the look for sleepers, are separated by
//! `fence(SeqCst)`; the rest is acquire/release. That is also what loom
//! models exactly, so the model check (`tests/loom_bakery.rs`) runs this very
//! code over every interleaving, timeouts and repairs included. A row of a
//! single participant skips all of it (`is_sole_participant`): with nobody
//! to interleave with there is nothing for loom to check there.
//!
//! Waiting: a few spins, then a [`Park`] (a shared futex with a deadline in
//! the daemon, a condition variable under loom) on the lock's wake word,
//! bumped only when someone sleeps, so the uncontended path makes no system
//! call and no read-modify-write at all.

#[cfg(loom)]
use loom::sync::atomic::{fence, AtomicU32, AtomicU64};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
#[cfg(not(loom))]
use std::sync::atomic::{fence, AtomicU32, AtomicU64};

use crate::error::LockError;

/// Whether a participant wants to share the lock or hold it alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum Kind {
    Reader = 1,
    Writer = 2,
}

const CHOOSING: u64 = 1;
const KIND_SHIFT: u32 = 1;
const KIND_MASK: u64 = 0b11 << KIND_SHIFT;
const TICKET_SHIFT: u32 = 3;
/// Tickets must fit the word; see [`BakeryLock::acquire`].
const MAX_TICKET: u64 = u64::MAX >> TICKET_SHIFT;

/// One participant's word in one lock: 0 when not interested, else
/// `ticket << 3 | kind << 1 | choosing`.
#[repr(transparent)]
#[derive(Debug, Default)]
pub struct Entry(AtomicU64);

impl Entry {
    /// Sets the raw word, as a process killed at that point leaves it: for
    /// the model check of repairs.
    #[cfg(loom)]
    pub fn set_raw_for_test(&self, word: u64) {
        self.0.store(word, SeqCst);
    }
}

fn ticket_of(word: u64) -> u64 {
    word >> TICKET_SHIFT
}

fn is_reader(word: u64) -> bool {
    word & KIND_MASK == (Kind::Reader as u64) << KIND_SHIFT
}

/// The lock's futex word: bumped on every change while someone sleeps.
#[repr(C)]
#[derive(Debug, Default)]
pub struct WakeWord {
    generation: AtomicU32,
}

/// Who is about to sleep or sleeping on the lock: bit `i % 64` of word
/// `i / 64` for participant i. A bit each, set and cleared by atomic
/// read-modify-writes, so that a repair can clear exactly a dead sleeper's
/// mark (a shared count could not tell how much of it was the dead one's).
#[repr(transparent)]
#[derive(Debug, Default)]
pub struct SleepMask(AtomicU64);

/// How many [`SleepMask`] words a lock of `participants` needs.
pub const fn sleep_mask_words(participants: usize) -> usize {
    participants.div_ceil(64)
}

fn sleep_bit(who: usize) -> (usize, u64) {
    (who / 64, 1 << (who % 64))
}

/// Proof that every store this participant made before it is ordered before
/// every load it makes after it, as every other participant of the lock
/// sees them: a `fence(SeqCst)` came between them, or the lock has no other
/// participant (a row of one, see [`BakeryLock::acquire`]). A caller holding
/// one may load, as the second half of a store-then-load handshake with the
/// lock's participants, without a fence of its own (see
/// `WaiterMask::wake_all`). Made only in this crate, and neither `Clone` nor
/// `Copy`: a function that relies on the ordering says so in its signature,
/// and the fence cannot be taken away without the code that issues it
/// changing too.
#[derive(Debug)]
pub struct StoreLoadOrdered(());

impl StoreLoadOrdered {
    /// Issues the fence.
    pub(crate) fn fence() -> StoreLoadOrdered {
        fence(SeqCst);
        StoreLoadOrdered(())
    }
}

/// How a participant sleeps until the lock's state may have changed.
pub trait Park {
    /// Sleeps while `generation` still reads `seen` (or not at all). An
    /// error (timeout, cancellation) ends the acquisition.
    fn park(&mut self, generation: &AtomicU32, seen: u32) -> Result<(), LockError>;
    /// Wakes every participant sleeping on `generation`.
    fn unpark_all(&self, generation: &AtomicU32);
}

/// Busy checks before sleeping: a reader's critical section (a copy of a few
/// KiB) is shorter than a futex sleep and wake-up. None under loom, where a
/// spin is only more interleavings of the same loads.
#[cfg(not(loom))]
const SPINS: u32 = 200;
#[cfg(loom)]
const SPINS: u32 = 0;

/// A view of one lock: the wake word and one entry per participant.
#[derive(Clone, Copy)]
pub struct BakeryLock<'a> {
    wake: &'a WakeWord,
    entries: &'a [Entry],
    sleeping: &'a [SleepMask],
}

impl<'a> BakeryLock<'a> {
    /// `sleeping` must have [`sleep_mask_words`]`(entries.len())` words.
    pub fn new(
        wake: &'a WakeWord,
        entries: &'a [Entry],
        sleeping: &'a [SleepMask],
    ) -> BakeryLock<'a> {
        assert!(
            sleeping.len() >= sleep_mask_words(entries.len()),
            "a sleep mask too short for the participants"
        );
        BakeryLock {
            wake,
            entries,
            sleeping,
        }
    }

    /// Takes the lock for participant `me` (< the number of entries); says
    /// whether it had to wait for anyone. On error, `me`'s entry is clear
    /// again: the lock is as it was.
    ///
    /// Inlined where the lock is taken, so that a row of one costs a test,
    /// a load and a store; the bakery proper is out of line.
    #[inline(always)]
    pub fn acquire<P: Park>(&self, me: usize, kind: Kind, park: &mut P) -> Result<bool, LockError> {
        if self.is_sole_participant() {
            // Nobody else can be in the doorway, hold the lock or sleep on
            // it: the word is kept only for the repair after a death. A
            // word still set is a dead holder's that the repair left on
            // purpose (a key-value store that could not be rebuilt stays
            // locked): refused, never overwritten.
            let mine = &self.entries[me].0;
            if mine.load(Relaxed) != 0 {
                return Err(LockError::Corrupt);
            }
            mine.store(1 << TICKET_SHIFT | (kind as u64) << KIND_SHIFT, Relaxed);
            return Ok(false);
        }
        self.acquire_in_line(me, kind, park)
    }

    /// [`BakeryLock::acquire`] among other participants: the doorway, a
    /// ticket, and the wait for every earlier one.
    #[inline(never)]
    fn acquire_in_line<P: Park>(
        &self,
        me: usize,
        kind: Kind,
        park: &mut P,
    ) -> Result<bool, LockError> {
        let mine = &self.entries[me].0;
        let kind_bits = (kind as u64) << KIND_SHIFT;
        mine.store(CHOOSING | kind_bits, Relaxed);
        // Store-load: our CHOOSING is visible before we read the tickets.
        fence(SeqCst);
        let highest = self
            .entries
            .iter()
            .map(|e| ticket_of(e.0.load(Relaxed)))
            .max()
            .unwrap_or(0);
        // Tickets grow only while the lock is never idle, by one per
        // acquisition: 2^61 of them is decades at a billion a second. A word
        // corrupted to a huge ticket is refused rather than wrapped.
        if highest >= MAX_TICKET {
            self.clear(me, park);
            return Err(LockError::Corrupt);
        }
        let ticket = highest + 1;
        let word = ticket << TICKET_SHIFT | kind_bits;
        mine.store(word, Release);
        // Store-load: our ticket is visible before we read the others' words
        // (and before we look for sleepers waiting on our doorway).
        fence(SeqCst);
        self.wake_sleepers(park);

        let mut waited = false;
        for (j, other) in self.entries.iter().enumerate() {
            // Most words are 0 (not interested): skip them without the
            // waiting machinery, which only matters for the others.
            if j == me || other.0.load(Acquire) == 0 {
                continue;
            }
            let blocked = || {
                let word = other.0.load(Acquire);
                if word & CHOOSING != 0 {
                    return true;
                }
                let theirs = ticket_of(word);
                let earlier = theirs != 0 && (theirs, j) < (ticket, me);
                earlier && !(kind == Kind::Reader && is_reader(word))
            };
            match self.wait_while(me, park, blocked) {
                Ok(w) => waited |= w,
                Err(e) => {
                    self.release(me, park);
                    return Err(e);
                }
            }
        }
        Ok(waited)
    }

    /// Gives the lock (or a place in line) back. Every store the caller
    /// made before it is then ordered before its later loads, for every
    /// other participant: the release ends with a SeqCst fence, or there is
    /// no other participant.
    #[inline(always)]
    pub fn release<P: Park>(&self, me: usize, park: &P) -> StoreLoadOrdered {
        if self.is_sole_participant() {
            // No one to wake, and no one whose loads our stores must precede.
            self.entries[me].0.store(0, Release);
            return StoreLoadOrdered(());
        }
        self.clear(me, park)
    }

    /// A row of one entry: the daemon has one worker slot (`--workers 1`,
    /// `--max-workers 1`, or the event model's default on one CPU), so one
    /// thread uses the lock, one request at a time. The only other writer
    /// of its entry is the repair: the supervisor's, after the process is
    /// reaped and before the slot's next worker is forked, or, in the
    /// thread model, the same thread's after a panic. Mutual exclusion and
    /// order then need no fence, as in a single-threaded server.
    fn is_sole_participant(&self) -> bool {
        self.entries.len() == 1
    }

    /// Clears the entry of a participant that died, wherever it was: in the
    /// doorway, waiting, or holding the lock. Only once it is surely dead
    /// (reaped), and before its slot is given to anyone else. Returns whether
    /// it held or wanted the lock.
    pub fn repair<P: Park>(&self, dead: usize, park: &P) -> bool {
        let involved = self.is_involved(dead);
        // Even an all-clear word gets the wake-up: the dead one may have
        // cleared it in `release` and died before waking the sleepers.
        self.clear(dead, park);
        // Then its sleep mark, if it died asleep: only a useless wake-up on
        // every later change if left, but no longer needed by anyone.
        let (word, bit) = sleep_bit(dead);
        self.sleeping[word].0.fetch_and(!bit, SeqCst);
        involved
    }

    /// Whether participant `who` holds, waits for, or is choosing a ticket
    /// for the lock.
    pub fn is_involved(&self, who: usize) -> bool {
        self.entries[who].0.load(Acquire) != 0
    }

    /// Whether any participant is about to sleep or asleep on the lock.
    pub fn has_sleepers(&self) -> bool {
        self.sleeping.iter().any(|m| m.0.load(Acquire) != 0)
    }

    fn clear<P: Park>(&self, who: usize, park: &P) -> StoreLoadOrdered {
        self.entries[who].0.store(0, Release);
        // Store-load: the change is visible before we look for sleepers.
        let fenced = StoreLoadOrdered::fence();
        self.wake_sleepers(park);
        fenced
    }

    /// Called after every change to the entries, behind a SeqCst fence. A
    /// would-be sleeper sets its sleep bit, fences, then reads the generation
    /// and checks its condition: by the fences' total order either it sees
    /// our change, or we see its bit and bump the generation it compares.
    fn wake_sleepers<P: Park>(&self, park: &P) {
        if self.sleeping.iter().any(|m| m.0.load(Relaxed) != 0) {
            self.wake.generation.fetch_add(1, SeqCst);
            park.unpark_all(&self.wake.generation);
        }
    }

    /// Waits while `blocked`; says whether it was blocked at all.
    fn wait_while<P: Park>(
        &self,
        me: usize,
        park: &mut P,
        blocked: impl Fn() -> bool,
    ) -> Result<bool, LockError> {
        let mut waited = false;
        for _ in 0..SPINS {
            if !blocked() {
                return Ok(waited);
            }
            waited = true;
            std::hint::spin_loop();
        }
        loop {
            if !blocked() {
                return Ok(waited);
            }
            waited = true;
            let (word, bit) = sleep_bit(me);
            self.sleeping[word].0.fetch_or(bit, SeqCst);
            fence(SeqCst);
            let seen = self.wake.generation.load(Acquire);
            let outcome = if blocked() {
                park.park(&self.wake.generation, seen)
            } else {
                Ok(())
            };
            self.sleeping[word].0.fetch_and(!bit, SeqCst);
            outcome?;
        }
    }
}
