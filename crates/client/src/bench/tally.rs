//! What a run counted: replies, error replies, and the latency histogram.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::protocol::printable;

/// The longest latency recorded as it is (longer ones are recorded as
/// this): an hour, in nanoseconds.
const MAX_LATENCY_NS: u64 = 3_600_000_000_000;

#[derive(Debug)]
pub struct Tally {
    /// Replies to recorded requests (sent after the warmup).
    pub requests: u64,
    /// Of those, error replies.
    pub errors: u64,
    /// Replies to requests that are not recorded (warmup, prefill).
    pub unrecorded: u64,
    /// Of those, error replies.
    pub unrecorded_errors: u64,
    /// The first error reply of the run, recorded or not, as text: what
    /// the server said is the quickest diagnosis of a mix it refuses.
    pub first_error: Option<String>,
    /// Latency of recorded requests, nanoseconds, 3 significant figures.
    pub latency: Histogram<u64>,
    /// When the last recorded reply arrived.
    pub last_reply: Option<Instant>,
}

impl Tally {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Tally {
            requests: 0,
            errors: 0,
            unrecorded: 0,
            unrecorded_errors: 0,
            first_error: None,
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3)?,
            last_reply: None,
        })
    }

    /// One reply, complete at `at`, to a request sent at `sent`.
    pub fn reply(&mut self, recorded: bool, error: bool, sent: Instant, at: Instant, bytes: &[u8]) {
        if error && self.first_error.is_none() {
            let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
            self.first_error = Some(printable(line.trim_ascii()));
        }
        if recorded {
            self.requests += 1;
            self.errors += u64::from(error);
            let nanos =
                u64::try_from(at.saturating_duration_since(sent).as_nanos()).unwrap_or(u64::MAX);
            self.latency.saturating_record(nanos.max(1));
            self.last_reply = Some(at);
        } else {
            self.unrecorded += 1;
            self.unrecorded_errors += u64::from(error);
        }
    }

    /// The recorded span: from `start` (the end of the warmup) to the last
    /// recorded reply.
    pub fn elapsed_since(&self, start: Instant) -> Duration {
        self.last_reply
            .map(|last| last.saturating_duration_since(start))
            .unwrap_or_default()
    }
}
