//! What a mailbox write and read cost by size (`make bench`): `Mailbox::write`
//! and `Mailbox::read_into` of 100 B (a chat line), 8 KiB (the default
//! mailbox) and 1 MiB (the largest packet), uncontended, in bytes per second.
//! At the small end the lock dominates a write (a read of up to 4 KiB takes
//! no lock); at the large end the copy does.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shmlib::Deadline;

#[path = "../tests/support/mod.rs"]
mod support;
use support::scratch_segment;

/// The segment's name (a port below 1024, which no daemon uses, and none of
/// the tests or other benches).
const PORT: u16 = 961;

/// Mailboxes of 1 MiB, so that the largest size fits.
const MAILBOX_KIB: u64 = 1024;

const SIZES: [(&str, usize); 3] = [("100 B", 100), ("8 KiB", 8 << 10), ("1 MiB", 1 << 20)];

fn copy(c: &mut Criterion) {
    let seg = scratch_segment(PORT, 1, MAILBOX_KIB, 1);
    let mailbox = seg.mailbox(0).expect("mailbox");
    let me = seg.participant(0).expect("participant");
    let deadline = Deadline::after(Duration::from_secs(3600));
    // Not all zeros, in case a zero page were ever cheaper to copy.
    let content: Vec<u8> = (0..MAILBOX_KIB as usize * 1024)
        .map(|i| (i % 251) as u8)
        .collect();

    let mut group = c.benchmark_group("mailbox write");
    // Short runs: even 1 MiB takes well under a millisecond, so a second
    // gives thousands of copies per sample set.
    group
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1));
    for (name, size) in SIZES {
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &size, |b, &size| {
            b.iter(|| {
                mailbox
                    .write(me, &deadline, black_box(&content[..size]))
                    .expect("write")
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("mailbox read_into");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1));
    // Room for the largest read up front: the figure is the copy, not the
    // allocator growing the buffer.
    let mut out = Vec::with_capacity(content.len());
    for (name, size) in SIZES {
        mailbox
            .write(me, &deadline, &content[..size])
            .expect("write");
        out.clear();
        let read = mailbox.read_into(me, &deadline, &mut out).expect("read");
        assert_eq!(read.len, size, "a read returns the whole last write");
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                out.clear();
                black_box(mailbox.read_into(me, &deadline, &mut out).expect("read"));
            })
        });
    }
    group.finish();
}

criterion_group!(benches, copy);
criterion_main!(benches);
