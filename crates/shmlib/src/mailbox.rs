//! One mailbox: its content, length and version, behind its lock.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::LockError;
use crate::lock::{Deadline, FairRwLock};

/// A view of one mailbox in the segment.
pub struct Mailbox<'a> {
    lock: &'a FairRwLock,
    len: &'a AtomicU64,
    version: &'a AtomicU64,
    data: *mut u8,
    capacity: usize,
}

/// What a read found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxRead {
    pub len: usize,
    pub version: u64,
}

impl<'a> Mailbox<'a> {
    /// # Safety
    /// `data` points to `capacity` bytes of the same mapping as the other
    /// references, which the lock guards.
    pub(crate) unsafe fn new(
        lock: &'a FairRwLock,
        len: &'a AtomicU64,
        version: &'a AtomicU64,
        data: *mut u8,
        capacity: usize,
    ) -> Mailbox<'a> {
        Mailbox {
            lock,
            len,
            version,
            data,
            capacity,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Appends the content to `out` under a read lock.
    pub fn read_into(
        &self,
        deadline: &Deadline,
        out: &mut Vec<u8>,
    ) -> Result<MailboxRead, LockError> {
        let _guard = self.lock.read(deadline)?;
        let len = (self.len.load(Ordering::Relaxed) as usize).min(self.capacity);
        let version = self.version.load(Ordering::Relaxed);
        // SAFETY: len <= capacity bytes at `data` belong to this mailbox, and
        // the read lock excludes every writer while we copy.
        let content = unsafe { std::slice::from_raw_parts(self.data, len) };
        out.extend_from_slice(content);
        Ok(MailboxRead { len, version })
    }

    /// Length and version only, under a read lock.
    pub fn stat(&self, deadline: &Deadline<'_>) -> Result<MailboxRead, LockError> {
        let _guard = self.lock.read(deadline)?;
        Ok(MailboxRead {
            len: self.len.load(Ordering::Relaxed) as usize,
            version: self.version.load(Ordering::Relaxed),
        })
    }

    /// Replaces the content under the write lock; returns the new version.
    /// `content` must fit: callers check it against [`Mailbox::capacity`].
    pub fn write(&self, deadline: &Deadline<'_>, content: &[u8]) -> Result<u64, LockError> {
        assert!(
            content.len() <= self.capacity,
            "content larger than the mailbox"
        );
        let _guard = self.lock.write(deadline)?;
        // SAFETY: content.len() <= capacity, the destination is this mailbox's
        // area, and the write lock excludes every reader and writer.
        unsafe { std::ptr::copy_nonoverlapping(content.as_ptr(), self.data, content.len()) };
        self.len.store(content.len() as u64, Ordering::Relaxed);
        Ok(self.version.fetch_add(1, Ordering::Relaxed) + 1)
    }
}
