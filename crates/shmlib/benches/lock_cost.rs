//! What an uncontended mailbox lock costs, beside a bare process-shared
//! semaphore pair measured in the same run (`make bench`). The figures and
//! their ratio are recorded in docs/prog3.md.

use std::cell::UnsafeCell;
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use shmlib::Deadline;

#[path = "../tests/support/mod.rs"]
mod support;
use support::scratch_segment;

/// Segment names for the benchmark (ports below 1024: no daemon uses them).
const PORT: u16 = 990;

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
    for workers in [8u64, 64] {
        let seg = scratch_segment(PORT + workers as u16 % 100, 1, 4, workers);
        let lock = seg.mailbox_lock(0).expect("lock");
        let me = seg.participant(0).expect("participant");
        let deadline = Deadline::after(Duration::from_secs(3600));
        group.bench_function(format!("mailbox read lock, {workers} worker slots"), |b| {
            b.iter(|| drop(black_box(lock.read(me, &deadline).expect("read lock"))))
        });
        group.bench_function(format!("mailbox write lock, {workers} worker slots"), |b| {
            b.iter(|| drop(black_box(lock.write(me, &deadline).expect("write lock"))))
        });
    }
    group.finish();
}

criterion_group!(benches, uncontended);
criterion_main!(benches);
