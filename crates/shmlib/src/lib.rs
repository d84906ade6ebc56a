//! The dipc shared-memory segment: its layout, its locks, and the mailbox
//! operations on it. No sockets live here.
//!
//! One segment per daemon, named after the port (`/dev/shm/dipc.<port>`), holds
//! a header, a table of worker slots, the mailbox slots, each mailbox's row of
//! bakery-lock entries (one per worker slot), the mailbox contents (two
//! halves each) and the key-value store, whose journal (database.txt) is
//! kept by [`Database`]. A `wait` for a mailbox to change sleeps on the
//! worker slot's eventfd ([`Wakers`]), woken by the mailbox's writers. See docs/prog3.md for the layout and the synchronisation
//! argument.
//!
//! Built with `--cfg loom`, only the lock algorithm ([`bakery`]) is
//! compiled, against loom's atomics, for the model check.

pub mod bakery;
#[cfg(not(loom))]
mod database;
mod error;
#[cfg(not(loom))]
pub mod kv;
#[cfg(not(loom))]
mod layout;
#[cfg(not(loom))]
mod lock;
#[cfg(not(loom))]
mod mailbox;
#[cfg(not(loom))]
mod mailbox_lock;
#[cfg(not(loom))]
pub mod owner;
#[cfg(not(loom))]
mod segment;
#[cfg(not(loom))]
mod waiters;

#[cfg(not(loom))]
pub use database::{
    remove_stale_lock, Database, DatabaseJournal, DbError, FsyncPolicy, JournalOptions, LoadReport,
};
pub use error::{LockError, ShmError};
#[cfg(not(loom))]
pub use kv::{ChangeGroup, KeyValue, KvError, UndoLog};
#[cfg(not(loom))]
pub use layout::{default_keys, Geometry, GeometryError, Limits, LIMITS};
#[cfg(not(loom))]
pub use lock::{AcceptGuard, AcceptLock, Deadline};
#[cfg(not(loom))]
pub use mailbox::{Mailbox, MailboxRead};
#[cfg(not(loom))]
pub use mailbox_lock::{LockGuard, MailboxLock, Participant};
#[cfg(not(loom))]
pub use segment::{
    default_file, default_pid_file, segment_name, segment_path, DaemonRecord, Segment, SegmentInfo,
    Stats, WorkerSlot, WorkerState,
};
#[cfg(not(loom))]
pub use waiters::{WaiterMask, Wakers};
