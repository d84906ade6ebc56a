//! Opening the connections: resolved once, connected one after the other
//! (blocking, with a time limit), then made non-blocking for the loop.

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{anyhow, Context};

/// The longest a connection attempt may take: a server whose listen
/// backlog is full makes the kernel retry the SYN, which would otherwise
/// wait for minutes.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// `count` connections to `server`, non-blocking, with Nagle off (a batch
/// is one write; waiting to coalesce it with nothing would only add
/// latency).
pub fn connect_all(server: &str, count: u32) -> anyhow::Result<Vec<TcpStream>> {
    let addrs: Vec<SocketAddr> = server
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {server} (expected HOST:PORT)"))?
        .collect();
    // The first connection tries every address the name has (localhost may
    // be ::1 and 127.0.0.1); the others use the one that answered.
    let mut last_error = None;
    let mut first = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, CONNECT_TIMEOUT) {
            Ok(stream) => {
                first = Some((*addr, stream));
                break;
            }
            Err(e) => last_error = Some(e),
        }
    }
    let Some((addr, stream)) = first else {
        return Err(match last_error {
            Some(e) => describe(server, &e),
            None => anyhow!("cannot resolve {server}: no address"),
        });
    };
    let mut streams = Vec::with_capacity(count as usize);
    streams.push(prepare(stream, server)?);
    for i in 1..count {
        let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(|e| {
            describe(server, &e).context(format!(
                "connection {} of {count} (the first {i} are open)",
                i + 1
            ))
        })?;
        streams.push(prepare(stream, server)?);
    }
    Ok(streams)
}

fn prepare(stream: TcpStream, server: &str) -> anyhow::Result<TcpStream> {
    stream
        .set_nodelay(true)
        .and_then(|()| stream.set_nonblocking(true))
        .with_context(|| format!("setting up a connection to {server}"))?;
    Ok(stream)
}

/// The message for a failed connect, in the words a user needs.
fn describe(server: &str, error: &io::Error) -> anyhow::Error {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => {
            anyhow!("cannot connect to {server}: connection refused (is the server running?)")
        }
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => anyhow!(
            "cannot connect to {server}: no answer within {} s (is its listen backlog full?)",
            CONNECT_TIMEOUT.as_secs()
        ),
        _ => anyhow!("cannot connect to {server}: {error}"),
    }
}
