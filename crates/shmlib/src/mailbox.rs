//! One mailbox: two halves of content and the word that says which one is
//! current, behind the mailbox's lock.
//!
//! A write copies into the half readers are not reading, records its length,
//! then publishes `version << 1 | half` with one atomic store. A writer killed
//! before that store leaves the old content and version published; after it,
//! the new. So a mailbox always holds one whole write, its version counts
//! exactly the writes published, and an `OK` (sent after the store, into a
//! segment that outlives every worker) is never lost.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::LockError;
use crate::lock::Deadline;
use crate::mailbox_lock::{MailboxLock, Participant};

/// A view of one mailbox in the segment.
pub struct Mailbox<'a> {
    lock: MailboxLock<'a>,
    published: &'a AtomicU64,
    len: &'a [AtomicU64; 2],
    /// Two halves of `capacity` bytes each.
    data: *mut u8,
    capacity: usize,
}

/// What a read found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxRead {
    pub len: usize,
    pub version: u64,
}

/// Which half is current, and its version.
#[derive(Debug, Clone, Copy)]
struct Published {
    half: usize,
    version: u64,
}

impl Published {
    fn decode(word: u64) -> Published {
        Published {
            half: (word & 1) as usize,
            version: word >> 1,
        }
    }

    fn next(self) -> Published {
        Published {
            half: 1 - self.half,
            version: self.version + 1,
        }
    }

    fn encode(self) -> u64 {
        self.version << 1 | self.half as u64
    }
}

impl<'a> Mailbox<'a> {
    /// # Safety
    /// `data` points to `2 * capacity` bytes of the same mapping as the other
    /// references, which `lock` guards.
    pub(crate) unsafe fn new(
        lock: MailboxLock<'a>,
        published: &'a AtomicU64,
        len: &'a [AtomicU64; 2],
        data: *mut u8,
        capacity: usize,
    ) -> Mailbox<'a> {
        Mailbox {
            lock,
            published,
            len,
            data,
            capacity,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn current(&self) -> (Published, usize) {
        let published = Published::decode(self.published.load(Ordering::Acquire));
        let len = (self.len[published.half].load(Ordering::Relaxed) as usize).min(self.capacity);
        (published, len)
    }

    fn half(&self, half: usize) -> *mut u8 {
        // SAFETY (of the arithmetic): half is 0 or 1 and the area holds two
        // halves of `capacity` bytes (contract of `new`).
        unsafe { self.data.add(half * self.capacity) }
    }

    /// Appends the content to `out` under a read lock.
    pub fn read_into(
        &self,
        me: Participant,
        deadline: &Deadline,
        out: &mut Vec<u8>,
    ) -> Result<MailboxRead, LockError> {
        self.read_with(me, deadline, |read, content| {
            out.extend_from_slice(content);
            read
        })
    }

    /// Calls `f` with the length and version and the content, under a read
    /// lock: a reply's header can go in front of the content without
    /// copying either twice. `f` runs inside the lock, so it should be quick.
    pub fn read_with<R>(
        &self,
        me: Participant,
        deadline: &Deadline,
        f: impl FnOnce(MailboxRead, &[u8]) -> R,
    ) -> Result<R, LockError> {
        let _guard = self.lock.read(me, deadline)?;
        let (published, len) = self.current();
        // SAFETY: len <= capacity bytes of the published half belong to this
        // mailbox, and the read lock excludes every writer while we copy.
        let content = unsafe { std::slice::from_raw_parts(self.half(published.half), len) };
        let read = MailboxRead {
            len,
            version: published.version,
        };
        Ok(f(read, content))
    }

    /// Length and version only, under a read lock.
    pub fn stat(&self, me: Participant, deadline: &Deadline<'_>) -> Result<MailboxRead, LockError> {
        self.read_with(me, deadline, |read, _| read)
    }

    /// Replaces the content under the write lock; returns the new version.
    /// `content` must fit: callers check it against [`Mailbox::capacity`].
    pub fn write(
        &self,
        me: Participant,
        deadline: &Deadline<'_>,
        content: &[u8],
    ) -> Result<u64, LockError> {
        assert!(
            content.len() <= self.capacity,
            "content larger than the mailbox"
        );
        let _guard = self.lock.write(me, deadline)?;
        let next = Published::decode(self.published.load(Ordering::Acquire)).next();
        // SAFETY: content.len() <= capacity; the destination is this
        // mailbox's unpublished half, which no reader looks at, and the write
        // lock excludes every other writer.
        unsafe {
            std::ptr::copy_nonoverlapping(content.as_ptr(), self.half(next.half), content.len())
        };
        self.len[next.half].store(content.len() as u64, Ordering::Relaxed);
        self.published.store(next.encode(), Ordering::Release);
        Ok(next.version)
    }
}
