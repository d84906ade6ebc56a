//! The segment's geometry and where each part lives in it.
//!
//! ```text
//! offset 0            Header (magic, geometry, supervisor pid, accept lock)
//! workers_offset      WorkerSlot x worker_slots       (64-byte aligned)
//! mailboxes_offset    MailboxSlot x mailboxes         (64-byte aligned)
//! lock_entries_offset per mailbox: bakery Entry x worker_slots, then its
//!                     sleep mask, one bit per worker slot (64-byte aligned)
//! data_offset         mailbox contents: two halves of mailbox_size bytes
//!                     each, per mailbox (page aligned)
//! kv_offset           the key-value store (when keys > 0): KvHeader, its
//!                     lock row, the hash buckets (u32 each), the entries
//!                     (key and length), then keys x packet_size bytes of
//!                     values (page aligned)
//! ```
//!
//! All-zero bytes are a valid initial state for everything but the accept
//! lock: free mailbox locks, empty mailboxes at version 0, empty slots.

use std::mem::size_of;

use thiserror::Error;

use crate::bakery::{sleep_mask_words, Entry, WakeWord};
use crate::lock::AcceptLock;
use crate::segment::WorkerSlot;

/// Upper bounds on the command line's numbers, checked before anything is
/// created.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_mailboxes: u32,
    pub max_mailbox_kib: u64,
    pub max_packet_kib: u64,
    pub max_workers: u32,
    pub max_keys: u32,
}

pub const LIMITS: Limits = Limits {
    max_mailboxes: 4096,
    max_mailbox_kib: 1024 * 1024,
    max_packet_kib: 1024,
    max_workers: 256,
    max_keys: 1 << 20,
};

/// The key-value store's default capacity: 1024 keys, fewer when packets are
/// large (its values take at most 8 MiB then), never fewer than 64.
pub fn default_keys(packet_size: usize) -> u32 {
    (8 * 1024 * 1024 / packet_size.max(1)).clamp(64, 1024) as u32
}

const PAGE: usize = 4096;
const LINE: usize = 64;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum GeometryError {
    #[error("number of mailboxes must be 1..{max}, got {got}")]
    Mailboxes { got: u64, max: u32 },
    #[error("mailbox size must be 1..{max} KiB, got {got}")]
    MailboxSize { got: u64, max: u64 },
    #[error("packet size must be 1..{max} KiB, got {got}")]
    PacketSize { got: u64, max: u64 },
    #[error("number of workers must be 1..{max}, got {got}")]
    Workers { got: u64, max: u32 },
    #[error("key capacity must be 0..{max} (0: no key-value store), got {got}")]
    Keys { got: u64, max: u32 },
    #[error("{mailboxes} mailboxes of {kib} KiB do not fit in this machine's address space")]
    TooLarge { mailboxes: u64, kib: u64 },
}

/// The shape of a segment: what the command line asked for, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub mailboxes: u32,
    pub mailbox_size: usize,
    pub packet_size: usize,
    pub worker_slots: u32,
    /// The key-value store's capacity in keys (0: no store). Each key has
    /// room for a value of `packet_size` bytes.
    pub keys: u32,
}

impl Geometry {
    /// Checks the command line's numbers (sizes in KiB) against [`LIMITS`].
    pub fn from_kib(
        mailboxes: u64,
        mailbox_kib: u64,
        packet_kib: u64,
        workers: u64,
    ) -> Result<Geometry, GeometryError> {
        if mailboxes == 0 || mailboxes > u64::from(LIMITS.max_mailboxes) {
            return Err(GeometryError::Mailboxes {
                got: mailboxes,
                max: LIMITS.max_mailboxes,
            });
        }
        if mailbox_kib == 0 || mailbox_kib > LIMITS.max_mailbox_kib {
            return Err(GeometryError::MailboxSize {
                got: mailbox_kib,
                max: LIMITS.max_mailbox_kib,
            });
        }
        if packet_kib == 0 || packet_kib > LIMITS.max_packet_kib {
            return Err(GeometryError::PacketSize {
                got: packet_kib,
                max: LIMITS.max_packet_kib,
            });
        }
        if workers == 0 || workers > u64::from(LIMITS.max_workers) {
            return Err(GeometryError::Workers {
                got: workers,
                max: LIMITS.max_workers,
            });
        }
        let too_large = GeometryError::TooLarge {
            mailboxes,
            kib: mailbox_kib,
        };
        let mailbox_size = usize::try_from(mailbox_kib * 1024).map_err(|_| too_large)?;
        let geometry = Geometry {
            mailboxes: mailboxes as u32,
            mailbox_size,
            packet_size: (packet_kib * 1024) as usize,
            worker_slots: workers as u32,
            keys: default_keys((packet_kib * 1024) as usize),
        };
        geometry.offsets().ok_or(GeometryError::TooLarge {
            mailboxes,
            kib: mailbox_kib,
        })?;
        Ok(geometry)
    }

    /// The same geometry with room for `keys` keys in the key-value store.
    pub fn with_keys(self, keys: u64) -> Result<Geometry, GeometryError> {
        if keys > u64::from(LIMITS.max_keys) {
            return Err(GeometryError::Keys {
                got: keys,
                max: LIMITS.max_keys,
            });
        }
        let geometry = Geometry {
            keys: keys as u32,
            ..self
        };
        geometry.offsets().ok_or(GeometryError::TooLarge {
            mailboxes: u64::from(self.mailboxes),
            kib: (self.mailbox_size / 1024) as u64,
        })?;
        Ok(geometry)
    }

    /// Hash buckets of the key-value store: a power of two, at most half
    /// full.
    pub(crate) fn kv_buckets(&self) -> usize {
        if self.keys == 0 {
            0
        } else {
            (self.keys as usize * 2).next_power_of_two()
        }
    }

    /// The most bytes one request may carry: a packet, and no more than fits
    /// in a mailbox.
    pub fn data_limit(&self) -> usize {
        self.packet_size.min(self.mailbox_size)
    }

    /// The segment's total size in bytes.
    pub fn segment_size(&self) -> usize {
        // from_kib checked that the offsets fit.
        self.offsets().map(|o| o.total).unwrap_or(usize::MAX)
    }

    /// One mailbox's row in the lock table: an entry per worker slot, then
    /// the sleep mask (both 8-byte words).
    pub(crate) fn lock_row_bytes(&self) -> usize {
        let slots = self.worker_slots as usize;
        (slots + sleep_mask_words(slots)) * size_of::<Entry>()
    }

    pub(crate) fn offsets(&self) -> Option<Offsets> {
        let workers = align_up(size_of::<Header>(), LINE)?;
        let mailboxes = align_up(
            workers
                .checked_add(size_of::<WorkerSlot>().checked_mul(self.worker_slots as usize)?)?,
            LINE,
        )?;
        let lock_entries = align_up(
            mailboxes
                .checked_add(size_of::<MailboxSlot>().checked_mul(self.mailboxes as usize)?)?,
            LINE,
        )?;
        let data = align_up(
            lock_entries
                .checked_add(self.lock_row_bytes().checked_mul(self.mailboxes as usize)?)?,
            PAGE,
        )?;
        let data_end = data.checked_add(
            self.mailbox_size
                .checked_mul(2)?
                .checked_mul(self.mailboxes as usize)?,
        )?;
        let keys = self.keys as usize;
        let kv = align_up(data_end, LINE)?;
        let kv_lock = align_up(kv + size_of::<KvHeader>(), LINE)?;
        let kv_buckets = align_up(kv_lock.checked_add(self.lock_row_bytes())?, LINE)?;
        let kv_entries = align_up(
            kv_buckets.checked_add(self.kv_buckets().checked_mul(size_of::<u32>())?)?,
            LINE,
        )?;
        let kv_values = align_up(
            kv_entries.checked_add(keys.checked_mul(size_of::<KvEntry>())?)?,
            PAGE,
        )?;
        let total = kv_values.checked_add(keys.checked_mul(self.packet_size)?)?;
        // mmap lengths and pointer offsets must fit in isize.
        isize::try_from(total).ok()?;
        Some(Offsets {
            workers,
            mailboxes,
            lock_entries,
            data,
            kv,
            kv_lock,
            kv_buckets,
            kv_entries,
            kv_values,
            total,
        })
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Offsets {
    pub workers: usize,
    pub mailboxes: usize,
    pub lock_entries: usize,
    pub data: usize,
    pub kv: usize,
    pub kv_lock: usize,
    pub kv_buckets: usize,
    pub kv_entries: usize,
    pub kv_values: usize,
    pub total: usize,
}

fn align_up(n: usize, to: usize) -> Option<usize> {
    Some(n.checked_add(to - 1)? / to * to)
}

pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"DIPCSEG1");
pub(crate) const LAYOUT_VERSION: u32 = 7;
pub(crate) const PATH_BYTES: usize = 256;

/// The segment's first bytes. Written once by the supervisor before `magic`
/// is published; read-only afterwards except the atomics and the lock.
#[repr(C)]
pub(crate) struct Header {
    pub magic: std::sync::atomic::AtomicU64,
    pub layout_version: u32,
    pub port: u32,
    pub mailboxes: u32,
    pub worker_slots: u32,
    pub keys: u32,
    pub mailbox_size: u64,
    pub packet_size: u64,
    pub total_size: u64,
    pub created_unix: u64,
    /// The supervisor's shutdown grace period (`--grace`), for dipcrm.
    pub grace_ms: u64,
    pub supervisor_pid: std::sync::atomic::AtomicI32,
    pub stopping: std::sync::atomic::AtomicU32,
    pub pid_file: [u8; PATH_BYTES],
    pub log_file: [u8; PATH_BYTES],
    /// The key-value store's lock file, for dipcrm to remove after a
    /// daemon killed with SIGKILL (empty: none, or a path too long).
    pub db_lock_file: [u8; PATH_BYTES],
    pub accept_lock: AcceptLock,
    pub stats: crate::segment::Stats,
}

/// One mailbox's bookkeeping; its lock entries and its two content halves
/// live in their own areas.
#[repr(C, align(64))]
pub(crate) struct MailboxSlot {
    /// The futex word of the mailbox's bakery lock.
    pub wake: WakeWord,
    /// `version << 1 | active half`: one store publishes a write whole.
    pub published: std::sync::atomic::AtomicU64,
    /// Each half's length, written (under the write lock) before the half
    /// is published.
    pub len: [std::sync::atomic::AtomicU64; 2],
    /// The worker slots with a `wait` on this mailbox (crate::waiters).
    pub waiters: [std::sync::atomic::AtomicU64; crate::waiters::MASK_WORDS],
}

/// The key-value store's bookkeeping. Everything but the lock's futex word
/// changes only under the store's write lock.
#[repr(C, align(64))]
pub(crate) struct KvHeader {
    /// The futex word of the store's bakery lock.
    pub wake: WakeWord,
    /// `slot + 1` of a writer from the first table change of its group
    /// until the group's append is done (or undone), else 0: a writer that
    /// dies with it set left the table to be rebuilt from the journal.
    pub changing: std::sync::atomic::AtomicU32,
    /// Keys stored: entries `0..count` are live.
    pub count: std::sync::atomic::AtomicU32,
    /// Bytes of all stored values.
    pub value_bytes: std::sync::atomic::AtomicU64,
    /// Bytes in the journal file (database.txt), for compaction.
    pub journal_bytes: std::sync::atomic::AtomicU64,
    /// No compaction is tried below this journal size (a failed one waits
    /// for the journal to grow by another step).
    pub compact_after: std::sync::atomic::AtomicU64,
    /// Counts compactions: a process whose journal file is older reopens
    /// the path before it appends.
    pub generation: std::sync::atomic::AtomicU64,
    /// Set when the journal has writes not yet flushed to disk (fsync
    /// everysec: the supervisor flushes and clears it).
    pub unsynced: std::sync::atomic::AtomicU32,
    /// Random at creation: keys' hash positions differ per daemon.
    pub seed: u64,
}

/// One stored key: its value lives in the values area at the same index.
#[repr(C)]
pub(crate) struct KvEntry {
    pub key: std::sync::atomic::AtomicI64,
    pub len: std::sync::atomic::AtomicU64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_zero_and_out_of_range() {
        assert!(matches!(
            Geometry::from_kib(0, 8, 2, 8),
            Err(GeometryError::Mailboxes { .. })
        ));
        assert!(matches!(
            Geometry::from_kib(4, 0, 2, 8),
            Err(GeometryError::MailboxSize { .. })
        ));
        assert!(matches!(
            Geometry::from_kib(4, 8, 2000, 8),
            Err(GeometryError::PacketSize { .. })
        ));
        assert!(matches!(
            Geometry::from_kib(4, 8, 2, 0),
            Err(GeometryError::Workers { .. })
        ));
        assert!(Geometry::from_kib(u64::MAX, 8, 2, 8).is_err());
    }

    #[test]
    fn parts_do_not_overlap() {
        let g = Geometry::from_kib(4, 8, 2, 8).expect("valid geometry");
        let o = g.offsets().expect("offsets");
        assert!(o.workers >= size_of::<Header>());
        assert!(o.mailboxes >= o.workers + 8 * size_of::<WorkerSlot>());
        assert!(o.lock_entries >= o.mailboxes + 4 * size_of::<MailboxSlot>());
        assert!(o.data >= o.lock_entries + 4 * (8 + 1) * size_of::<Entry>());
        assert_eq!(o.data % PAGE, 0);
        assert!(o.kv >= o.data + 2 * 4 * 8 * 1024);
        assert_eq!(g.keys, 1024);
        assert!(o.kv_buckets >= o.kv_lock + g.lock_row_bytes());
        assert!(o.kv_entries >= o.kv_buckets + 2048 * 4);
        assert!(o.kv_values >= o.kv_entries + 1024 * size_of::<KvEntry>());
        assert_eq!(o.kv_values % PAGE, 0);
        assert_eq!(o.total, o.kv_values + 1024 * 2048);
        assert_eq!(g.data_limit(), 2048);
        let without = g
            .with_keys(0)
            .expect("no store")
            .offsets()
            .expect("offsets");
        assert_eq!(without.total, without.kv_values);
        assert!(g.with_keys(u64::from(LIMITS.max_keys) + 1).is_err());
        assert_eq!(default_keys(1024 * 1024), 64);
        assert_eq!(default_keys(16 * 1024), 512);
    }
}
