//! The check the fuzzer runs on every input, shared with the regression
//! test that replays its corpus (fuzz/fuzz_targets/session.rs includes this
//! file): the first byte says how the rest is cut into reads; the session
//! must never panic, never hold more than a line, and after a pause must
//! answer `stat 1` properly (unless the stream ended the connection, left
//! a write's bytes pending, or is waiting).

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use shmlib::{Geometry, Segment};
use worker::session::{Flow, Session};
use worker::SessionConfig;

static NO_STOP: AtomicBool = AtomicBool::new(false);

/// The segment the check runs on (2 mailboxes of 1 KiB, 16 keys), on
/// `port`'s name, replacing any left there; its owner unlinks it on drop.
pub fn stream_segment(port: u16) -> Segment {
    let geometry = Geometry::from_kib(2, 1, 1, 1)
        .and_then(|g| g.with_keys(16))
        .expect("geometry");
    Segment::create_scratch(port, geometry).expect("segment")
}

pub fn check_stream(segment: &Segment, data: &[u8]) {
    let Some((&cuts, stream)) = data.split_first() else {
        return;
    };
    let config = SessionConfig {
        lock_timeout: Duration::from_millis(10),
        port: 1,
        supervisor_pid: 1,
        worker_slot: 0,
        secret: None,
    };
    let mut session = Session::new(segment, config, &NO_STOP);
    let mut out = Vec::new();
    for read in stream.chunks(1 + cuts as usize) {
        let flow = session.feed(read, &mut out);
        assert!(session.buffered() <= session.line_limit() + 1);
        out.clear();
        if flow != Flow::Continue {
            return;
        }
    }
    if session.on_pause(&mut out) != Flow::Continue || session.in_request() {
        return;
    }
    out.clear();
    session.feed(b"stat 1\n", &mut out);
    assert!(
        out.starts_with(b"OK mailbox 1: "),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
}
