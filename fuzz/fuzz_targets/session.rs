//! A connection's byte stream through a session: see the shared check.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use shmlib::Segment;

#[path = "../../crates/worker/tests/support/stream_check.rs"]
mod stream_check;

/// One segment per fuzzing process, unlinked at once (the mapping lives as
/// long as the process).
fn segment() -> &'static Segment {
    static SEGMENT: OnceLock<Segment> = OnceLock::new();
    SEGMENT.get_or_init(|| {
        let port = 20000 + (std::process::id() % 10000) as u16;
        let segment = stream_check::stream_segment(port);
        let _ = Segment::unlink(port);
        segment
    })
}

fuzz_target!(|data: &[u8]| stream_check::check_stream(segment(), data));
