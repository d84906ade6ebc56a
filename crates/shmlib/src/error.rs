use std::io;

use thiserror::Error;

/// Why a mailbox operation did not happen. In every case the lock's state
/// and the mailbox are exactly as they were before the attempt.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum LockError {
    #[error("lock not granted within the timeout")]
    TimedOut,
    #[error("lock wait cancelled: the process is stopping")]
    Cancelled,
    #[error("lock state corrupt: a ticket out of range, or a dead holder's entry left set")]
    Corrupt,
    #[error("lock operation failed: {0}")]
    Os(nix::errno::Errno),
}

/// Errors creating, opening or removing a segment.
#[derive(Debug, Error)]
pub enum ShmError {
    #[error("shared-memory segment {name} does not exist")]
    NotFound { name: String },
    #[error("shared-memory segment {name} already exists")]
    AlreadyExists { name: String },
    #[error("no permission to open shared-memory segment {name}")]
    PermissionDenied { name: String },
    #[error("{name} is not a dipc segment (or was not fully initialised)")]
    NotDipc { name: String },
    #[error("shared-memory segment {name}: {source}")]
    Io { name: String, source: io::Error },
    #[error("shared-memory segment {name}: {detail}")]
    Map { name: String, detail: String },
    #[error("initialising the locks of {name}: {source}")]
    LockInit {
        name: String,
        source: nix::errno::Errno,
    },
}
