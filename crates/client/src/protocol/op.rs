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
}

impl Op {
    pub const ALL: [Op; 5] = [Op::Read, Op::Write, Op::Get, Op::Put, Op::Del];

    pub fn name(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Write => "write",
            Op::Get => "get",
            Op::Put => "put",
            Op::Del => "del",
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
            .ok_or_else(|| format!("unknown operation '{s}' (read, write, get, put or del)"))
    }
}
