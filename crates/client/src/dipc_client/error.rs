//! What can go wrong talking to dipc. Each message is complete on its own
//! (the cause is part of it), so that a caller prints it on one line.

use std::io;
use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The target is no `HOST:PORT` with an IPv4 address.
    #[error("{target}: expected HOST:PORT ({cause})")]
    Address { target: String, cause: io::Error },
    /// Nothing listens there.
    #[error("cannot connect to {addr}: connection refused (is dipc running on that port?)")]
    Refused { addr: SocketAddr },
    /// Any other failure to connect (unreachable, timed out...).
    #[error("cannot connect to {addr}: {cause}")]
    Connect { addr: SocketAddr, cause: io::Error },
    /// Sending or receiving failed once connected.
    #[error("{addr}: {cause}")]
    Io { addr: SocketAddr, cause: io::Error },
    /// The server said nothing for that long.
    #[error("{addr}: no reply within {secs} s")]
    NoReply { addr: SocketAddr, secs: u64 },
    /// The server closed the connection before its reply was complete.
    #[error("{addr} closed the connection")]
    Closed { addr: SocketAddr },
    /// Bytes that are no reply of dipc's to this request.
    #[error("{addr} sent a reply dipc would not send ({reason}): {excerpt:?}")]
    Protocol {
        addr: SocketAddr,
        reason: String,
        excerpt: String,
    },
    /// The server refused the request: its `ERR` line's reason.
    #[error("{0}")]
    Refusal(String),
    /// Refused here, before anything was sent (a value that cannot travel
    /// in one request line, say).
    #[error("{0}")]
    Argument(String),
}

impl ClientError {
    /// The server was reached and answered `ERR`.
    pub fn is_refusal(&self) -> bool {
        matches!(self, ClientError::Refusal(_))
    }

    /// The request never left: the mistake is the caller's.
    pub fn is_argument(&self) -> bool {
        matches!(self, ClientError::Argument(_) | ClientError::Address { .. })
    }
}
