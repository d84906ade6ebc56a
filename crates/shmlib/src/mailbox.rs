//! One mailbox: two halves of content and the word that says which one is
//! current. Writers take the mailbox's lock; readers take it only when
//! reading without it fails.
//!
//! A write copies into the half readers are not reading, records its length,
//! then publishes `version << 1 | half` with one atomic store. A writer killed
//! before that store leaves the old content and version published; after it,
//! the new. So a mailbox always holds one whole write, its version counts
//! exactly the writes published, and an `OK` (sent after the store, into a
//! segment that outlives every worker) is never lost.
//!
//! A reader without the lock copies the published half and keeps the copy
//! only if the word is unchanged after it: a writer writes into that half
//! only after a later publish has moved the word.

use std::sync::atomic::{fence, AtomicU64, Ordering};

use crate::error::LockError;
use crate::lock::Deadline;
use crate::mailbox_lock::{MailboxLock, Participant};
use crate::waiters::{WaiterMask, Wakers};

/// Reads without the lock before a read takes it: a word that moved three
/// times in a row means writers are busy on this mailbox, and the lock's
/// queue then serves the reader in its turn.
const OPTIMISTIC_TRIES: u32 = 3;
/// The largest content read without the lock: beyond it the copy costs far
/// more than the lock, and a long copy is more likely to be overtaken.
const OPTIMISTIC_MAX: usize = 4096;

/// A view of one mailbox in the segment.
pub struct Mailbox<'a> {
    lock: MailboxLock<'a>,
    published: &'a AtomicU64,
    len: &'a [AtomicU64; 2],
    /// Two halves of `capacity` bytes each.
    data: *mut u8,
    capacity: usize,
    /// Who waits for a new version, and how to wake them.
    waiters: WaiterMask<'a>,
    wakers: Option<&'a Wakers>,
}

/// What a read found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxRead {
    pub len: usize,
    pub version: u64,
}

/// The version that a mailbox's published word holds now (Acquire: what
/// the caller then reads of the mailbox is at least that version's).
pub(crate) fn version_in(published: &AtomicU64) -> u64 {
    Published::decode(published.load(Ordering::Acquire)).version
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
    /// references, which `lock` guards against writers (readers of small
    /// contents copy without it; see [`Mailbox::read_reply`]).
    pub(crate) unsafe fn new(
        lock: MailboxLock<'a>,
        published: &'a AtomicU64,
        len: &'a [AtomicU64; 2],
        waiters: WaiterMask<'a>,
        wakers: Option<&'a Wakers>,
        data: *mut u8,
        capacity: usize,
    ) -> Mailbox<'a> {
        Mailbox {
            lock,
            published,
            len,
            data,
            capacity,
            waiters,
            wakers,
        }
    }

    /// The current version, without the lock: one atomic load.
    pub fn version(&self) -> u64 {
        version_in(self.published)
    }

    /// Who waits for this mailbox's next version ([`crate::waiters`]).
    pub fn waiters(&self) -> WaiterMask<'a> {
        self.waiters
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn current(&self) -> (Published, usize) {
        self.published_half(self.published.load(Ordering::Acquire))
    }

    fn half(&self, half: usize) -> *mut u8 {
        // SAFETY (of the arithmetic): half is 0 or 1 and the area holds two
        // halves of `capacity` bytes (contract of `new`).
        unsafe { self.data.add(half * self.capacity) }
    }

    /// Appends the content to `out`.
    pub fn read_into(
        &self,
        me: Participant,
        deadline: &Deadline,
        out: &mut Vec<u8>,
    ) -> Result<MailboxRead, LockError> {
        self.read_reply(me, deadline, out, |_, _| {}, &[])
    }

    /// Appends a reply to `out`: what `head` writes for the length and
    /// version, then the content, then `tail`; a reply's header goes in
    /// front of the content without copying either twice.
    ///
    /// Small contents are first read without the lock, optimistically: read
    /// the published word, copy that half, and keep the copy only if the
    /// word has not moved meanwhile (docs/prog3.md, "Reads without the
    /// lock"). After [`OPTIMISTIC_TRIES`] moved words, or for a content
    /// over [`OPTIMISTIC_MAX`] bytes, the read takes the read lock. `head`
    /// may therefore run more than once; what a discarded try appended is
    /// truncated away.
    pub fn read_reply(
        &self,
        me: Participant,
        deadline: &Deadline,
        out: &mut Vec<u8>,
        head: impl Fn(MailboxRead, &mut Vec<u8>),
        tail: &[u8],
    ) -> Result<MailboxRead, LockError> {
        let mark = out.len();
        for _ in 0..OPTIMISTIC_TRIES {
            let word = self.published.load(Ordering::Acquire);
            let (published, len) = self.published_half(word);
            if len > OPTIMISTIC_MAX {
                break;
            }
            let read = self.append_reply(published, len, out, &head, tail);
            // The copy's loads come before the second look at the word.
            fence(Ordering::Acquire);
            if self.published.load(Ordering::Relaxed) == word {
                return Ok(read);
            }
            out.truncate(mark);
        }
        let _guard = self.lock.read(me, deadline)?;
        let (published, len) = self.current();
        Ok(self.append_reply(published, len, out, &head, tail))
    }

    /// The half that `word` publishes and the length recorded for it.
    fn published_half(&self, word: u64) -> (Published, usize) {
        let published = Published::decode(word);
        let len = (self.len[published.half].load(Ordering::Relaxed) as usize).min(self.capacity);
        (published, len)
    }

    fn append_reply(
        &self,
        published: Published,
        len: usize,
        out: &mut Vec<u8>,
        head: &impl Fn(MailboxRead, &mut Vec<u8>),
        tail: &[u8],
    ) -> MailboxRead {
        let read = MailboxRead {
            len,
            version: published.version,
        };
        head(read, out);
        out.reserve(len + tail.len());
        // SAFETY: the source is `len` <= capacity bytes of one half of this
        // mailbox (contract of `new`); the destination is `out`'s spare
        // capacity, reserved just above, and any byte is a valid u8. Under
        // the read lock no writer touches the half. Without it a writer may
        // be filling this half meanwhile (another process, outside what the
        // compiler sees): the copy goes through raw pointers, so no
        // reference to changing memory exists, and the bytes are kept only
        // if the published word did not move during the copy, in which case
        // no writer wrote this half (the seqlock argument in docs/prog3.md).
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.half(published.half),
                out.as_mut_ptr().add(out.len()),
                len,
            );
            out.set_len(out.len() + len);
        }
        out.extend_from_slice(tail);
        read
    }

    /// Length and version only, under a read lock.
    pub fn stat(&self, me: Participant, deadline: &Deadline<'_>) -> Result<MailboxRead, LockError> {
        let _guard = self.lock.read(me, deadline)?;
        let (published, len) = self.current();
        Ok(MailboxRead {
            len,
            version: published.version,
        })
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
        self.publish_with(me, deadline, |_, next| {
            // SAFETY: content.len() <= capacity, into the unpublished half.
            unsafe { std::ptr::copy_nonoverlapping(content.as_ptr(), next, content.len()) };
            content.len()
        })
    }

    /// Appends `line` and a LF, making room by dropping the oldest whole
    /// lines (all of them if need be); returns the new version.
    /// `line.len() + 1` must fit: callers check it against
    /// [`Mailbox::capacity`].
    pub fn append(
        &self,
        me: Participant,
        deadline: &Deadline<'_>,
        line: &[u8],
    ) -> Result<u64, LockError> {
        assert!(line.len() < self.capacity, "line larger than the mailbox");
        self.publish_with(me, deadline, |old, next| {
            let kept = &old[kept_from(old, line.len() + 1, self.capacity)..];
            let separator = separator_after(kept);
            // SAFETY: kept + separator + line + LF <= capacity (kept_from),
            // into the unpublished half, which `old` is not.
            unsafe {
                std::ptr::copy_nonoverlapping(kept.as_ptr(), next, kept.len());
                let mut at = next.add(kept.len());
                if separator == 1 {
                    *at = b'\n';
                    at = at.add(1);
                }
                std::ptr::copy_nonoverlapping(line.as_ptr(), at, line.len());
                *at.add(line.len()) = b'\n';
            }
            kept.len() + separator + line.len() + 1
        })
    }

    /// Under the write lock, `fill(current content, unpublished half)`
    /// writes the next content and says its length; then it is published,
    /// the lock released, and the mailbox's waiters woken. Returns the new
    /// version.
    fn publish_with(
        &self,
        me: Participant,
        deadline: &Deadline<'_>,
        fill: impl FnOnce(&[u8], *mut u8) -> usize,
    ) -> Result<u64, LockError> {
        let guard = self.lock.write(me, deadline)?;
        let (current, current_len) = self.current();
        let next = current.next();
        // SAFETY: the published half's first current_len (<= capacity) bytes
        // are this mailbox's content, which the write lock keeps still (no
        // other writer). The unpublished half is another `capacity` bytes
        // that no reference points into: `fill` writes it through a raw
        // pointer, and a reader without the lock that copies it meanwhile
        // (also through raw pointers, see `append_reply`) throws the copy
        // away because the published word moves (docs/prog3.md, "Reads
        // without the lock").
        let old = unsafe { std::slice::from_raw_parts(self.half(current.half), current_len) };
        // The publish that made the other half unpublished (ours or an
        // earlier writer's, before the lock came to us) is ordered before
        // every byte we now write there: a reader without the lock that
        // copies one of those bytes then sees the word moved.
        fence(Ordering::Release);
        let len = fill(old, self.half(next.half)).min(self.capacity);
        self.len[next.half].store(len as u64, Ordering::Relaxed);
        self.published.store(next.encode(), Ordering::Release);
        // The release also orders the publish before the look at the waiter
        // mask (with a fence, or with no other participant to see it).
        let ordered = guard.release();
        if let Some(wakers) = self.wakers {
            self.waiters.wake_all(wakers, ordered);
        }
        Ok(next.version)
    }
}

/// The LF an append puts after kept content that does not end with one.
fn separator_after(kept: &[u8]) -> usize {
    usize::from(!kept.is_empty() && kept.last() != Some(&b'\n'))
}

/// Where the part of `old` kept by an append of `entry` bytes starts: the
/// first line start from which the rest, a LF if it does not end with one,
/// and the entry fit in `capacity`.
fn kept_from(old: &[u8], entry: usize, capacity: usize) -> usize {
    let fits = |from: usize| {
        let kept = &old[from..];
        kept.len() + separator_after(kept) + entry <= capacity
    };
    if fits(0) {
        return 0;
    }
    old.iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'\n')
        .map(|(i, _)| i + 1)
        .find(|&from| fits(from))
        .unwrap_or(old.len())
}

#[cfg(test)]
mod tests {
    use super::kept_from;

    #[test]
    fn an_append_drops_the_oldest_whole_lines_that_it_must() {
        let old = b"one\ntwo\nthree\n";
        assert_eq!(kept_from(old, 4, 64), 0, "room for all");
        assert_eq!(kept_from(old, 4, 16), 4, "one goes");
        assert_eq!(kept_from(old, 4, 13), 8, "one and two go");
        assert_eq!(kept_from(old, 10, 10), old.len(), "everything goes");
        // A last line without its LF needs one before the entry.
        assert_eq!(kept_from(b"ab\ncd", 3, 9), 0);
        assert_eq!(kept_from(b"ab\ncd", 3, 8), 3);
    }
}
