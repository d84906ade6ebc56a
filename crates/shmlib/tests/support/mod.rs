//! A scratch segment for the lock tests and benchmarks: on a port below 1024
//! (no daemon uses those), with no daemon record, removing a stale one left
//! by an earlier run first. The returned mapping owns the segment and
//! unlinks it when dropped, also when a test panics; forked children leave
//! with `_exit`, so their copy never unlinks it.

use std::time::Duration;

use shmlib::{DaemonRecord, Geometry, Segment};

pub fn scratch_segment(port: u16, mailboxes: u64, kib: u64, workers: u64) -> Segment {
    let _ = Segment::unlink(port);
    let geometry = Geometry::from_kib(mailboxes, kib, kib.min(1024), workers).expect("geometry");
    let record = DaemonRecord {
        pid_file: "",
        log_file: "",
        db_lock_file: "",
        grace: Duration::from_secs(1),
    };
    Segment::create(port, geometry, &record).expect("create a scratch segment")
}
