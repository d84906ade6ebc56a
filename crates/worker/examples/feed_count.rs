//! Feeds pipelined batches of one kind of request to a session on a
//! one-slot scratch segment, as the event model's only worker would, and
//! prints the time per request. Made to run under callgrind, whose count of
//! instructions per request is the same from run to run where time on a
//! shared VM is not:
//!
//! ```text
//! cargo build --release -p worker --example feed_count
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.write \
//!     target/release/examples/feed_count write 20000
//! ```
//!
//! (the instructions per request are the total over 16 x 20,000 requests,
//! less a run with 1 batch). Kinds: `write` (`w <m> <100 bytes>`), `read`
//! (`r <m>`) and `get` (`get <key>`), over 8 mailboxes or keys.

use std::cell::RefCell;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use shmlib::{Geometry, Segment};
use worker::reply_line::ReplyLines;
use worker::session::{mailbox_views, Session};
use worker::SessionConfig;

/// The scratch segment's name: a port below 1024, which no daemon uses, and
/// none of the tests or benches.
const PORT: u16 = 975;
const BATCH: usize = 16;
const SPREAD: usize = 8;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let kind = args.next().unwrap_or_else(|| "write".to_string());
    let batches = match args.next().map(|n| n.parse::<usize>()) {
        None => 100_000,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("usage: feed_count [write|read|get] [batches > 0]");
            return ExitCode::FAILURE;
        }
    };
    let value = [b'x'; 100];
    let line = |i: usize| -> Option<Vec<u8>> {
        let n = i % SPREAD + 1;
        match kind.as_str() {
            "write" => Some([format!("w {n} ").as_bytes(), &value, b"\n"].concat()),
            "read" => Some(format!("r {n}\n").into_bytes()),
            "get" => Some(format!("get {n}\n").into_bytes()),
            _ => None,
        }
    };
    let Some(batch) = (0..BATCH).map(line).collect::<Option<Vec<_>>>() else {
        eprintln!("feed_count: unknown kind {kind:?}: write, read or get");
        return ExitCode::FAILURE;
    };
    let batch = batch.concat();

    static NO_STOP: AtomicBool = AtomicBool::new(false);
    let geometry = Geometry::from_kib(SPREAD as u64, 8, 2, 1)
        .and_then(|g| g.with_keys(1024))
        .expect("a small geometry");
    // Owned: unlinked when it drops, on a panic too.
    let segment = Segment::create_scratch(PORT, geometry).expect("create a scratch segment");
    let config = SessionConfig {
        lock_timeout: Duration::from_secs(1),
        port: PORT,
        supervisor_pid: 1,
        worker_slot: 0,
        secret: None,
    };
    // As in the event worker: its reply lines and mailbox views.
    let lines = RefCell::new(ReplyLines::for_segment(&segment));
    let views = mailbox_views(&segment);
    let mut session = Session::new(&segment, config, &NO_STOP)
        .with_reply_lines(&lines)
        .with_mailbox_views(&views);
    let mut out = Vec::new();
    // Every mailbox and key holds 100 bytes, so reads and gets find them.
    for n in 1..=SPREAD {
        for verb in ["w", "put"] {
            session.feed(
                &[format!("{verb} {n} ").as_bytes(), &value, b"\n"].concat(),
                &mut out,
            );
        }
    }
    out.clear();
    session.feed(&batch, &mut out);
    let replies = out.iter().filter(|&&b| b == b'\n').count();
    // A read answers with a header line and the content; the others with one line.
    let per_request = if kind == "read" { 2 } else { 1 };
    assert_eq!(
        replies,
        BATCH * per_request,
        "{}",
        String::from_utf8_lossy(&out)
    );
    let refused = out
        .split(|&b| b == b'\n')
        .any(|line| line.starts_with(b"ERR"));
    assert!(!refused, "{}", String::from_utf8_lossy(&out));

    let start = Instant::now();
    for _ in 0..batches {
        out.clear();
        session.feed(std::hint::black_box(&batch), &mut out);
    }
    let per_request = start.elapsed().as_secs_f64() * 1e9 / (batches * BATCH) as f64;
    println!("{kind}: {per_request:.1} ns per request ({batches} batches of {BATCH})");
    ExitCode::SUCCESS
}
