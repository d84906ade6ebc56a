//! A worker's life in the preforked pool: take the accept lock, accept one
//! client, release the lock, serve the client, repeat until told to stop or
//! orphaned.

use std::net::TcpListener;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use shmlib::{Deadline, LockError, Segment, WorkerState};

use crate::connection::{self, Ending};
use crate::session::{Session, SessionConfig};

/// Everything a worker needs, inherited from the supervisor across fork().
pub struct WorkerContext<'a> {
    /// Non-blocking listening socket shared by the whole pool.
    pub listener: &'a TcpListener,
    /// The segment, disowned: a worker never unlinks it.
    pub segment: &'a Segment,
    /// This worker's row in the segment's worker table.
    pub slot: usize,
    pub session: SessionConfig,
    pub line_pause: Duration,
    /// Raised by SIGTERM/SIGINT (and by the supervisor's death, through
    /// PR_SET_PDEATHSIG).
    pub stop: &'a AtomicBool,
    /// Raised by SIGHUP (the supervisor forwards it): reopen the log.
    pub reopen_log: &'a AtomicBool,
    /// Reopens the log; the daemon knows where it is.
    pub reopen: &'a dyn Fn(),
    /// Shows what the worker is doing (`idle`, `serving <peer>`) in `ps`.
    pub set_title: &'a dyn Fn(&str),
}

impl WorkerContext<'_> {
    /// What a worker does between requests and between accepts, on behalf of
    /// signals it received: for now, reopening the log after SIGHUP.
    fn housekeeping(&self) {
        // A plain load first: this runs on every turn of a connection's
        // loop, and the flag is almost never up.
        if self.reopen_log.load(Ordering::Relaxed) && self.reopen_log.swap(false, Ordering::SeqCst)
        {
            (self.reopen)();
        }
    }
}

/// How long a worker waits for the accept lock, or for a connection while
/// holding it, before it looks at its stop flag and its parent again.
const TICK: Duration = Duration::from_millis(500);

/// Runs the accept-serve loop; returns when the worker should exit.
pub fn run_worker(ctx: &WorkerContext<'_>) {
    let slot = &ctx.segment.worker_slots()[ctx.slot];
    let packet_size = ctx.segment.geometry().packet_size;
    while !ctx.stop.load(Ordering::Relaxed) {
        if nix::unistd::getppid().as_raw() != ctx.session.supervisor_pid {
            log::warn!("supervisor {} is gone; exiting", ctx.session.supervisor_pid);
            return;
        }
        ctx.housekeeping();
        if slot.state() != WorkerState::Idle {
            (ctx.set_title)("idle");
        }
        slot.set_state(WorkerState::Idle);
        let Some((mut stream, peer)) = accept_one(ctx) else {
            continue;
        };
        slot.set_state(WorkerState::Busy);
        (ctx.set_title)(&format!("serving {peer}"));
        shmlib::Stats::count(&ctx.segment.stats().connections);
        log::info!("client {peer} connected");
        if let Err(e) = stream.set_write_timeout(Some(Duration::from_secs(30))) {
            log::warn!("client {peer}: cannot set a send timeout: {e}");
        }
        let _ = stream.set_nodelay(true);
        let mut session = Session::new(ctx.segment, ctx.session.clone(), ctx.stop);
        let ending = connection::serve(
            &mut stream,
            &mut session,
            ctx.line_pause,
            packet_size,
            ctx.stop,
            &|| ctx.housekeeping(),
        );
        let n = session.requests();
        slot.count_requests(n);
        match ending {
            Ending::Goodbye => log::info!("client {peer} said goodbye after {n} requests"),
            Ending::ClientLeft => log::info!("client {peer} left after {n} requests"),
            Ending::Stopping => log::info!("closing client {peer} after {n} requests: stopping"),
            Ending::Broken(e) => log::warn!("client {peer} vanished after {n} requests: {e}"),
        }
    }
}

/// One turn at the listening socket under the accept lock.
fn accept_one(ctx: &WorkerContext<'_>) -> Option<(std::net::TcpStream, std::net::SocketAddr)> {
    let guard = match ctx.segment.accept_lock().lock(&Deadline::after(TICK)) {
        Ok(guard) => guard,
        Err(LockError::TimedOut | LockError::Cancelled) => return None,
        Err(e) => {
            log::error!("accept lock failed: {e}");
            std::thread::sleep(TICK);
            return None;
        }
    };
    if guard.recovered {
        log::warn!("accept lock recovered from a worker that died holding it");
    }
    let mut fds = [PollFd::new(ctx.listener.as_fd(), PollFlags::POLLIN)];
    let ready = poll(&mut fds, PollTimeout::from(TICK.as_millis() as u16)).unwrap_or(0);
    if ready == 0 {
        return None;
    }
    let accepted = ctx.listener.accept();
    drop(guard);
    match accepted {
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
