//! The gateway's library: the wire format every party speaks (`wire`) and
//! the directory of servers (`registry`). The binary (`main.rs`) adds the
//! UDP loop, the health checks and the daemon around them; dipc and the
//! client use `wire` to talk to a gateway.

pub mod registry;
pub mod wire;

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

/// `HOST:PORT` to its first IPv4 address: the gateway's protocol carries
/// IPv4 addresses only. Callers word the error for their own option.
pub fn resolve_v4(target: &str) -> io::Result<SocketAddr> {
    target
        .to_socket_addrs()?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no IPv4 address for that name"))
}

/// Whether a receive on a socket with a read timeout came back empty
/// (timed out, or interrupted by a signal) rather than failed.
pub fn nothing_received(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}
