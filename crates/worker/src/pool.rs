//! A worker's life in the preforked pool: take the accept lock, accept one
//! client, release the lock, serve the client, repeat until told to stop or
//! to retire, or orphaned.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use shmlib::{AcceptGuard, Deadline, LockError, Segment, WorkerState};

use crate::client::{ServeContext, WorkerExit};

/// Everything a pool worker needs, inherited from the supervisor across
/// fork().
pub struct WorkerContext<'a> {
    pub serve: ServeContext<'a>,
    /// Non-blocking listening socket shared by the whole pool.
    pub listener: &'a TcpListener,
    /// This worker's row in the segment's worker table, and its identity in
    /// every mailbox lock.
    pub slot: usize,
    /// Raised by SIGUSR1, which the supervisor sends after marking this
    /// worker's slot `Retiring`: it wakes the worker; the slot's state is
    /// what decides.
    pub retire: &'a AtomicBool,
    /// Shows what the worker is doing (`idle`, `serving <peer>`) in `ps`.
    pub set_title: &'a dyn Fn(&str),
}

/// How long a worker waits for the accept lock, or for a connection while
/// holding it, before it looks at its flags and its parent again.
const TICK: Duration = Duration::from_millis(500);

/// Runs the accept-serve loop; returns when the worker should exit.
pub fn run_worker(ctx: &WorkerContext<'_>) -> WorkerExit {
    let serve = &ctx.serve;
    let slot = &serve.segment.worker_slots()[ctx.slot];
    loop {
        if let Some(exit) = serve.between_clients() {
            return exit;
        }
        if ctx.retire.load(Ordering::Relaxed) {
            return WorkerExit::Retired;
        }
        match slot.state() {
            WorkerState::Retiring => return WorkerExit::Retired,
            WorkerState::Idle => {}
            other => {
                (ctx.set_title)("idle");
                // Only an idle worker can be chosen to retire, so this
                // cannot undo the supervisor's choice.
                slot.transition(other, WorkerState::Idle);
            }
        }
        let Some((stream, peer)) = accept_one(ctx) else {
            continue;
        };
        (ctx.set_title)(&format!("serving {peer}"));
        serve.serve_client(ctx.slot, stream, peer);
    }
}

/// One turn at the listening socket under the accept lock.
fn accept_one(ctx: &WorkerContext<'_>) -> Option<(TcpStream, SocketAddr)> {
    let guard = take_accept_lock(ctx.serve.segment, Some(TICK))?;
    // A stop or retirement that came while waiting for the lock: no more
    // clients for this worker.
    if ctx.serve.stop.load(Ordering::Relaxed) || !wait_for_client(ctx.listener, TICK) {
        return None;
    }
    // Claim the client before taking it: if the supervisor chose this worker
    // to retire meanwhile, leave the connection to another worker.
    let slot = &ctx.serve.segment.worker_slots()[ctx.slot];
    if ctx.serve.stop.load(Ordering::Relaxed)
        || !slot.transition(WorkerState::Idle, WorkerState::Busy)
    {
        return None;
    }
    let accepted = accept_blocking_stream(ctx.listener);
    drop(guard);
    if accepted.is_none() {
        // Another process took it; idle again (nobody retires a busy one).
        slot.transition(WorkerState::Busy, WorkerState::Idle);
    }
    accepted
}

/// The accept lock: waited for up to `wait`, or only tried with `None`.
/// None when it is not granted; after an error (logged) a worker backs off
/// a tick instead of spinning on it.
pub(crate) fn take_accept_lock(
    segment: &Segment,
    wait: Option<Duration>,
) -> Option<AcceptGuard<'_>> {
    let lock = segment.accept_lock();
    let taken = match wait {
        Some(wait) => lock.lock(&Deadline::after(wait)).map(Some),
        None => lock.try_lock(),
    };
    match taken {
        Ok(Some(guard)) => {
            if guard.recovered {
                log::warn!("accept lock recovered from a worker that died holding it");
            }
            Some(guard)
        }
        Ok(None) | Err(LockError::TimedOut) => None,
        Err(e) => {
            log::error!("accept lock failed: {e}");
            std::thread::sleep(TICK);
            None
        }
    }
}

/// Waits until the listening socket has a connection to accept; false on
/// timeout or a signal.
pub fn wait_for_client(listener: &TcpListener, timeout: Duration) -> bool {
    let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
    let ms = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
    poll(&mut fds, ms).unwrap_or(0) > 0
}

/// Accepts from the non-blocking listener; the client's socket blocks.
/// None when another process took the connection first, or on an error
/// (logged): the caller just tries again.
pub fn accept_blocking_stream(listener: &TcpListener) -> Option<(TcpStream, SocketAddr)> {
    match listener.accept() {
        Ok((stream, peer)) => match stream.set_nonblocking(false) {
            Ok(()) => Some((stream, peer)),
            Err(e) => {
                log::warn!("client {peer}: {e}");
                None
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => None,
        Err(e) => {
            log::warn!("accept failed: {e}");
            None
        }
    }
}
