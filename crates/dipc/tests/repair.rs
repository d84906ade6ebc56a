//! The supervisor repairs the mailbox locks of a worker that dies, and
//! replaces the worker within a second. A lock "held by worker 0" is made
//! deterministically: the test maps the daemon's segment and takes the lock
//! in an idle worker's name, as that worker would have, then SIGKILLs it.

mod common;

use std::time::{Duration, Instant};

use common::{idle_worker_slot, wait_until, Daemon};
use shmlib::{Deadline, Segment};

#[test]
fn a_lock_held_by_a_killed_worker_is_repaired_and_the_worker_replaced() {
    let daemon = Daemon::start(2, 4, 2, &["--workers", "2", "--lock-timeout", "1"]);
    let mut client = daemon.client();
    assert!(client.request("w 1 before").starts_with("OK"));

    let segment = Segment::open(daemon.port).expect("map the daemon's segment");
    // The worker that is not serving our client.
    let idle = idle_worker_slot(&segment);
    let dead = segment.participant(idle).expect("idle worker's slot");
    let dead_pid = segment.worker_slots()[idle].pid();
    assert!(dead_pid > 0, "the idle worker has no pid in its slot");
    let lock = segment.mailbox_lock(0).expect("mailbox 1's lock");
    // The idle worker "holds" mailbox 1's write lock for good.
    std::mem::forget(
        lock.write(dead, &Deadline::after(Duration::from_secs(1)))
            .expect("take the lock as worker 0"),
    );
    let reply = client.request("stat 1");
    assert!(
        reply.starts_with("ERR mailbox 1 is busy"),
        "a held lock went unnoticed: {reply}"
    );
    // Other mailboxes are not affected.
    assert!(client.request("stat 2").starts_with("OK"));

    let killed = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(dead_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("SIGKILL worker 0");
    assert!(
        wait_until(Duration::from_secs(1), || !lock.is_involved(dead)),
        "the supervisor did not repair the dead worker's lock within 1 s"
    );
    assert!(
        wait_until(Duration::from_secs(1), || {
            let pid = segment.worker_slots()[idle].pid();
            pid > 0 && pid != dead_pid
        }),
        "no replacement in the slot within 1 s of the kill"
    );
    let replaced_in = killed.elapsed();
    let mut client = daemon.client();
    let (version, content) = client.read_mailbox(1);
    assert_eq!((version, content.as_slice()), (1, &b"before"[..]));
    // A small read takes no lock; a write needs the repaired one.
    assert_eq!(
        client.request("w 1 after"),
        "OK wrote 5 bytes to mailbox 1, version 2"
    );
    // The supervisor logs the repair just after making it.
    daemon.assert_logged("died holding or awaiting 1 lock(s); released them");
    println!("worker {idle} repaired and replaced within {replaced_in:?}");
}
