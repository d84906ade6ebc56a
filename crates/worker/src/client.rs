//! One accepted client, from accept to close, the same in every server
//! model: its slot shows busy with the client's address, the connection is
//! served, and the slot's counters and the log record how it ended.

use std::cell::RefCell;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use shmlib::{Database, Segment, WorkerState};

use crate::connection::{self, Ending, Protocol};
use crate::reply_line::ReplyLines;
use crate::session::{Session, SessionConfig};
use crate::upper_echo::UpperEcho;
use crate::waits::SlotWaits;

/// What serving a client needs, shared by every model. It is `Sync`: the
/// thread-per-connection model hands it to all its threads.
pub struct ServeContext<'a> {
    /// The segment, disowned: a worker never unlinks it.
    pub segment: &'a Segment,
    /// The session settings; `worker_slot` is set per client.
    pub session: SessionConfig,
    /// The key-value store's journal (none without a store).
    pub database: Option<&'a Database>,
    pub line_pause: Duration,
    /// A connection that completes no request for this long is closed
    /// (`--idle-timeout`; a pending `wait` does not count as idle).
    pub idle_timeout: Duration,
    /// How long a reply may wait for a client that does not read it
    /// (`--send-timeout`): then the connection is closed.
    pub send_timeout: Duration,
    /// Raised by SIGTERM/SIGINT (and by the supervisor's death, through
    /// PR_SET_PDEATHSIG): finish the request in hand and close.
    pub stop: &'a AtomicBool,
    /// Raised by SIGHUP (the supervisor forwards it): reopen the log.
    pub reopen_log: &'a AtomicBool,
    /// Reopens the log; the daemon knows where it is.
    pub reopen: &'a (dyn Fn() + Sync),
    /// After `stop`, how long a request under way may still take: the
    /// supervisor's `--grace`, which also bounds a worker whose supervisor
    /// died and can no longer kill it.
    pub grace: Duration,
    pub service: Service,
}

/// What a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// dipc's mailboxes and key-value store.
    Mailboxes,
    /// The seed's upper-case echo (`echo-server`); served by the prefork,
    /// fork and thread models (the event model speaks only `Mailboxes`).
    UpperEcho,
}

/// Why a worker (or the thread server) stopped taking clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerExit {
    /// SIGTERM, SIGINT, or the supervisor's death (PR_SET_PDEATHSIG).
    Stopped,
    /// Chosen to retire (its slot marked `Retiring`, or SIGUSR1).
    Retired,
    /// The supervisor is gone.
    Orphaned,
}

impl ServeContext<'_> {
    /// What an acceptor does before taking the next client: its
    /// housekeeping, and the answer to whether it should exit instead.
    pub fn between_clients(&self) -> Option<WorkerExit> {
        if self.stop.load(Ordering::Relaxed) {
            return Some(WorkerExit::Stopped);
        }
        let supervisor = self.session.supervisor_pid;
        if nix::unistd::getppid().as_raw() != supervisor {
            log::warn!("supervisor {supervisor} is gone; exiting");
            return Some(WorkerExit::Orphaned);
        }
        self.housekeeping();
        None
    }

    /// What a worker does between requests and between accepts, on behalf of
    /// signals it received: for now, reopening the log after SIGHUP.
    pub fn housekeeping(&self) {
        // A plain load first: this runs on every turn of a connection's
        // loop, and the flag is almost never up.
        if self.reopen_log.load(Ordering::Relaxed) && self.reopen_log.swap(false, Ordering::SeqCst)
        {
            (self.reopen)();
        }
    }

    /// Serves `stream` as the participant of worker slot `slot` until the
    /// client leaves or the worker is told to stop. The slot must belong to
    /// the caller alone for the whole call.
    pub fn serve_client(&self, slot: usize, mut stream: TcpStream, peer: SocketAddr) {
        let row = &self.segment.worker_slots()[slot];
        row.set_peer(Some(peer));
        row.set_state(WorkerState::Busy);
        let stats = self.segment.stats();
        shmlib::Stats::count(&stats.connections);
        row.count_connection(stats, true);
        log::info!("client {peer} connected");
        if let Err(e) = stream.set_write_timeout(Some(self.send_timeout)) {
            log::warn!("client {peer}: cannot set a send timeout: {e}");
        }
        let _ = stream.set_nodelay(true);
        let config = SessionConfig {
            worker_slot: slot,
            ..self.session.clone()
        };
        let reply_lines;
        let mut mailboxes;
        let mut echo;
        let session: &mut dyn Protocol = match self.service {
            Service::Mailboxes => {
                // One client at a time: its own memory of reply lines.
                reply_lines = RefCell::new(ReplyLines::for_segment(self.segment));
                mailboxes = Session::new(self.segment, config, self.stop)
                    .with_database(self.database)
                    .with_reply_lines(&reply_lines);
                &mut mailboxes
            }
            Service::UpperEcho => {
                echo = UpperEcho::new(peer);
                &mut echo
            }
        };
        let mut waits = SlotWaits::new(self.segment, slot);
        let ending = connection::serve(
            &mut stream,
            session,
            &mut waits,
            connection::Timing {
                line_pause: self.line_pause,
                idle_timeout: self.idle_timeout,
            },
            connection::Stop {
                flag: self.stop,
                grace: self.grace,
            },
            &|| self.housekeeping(),
        );
        let n = session.requests();
        // The caller decides the slot's next state (idle, or empty).
        row.set_peer(None);
        row.count_connection(stats, false);
        log_ending(peer, n, ending);
    }
}

/// Logs how a client's connection ended, after `n` requests.
pub(crate) fn log_ending(peer: SocketAddr, n: u64, ending: Ending) {
    match ending {
        Ending::Goodbye => log::info!("client {peer} said goodbye after {n} requests"),
        Ending::ClientLeft => log::info!("client {peer} left after {n} requests"),
        Ending::Stopping => log::info!("closing client {peer} after {n} requests: stopping"),
        Ending::Broken(e) => log::warn!("client {peer} vanished after {n} requests: {e}"),
        Ending::Idle(limit) => log::info!(
            "closing client {peer} after {n} requests: no request completed in {} s",
            limit.as_secs_f64()
        ),
    }
}
