//! Model check of the bakery lock over every interleaving loom explores:
//! `RUSTFLAGS="--cfg loom" cargo test -p shmlib --release --test loom_bakery`
//! (`make test` runs it). Checked, for small numbers of participants:
//! - mutual exclusion: never a writer with anyone else inside;
//! - progress: every run ends (loom reports a deadlock or a livelock that
//!   exhausts its branch budget);
//! - a timed-out waiter, and the repair of a participant that died holding
//!   the lock, leave every entry clear: the lock as if they had never come.
#![cfg(loom)]

use loom::sync::atomic::{AtomicU32, AtomicUsize, Ordering::SeqCst};
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;

use shmlib::bakery::{sleep_mask_words, BakeryLock, Entry, Kind, Park, SleepMask, WakeWord};
use shmlib::LockError;

/// The futex, modelled: sleep on a condition variable while the generation
/// is unchanged. With a budget, each park may instead time out, until the
/// budget is spent: loom then explores both outcomes of every wait.
struct Sleep {
    bed: Arc<(Mutex<()>, Condvar)>,
    budget: usize,
}

impl Park for Sleep {
    fn park(&mut self, generation: &AtomicU32, seen: u32) -> Result<(), LockError> {
        if self.budget > 0 {
            self.budget -= 1;
            return Err(LockError::TimedOut);
        }
        let (mutex, condvar) = &*self.bed;
        let mut guard = mutex.lock().expect("bed");
        while generation.load(SeqCst) == seen {
            guard = condvar.wait(guard).expect("bed");
        }
        Ok(())
    }

    fn unpark_all(&self, _generation: &AtomicU32) {
        let (mutex, condvar) = &*self.bed;
        let _guard = mutex.lock().expect("bed");
        condvar.notify_all();
    }
}

struct Shared {
    bed: Arc<(Mutex<()>, Condvar)>,
    wake: WakeWord,
    sleeping: Vec<SleepMask>,
    entries: Vec<Entry>,
    readers_inside: AtomicUsize,
    writers_inside: AtomicUsize,
}

impl Shared {
    fn new(participants: usize) -> Arc<Shared> {
        Arc::new(Shared {
            bed: Arc::new((Mutex::new(()), Condvar::new())),
            wake: WakeWord::default(),
            sleeping: (0..sleep_mask_words(participants))
                .map(|_| SleepMask::default())
                .collect(),
            entries: (0..participants).map(|_| Entry::default()).collect(),
            readers_inside: AtomicUsize::new(0),
            writers_inside: AtomicUsize::new(0),
        })
    }

    fn park(&self, budget: usize) -> Sleep {
        Sleep {
            bed: Arc::clone(&self.bed),
            budget,
        }
    }

    fn lock(&self) -> BakeryLock<'_> {
        BakeryLock::new(&self.wake, &self.entries, &self.sleeping)
    }

    /// Takes the lock, checks exclusion inside, releases. Returns whether it
    /// got in (false: it timed out).
    fn visit(&self, me: usize, kind: Kind, budget: usize) -> bool {
        let mut park = self.park(budget);
        match self.lock().acquire(me, kind, &mut park) {
            Ok(_waited) => {
                self.inside(kind);
                self.lock().release(me, &park);
                true
            }
            Err(LockError::TimedOut) => false,
            Err(e) => panic!("unexpected lock error {e}"),
        }
    }

    fn inside(&self, kind: Kind) {
        match kind {
            Kind::Writer => {
                assert_eq!(
                    self.writers_inside.fetch_add(1, SeqCst),
                    0,
                    "two writers inside"
                );
                assert_eq!(self.readers_inside.load(SeqCst), 0, "a writer with readers");
                thread::yield_now();
                self.writers_inside.fetch_sub(1, SeqCst);
            }
            Kind::Reader => {
                self.readers_inside.fetch_add(1, SeqCst);
                assert_eq!(
                    self.writers_inside.load(SeqCst),
                    0,
                    "a reader with a writer"
                );
                thread::yield_now();
                self.readers_inside.fetch_sub(1, SeqCst);
            }
        }
    }

    fn all_clear(&self) -> bool {
        (0..self.entries.len()).all(|i| !self.lock().is_involved(i))
    }
}

/// Explores every interleaving with at most `preemptions` forced context
/// switches: four for two participants, eight for the repairs, two for
/// three participants. Lock bugs show within a few preemptions, and these
/// bounds keep `make model` under a minute; LOOM_MAX_PREEMPTIONS sets
/// another bound for every test.
fn model(preemptions: Option<usize>, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = builder.preemption_bound.or(preemptions);
    builder.check(f);
}

const FOUR: Option<usize> = Some(4);
/// The repair checks run mostly sequentially in the supervisor's thread, so
/// a deep bound stays cheap there.
const EIGHT: Option<usize> = Some(8);
const TWO: Option<usize> = Some(2);

/// Each participant visits once, in its own thread; afterwards every entry
/// must be clear.
fn visits(participants: &[(usize, Kind, usize)], must_enter: bool) {
    let shared = Shared::new(participants.len());
    let threads: Vec<_> = participants
        .iter()
        .map(|&(me, kind, budget)| {
            let shared = Arc::clone(&shared);
            thread::spawn(move || {
                let entered = shared.visit(me, kind, budget);
                assert!(entered || !must_enter, "participant {me} did not get in");
            })
        })
        .collect();
    for t in threads {
        t.join().expect("participant");
    }
    assert!(shared.all_clear(), "an entry was left set");
    // And the lock still works.
    assert!(shared.visit(0, Kind::Writer, 0));
}

#[test]
fn two_writers_exclude_each_other() {
    model(FOUR, || {
        visits(&[(0, Kind::Writer, 0), (1, Kind::Writer, 0)], true)
    });
}

#[test]
fn a_reader_and_a_writer_exclude_each_other() {
    model(FOUR, || {
        visits(&[(0, Kind::Reader, 0), (1, Kind::Writer, 0)], true)
    });
}

#[test]
fn a_writer_excludes_two_readers() {
    model(TWO, || {
        visits(
            &[
                (0, Kind::Reader, 0),
                (1, Kind::Writer, 0),
                (2, Kind::Reader, 0),
            ],
            true,
        )
    });
}

#[test]
fn readers_share_the_lock() {
    model(FOUR, || {
        let shared = Shared::new(2);
        let mut park = shared.park(0);
        shared
            .lock()
            .acquire(0, Kind::Reader, &mut park)
            .expect("first reader");
        // With participant 0 inside, a second reader gets in: were it made
        // to wait, it would sleep forever and loom would report a deadlock.
        let second = {
            let shared = Arc::clone(&shared);
            thread::spawn(move || {
                let mut park = shared.park(0);
                shared
                    .lock()
                    .acquire(1, Kind::Reader, &mut park)
                    .expect("second reader");
                shared.lock().release(1, &park);
            })
        };
        second.join().expect("second reader");
        shared.lock().release(0, &park);
        assert!(shared.all_clear());
    });
}

#[test]
fn timeouts_leave_the_lock_as_it_was() {
    model(FOUR, || {
        visits(&[(0, Kind::Writer, 1), (1, Kind::Reader, 1)], false)
    });
}

#[test]
fn a_timeout_beside_a_holder_leaves_the_lock_as_it_was() {
    model(TWO, || {
        visits(
            &[
                (0, Kind::Writer, 0),
                (1, Kind::Writer, 1),
                (2, Kind::Reader, 0),
            ],
            false,
        )
    });
}

/// Participant 0 does `before`, participant 1 starts waiting for the lock as
/// `waiter`, then participant 0 does `dies` (what a killed process leaves
/// behind) and the supervisor repairs it, concurrently with the waiter. The
/// waiter must get in, and every word must end clear. Returns what the
/// repair said about 0's involvement.
fn repair_beside_a_waiter(waiter: Kind, before: impl Fn(&Shared), dies: impl Fn(&Shared)) -> bool {
    let shared = Shared::new(2);
    before(&shared);
    let waiting = {
        let shared = Arc::clone(&shared);
        thread::spawn(move || assert!(shared.visit(1, waiter, 0)))
    };
    dies(&shared);
    let involved = shared.lock().repair(0, &shared.park(0));
    waiting.join().expect("waiter");
    assert!(shared.all_clear());
    involved
}

fn hold_as_writer(shared: &Shared) {
    let mut park = shared.park(0);
    shared
        .lock()
        .acquire(0, Kind::Writer, &mut park)
        .expect("first writer");
}

#[test]
fn repairing_a_dead_holder_frees_the_lock() {
    model(EIGHT, || {
        assert!(repair_beside_a_waiter(Kind::Reader, hold_as_writer, |_| ()));
    });
}

#[test]
fn repairing_a_death_in_the_doorway_frees_the_lock() {
    model(EIGHT, || {
        // CHOOSING announced: the raw word a process killed in its doorway
        // leaves behind.
        let choosing =
            |shared: &Shared| shared.entries[0].set_raw_for_test(1 | (Kind::Writer as u64) << 1);
        assert!(repair_beside_a_waiter(Kind::Writer, choosing, |_| ()));
    });
}

#[test]
fn repairing_a_death_mid_release_wakes_the_waiters() {
    model(EIGHT, || {
        // Killed inside release(): its word already 0, the sleepers not yet
        // woken. The repair must wake them.
        let released_silently = |shared: &Shared| shared.entries[0].set_raw_for_test(0);
        // Nothing of 0's is left to clear; the wake-up is all that matters.
        assert!(!repair_beside_a_waiter(
            Kind::Reader,
            hold_as_writer,
            released_silently
        ));
    });
}
