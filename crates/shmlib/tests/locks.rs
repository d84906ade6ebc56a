//! The mailbox locks and the accept lock on a real segment: threads that
//! each map the segment on their own (as worker processes do), and forked
//! children that die holding a lock or half-way through a write. Ports below
//! 1024 name the test segments; the end-to-end tests never use them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::wait::WaitStatus;
use shmlib::{Deadline, LockError, MailboxLock, Participant, Segment};

mod support;
use support::{forked, scratch_segment};

fn soon(ms: u64) -> Deadline<'static> {
    Deadline::after(Duration::from_millis(ms))
}

fn who(seg: &Segment, slot: usize) -> Participant {
    seg.participant(slot).expect("participant")
}

fn lock0(seg: &Segment) -> MailboxLock<'_> {
    seg.mailbox_lock(0).expect("lock of mailbox 0")
}

#[test]
fn a_timed_out_wait_changes_nothing() {
    let seg = scratch_segment(801, 1, 4, 4);
    let lock = lock0(&seg);
    let (a, b, c) = (who(&seg, 0), who(&seg, 1), who(&seg, 2));
    let writer = lock.write(a, &soon(1000)).expect("first writer");
    assert_eq!(lock.read(b, &soon(50)).err(), Some(LockError::TimedOut));
    assert_eq!(lock.write(c, &soon(50)).err(), Some(LockError::TimedOut));
    assert!(!lock.is_involved(b) && !lock.is_involved(c));
    drop(writer);
    assert!(!lock.is_involved(a));
    // Both kinds still get in afterwards: the failed waits left no trace.
    let r1 = lock.read(b, &soon(1000)).expect("reader after timeouts");
    let r2 = lock.read(c, &soon(1000)).expect("second reader shares");
    assert_eq!(lock.write(a, &soon(50)).err(), Some(LockError::TimedOut));
    drop((r1, r2));
    drop(
        lock.write(a, &soon(1000))
            .expect("writer after the readers left"),
    );
}

#[test]
fn readers_arriving_after_a_waiting_writer_queue_behind_it() {
    let seg = scratch_segment(802, 1, 4, 3);
    let reader = lock0(&seg)
        .read(who(&seg, 0), &soon(1000))
        .expect("first reader");
    let writer_in = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&writer_in);
    let writer = thread::spawn(move || {
        let seg = Segment::open(802).expect("open");
        let guard = lock0(&seg).write(who(&seg, 1), &soon(5000));
        flag.store(guard.is_ok(), Ordering::SeqCst);
        guard.is_ok()
    });
    // Until the writer takes its ticket, readers still share the lock with
    // the first one; after, every later reader must wait behind it. A reader
    // that keeps getting in for 10 s means the writer is being overtaken.
    let queued = (0..500).any(|_| match lock0(&seg).read(who(&seg, 2), &soon(20)) {
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
    let threads = 6;
    let _owner = scratch_segment(PORT, 1, 4, threads as u64);
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let seg = Segment::open(PORT).expect("open");
                let me = who(&seg, t);
                let m = seg.mailbox(0).expect("mailbox");
                barrier.wait();
                let mut buf = Vec::new();
                // For a while rather than a number of rounds, on one mailbox,
                // with contents close to its size (and within what reads
                // without the lock): copies long enough for writers to
                // overtake them, so a missing check shows in every run.
                let start = Instant::now();
                let mut i = 0usize;
                while start.elapsed() < Duration::from_millis(300) {
                    i += 1;
                    if t % 2 == 0 {
                        let fill = (t * 31 + i) as u8;
                        let len = m.capacity() - i % 64;
                        m.write(me, &soon(5000), &vec![fill; len]).expect("write");
                    } else {
                        buf.clear();
                        let read = m.read_into(me, &soon(5000), &mut buf).expect("read");
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
fn a_small_read_does_not_wait_for_a_writer() {
    let seg = scratch_segment(810, 1, 4, 2);
    let m = seg.mailbox(0).expect("mailbox");
    m.write(who(&seg, 0), &soon(1000), b"before")
        .expect("write");
    // A writer inside its critical section, not yet published.
    let writing = lock0(&seg)
        .write(who(&seg, 0), &soon(1000))
        .expect("write lock");
    let mut out = Vec::new();
    let read = m
        .read_into(who(&seg, 1), &soon(20), &mut out)
        .expect("a small read needs no lock");
    assert_eq!((out.as_slice(), read.version), (&b"before"[..], 1));
    // Stat still queues behind the writer, as every lock user does.
    assert!(matches!(
        m.stat(who(&seg, 1), &soon(20)),
        Err(LockError::TimedOut)
    ));
    drop(writing);
}

#[test]
fn a_large_read_takes_the_lock() {
    let seg = scratch_segment(811, 1, 8, 2);
    let m = seg.mailbox(0).expect("mailbox");
    m.write(who(&seg, 0), &soon(1000), &[7u8; 5000])
        .expect("write");
    let writing = lock0(&seg)
        .write(who(&seg, 0), &soon(1000))
        .expect("write lock");
    let mut out = Vec::new();
    assert!(matches!(
        m.read_into(who(&seg, 1), &soon(20), &mut out),
        Err(LockError::TimedOut)
    ));
    assert!(out.is_empty(), "a failed read appends nothing");
    drop(writing);
    let read = m
        .read_into(who(&seg, 1), &soon(1000), &mut out)
        .expect("read");
    assert_eq!((read.len, out.len()), (5000, 5000));
}

#[test]
fn versions_count_every_write() {
    let seg = scratch_segment(804, 1, 4, 1);
    let m = seg.mailbox(0).expect("mailbox");
    let me = who(&seg, 0);
    for n in 1..=5 {
        assert_eq!(m.write(me, &soon(1000), b"x").expect("write"), n);
    }
    assert_eq!(m.stat(me, &soon(1000)).expect("stat").version, 5);
}

#[test]
fn the_accept_lock_survives_a_holder_that_dies() {
    let seg = scratch_segment(805, 1, 4, 1);
    let (pid, status) = forked(|| {
        if let Ok(guard) = seg.accept_lock().lock(&soon(2000)) {
            std::mem::forget(guard);
        }
    })
    .wait();
    assert_eq!(status, WaitStatus::Exited(pid, 0));
    let guard = seg
        .accept_lock()
        .lock(&soon(2000))
        .expect("lock after death");
    assert!(guard.recovered, "the dead holder went unnoticed");
    drop(guard);
    let again = seg.accept_lock().lock(&soon(2000)).expect("lock again");
    assert!(!again.recovered);
}

#[test]
fn a_free_lock_is_granted_even_to_a_stopping_process() {
    static STOP: AtomicBool = AtomicBool::new(true);
    let seg = scratch_segment(806, 1, 4, 1);
    let m = seg.mailbox(0).expect("mailbox");
    let deadline = soon(1000).or_when(&STOP);
    assert_eq!(
        m.write(who(&seg, 0), &deadline, b"last words")
            .expect("write"),
        1
    );
}

/// Forks a process that takes mailbox 0's lock as `kind` ("read" or
/// "write") for `holder` and keeps it; SIGKILLs and reaps it once it holds.
fn kill_while_holding(seg: &Segment, holder: Participant, kind: &str) {
    let mut child = forked(|| {
        let lock = lock0(seg);
        let guard = match kind {
            "read" => lock.read(holder, &soon(2000)),
            _ => lock.write(holder, &soon(2000)),
        };
        if guard.is_ok() {
            // Hold it until killed.
            loop {
                thread::sleep(Duration::from_secs(1));
            }
        }
    });
    assert!(
        (0..200).any(|_| {
            thread::sleep(Duration::from_millis(10));
            lock0(seg).is_involved(holder)
        }),
        "the child never took the lock"
    );
    child.kill();
}

#[test]
fn repairing_a_holder_killed_by_sigkill_frees_the_lock() {
    for kind in ["read", "write"] {
        let seg = scratch_segment(807, 1, 4, 2);
        let (dead, alive) = (who(&seg, 0), who(&seg, 1));
        kill_while_holding(&seg, dead, kind);
        // The dead holder still blocks a writer...
        assert_eq!(
            lock0(&seg).write(alive, &soon(100)).err(),
            Some(LockError::TimedOut)
        );
        // ...until the supervisor's repair.
        assert_eq!(seg.repair_participant(dead), 1);
        assert_eq!(seg.repair_participant(dead), 0, "repair is idempotent");
        drop(
            lock0(&seg)
                .write(alive, &soon(1000))
                .expect("lock after repair"),
        );
    }
}

#[test]
fn repairing_a_waiter_killed_in_its_sleep_clears_its_mark() {
    let seg = scratch_segment(809, 1, 4, 2);
    let (holder, sleeper) = (who(&seg, 0), who(&seg, 1));
    let held = lock0(&seg).write(holder, &soon(1000)).expect("hold");
    let mut child = forked(|| {
        let _ = lock0(&seg).read(sleeper, &soon(30_000));
    });
    assert!(
        (0..300).any(|_| {
            thread::sleep(Duration::from_millis(10));
            lock0(&seg).has_sleepers()
        }),
        "the child never went to sleep on the lock"
    );
    child.kill();
    assert!(lock0(&seg).has_sleepers(), "a dead sleeper's mark stays...");
    assert_eq!(seg.repair_participant(sleeper), 1);
    assert!(!lock0(&seg).has_sleepers(), "...until the repair");
    assert!(!lock0(&seg).is_involved(sleeper));
    drop(held);
    assert!(!lock0(&seg).is_involved(holder));
}

#[test]
fn a_writer_killed_at_any_instant_leaves_a_whole_mailbox() {
    let seg = scratch_segment(808, 1, 1024, 2);
    killed_writers_leave_whole_mailboxes(&seg, who(&seg, 0), who(&seg, 1));
}

/// With one worker slot the lock takes no fence (a row of one): the slot's
/// next process, which reads with the same participant after the repair,
/// finds the lock free and the mailbox whole.
#[test]
fn a_one_slot_writer_killed_at_any_instant_leaves_a_whole_mailbox() {
    let seg = scratch_segment(812, 1, 1024, 1);
    let only = who(&seg, 0);
    assert!(seg.participant(1).is_none(), "one slot");
    killed_writers_leave_whole_mailboxes(&seg, only, only);
}

/// A row of one never waits, so a dead holder's word that no repair has
/// cleared (the store's repair leaves one on purpose) is refused rather
/// than overwritten; the repair frees it.
#[test]
fn a_one_slot_lock_refuses_a_dead_holders_word_until_the_repair() {
    let seg = scratch_segment(813, 1, 4, 1);
    let only = who(&seg, 0);
    for kind in ["read", "write"] {
        kill_while_holding(&seg, only, kind);
        assert_eq!(
            lock0(&seg).write(only, &soon(100)).err(),
            Some(LockError::Corrupt)
        );
        assert_eq!(
            lock0(&seg).read(only, &soon(100)).err(),
            Some(LockError::Corrupt)
        );
        assert_eq!(seg.repair_participant(only), 1);
        assert!(!lock0(&seg).is_involved(only));
        drop(
            lock0(&seg)
                .write(only, &soon(100))
                .expect("free after the repair"),
        );
        assert!(!lock0(&seg).is_involved(only), "released");
    }
}

/// Forks writers of 1 MiB contents (long enough that many kills land
/// mid-copy) and kills each at a random instant; after the reap and the
/// repair, `checker` reads the mailbox: one whole version, never a mix.
fn killed_writers_leave_whole_mailboxes(seg: &Segment, writer: Participant, checker: Participant) {
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut buf = Vec::new();
    let mut repaired = 0;
    for round in 0..40u64 {
        let mut child = forked(|| {
            let m = seg.mailbox(0).expect("mailbox");
            loop {
                // Content: a length and a fill byte both derived from the
                // version it will get, so a reader can tell a mix.
                let version = m.stat(writer, &soon(2000)).map(|s| s.version).unwrap_or(0) + 1;
                let len = 1 + (version as usize * 7919) % m.capacity();
                let _ = m.write(writer, &soon(2000), &vec![version as u8; len]);
            }
        });
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        thread::sleep(Duration::from_micros(200 + rng % 3000));
        child.kill();
        if seg.repair_participant(writer) == 1 {
            repaired += 1;
        }
        assert!(!lock0(seg).is_involved(writer), "round {round}: repaired");
        buf.clear();
        let m = seg.mailbox(0).expect("mailbox");
        let read = m
            .read_into(checker, &soon(1000), &mut buf)
            .unwrap_or_else(|e| panic!("round {round}: read after repair: {e}"));
        if read.version == 0 {
            assert!(buf.is_empty());
            continue;
        }
        let expected_len = 1 + (read.version as usize * 7919) % m.capacity();
        assert_eq!(
            buf.len(),
            expected_len,
            "round {round}: length of another version"
        );
        assert!(
            buf.iter().all(|&b| b == read.version as u8),
            "round {round}: torn content at version {}",
            read.version
        );
    }
    // Most kills land inside a 1 MiB write, holding the lock: the repair
    // must have had a holder to clear.
    assert!(repaired > 0, "no kill found the writer holding the lock");
}
