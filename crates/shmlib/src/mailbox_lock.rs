//! A mailbox's lock as the daemon uses it: the bakery algorithm over the
//! mailbox's row of entries in the segment, waiting on a shared futex until a
//! [`Deadline`], released by a guard.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use nix::errno::Errno;

use crate::bakery::{BakeryLock, Kind, Park, StoreLoadOrdered};
use crate::error::LockError;
use crate::lock::Deadline;

/// A process's identity in every mailbox lock: its worker slot. Obtained
/// from [`Segment::participant`](crate::Segment::participant), which checks
/// the range once. Two live processes must never use the same participant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Participant(pub(crate) usize);

/// Sleeping on the wake word's futex, shared between processes (no
/// FUTEX_PRIVATE_FLAG), until the deadline on CLOCK_REALTIME; a signal that
/// raised the deadline's stop flag cancels. Without a deadline it only wakes.
struct FutexPark<'d> {
    deadline: Option<&'d Deadline<'d>>,
}

impl Park for FutexPark<'_> {
    fn park(&mut self, generation: &AtomicU32, seen: u32) -> Result<(), LockError> {
        let Some(deadline) = self.deadline else {
            return Err(LockError::TimedOut);
        };
        // A stop signal that came while we were spinning, not sleeping.
        if deadline.cancelled() {
            return Err(LockError::Cancelled);
        }
        // The kernel answers EAGAIN (the word moved) before it looks at the
        // clock: on a busy lock the deadline must be checked here too.
        if deadline.passed() {
            return Err(LockError::TimedOut);
        }
        // SAFETY: `generation` is a live, aligned u32 in memory mapped by
        // every participant; FUTEX_WAIT_BITSET only reads it and sleeps while
        // it equals `seen`, until the absolute CLOCK_REALTIME deadline.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_futex,
                generation.as_ptr(),
                libc::FUTEX_WAIT_BITSET | libc::FUTEX_CLOCK_REALTIME,
                seen,
                deadline.as_ptr(),
                std::ptr::null::<u32>(),
                libc::FUTEX_BITSET_MATCH_ANY,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        match Errno::last() {
            Errno::EAGAIN => Ok(()),
            Errno::EINTR if deadline.cancelled() => Err(LockError::Cancelled),
            Errno::EINTR => Ok(()),
            Errno::ETIMEDOUT => Err(LockError::TimedOut),
            e => Err(LockError::Os(e)),
        }
    }

    fn unpark_all(&self, generation: &AtomicU32) {
        // SAFETY: as in `park`; FUTEX_WAKE only wakes sleepers on the word.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                generation.as_ptr(),
                libc::FUTEX_WAKE,
                i32::MAX,
            )
        };
    }
}

const WAKE_ONLY: FutexPark<'static> = FutexPark { deadline: None };

/// One mailbox's reader-writer lock: first come, first served; repairable
/// after any participant's death; every wait bounded.
#[derive(Clone, Copy)]
pub struct MailboxLock<'a> {
    bakery: BakeryLock<'a>,
    /// The daemon's count of acquisitions that had to wait.
    waits: &'a AtomicU64,
}

impl<'a> MailboxLock<'a> {
    pub(crate) fn new(bakery: BakeryLock<'a>, waits: &'a AtomicU64) -> MailboxLock<'a> {
        MailboxLock { bakery, waits }
    }

    /// Shares the lock with other readers. On error nothing is held and the
    /// lock is as it was.
    pub fn read(
        &self,
        me: Participant,
        deadline: &Deadline<'_>,
    ) -> Result<LockGuard<'a>, LockError> {
        self.take(me, Kind::Reader, deadline)
    }

    /// Takes the lock alone. On error nothing is held and the lock is as it
    /// was.
    pub fn write(
        &self,
        me: Participant,
        deadline: &Deadline<'_>,
    ) -> Result<LockGuard<'a>, LockError> {
        self.take(me, Kind::Writer, deadline)
    }

    #[inline(always)]
    fn take(
        &self,
        me: Participant,
        kind: Kind,
        deadline: &Deadline<'_>,
    ) -> Result<LockGuard<'a>, LockError> {
        let mut park = FutexPark {
            deadline: Some(deadline),
        };
        if self.bakery.acquire(me.0, kind, &mut park)? {
            self.waits.fetch_add(1, Ordering::Relaxed);
        }
        Ok(LockGuard {
            bakery: self.bakery,
            me,
        })
    }

    /// Whether `who` holds, waits for, or was taking a ticket for the lock.
    pub fn is_involved(&self, who: Participant) -> bool {
        self.bakery.is_involved(who.0)
    }

    /// Whether anyone sleeps on the lock (a sign of contention, or of a
    /// sleeper that died and has not been repaired yet).
    pub fn has_sleepers(&self) -> bool {
        self.bakery.has_sleepers()
    }

    /// Clears a dead participant's state; see [`BakeryLock::repair`].
    pub(crate) fn repair(&self, dead: Participant) -> bool {
        self.bakery.repair(dead.0, &WAKE_ONLY)
    }
}

/// Holding a mailbox lock, as reader or writer; dropping it releases.
pub struct LockGuard<'a> {
    bakery: BakeryLock<'a>,
    me: Participant,
}

impl LockGuard<'_> {
    /// Releases the lock, as a drop does, with the proof that the stores
    /// before it are ordered before the loads after it for every other
    /// participant (see [`StoreLoadOrdered`]).
    pub(crate) fn release(self) -> StoreLoadOrdered {
        let guard = std::mem::ManuallyDrop::new(self);
        guard.bakery.release(guard.me.0, &WAKE_ONLY)
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        self.bakery.release(self.me.0, &WAKE_ONLY);
    }
}
