//! What a mailbox lock costs, beside a bare process-shared semaphore pair
//! measured in the same run (`make bench`): uncontended, and with a second
//! thread taking the same lock in a loop. The figures and their ratio are
//! recorded in docs/prog3.md.

use std::cell::UnsafeCell;
use std::hint::{black_box, spin_loop};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use shmlib::Deadline;

#[path = "../tests/support/mod.rs"]
mod support;
use support::scratch_segment;

/// Segment names for the benchmark (ports below 1024: no daemon uses them).
const PORT: u16 = 990;
/// The contended group's segment, clear of `PORT + i` and of the ports the
/// tests and the other benches use.
const CONTENDED_PORT: u16 = 960;

/// A process-shared POSIX semaphore, destroyed on drop.
struct Semaphore(Box<UnsafeCell<libc::sem_t>>);

impl Semaphore {
    fn new() -> Semaphore {
        // SAFETY: an all-zero sem_t is only storage; sem_init initialises it
        // before any use, with pshared = 1 as in the daemon's old locks.
        let sem = Box::new(UnsafeCell::new(unsafe { std::mem::zeroed() }));
        // SAFETY: the pointer is valid and nobody else uses it yet.
        let rc = unsafe { libc::sem_init(sem.get(), 1, 1) };
        assert_eq!(rc, 0, "sem_init");
        Semaphore(sem)
    }

    fn wait_post(&self) {
        // SAFETY: initialised in `new`, alive as long as self.
        unsafe {
            libc::sem_wait(self.0.get());
            libc::sem_post(self.0.get());
        }
    }
}

// SAFETY: a sem_t is made to be waited on and posted by several threads (and
// with pshared = 1, processes) at once; it is never moved after sem_init, as
// it lives in its own heap allocation.
unsafe impl Sync for Semaphore {}

impl Drop for Semaphore {
    fn drop(&mut self) {
        // SAFETY: nobody waits on it any more.
        unsafe { libc::sem_destroy(self.0.get()) };
    }
}

fn uncontended(c: &mut Criterion) {
    let mut group = c.benchmark_group("uncontended lock+unlock");
    let sem = Semaphore::new();
    group.bench_function("sem_wait+sem_post", |b| b.iter(|| sem.wait_post()));
    for (i, workers) in [1u64, 8, 64].into_iter().enumerate() {
        let seg = scratch_segment(PORT + i as u16, 1, 4, workers);
        let lock = seg.mailbox_lock(0).expect("lock");
        let me = seg.participant(0).expect("participant");
        let deadline = Deadline::after(Duration::from_secs(3600));
        let slots = if workers == 1 { "slot" } else { "slots" };
        group.bench_function(
            format!("mailbox read lock, {workers} worker {slots}"),
            |b| b.iter(|| drop(black_box(lock.read(me, &deadline).expect("read lock")))),
        );
        group.bench_function(
            format!("mailbox write lock, {workers} worker {slots}"),
            |b| b.iter(|| drop(black_box(lock.write(me, &deadline).expect("write lock")))),
        );
    }
    group.finish();
}

/// Lock+unlock pairs made by each of the two threads, over every timed
/// window of one benchmark.
#[derive(Default)]
struct Tally {
    timed: u64,
    rival: u64,
    /// Times the timed thread blocked (on the futex) in its pairs.
    timed_sleeps: u64,
}

impl Tally {
    /// A FIFO lock gives each thread half the pairs; an unfair one lets the
    /// thread that just released take it again, and its figure is then the
    /// throughput of one thread while the other starves.
    fn report(&self, name: &str) {
        let total = self.timed + self.rival;
        // `cargo test --benches` makes one pair: nothing to say.
        if total > 1000 {
            println!(
                "{name}: the timed thread made {:.1}% of {total} pairs, \
                 and slept in {:.1}% of its own",
                100.0 * self.timed as f64 / total as f64,
                100.0 * self.timed_sleeps as f64 / self.timed as f64
            );
        }
    }
}

/// How many times the calling thread has blocked so far (its voluntary
/// context switches): a lock wait that went to sleep on the futex rather
/// than spinning counts one.
fn sleeps() -> u64 {
    // SAFETY: rusage is plain integers and timevals, for which all-zero
    // bytes are a valid value; getrusage overwrites it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the pointer is to a live rusage that getrusage only writes.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    assert_eq!(rc, 0, "getrusage");
    usage.ru_nvcsw as u64
}

/// What the two threads share, on a cache line of its own so that the
/// rival's count does not share a line with anything the timed thread
/// touches.
#[repr(align(128))]
struct Rivalry {
    stop: AtomicBool,
    rival_pairs: AtomicU64,
}

/// Calls `pair` `iters` times on this thread while another thread calls
/// `rival` in a loop, and returns the time for `iters` pairs at the rate both
/// threads made them together: the lock's throughput under contention, which
/// does not depend on which thread an unfair lock favours (`tally` records
/// that). The rival has made a pair before the clock starts, so the whole
/// window is contended; it is stopped and joined after the clock stops.
fn under_contention(
    iters: u64,
    pair: impl Fn(),
    rival: impl Fn() + Sync,
    tally: &mut Tally,
) -> Duration {
    let shared = Rivalry {
        stop: AtomicBool::new(false),
        rival_pairs: AtomicU64::new(0),
    };
    thread::scope(|s| {
        s.spawn(|| {
            let mut made = 0;
            while !shared.stop.load(Ordering::Relaxed) {
                rival();
                made += 1;
                shared.rival_pairs.store(made, Ordering::Relaxed);
            }
        });
        while shared.rival_pairs.load(Ordering::Relaxed) == 0 {
            spin_loop();
        }
        let before = shared.rival_pairs.load(Ordering::Relaxed);
        let slept_before = sleeps();
        let start = Instant::now();
        for _ in 0..iters {
            pair();
        }
        let elapsed = start.elapsed();
        tally.timed_sleeps += sleeps() - slept_before;
        let rival_made = shared.rival_pairs.load(Ordering::Relaxed) - before;
        shared.stop.store(true, Ordering::Relaxed);
        tally.timed += iters;
        tally.rival += rival_made;
        elapsed.mul_f64(iters as f64 / (iters + rival_made) as f64)
    })
}

/// Two threads (this VM's two cores) on one lock, each with its own
/// participant slot, as two workers on one mailbox, each taking and
/// releasing it in a loop. The time is per lock+unlock of either thread.
/// Writers exclude each other, and the bakery serves them first come, first
/// served, so each write lock is a hand-over between cores; readers share,
/// so what remains is the lock's entries moving between the cores' caches.
/// A semaphore keeps no queue: a thread that posts may take it again before
/// the waiter wakes, which the printed share of pairs shows.
///
/// The write figure is bimodal on a 2-vCPU VM: about 50 ns a pair while the
/// hand-over stays within the spins, about 1 to 1.5 µs once it falls into
/// futex sleeps (waking a halted vCPU outlasts the spins, so the waker, next
/// in line behind the sleeper, sleeps too, and so on), which persists for
/// a whole sample. The printed share of pairs that slept tells the modes
/// apart. Run it on an otherwise idle machine: a third busy process
/// deschedules the thread whose turn it is, and the other waits for it.
fn contended(c: &mut Criterion) {
    const WORKERS: u64 = 8;
    let mut group = c.benchmark_group("contended lock+unlock, 2 threads");
    // Each sample starts a thread; a few seconds in all keep `make bench`
    // short.
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));

    let sem = Semaphore::new();
    let name = "sem_wait+sem_post";
    let mut tally = Tally::default();
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            under_contention(iters, || sem.wait_post(), || sem.wait_post(), &mut tally)
        })
    });
    tally.report(name);

    let seg = scratch_segment(CONTENDED_PORT, 1, 4, WORKERS);
    let lock = seg.mailbox_lock(0).expect("lock");
    let me = seg.participant(0).expect("participant");
    let rival = seg.participant(1).expect("participant");
    let deadline = Deadline::after(Duration::from_secs(3600));

    let name = format!("mailbox write lock vs a writer, {WORKERS} worker slots");
    let mut tally = Tally::default();
    group.bench_function(&name, |b| {
        b.iter_custom(|iters| {
            under_contention(
                iters,
                || drop(black_box(lock.write(me, &deadline).expect("write lock"))),
                || drop(black_box(lock.write(rival, &deadline).expect("write lock"))),
                &mut tally,
            )
        })
    });
    tally.report(&name);

    let name = format!("mailbox read lock vs a reader, {WORKERS} worker slots");
    let mut tally = Tally::default();
    group.bench_function(&name, |b| {
        b.iter_custom(|iters| {
            under_contention(
                iters,
                || drop(black_box(lock.read(me, &deadline).expect("read lock"))),
                || drop(black_box(lock.read(rival, &deadline).expect("read lock"))),
                &mut tally,
            )
        })
    });
    tally.report(&name);
    group.finish();
}

criterion_group!(benches, uncontended, contended);
criterion_main!(benches);
