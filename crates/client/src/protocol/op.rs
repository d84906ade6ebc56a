//! The operations a benchmark mixes, whatever the protocol.

use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// dipc `r <m>`; redis GET; memcached get
    Read,
    /// dipc `w <m> <value>`; redis SET; memcached set
    Write,
    /// dipc `get <key>`; redis GET; memcached get
    Get,
    /// dipc `put <key> <value>`; redis SET; memcached set
    Put,
    /// dipc `del <key>`; redis DEL; memcached delete
    Del,
    /// Put and del in turn, each connection on keys of its own: every
    /// request a change that succeeds (dipc's put refuses an existing key).
    /// The engine turns it into `Put` or `Del` before encoding.
    Churn,
}

impl Op {
    pub const ALL: [Op; 6] = [Op::Read, Op::Write, Op::Get, Op::Put, Op::Del, Op::Churn];

    pub fn name(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Write => "write",
            Op::Get => "get",
            Op::Put => "put",
            Op::Del => "del",
            Op::Churn => "churn",
        }
    }

    /// Whether the operation addresses dipc's mailboxes (read, write) rather
    /// than its keys (get, put, del). Redis and memcached have keys only.
    pub fn on_mailbox(self) -> bool {
        matches!(self, Op::Read | Op::Write)
    }

    /// Whether the request carries a value.
    pub fn writes(self) -> bool {
        matches!(self, Op::Write | Op::Put)
    }

    /// Whether the operation addresses the shared keys `0..spread` (which
    /// the prefill puts) rather than a connection's own.
    pub fn on_shared_key(self) -> bool {
        matches!(self, Op::Get | Op::Put | Op::Del)
    }

    /// The `turn`th churn request of connection `conn`: a put of the
    /// connection's next key, then its del. Keys lie above 2^40, clear of
    /// the shared keys, and differ per generator process: a run that
    /// stopped between a put and its del leaves a key that the next run
    /// must not put again.
    pub fn churn(turn: u64, conn: u64, spread: u64) -> (Op, u64) {
        let op = if turn.is_multiple_of(2) {
            Op::Put
        } else {
            Op::Del
        };
        let own = (conn * spread + (turn / 2) % spread) & 0xf_ffff;
        (op, 1 << 40 | u64::from(std::process::id()) << 20 | own)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Op {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Op::ALL
            .into_iter()
            .find(|op| op.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown operation '{s}' (read, write, get, put, del or churn)"))
    }
}
