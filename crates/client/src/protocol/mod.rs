//! What goes on the wire: each protocol's requests and how to tell where its
//! replies end, with no I/O, so that every split of a reply can be tested.
//!
//! Replies are framed by pure functions over the bytes received so far
//! (`Codec::parse`): given the start of the unframed bytes and the operation
//! the reply answers, they say "incomplete", "a reply of n bytes (an error or
//! not)", or "this is no reply of this protocol". [`Inbox`] keeps the
//! incomplete tail between reads.

mod dipc;
mod fixed;
mod inbox;
mod lines;
mod memcached;
mod op;
mod redis;

use std::fmt;

pub use inbox::Inbox;
pub use op::Op;

/// The wire protocols `client bench` speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// dipc's own text protocol (r/w on mailboxes; get/put/del on keys)
    Dipc,
    /// RESP2: GET, SET, DEL
    Redis,
    /// memcached's text protocol: get, set, delete
    Memcached,
    /// dipc's requests; every reply is exactly --reply-bytes bytes (for `client ceiling`)
    Fixed,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Dipc => "dipc",
            Protocol::Redis => "redis",
            Protocol::Memcached => "memcached",
            Protocol::Fixed => "fixed",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One complete reply at the start of the bytes given to the parser.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    /// Its length in bytes, terminators included.
    pub len: usize,
    /// The server refused the request (`ERR`, `-ERR`, `SERVER_ERROR`, ...).
    pub error: bool,
}

impl Reply {
    pub(crate) fn ok(len: usize) -> Self {
        Reply { len, error: false }
    }

    pub(crate) fn error(len: usize) -> Self {
        Reply { len, error: true }
    }
}

/// Bytes that no server of the protocol would send in reply: the run cannot
/// go on, since where the next reply starts is unknown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}; the reply began with \"{excerpt}\"")]
pub struct ProtocolError {
    pub reason: String,
    pub excerpt: String,
}

impl ProtocolError {
    /// How many bytes of the reply the message shows.
    const EXCERPT: usize = 80;

    pub(crate) fn new(reason: impl Into<String>, reply: &[u8]) -> Self {
        let shown = &reply[..reply.len().min(Self::EXCERPT)];
        let mut excerpt = printable(shown);
        if reply.len() > Self::EXCERPT {
            excerpt.push_str("...");
        }
        ProtocolError {
            reason: reason.into(),
            excerpt,
        }
    }
}

/// Bytes from the network as text a person can read: printable ASCII as
/// it is, the rest escaped (`\n`, `\r`, `\t`, `\xNN`).
pub fn printable(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\n' => text.push_str("\\n"),
            b'\r' => text.push_str("\\r"),
            b'\t' => text.push_str("\\t"),
            b' '..=b'~' => text.push(char::from(b)),
            _ => text.push_str(&format!("\\x{b:02x}")),
        }
    }
    text
}

/// A protocol with the run's settings: what a request's value is, and how
/// long a fixed reply is.
#[derive(Debug, Clone)]
pub struct Codec {
    protocol: Protocol,
    /// The value of every write and put: value-size bytes of printable text
    /// with no space at its end and no newline, so that it survives dipc's
    /// line framing as it is.
    value: Vec<u8>,
    reply_bytes: usize,
}

impl Codec {
    pub fn new(protocol: Protocol, value_size: usize, reply_bytes: usize) -> Self {
        Codec {
            protocol,
            value: vec![b'x'; value_size],
            reply_bytes,
        }
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Appends the request for `op` on mailbox or key number `index`
    /// (0-based; dipc's mailboxes are numbered from 1, so mailbox index+1).
    /// Allocates nothing once `out` has grown to its working size.
    pub fn encode(&self, op: Op, index: u64, out: &mut Vec<u8>) {
        match self.protocol {
            Protocol::Dipc | Protocol::Fixed => dipc::encode(op, index, &self.value, out),
            Protocol::Redis => redis::encode(op, index, &self.value, out),
            Protocol::Memcached => memcached::encode(op, index, &self.value, out),
        }
    }

    /// Frames the reply to `op` at the start of `buf`: `Ok(None)` while it
    /// is incomplete.
    pub fn parse(&self, op: Op, buf: &[u8]) -> Result<Option<Reply>, ProtocolError> {
        match self.protocol {
            Protocol::Dipc => dipc::parse(op, buf),
            Protocol::Redis => redis::parse(buf),
            Protocol::Memcached => memcached::parse(op, buf),
            Protocol::Fixed => Ok(fixed::parse(self.reply_bytes, buf)),
        }
    }
}
