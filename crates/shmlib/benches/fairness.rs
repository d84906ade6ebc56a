//! Fairness of the mailbox lock under load (`make bench`; DIPC_BENCH_SECS
//! sets each scenario's length, default 3 s):
//!
//! - 50 readers read one mailbox as fast as they can; a writer asks for the
//!   write lock every millisecond: how long does it wait?
//! - 8 writers write one mailbox as fast as they can; a reader asks for the
//!   read lock every millisecond: how long does it wait?
//!
//! Two measures of each wait: its time, and how many of the crowd's critical
//! sections ran during it (each crowd thread counts its sections while it
//! holds the lock). First come, first served means that count stays below
//! the crowd's size: only those already in line when the probe took its
//! ticket go first. On this 2-vCPU machine 50 busy threads are 25 per core,
//! so the time mostly measures waiting for preempted ticket holders to be
//! scheduled again; the count is what fairness is about. Every participant is
//! a thread with its own worker slot in a real segment, as the worker
//! processes are. The figures are in docs/prog3.md.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use shmlib::{Deadline, Segment};

#[path = "../tests/support/mod.rs"]
mod support;
use support::scratch_segment;

const PORT: u16 = 995;
const CONTENT: usize = 4096;
const CROWD: usize = 50;
const WRITERS: usize = 8;

#[derive(Clone, Copy, PartialEq)]
enum Role {
    Reader,
    Writer,
}

fn far() -> Deadline<'static> {
    Deadline::after(Duration::from_secs(60))
}

/// Critical sections run by the crowd, counted inside the lock.
static SECTIONS: AtomicU64 = AtomicU64::new(0);

/// One operation as the crowd does it, in participant `slot`: the lock, a
/// 4 KiB copy and the count inside it.
fn operate(seg: &Segment, slot: usize, role: Role, buf: &mut [u8], content: &[u8]) {
    let me = seg.participant(slot).expect("participant");
    let lock = seg.mailbox_lock(0).expect("lock");
    let guard = match role {
        Role::Reader => lock.read(me, &far()),
        Role::Writer => lock.write(me, &far()),
    }
    .expect("crowd lock");
    buf.copy_from_slice(content);
    std::hint::black_box(&buf);
    SECTIONS.fetch_add(1, Ordering::Relaxed);
    drop(guard);
}

fn micros(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// The median time of one uncontended operation of `role`, in ns.
fn critical_section(seg: &Segment, role: Role) -> u64 {
    let mut h = Histogram::<u64>::new(3).expect("histogram");
    let (mut buf, content) = (vec![0; CONTENT], vec![b'x'; CONTENT]);
    for _ in 0..20_000 {
        let t = Instant::now();
        operate(seg, 0, role, &mut buf, &content);
        h.record(t.elapsed().as_nanos() as u64).expect("record");
    }
    h.value_at_quantile(0.5)
}

/// `crowd` threads do `crowd_role` flat out, blocking for `pace` outside the
/// lock between operations (as a worker blocks in recv() for its client's
/// next request); zero is the worst case, every thread always runnable and
/// always in line. Participant 0 asks for the lock as `probe` every
/// millisecond and records how long it waited.
fn scenario(crowd: usize, crowd_role: Role, pace: Duration, probe: Role, secs: u64) -> Outcome {
    let seg = scratch_segment(PORT, 1, 8, crowd as u64 + 1);
    let section = critical_section(&seg, crowd_role);
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (1..=crowd)
        .map(|slot| {
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let seg = Segment::open(PORT).expect("open");
                let (mut buf, content) = (vec![0; CONTENT], vec![b'y'; CONTENT]);
                let mut done = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    operate(&seg, slot, crowd_role, &mut buf, &content);
                    done += 1;
                    if !pace.is_zero() {
                        thread::sleep(pace);
                    }
                }
                done
            })
        })
        .collect();
    let me = seg.participant(0).expect("participant");
    let lock = seg.mailbox_lock(0).expect("lock");
    let mut waits = Histogram::<u64>::new(3).expect("histogram");
    let mut overtaken = Histogram::<u64>::new(3).expect("histogram");
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        thread::sleep(Duration::from_millis(1));
        let deadline = far();
        let before = SECTIONS.load(Ordering::Relaxed);
        let t = Instant::now();
        let guard = match probe {
            Role::Reader => lock.read(me, &deadline),
            Role::Writer => lock.write(me, &deadline),
        }
        .expect("probe lock");
        waits.record(t.elapsed().as_nanos() as u64).expect("record");
        overtaken
            .record(SECTIONS.load(Ordering::Relaxed) - before)
            .expect("record");
        drop(guard);
    }
    stop.store(true, Ordering::Relaxed);
    let crowd_ops = threads
        .into_iter()
        .map(|t| t.join().expect("crowd thread"))
        .sum();
    Outcome {
        waits,
        overtaken,
        section,
        crowd_ops,
    }
}

struct Outcome {
    waits: Histogram<u64>,
    /// Crowd critical sections that ran during each wait.
    overtaken: Histogram<u64>,
    /// One uncontended crowd operation, ns.
    section: u64,
    crowd_ops: u64,
}

fn report(title: &str, section_name: &str, outcome: Outcome) {
    let Outcome {
        waits,
        overtaken,
        section,
        crowd_ops: ops,
    } = outcome;
    let cs = section as f64 / 1000.0;
    println!("{title}");
    println!(
        "  wait: n={} p50={:.1} us  p99={:.1} us  max={:.1} us",
        waits.len(),
        micros(&waits, 0.5),
        micros(&waits, 0.99),
        waits.max() as f64 / 1000.0
    );
    println!(
        "  one {section_name} critical section (uncontended 4 KiB): {cs:.2} us; \
         p50 wait = {:.1} sections, p99 = {:.1}; crowd ops: {ops}",
        micros(&waits, 0.5) / cs,
        micros(&waits, 0.99) / cs
    );
    println!(
        "  crowd sections run during a wait: p50={} p99={} max={}",
        overtaken.value_at_quantile(0.5),
        overtaken.value_at_quantile(0.99),
        overtaken.max()
    );
}

fn main() {
    let secs = std::env::var("DIPC_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    report(
        &format!("{CROWD} readers flat out, a writer every ms"),
        "read",
        scenario(CROWD, Role::Reader, Duration::ZERO, Role::Writer, secs),
    );
    report(
        &format!("{WRITERS} writers flat out, a reader every ms"),
        "write",
        scenario(WRITERS, Role::Writer, Duration::ZERO, Role::Reader, secs),
    );
    report(
        &format!(
            "{CROWD} readers blocking 20 us between reads, as on a network, a writer every ms"
        ),
        "read",
        scenario(
            CROWD,
            Role::Reader,
            Duration::from_micros(20),
            Role::Writer,
            secs,
        ),
    );
}
