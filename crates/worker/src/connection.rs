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

use crate::session::{Flow, PendingWait};
use crate::waits::SlotWaits;

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
    /// The `wait` the session sleeps on, after it returned [`Flow::Wait`].
    fn pending_wait(&self) -> Option<PendingWait> {
        None
    }
    /// Answers the pending wait if it is due; true when none is left.
    fn resume_wait(&mut self, _out: &mut Vec<u8>) -> bool {
        true
    }
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
    /// No request completed within the idle timeout (a slow or silent client).
    Idle(Duration),
}

/// A connection's clocks.
#[derive(Clone, Copy)]
pub struct Timing {
    /// Bytes left without a terminator this long are a line.
    pub line_pause: Duration,
    /// No request completed for this long (and no `wait` pending): closed.
    pub idle_timeout: Duration,
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
/// A `wait` sleeps on `waits` (the slot's eventfd and registrations).
pub fn serve(
    stream: &mut TcpStream,
    session: &mut dyn Protocol,
    waits: &mut SlotWaits<'_>,
    timing: Timing,
    stopping: Stop<'_>,
    housekeeping: &dyn Fn(),
) -> Ending {
    let stop = stopping.flag;
    let mut input = vec![0u8; 64 * 1024];
    let mut out = Vec::new();
    let mut stop_seen: Option<Instant> = None;
    // Idle time counts from the connection, or from its last request.
    let mut last_request = Instant::now();
    let mut requests = session.requests();
    loop {
        if session.requests() != requests {
            requests = session.requests();
            last_request = Instant::now();
        }
        let idle_left = timing.idle_timeout.saturating_sub(last_request.elapsed());
        if idle_left.is_zero() {
            return Ending::Idle(timing.idle_timeout);
        }
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
            timing.line_pause
        } else {
            IDLE_TICK
        }
        .min(idle_left);
        match wait_readable(stream, timeout) {
            Ok(true) => {}
            Ok(false) => {
                // Woken by the idle timeout, not by a pause: closed above.
                if session.has_partial_line() && timeout < idle_left {
                    let flow = session.on_pause(&mut out);
                    if let Some(ending) = settle(stream, session, waits, &mut out, flow, stop) {
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
            if let Some(ending) = settle(stream, session, waits, &mut out, flow, stop) {
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

/// Sends the replies in `out`, and after [`Flow::Wait`] sleeps until the
/// wait is answered and sends that too. Returns how the connection ends, if
/// it does.
fn settle(
    stream: &TcpStream,
    session: &mut dyn Protocol,
    waits: &mut SlotWaits<'_>,
    out: &mut Vec<u8>,
    flow: Flow,
    stop: &AtomicBool,
) -> Option<Ending> {
    if let Some(ending) = flush(stream, out, flow, stop) {
        return Some(ending);
    }
    if flow != Flow::Wait {
        return None;
    }
    if let Some(ending) = sleep_until_answered(stream, session, waits, out) {
        return Some(ending);
    }
    flush(stream, out, Flow::Continue, stop)
}

/// Sleeps on the slot's eventfd until the session's `wait` is answered (a
/// new version, the deadline, or the worker stopping), its reply in `out`;
/// or until the client hangs up (it closed its side: nobody to answer; a
/// client that sent more requests behind the wait and then closed is found
/// only when the wait ends).
/// Registered in the mailbox's waiter mask first, then every look at the
/// version comes after draining the eventfd: no write goes unnoticed.
fn sleep_until_answered(
    stream: &TcpStream,
    session: &mut dyn Protocol,
    waits: &mut SlotWaits<'_>,
    out: &mut Vec<u8>,
) -> Option<Ending> {
    let wait = session.pending_wait()?;
    waits.begin(wait.mailbox);
    // Requests sent behind the wait: they wait in the socket, which is then
    // no longer watched (it would stay readable).
    let mut input_behind = false;
    let ending = loop {
        if session.resume_wait(out) {
            break None;
        }
        // The tick bounds a sleep that a stop signal arriving just before
        // poll() would not interrupt.
        let left = wait
            .deadline
            .saturating_duration_since(Instant::now())
            .min(IDLE_TICK);
        let socket_events = if input_behind {
            PollFlags::empty()
        } else {
            PollFlags::POLLIN
        };
        let mut fds = vec![PollFd::new(stream.as_fd(), socket_events)];
        if let Some(fd) = waits.fd() {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
        }
        // Rounded up: rounded down, the last millisecond would spin.
        let ms = PollTimeout::try_from(left.as_micros().div_ceil(1000)).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, ms) {
            Ok(_) => {
                let socket = fds[0].revents().unwrap_or(PollFlags::POLLERR);
                if socket.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
                    break Some(Ending::ClientLeft);
                }
                if socket.contains(PollFlags::POLLIN) {
                    match peek(stream) {
                        Ok(0) => break Some(Ending::ClientLeft),
                        Ok(_) => input_behind = true,
                        Err(Errno::EAGAIN | Errno::EINTR) => {}
                        Err(e) => break Some(Ending::Broken(e.into())),
                    }
                }
                waits.drain();
            }
            Err(Errno::EINTR) => {}
            Err(e) => break Some(Ending::Broken(e.into())),
        }
    };
    waits.end(wait.mailbox);
    ending
}

/// Whether the client sent more (n > 0) or closed its side (0), without
/// taking anything from the socket.
fn peek(stream: &TcpStream) -> Result<usize, Errno> {
    let mut byte = [0u8; 1];
    nix::sys::socket::recv(
        stream.as_raw_fd(),
        &mut byte,
        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
    )
}

/// Sends `out` (then clears it): the replies to everything one read
/// brought, in one write. Returns how the connection ends, if it does.
fn flush(stream: &TcpStream, out: &mut Vec<u8>, flow: Flow, stop: &AtomicBool) -> Option<Ending> {
    let result = send_all(stream, out, stop);
    out.clear();
    match (result, flow) {
        (Err(e), _) => Some(Ending::Broken(e)),
        (Ok(()), Flow::Close) => Some(Ending::Goodbye),
        (Ok(()), Flow::Continue | Flow::Wait) => None,
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
