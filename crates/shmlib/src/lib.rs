//! The dipc shared-memory segment: its layout, its locks, and the mailbox
//! operations on it. No sockets live here.
//!
//! One segment per daemon, named after the port (`/dev/shm/dipc.<port>`), holds
//! a [`Header`], a table of worker slots, the mailbox slots (each with its
//! reader-writer lock made of process-shared POSIX semaphores) and the mailbox
//! contents. See docs/prog3.md for the layout and the synchronisation argument.

pub mod bakery;
mod error;
mod layout;
mod lock;
mod mailbox;
pub mod owner;
mod segment;

pub use error::{LockError, ShmError};
pub use layout::{Geometry, GeometryError, Limits, LIMITS};
pub use lock::{AcceptGuard, AcceptLock, Deadline, FairRwLock};
pub use mailbox::{Mailbox, MailboxRead};
pub use segment::{
    segment_name, segment_path, DaemonRecord, Segment, SegmentInfo, WorkerSlot, WorkerState,
};
