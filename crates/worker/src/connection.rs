//! The socket side of one connection: read, feed the session, write the
//! replies. Blocking I/O with poll() for the line pause.

use std::io::{self, Read};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{send, MsgFlags};
use std::os::fd::AsRawFd;

use crate::session::Flow;

/// What the connection loop needs of a protocol: dipc's
/// [`Session`](crate::session::Session), or the seed's upper-case echo
/// ([`UpperEcho`](crate::upper_echo::UpperEcho)). No I/O of its own: bytes
/// in, replies appended to `out`.
pub trait Protocol {
    /// Takes bytes from the front of `input`, until it is used up or `out`
    /// holds enough to send first; says how many it took.
    fn feed_some(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, Flow);
    /// The client paused with bytes but no terminator.
    fn on_pause(&mut self, out: &mut Vec<u8>) -> Flow;
    /// The client closed its sending side.
    fn on_eof(&mut self, out: &mut Vec<u8>);
    /// In the middle of a request: a stopping worker lets it finish.
    fn in_request(&self) -> bool;
    /// Bytes wait for a terminator, so a pause would complete them.
    fn has_partial_line(&self) -> bool;
    /// Requests (or messages) answered so far.
    fn requests(&self) -> u64;
}

/// How a connection ended.
#[derive(Debug)]
pub enum Ending {
    /// `q`: Goodbye sent.
    Goodbye,
    /// The client closed its side.
    ClientLeft,
    /// The worker was told to stop.
    Stopping,
    /// The client vanished or the socket failed; the reason is for the log.
    Broken(io::Error),
}

/// The worker's stop flag, and how long a request under way may go on
/// once it is raised.
#[derive(Clone, Copy)]
pub struct Stop<'a> {
    pub flag: &'a AtomicBool,
    pub grace: Duration,
}

/// How often an idle connection looks at the stop flag.
const IDLE_TICK: Duration = Duration::from_secs(1);

/// Serves one client until it leaves, says `q`, or `stop` is raised and no
/// request is under way.
/// The replies to everything one read brought go out in one write.
pub fn serve(
    stream: &mut TcpStream,
    session: &mut dyn Protocol,
    line_pause: Duration,
    stopping: Stop<'_>,
    housekeeping: &dyn Fn(),
) -> Ending {
    let stop = stopping.flag;
    let mut input = vec![0u8; 64 * 1024];
    let mut out = Vec::new();
    let mut stop_seen: Option<Instant> = None;
    loop {
        // A stopping worker closes a connection between requests; one in the
        // middle of a request gets to finish it within the grace period.
        if stop.load(Ordering::Relaxed) {
            let since = *stop_seen.get_or_insert_with(Instant::now);
            if !session.in_request() || since.elapsed() >= stopping.grace {
                return Ending::Stopping;
            }
        }
        housekeeping();
        let timeout = if session.has_partial_line() {
            line_pause
        } else {
            IDLE_TICK
        };
        match wait_readable(stream, timeout) {
            Ok(true) => {}
            Ok(false) => {
                if session.has_partial_line() {
                    let flow = session.on_pause(&mut out);
                    if let Some(ending) = flush(stream, &mut out, flow, stop) {
                        return ending;
                    }
                }
                continue;
            }
            Err(Errno::EINTR) => continue,
            Err(e) => return Ending::Broken(e.into()),
        }
        let n = match stream.read(&mut input) {
            Ok(0) => {
                session.on_eof(&mut out);
                return flush(stream, &mut out, Flow::Close, stop)
                    .map(|e| match e {
                        Ending::Goodbye => Ending::ClientLeft,
                        other => other,
                    })
                    .unwrap_or(Ending::ClientLeft);
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Ending::Broken(e),
        };
        let mut fed = &input[..n];
        while !fed.is_empty() {
            let (used, flow) = session.feed_some(fed, &mut out);
            fed = &fed[used..];
            if let Some(ending) = flush(stream, &mut out, flow, stop) {
                return ending;
            }
        }
    }
}

fn wait_readable(stream: &TcpStream, timeout: Duration) -> Result<bool, Errno> {
    let mut fds = [PollFd::new(stream.as_fd(), PollFlags::POLLIN)];
    let ms = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
    Ok(poll(&mut fds, ms)? > 0)
}

/// Sends `out` (then clears it): the replies to everything one read
/// brought, in one write. Returns how the connection ends, if it does.
fn flush(stream: &TcpStream, out: &mut Vec<u8>, flow: Flow, stop: &AtomicBool) -> Option<Ending> {
    let result = send_all(stream, out, stop);
    out.clear();
    match (result, flow) {
        (Err(e), _) => Some(Ending::Broken(e)),
        (Ok(()), Flow::Close) => Some(Ending::Goodbye),
        (Ok(()), Flow::Continue) => None,
    }
}

/// One send() for the whole piece unless the socket buffer is full.
/// MSG_NOSIGNAL: a vanished client is an EPIPE error here, never a SIGPIPE.
/// A signal that raised `stop` ends the wait for a client that does not read.
fn send_all(stream: &TcpStream, mut piece: &[u8], stop: &AtomicBool) -> io::Result<()> {
    while !piece.is_empty() {
        match send(stream.as_raw_fd(), piece, MsgFlags::MSG_NOSIGNAL) {
            Ok(n) => piece = &piece[n..],
            Err(Errno::EINTR) if stop.load(Ordering::Relaxed) => {
                return Err(io::Error::new(
                    io::ErrorKind::Interrupted,
                    "stopping while the client was not reading",
                ))
            }
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "client stopped reading (send timed out)",
                ))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
