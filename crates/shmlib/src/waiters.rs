//! Waiting for a mailbox to change (the `wait` request), with no polling.
//!
//! Every worker slot has an eventfd, made by the supervisor before it forks
//! anything, so every process of the daemon holds them all. A waiter sets its
//! slot's bit in the mailbox's waiter mask and then looks at the version; a
//! writer publishes its version and then looks at the mask, and writes to the
//! eventfd of every slot in it. Both sides put a SeqCst fence between their
//! store and their load (the writer's is the one that ends its release of
//! the mailbox's lock, after the publish), so at least one of them sees the
//! other's (Dekker): either the waiter sees the new version, or the writer
//! sees the bit and wakes it. With one worker slot there is no fence on the
//! writer's side (see `BakeryLock::release`), and none is needed: the only
//! thread that can set a bit is the writer's own, one request at a time,
//! and its program order puts the bit before its later look. An eventfd keeps its count until it is read,
//! so a wake that comes before the waiter sleeps is not lost either. A
//! waiter drains its eventfd before it looks at the version again; a wake
//! for a mailbox it no longer waits for (or for another connection of the
//! same event worker) only makes it look once more.
//!
//! A stale bit (a waiter killed before it cleared it) costs writers of that
//! mailbox one eventfd write each until the slot's next waiter clears it.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{fence, AtomicU64, Ordering};

use nix::errno::Errno;
use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::bakery::StoreLoadOrdered;

/// Words of a waiter mask: one bit per worker slot ([`crate::LIMITS`]'
/// `max_workers` is 256).
pub(crate) const MASK_WORDS: usize = 4;
const _: () = assert!(MASK_WORDS * 64 >= crate::layout::LIMITS.max_workers as usize);

/// One eventfd per worker slot. Owned by the process that created the
/// segment; its children inherit the descriptors across fork().
pub struct Wakers {
    fds: Vec<EventFd>,
}

impl Wakers {
    /// Non-blocking eventfds: a writer never waits on a full counter, and a
    /// drain of an empty one returns at once.
    pub fn new(slots: usize) -> nix::Result<Wakers> {
        let flags = EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC;
        let fds = (0..slots)
            .map(|_| EventFd::from_value_and_flags(0, flags))
            .collect::<nix::Result<_>>()?;
        Ok(Wakers { fds })
    }

    /// The descriptor slot `slot` waits on (readable after a wake).
    pub fn fd(&self, slot: usize) -> Option<BorrowedFd<'_>> {
        self.fds.get(slot).map(AsFd::as_fd)
    }

    /// Consumes the wakes of slot `slot` so far.
    pub fn drain(&self, slot: usize) {
        if let Some(fd) = self.fds.get(slot) {
            // EAGAIN: nothing to drain.
            let _ = fd.read();
        }
    }

    fn wake(&self, slot: usize) {
        if let Some(fd) = self.fds.get(slot) {
            // EAGAIN: the counter is full, so the slot will wake anyway.
            match fd.write(1) {
                Ok(_) | Err(Errno::EAGAIN) => {}
                Err(e) => log_once(e),
            }
        }
    }
}

fn log_once(e: Errno) {
    use std::sync::Once;
    static ONCE: Once = Once::new();
    ONCE.call_once(|| eprintln!("cannot wake a waiting worker: {e}"));
}

/// A mailbox's waiter mask: the slots with a `wait` on it.
#[derive(Clone, Copy)]
pub struct WaiterMask<'a> {
    bits: &'a [AtomicU64; MASK_WORDS],
}

impl<'a> WaiterMask<'a> {
    pub(crate) fn new(bits: &'a [AtomicU64; MASK_WORDS]) -> WaiterMask<'a> {
        WaiterMask { bits }
    }

    fn bit(&self, slot: usize) -> Option<(&'a AtomicU64, u64)> {
        let bits: &'a [AtomicU64; MASK_WORDS] = self.bits;
        bits.get(slot / 64).map(|word| (word, 1u64 << (slot % 64)))
    }

    /// Marks `slot` as waiting on this mailbox. The caller then looks at
    /// the version (after this fence) before it sleeps.
    pub fn add(&self, slot: usize) {
        if let Some((word, bit)) = self.bit(slot) {
            word.fetch_or(bit, Ordering::SeqCst);
        }
        fence(Ordering::SeqCst);
    }

    /// `slot` waits on this mailbox no more.
    pub fn remove(&self, slot: usize) {
        if let Some((word, bit)) = self.bit(slot) {
            word.fetch_and(!bit, Ordering::SeqCst);
        }
    }

    /// After a new version is published and the write lock released, whose
    /// release orders the publish before this look (`_published`): wakes
    /// every slot waiting on it. That order is the writer's half of the
    /// pair.
    #[inline]
    pub(crate) fn wake_all(&self, wakers: &Wakers, published: StoreLoadOrdered) {
        // Nearly every write finds nobody waiting: that look stays inline.
        if self
            .bits
            .iter()
            .any(|word| word.load(Ordering::Relaxed) != 0)
        {
            self.wake_waiting(wakers, published);
        }
    }

    #[cold]
    #[inline(never)]
    fn wake_waiting(&self, wakers: &Wakers, _published: StoreLoadOrdered) {
        for (w, word) in self.bits.iter().enumerate() {
            let mut waiting = word.load(Ordering::Relaxed);
            while waiting != 0 {
                let bit = waiting.trailing_zeros() as usize;
                waiting &= waiting - 1;
                wakers.wake(w * 64 + bit);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

    fn readable(fd: BorrowedFd<'_>) -> bool {
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        poll(&mut fds, PollTimeout::ZERO).unwrap_or(0) > 0
    }

    #[test]
    fn a_write_wakes_exactly_the_waiting_slots() {
        let wakers = Wakers::new(130).expect("eventfds");
        let bits: [AtomicU64; MASK_WORDS] = Default::default();
        let mask = WaiterMask::new(&bits);
        mask.add(3);
        mask.add(129);
        mask.wake_all(&wakers, StoreLoadOrdered::fence());
        let woken: Vec<usize> = (0..130)
            .filter(|&s| readable(wakers.fd(s).expect("fd")))
            .collect();
        assert_eq!(woken, [3, 129]);
        wakers.drain(3);
        assert!(!readable(wakers.fd(3).expect("fd")), "drained");
        mask.remove(129);
        wakers.drain(129);
        mask.wake_all(&wakers, StoreLoadOrdered::fence());
        assert!(!readable(wakers.fd(129).expect("fd")), "removed");
        assert!(readable(wakers.fd(3).expect("fd")), "still waiting");
    }
}
