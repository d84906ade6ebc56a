//! A worker slot's `wait` registrations: which mailboxes' waiter masks
//! hold its bit, counted so that the event model's many connections can
//! share the slot's one bit (the last to stop waiting on a mailbox clears
//! it), and the slot's eventfd to sleep on. See shmlib's waiters.rs for why
//! no wake is lost.

use std::os::fd::BorrowedFd;

use shmlib::Segment;

pub struct SlotWaits<'s> {
    segment: &'s Segment,
    slot: usize,
    /// Waits per mailbox, grown on first use.
    counts: Vec<u32>,
}

impl<'s> SlotWaits<'s> {
    pub fn new(segment: &'s Segment, slot: usize) -> SlotWaits<'s> {
        SlotWaits {
            segment,
            slot,
            counts: Vec::new(),
        }
    }

    /// The descriptor that becomes readable when a mailbox this slot waits
    /// on gets a new version (None: a segment with no wakers).
    pub fn fd(&self) -> Option<BorrowedFd<'s>> {
        self.segment.wakers().and_then(|w| w.fd(self.slot))
    }

    /// Consumes the wakes so far: done before looking at versions again.
    pub fn drain(&self) {
        if let Some(wakers) = self.segment.wakers() {
            wakers.drain(self.slot);
        }
    }

    /// One more wait on `mailbox`; the caller looks at the version after
    /// this, not before.
    pub fn begin(&mut self, mailbox: usize) {
        if self.counts.len() <= mailbox {
            self.counts.resize(mailbox + 1, 0);
        }
        if self.counts[mailbox] == 0 {
            if let Some(m) = self.segment.mailbox(mailbox) {
                m.waiters().add(self.slot);
            }
        }
        self.counts[mailbox] += 1;
    }

    /// One wait on `mailbox` fewer.
    pub fn end(&mut self, mailbox: usize) {
        let Some(count) = self.counts.get_mut(mailbox).filter(|c| **c > 0) else {
            return;
        };
        *count -= 1;
        if *count == 0 {
            if let Some(m) = self.segment.mailbox(mailbox) {
                m.waiters().remove(self.slot);
            }
        }
    }
}
