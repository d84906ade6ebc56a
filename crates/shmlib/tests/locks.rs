//! The segment's locks, exercised by threads that each map the segment on
//! their own (as processes do), and by a forked child that dies holding the
//! accept lock. Ports below 1024 name the test segments; the end-to-end tests
//! never use them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use shmlib::{Deadline, Geometry, LockError, Segment};

fn create(port: u16, mailboxes: u64) -> Segment {
    let _ = Segment::unlink(port);
    let g = Geometry::from_kib(mailboxes, 4, 4, 2).expect("geometry");
    Segment::create(
        port,
        g,
        &shmlib::DaemonRecord {
            pid_file: "",
            log_file: "",
            grace: std::time::Duration::from_secs(1),
        },
    )
    .expect("create test segment")
}

fn soon(ms: u64) -> Deadline<'static> {
    Deadline::after(Duration::from_millis(ms))
}

#[test]
fn a_timed_out_wait_changes_nothing() {
    let seg = create(801, 1);
    let lock = mailbox_lock(&seg);
    let writer = lock.write(&soon(1000)).expect("first writer");
    assert_eq!(lock.read(&soon(50)).err(), Some(LockError::TimedOut));
    assert_eq!(lock.write(&soon(50)).err(), Some(LockError::TimedOut));
    drop(writer);
    // Both kinds still get in afterwards: the failed waits left no trace.
    let r1 = lock.read(&soon(1000)).expect("reader after timeouts");
    let r2 = lock.read(&soon(1000)).expect("second reader shares");
    assert_eq!(lock.write(&soon(50)).err(), Some(LockError::TimedOut));
    drop((r1, r2));
    drop(
        lock.write(&soon(1000))
            .expect("writer after the readers left"),
    );
}

fn mailbox_lock(seg: &Segment) -> &shmlib::FairRwLock {
    seg.mailbox_lock(0).expect("lock of mailbox 0")
}

#[test]
fn readers_arriving_after_a_waiting_writer_queue_behind_it() {
    let seg = create(802, 1);
    let reader = mailbox_lock(&seg).read(&soon(1000)).expect("first reader");
    let writer_in = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&writer_in);
    let writer = thread::spawn(move || {
        let seg = Segment::open(802).expect("open");
        let guard = seg.mailbox_lock(0).expect("lock").write(&soon(5000));
        flag.store(guard.is_ok(), Ordering::SeqCst);
        guard.is_ok()
    });
    // Until the writer queues, readers still share the lock with the first
    // one; once it waits, every later reader must wait behind it. A reader
    // that keeps getting in for 10 s means the writer is being overtaken.
    let queued = (0..500).any(|_| match mailbox_lock(&seg).read(&soon(20)) {
        Ok(_) => {
            thread::sleep(Duration::from_millis(20));
            false
        }
        Err(LockError::TimedOut) => true,
        Err(e) => panic!("lock failed: {e}"),
    });
    assert!(queued, "readers kept overtaking the waiting writer");
    assert!(!writer_in.load(Ordering::SeqCst));
    drop(reader);
    assert!(writer.join().expect("writer"), "writer never got in");
}

#[test]
fn concurrent_writers_and_readers_never_see_a_torn_mailbox() {
    const PORT: u16 = 803;
    let _owner = create(PORT, 2);
    let threads = 6;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let seg = Segment::open(PORT).expect("open");
                barrier.wait();
                let mut buf = Vec::new();
                for i in 0..300usize {
                    let m = seg.mailbox(i % 2).expect("mailbox");
                    if t % 2 == 0 {
                        let fill = (t * 31 + i) as u8;
                        let len = 1 + (i * 97) % m.capacity();
                        m.write(&soon(5000), &vec![fill; len]).expect("write");
                    } else {
                        buf.clear();
                        let read = m.read_into(&soon(5000), &mut buf).expect("read");
                        assert_eq!(read.len, buf.len());
                        if let Some(&first) = buf.first() {
                            assert!(buf.iter().all(|&b| b == first), "torn content");
                        }
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread panicked");
    }
}

#[test]
fn versions_count_every_write() {
    let seg = create(804, 1);
    let m = seg.mailbox(0).expect("mailbox");
    for n in 1..=5 {
        assert_eq!(m.write(&soon(1000), b"x").expect("write"), n);
    }
    assert_eq!(m.stat(&soon(1000)).expect("stat").version, 5);
}

#[test]
fn the_accept_lock_survives_a_holder_that_dies() {
    let seg = create(805, 1);
    // SAFETY: the child only takes the lock and _exit()s, without returning
    // into the test harness or touching its threads' state.
    match unsafe { nix::unistd::fork() }.expect("fork") {
        nix::unistd::ForkResult::Child => {
            let code = match seg.accept_lock().lock(&soon(2000)) {
                Ok(guard) => {
                    std::mem::forget(guard);
                    0
                }
                Err(_) => 1,
            };
            // SAFETY: ends the child at once, holding the lock.
            unsafe { libc::_exit(code) };
        }
        nix::unistd::ForkResult::Parent { child } => {
            let status = nix::sys::wait::waitpid(child, None).expect("wait");
            assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
            let guard = seg
                .accept_lock()
                .lock(&soon(2000))
                .expect("lock after death");
            assert!(guard.recovered, "the dead holder went unnoticed");
            drop(guard);
            let again = seg.accept_lock().lock(&soon(2000)).expect("lock again");
            assert!(!again.recovered);
        }
    }
}

#[test]
fn a_free_lock_is_granted_even_to_a_stopping_process() {
    static STOP: AtomicBool = AtomicBool::new(true);
    let seg = create(806, 1);
    let m = seg.mailbox(0).expect("mailbox");
    let deadline = soon(1000).or_when(&STOP);
    assert_eq!(m.write(&deadline, b"last words").expect("write"), 1);
}
