//! What the protocol costs in the worker, without sockets: `request::parse`
//! of one line of each common kind, and `Session::feed` of a pipelined batch
//! of 16 requests against a scratch segment (framing, parsing, the mailbox
//! operation and the reply), with two worker slots (the locks take their
//! fences) and with one (the event model's `--workers 1`: a lock row of
//! one takes none). Throughput is in requests (elements) per second; time
//! per request is the batch time over 16.

use std::cell::RefCell;
use std::hint::black_box;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use shmlib::{Geometry, Segment};
use worker::reply_line::ReplyLines;
use worker::request::{parse, Bounds};
use worker::session::{mailbox_views, Flow, Session};
use worker::SessionConfig;

/// The scratch segment's name: a port below 1024, which no daemon uses, and
/// none of the tests or other benches.
const PORT: u16 = 970;

/// Requests in one pipelined batch.
const BATCH: usize = 16;

/// Bytes written by `w` (a chat line).
const TEXT: usize = 100;

/// A short run: each figure is tens to hundreds of nanoseconds, so a second
/// of samples is millions of requests.
fn quick<'c>(c: &'c mut Criterion, name: &str) -> BenchmarkGroup<'c, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1));
    group
}

fn parse_lines(c: &mut Criterion) {
    // The daemon's shape with 4 mailboxes and 2 KiB packets.
    let bounds = Bounds {
        mailboxes: 4,
        data_limit: 2048,
        data_limit_name: "packet",
        value_limit: 2048,
    };
    let write = [b"w 2 ".as_slice(), &[b'x'; TEXT]].concat();
    let put = [b"put 5 ".as_slice(), &[b'x'; TEXT]].concat();
    let lines: [(&str, &[u8]); 7] = [
        ("r 3", b"r 3"),
        ("w 2 <100 B>", &write),
        ("wb 1 100", b"wb 1 100"),
        ("stat", b"stat"),
        ("get 5", b"get 5"),
        ("put 5 <100 B>", &put),
        // Refused: the error message is formatted, as the session would.
        ("bad line", b"frobnicate 1"),
    ];
    for (name, line) in lines {
        let refused = name == "bad line";
        assert_eq!(parse(line, &bounds).is_err(), refused, "{name}");
    }
    let mut group = quick(c, "request::parse");
    group.throughput(Throughput::Elements(1));
    for (name, line) in lines {
        group.bench_function(name, |b| {
            b.iter(|| parse(black_box(line), black_box(&bounds)))
        });
    }
    group.finish();
}

fn scratch_segment(worker_slots: u64) -> Segment {
    let geometry = Geometry::from_kib(4, 8, 2, worker_slots).expect("geometry");
    // Owned: the segment is unlinked when it drops at the end of the bench.
    Segment::create_scratch(PORT, geometry).expect("create a scratch segment")
}

fn session_batches(c: &mut Criterion) {
    for worker_slots in [2, 1] {
        session_batches_with(c, worker_slots);
    }
}

fn session_batches_with(c: &mut Criterion, worker_slots: u64) {
    static NO_STOP: AtomicBool = AtomicBool::new(false);
    let seg = scratch_segment(worker_slots);
    let config = SessionConfig {
        lock_timeout: Duration::from_secs(1),
        port: PORT,
        supervisor_pid: 1,
        worker_slot: 0,
        secret: None,
    };
    // As in the event worker: its reply lines and mailbox views.
    let reply_lines = RefCell::new(ReplyLines::new(4));
    let views = mailbox_views(&seg);
    let mut session = Session::new(&seg, config, &NO_STOP)
        .with_reply_lines(&reply_lines)
        .with_mailbox_views(&views);
    let write_line = [b"w 1 ".as_slice(), &[b'x'; TEXT], b"\n"].concat();
    let reads = b"r 1\n".repeat(BATCH);
    let writes = write_line.repeat(BATCH);

    // Mailbox 1 holds 100 bytes, so each read replies with them.
    let mut out = Vec::new();
    assert_eq!(session.feed(&write_line, &mut out), Flow::Continue);
    assert!(out.starts_with(b"OK wrote 100 bytes"), "setup write failed");

    let plural = if worker_slots == 1 { "" } else { "s" };
    let mut group = quick(
        c,
        &format!("Session::feed, 16 pipelined requests, {worker_slots} worker slot{plural}"),
    );
    group.throughput(Throughput::Elements(BATCH as u64));
    for (name, batch) in [("r 1 (100 B)", &reads), ("w 1 <100 B>", &writes)] {
        out.clear();
        session.feed(batch, &mut out);
        assert_eq!(
            out.iter().filter(|&&b| b == b'\n').count(),
            BATCH * if batch == &reads { 2 } else { 1 },
            "one reply per request: {}",
            String::from_utf8_lossy(&out)
        );
        assert!(!out.windows(3).any(|w| w == b"ERR"), "a request refused");
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                session.feed(black_box(batch), &mut out)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, parse_lines, session_batches);
criterion_main!(benches);
