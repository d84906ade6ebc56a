//! `--model event`: nginx's design. The same preforked pool and accept lock
//! as `--model prefork`, but each worker serves many connections from one
//! epoll loop instead of one connection at a time.
//!
//! The accept lock, as nginx's accept mutex: the worker that holds it has
//! the listening socket in its epoll set and accepts; the others leave it
//! out. A worker with no client waits for the lock (it has nothing else to
//! wait for); a worker with clients only tries for it between turns of its
//! loop. A worker that serves more than its share of the daemon's open
//! connections (one more than the average over the pool) leaves the lock to
//! the others, so connections spread over the pool.
//!
//! Mailbox locks are taken and released inside one request, so every
//! session of a worker shares the worker's slot as its identity in them, as
//! a prefork worker's successive clients do. A request that waits for a
//! mailbox lock holds up the worker's other clients for that long (at most
//! the lock timeout): locks are held for the time of a copy.
//!
//! A `wait` does not hold up the others: its connection is parked (its
//! input no longer read, only its hang-up watched) until the worker slot's
//! eventfd, in the epoll set, says a mailbox changed, or its deadline timer
//! fires; every parked connection then looks at its mailbox again.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::PollTimeout;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::socket::{send, MsgFlags};
use shmlib::{AcceptGuard, Mailbox, WorkerState};

use crate::client::{log_ending, ServeContext, WorkerExit};
use crate::connection::Ending;
use crate::pool::{take_accept_lock, WorkerContext};
use crate::reply_line::ReplyLines;
use crate::session::{mailbox_views, Flow, Session, SessionConfig, OUT_HIGH_WATER};
use crate::waits::SlotWaits;

/// How long a worker sleeps when nothing happens, before it looks at its
/// flags and its parent again.
const TICK: Duration = Duration::from_millis(500);
/// How soon a worker with clients that wants the accept lock tries again.
const ACCEPT_RETRY: Duration = Duration::from_millis(20);
/// Rounds of read, execute, write one connection gets per turn of the loop,
/// so that one client that pipelines without end does not starve the rest.
const ROUNDS_PER_TURN: usize = 4;
/// File descriptors kept free for the log and the odd file.
const FD_RESERVE: u64 = 32;
const LISTENER: u64 = u64::MAX;
/// The worker slot's eventfd: a mailbox someone here waits on changed.
const WAKER: u64 = u64::MAX - 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    /// The line pause: a partial line has waited long enough to be a line.
    LinePause,
    /// Replies have waited too long for a client that does not read.
    SendStall,
    /// A `wait`'s deadline.
    WaitDeadline,
    /// The idle timeout: no request completed for that long.
    Idle,
}

/// One client of this worker.
struct Conn<'s> {
    stream: TcpStream,
    peer: SocketAddr,
    /// Tells a timer set for this connection from one set for an earlier
    /// connection in the same place.
    serial: u64,
    session: Session<'s>,
    /// Replies the client has not taken yet; while there are any, its input
    /// is not read (backpressure).
    unsent: Vec<u8>,
    /// Input read but not fed yet: the replies to the input before it had
    /// reached the high-water mark.
    unfed: Vec<u8>,
    /// Set once the connection is to close after `unsent` is sent.
    closing: Option<Ending>,
    pause_at: Option<Instant>,
    /// When the client last took some of its replies, while some wait.
    stalled_since: Option<Instant>,
    /// A send-timeout timer for this connection is in the heap.
    stall_armed: bool,
    /// When this connection's wait-deadline timer in the heap fires (one at
    /// a time; another entry for it is stale).
    wait_timer: Option<Instant>,
    /// The events the epoll set waits for on this socket.
    interest: EpollFlags,
    /// When a request last completed (or the connection opened), to within
    /// a turn of the loop (see `woke_at`), and the session's request count
    /// then.
    last_request: Instant,
    requests_seen: u64,
}

impl Conn<'_> {
    /// Whether a timer of `kind` due `at` for this connection still counts:
    /// a line pause or a wait deadline that was set again since is stale;
    /// idle and send-stall timers are one at a time.
    fn timer_is_current(&self, kind: TimerKind, at: Instant) -> bool {
        match kind {
            TimerKind::LinePause => self.pause_at == Some(at),
            TimerKind::WaitDeadline => self.wait_timer == Some(at),
            TimerKind::Idle | TimerKind::SendStall => true,
        }
    }
}

/// What a turn with a connection came to.
enum Turn {
    /// Nothing more to do until the socket is ready again.
    Blocked,
    /// More to do: the connection gets another turn soon.
    Again,
    Close(Ending),
}

struct EventWorker<'s, 'c> {
    serve: &'c ServeContext<'s>,
    ctx: &'c WorkerContext<'s>,
    epoll: Epoll,
    conns: Vec<Option<Conn<'s>>>,
    free: Vec<usize>,
    open: usize,
    next_serial: u64,
    timers: BinaryHeap<Reverse<(Instant, u64, usize, TimerKind)>>,
    /// Connections with work left over from the last turn.
    again: Vec<usize>,
    /// The connections to serve this turn (kept to reuse its allocation).
    turns: Vec<usize>,
    listening: bool,
    max_conns: usize,
    pool_size: u64,
    input: Vec<u8>,
    out: Vec<u8>,
    /// This slot's `wait` registrations, shared by its connections.
    waits: SlotWaits<'s>,
    /// The connections parked on a `wait`.
    waiting: Vec<usize>,
    /// The reply lines built for this worker's sessions, shared by them
    /// all.
    reply_lines: &'s RefCell<ReplyLines>,
    /// Every mailbox's view, shared by the sessions.
    mailbox_views: &'s [Mailbox<'s>],
    /// When the last epoll_wait returned: the time a request of this turn
    /// of the loop completed, to within the turn (a clock read per
    /// connection served was a few percent of a pipelined request's own
    /// time). Only the idle timeout reads it, and takes a connection served
    /// in the current turn as not idle.
    woke_at: Instant,
}

/// Runs a worker of the event model until it is told to stop (then once its
/// clients are done, within the grace period) or orphaned.
pub fn run_event_worker(ctx: &WorkerContext<'_>, pool_size: usize) -> WorkerExit {
    let epoll = match Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC) {
        Ok(epoll) => epoll,
        Err(e) => {
            log::error!("worker {}: cannot create an epoll instance: {e}", ctx.slot);
            return WorkerExit::Stopped;
        }
    };
    let reply_lines = RefCell::new(ReplyLines::for_segment(ctx.serve.segment));
    let mailbox_views = mailbox_views(ctx.serve.segment);
    let mut worker = EventWorker {
        serve: &ctx.serve,
        ctx,
        epoll,
        conns: Vec::new(),
        free: Vec::new(),
        open: 0,
        next_serial: 0,
        timers: BinaryHeap::new(),
        again: Vec::new(),
        turns: Vec::new(),
        listening: false,
        max_conns: raise_fd_limit(),
        pool_size: pool_size.max(1) as u64,
        input: vec![0u8; 64 * 1024],
        out: Vec::with_capacity(OUT_HIGH_WATER),
        waits: SlotWaits::new(ctx.serve.segment, ctx.slot),
        waiting: Vec::new(),
        reply_lines: &reply_lines,
        mailbox_views: &mailbox_views,
        woke_at: Instant::now(),
    };
    if let Some(fd) = worker.waits.fd() {
        let event = EpollEvent::new(EpollFlags::EPOLLIN, WAKER);
        if let Err(e) = worker.epoll.add(fd, event) {
            log::error!("worker {}: cannot watch its wake-up eventfd: {e}", ctx.slot);
            return WorkerExit::Stopped;
        }
    }
    worker.run()
}

/// Raises the soft limit on open files to the hard one (nginx's
/// worker_rlimit_nofile) and says how many clients that leaves room for.
fn raise_fd_limit() -> usize {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap_or((1024, 1024));
    let limit = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    limit.saturating_sub(FD_RESERVE).clamp(1, 1 << 20) as usize
}

/// A poll timeout that does not wake early: rounded up to the millisecond.
fn timeout_of(wait: Duration) -> PollTimeout {
    PollTimeout::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(PollTimeout::MAX)
}

impl<'s, 'c> EventWorker<'s, 'c> {
    fn row(&self) -> &'s shmlib::WorkerSlot {
        &self.serve.segment.worker_slots()[self.ctx.slot]
    }

    fn run(&mut self) -> WorkerExit {
        self.row()
            .transition(WorkerState::Starting, WorkerState::Idle);
        let mut events = vec![EpollEvent::empty(); 256];
        let mut stopping_since: Option<Instant> = None;
        let mut exit = WorkerExit::Stopped;
        let mut next_parent_check = Instant::now();
        let mut shown = usize::MAX;
        loop {
            let now = Instant::now();
            if stopping_since.is_none() {
                if self.serve.stop.load(Ordering::Relaxed) {
                    stopping_since = Some(now);
                } else if now >= next_parent_check {
                    next_parent_check = now + TICK;
                    let supervisor = self.serve.session.supervisor_pid;
                    if nix::unistd::getppid().as_raw() != supervisor {
                        log::warn!("supervisor {supervisor} is gone; exiting");
                        exit = WorkerExit::Orphaned;
                        stopping_since = Some(now);
                    }
                }
            }
            if let Some(since) = stopping_since {
                self.set_listening(false);
                self.close_for_stop(since.elapsed() >= self.serve.grace);
                if self.open == 0 {
                    return exit;
                }
            }
            self.serve.housekeeping();
            if self.open != shown {
                shown = self.open;
                let plural = if shown == 1 { "" } else { "s" };
                (self.ctx.set_title)(&format!("event loop, {shown} client{plural}"));
            }
            let guard = if stopping_since.is_none() {
                self.take_accept_lock()
            } else {
                None
            };
            self.set_listening(guard.is_some());
            let wait = self.wait_time(now, guard.is_some());
            let ready = match self.epoll.wait(&mut events, timeout_of(wait)) {
                Ok(n) => n,
                Err(Errno::EINTR) => 0,
                Err(e) => {
                    log::error!("epoll_wait failed: {e}");
                    std::thread::sleep(TICK);
                    0
                }
            };
            self.woke_at = Instant::now();
            // Accept first and let go of the lock, then serve: nginx's order,
            // so that other workers are not kept from accepting meanwhile.
            if guard.is_some() && events[..ready].iter().any(|e| e.data() == LISTENER) {
                self.accept_waiting();
            }
            drop(guard);
            if events[..ready].iter().any(|e| e.data() == WAKER) {
                self.wake_waiters();
            }
            let mut turns = std::mem::take(&mut self.turns);
            std::mem::swap(&mut turns, &mut self.again);
            for event in &events[..ready] {
                let token = event.data();
                if token == LISTENER || token == WAKER {
                    continue;
                }
                if self.hung_up_while_waiting(token as usize, event.events()) {
                    self.close(token as usize, Ending::ClientLeft);
                } else {
                    turns.push(token as usize);
                }
            }
            for token in turns.drain(..) {
                self.take_turn(token);
            }
            self.turns = turns;
            if !self.timers.is_empty() {
                self.fire_timers(Instant::now());
            }
        }
    }

    /// The accept lock, if this worker should accept now and gets it.
    fn take_accept_lock(&self) -> Option<AcceptGuard<'s>> {
        if self.open >= self.max_conns || self.over_share() {
            return None;
        }
        // With no client there is nothing else to wait for: wait for the
        // lock; with clients only try for it.
        let wait = (self.open == 0).then_some(TICK);
        take_accept_lock(self.serve.segment, wait)
    }

    /// Whether one more connection would put this worker more than one
    /// over the pool's average: then new ones are left to the other workers
    /// (at least one of which is under it).
    fn over_share(&self) -> bool {
        let total = self
            .serve
            .segment
            .stats()
            .open_connections
            .load(Ordering::Relaxed);
        (self.open as u64 + 1) * self.pool_size > total + 1 + self.pool_size
    }

    fn set_listening(&mut self, listen: bool) {
        if listen == self.listening {
            return;
        }
        let listener = self.ctx.listener.as_fd();
        let done = if listen {
            self.epoll
                .add(listener, EpollEvent::new(EpollFlags::EPOLLIN, LISTENER))
        } else {
            self.epoll.delete(listener)
        };
        match done {
            Ok(()) => self.listening = listen,
            Err(e) => log::error!("cannot change the listening socket's epoll entry: {e}"),
        }
    }

    /// How long epoll_wait may sleep: until the next timer, sooner when
    /// work is left over or the accept lock is to be tried again.
    fn wait_time(&self, now: Instant, holding: bool) -> Duration {
        // With no client and no lock there is nothing to wait for here: back
        // to waiting for the lock.
        if !self.again.is_empty() || (self.open == 0 && !holding) {
            return Duration::ZERO;
        }
        let wants_lock = self.open < self.max_conns && !self.over_share();
        let mut wait = if holding || !wants_lock {
            TICK
        } else {
            ACCEPT_RETRY
        };
        if let Some(Reverse((at, ..))) = self.timers.peek() {
            wait = wait.min(at.saturating_duration_since(now));
        }
        wait
    }

    /// Accepts the clients waiting in the backlog, as many as this worker
    /// takes.
    fn accept_waiting(&mut self) {
        while self.open < self.max_conns && !self.over_share() {
            match self.ctx.listener.accept() {
                Ok((stream, peer)) => self.add_conn(stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and the like: leave the rest to the others.
                    log::warn!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn add_conn(&mut self, stream: TcpStream, peer: SocketAddr) {
        if let Err(e) = stream.set_nonblocking(true) {
            log::warn!("client {peer}: {e}");
            return;
        }
        let _ = stream.set_nodelay(true);
        let token = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        let event = EpollEvent::new(EpollFlags::EPOLLIN, token as u64);
        if let Err(e) = self.epoll.add(stream.as_fd(), event) {
            log::warn!("client {peer}: cannot watch its socket: {e}");
            self.free.push(token);
            return;
        }
        let segment = self.serve.segment;
        let config = SessionConfig {
            worker_slot: self.ctx.slot,
            ..self.serve.session.clone()
        };
        let session = Session::new(segment, config, self.serve.stop)
            .with_database(self.serve.database)
            .with_reply_lines(self.reply_lines)
            .with_mailbox_views(self.mailbox_views);
        self.next_serial += 1;
        self.conns[token] = Some(Conn {
            stream,
            peer,
            serial: self.next_serial,
            session,
            unsent: Vec::new(),
            unfed: Vec::new(),
            closing: None,
            pause_at: None,
            stalled_since: None,
            stall_armed: false,
            wait_timer: None,
            interest: EpollFlags::EPOLLIN,
            last_request: Instant::now(),
            requests_seen: 0,
        });
        self.push_timer(
            Instant::now() + self.serve.idle_timeout,
            self.next_serial,
            token,
            TimerKind::Idle,
        );
        self.open += 1;
        let row = self.row();
        shmlib::Stats::count(&segment.stats().connections);
        row.count_connection(segment.stats(), true);
        row.set_state(WorkerState::Busy);
        log::info!("client {peer} connected");
    }

    fn close(&mut self, token: usize, ending: Ending) {
        let Some(conn) = self.conns.get_mut(token).and_then(Option::take) else {
            return;
        };
        // Only a parked wait is registered (one that ended with its client's
        // EOF never was).
        if let Some(wait) = conn.session.pending_wait() {
            if let Some(at) = self.waiting.iter().position(|&t| t == token) {
                self.waits.end(wait.mailbox);
                self.waiting.swap_remove(at);
            }
        }
        // Closing the socket takes it out of the epoll set.
        drop(conn.stream);
        self.free.push(token);
        self.open -= 1;
        let segment = self.serve.segment;
        let row = self.row();
        row.count_connection(segment.stats(), false);
        if self.open == 0 {
            row.set_state(WorkerState::Idle);
        }
        log_ending(conn.peer, conn.session.requests(), ending);
    }

    /// After SIGTERM: closes every connection between requests, and once
    /// the grace period is over, every other one too.
    fn close_for_stop(&mut self, grace_over: bool) {
        // Parked waits are answered (ERR: stopping) and sent first.
        self.wake_waiters();
        for token in 0..self.conns.len() {
            let Some(conn) = &self.conns[token] else {
                continue;
            };
            if grace_over || (!conn.session.in_request() && conn.unsent.is_empty()) {
                self.close(token, Ending::Stopping);
            }
        }
    }

    fn take_turn(&mut self, token: usize) {
        for _ in 0..ROUNDS_PER_TURN {
            match self.round(token) {
                Turn::Blocked => return,
                Turn::Again => continue,
                Turn::Close(ending) => return self.close(token, ending),
            }
        }
        if self.conns.get(token).is_some_and(Option::is_some) {
            self.again.push(token);
        }
    }

    /// One round with a connection: send what is pending, else read and
    /// execute what arrived and send the replies, in one write.
    fn round(&mut self, token: usize) -> Turn {
        let line_pause = self.serve.line_pause;
        let woke_at = self.woke_at;
        let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) else {
            return Turn::Blocked;
        };
        if !conn.unsent.is_empty() {
            match send_some(&conn.stream, &conn.unsent) {
                Ok(n) => {
                    conn.unsent.drain(..n);
                    if n > 0 {
                        // Progress: the send timeout counts from here.
                        conn.stalled_since = Some(Instant::now());
                    }
                }
                Err(e) => return Turn::Close(Ending::Broken(e)),
            }
            if !conn.unsent.is_empty() {
                return self.wait_for_reader(token);
            }
            conn.stalled_since = None;
            // The client reads again: so do we (and a writable socket must
            // not keep waking the loop).
            if let Err(e) = set_interest(&self.epoll, conn, token, EpollFlags::EPOLLIN) {
                return Turn::Close(Ending::Broken(e));
            }
        }
        if let Some(ending) = conn.closing.take() {
            return Turn::Close(ending);
        }
        if conn.session.pending_wait().is_some() {
            // Parked: only a hang-up is of interest until the wait is over.
            return match set_interest(&self.epoll, conn, token, EpollFlags::EPOLLRDHUP) {
                Ok(()) => Turn::Blocked,
                Err(e) => Turn::Close(Ending::Broken(e)),
            };
        }
        let out = &mut self.out;
        out.clear();
        let fed_from_unfed = !conn.unfed.is_empty();
        let mut flow = Flow::Continue;
        if fed_from_unfed {
            let unfed = std::mem::take(&mut conn.unfed);
            flow = feed(conn, &unfed, out);
        } else {
            match conn.stream.read(&mut self.input) {
                Ok(0) => {
                    conn.session.on_eof(out);
                    conn.closing = Some(Ending::ClientLeft);
                }
                Ok(n) => flow = feed(conn, &self.input[..n], out),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Turn::Blocked,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => return Turn::Again,
                Err(e) => return Turn::Close(Ending::Broken(e)),
            }
        }
        if flow == Flow::Close {
            conn.closing = Some(Ending::Goodbye);
            conn.unfed.clear();
        }
        if conn.session.requests() != conn.requests_seen {
            conn.requests_seen = conn.session.requests();
            conn.last_request = woke_at;
        }
        conn.pause_at = None;
        if flow == Flow::Wait {
            return self.park(token);
        }
        if conn.closing.is_none() && conn.session.has_partial_line() {
            let at = Instant::now() + line_pause;
            conn.pause_at = Some(at);
            let serial = conn.serial;
            self.push_timer(at, serial, token, TimerKind::LinePause);
        }
        self.send_replies(token)
    }

    /// Sends the replies in `self.out` to the connection, in one write; what
    /// the socket does not take waits in `unsent`.
    fn send_replies(&mut self, token: usize) -> Turn {
        let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) else {
            return Turn::Blocked;
        };
        if !conn.unsent.is_empty() {
            // Behind the replies the client has not taken yet, in order.
            conn.unsent.extend_from_slice(&self.out);
            self.out.clear();
        } else if !self.out.is_empty() {
            match send_some(&conn.stream, &self.out) {
                Ok(n) => conn.unsent.extend_from_slice(&self.out[n..]),
                Err(e) => return Turn::Close(Ending::Broken(e)),
            }
            self.out.clear();
        }
        if !conn.unsent.is_empty() {
            return self.wait_for_reader(token);
        }
        if let Some(ending) = conn.closing.take() {
            return Turn::Close(ending);
        }
        if let Err(e) = set_interest(&self.epoll, conn, token, EpollFlags::EPOLLIN) {
            return Turn::Close(Ending::Broken(e));
        }
        if conn.unfed.is_empty() {
            Turn::Blocked
        } else {
            Turn::Again
        }
    }

    /// The client is not taking its replies: wait until its socket is
    /// writable, reading nothing more from it meanwhile, and close it if
    /// that takes longer than the send timeout.
    fn wait_for_reader(&mut self, token: usize) -> Turn {
        let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) else {
            return Turn::Blocked;
        };
        let since = *conn.stalled_since.get_or_insert_with(Instant::now);
        if let Err(e) = set_interest(&self.epoll, conn, token, EpollFlags::EPOLLOUT) {
            return Turn::Close(Ending::Broken(e));
        }
        // One timer per connection at a time: when it fires it looks at
        // `stalled_since` and sets itself again if the client made progress.
        if !conn.stall_armed {
            conn.stall_armed = true;
            let serial = conn.serial;
            self.push_timer(
                since + self.serve.send_timeout,
                serial,
                token,
                TimerKind::SendStall,
            );
        }
        Turn::Blocked
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(&Reverse((at, serial, token, kind))) = self.timers.peek() {
            if at > now {
                return;
            }
            self.timers.pop();
            let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) else {
                continue;
            };
            if conn.serial != serial || !conn.timer_is_current(kind, at) {
                continue;
            }
            match kind {
                TimerKind::LinePause => {
                    conn.pause_at = None;
                    self.out.clear();
                    match conn.session.on_pause(&mut self.out) {
                        Flow::Close => conn.closing = Some(Ending::Goodbye),
                        Flow::Wait => {
                            let turn = self.park(token);
                            self.after_turn(token, turn);
                            continue;
                        }
                        Flow::Continue => {}
                    }
                    if let Turn::Close(ending) = self.send_replies(token) {
                        self.close(token, ending);
                    }
                }
                TimerKind::WaitDeadline => {
                    conn.wait_timer = None;
                    match conn.session.pending_wait() {
                        Some(wait) if wait.deadline > now => {
                            conn.wait_timer = Some(wait.deadline);
                            self.push_timer(wait.deadline, serial, token, TimerKind::WaitDeadline);
                        }
                        Some(_) => self.resume_one(token),
                        None => {}
                    }
                }
                TimerKind::Idle => {
                    let limit = self.serve.idle_timeout;
                    // A parked wait is not idle: its own deadline bounds it.
                    // Nor is a connection served in this turn of the loop,
                    // however long the turn took (a request waiting for a
                    // lock holds the loop up to the lock timeout): its
                    // time is the turn's start, its request ended since.
                    let due = if conn.session.pending_wait().is_some()
                        || conn.last_request >= self.woke_at
                    {
                        now + limit
                    } else {
                        conn.last_request + limit
                    };
                    if due <= now {
                        self.close(token, Ending::Idle(limit));
                    } else {
                        self.push_timer(due, serial, token, TimerKind::Idle);
                    }
                }
                TimerKind::SendStall => match conn.stalled_since {
                    Some(since) if since + self.serve.send_timeout <= now => {
                        let e = io::Error::new(
                            io::ErrorKind::TimedOut,
                            "client stopped reading (send timed out)",
                        );
                        self.close(token, Ending::Broken(e));
                    }
                    Some(since) => self.push_timer(
                        since + self.serve.send_timeout,
                        serial,
                        token,
                        TimerKind::SendStall,
                    ),
                    None => conn.stall_armed = false,
                },
            }
        }
    }

    /// The session returned [`Flow::Wait`]: registers the wait, answers it
    /// at once if it is already due (the look at the version comes after the
    /// registration), else parks the connection until a wake-up or its
    /// deadline. The replies before the wait are sent either way.
    fn park(&mut self, token: usize) -> Turn {
        let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) else {
            return Turn::Blocked;
        };
        let Some(wait) = conn.session.pending_wait() else {
            return self.send_replies(token);
        };
        self.waits.begin(wait.mailbox);
        if conn.session.resume_wait(&mut self.out) {
            self.waits.end(wait.mailbox);
            return self.send_replies(token);
        }
        self.waiting.push(token);
        // One deadline timer per connection: a later one already in the
        // heap is superseded (it goes stale), an earlier one re-arms itself.
        if conn.wait_timer.is_none_or(|at| at > wait.deadline) {
            conn.wait_timer = Some(wait.deadline);
            let serial = conn.serial;
            self.push_timer(wait.deadline, serial, token, TimerKind::WaitDeadline);
        }
        match self.send_replies(token) {
            // Parked: round() watches for the hang-up only.
            Turn::Again | Turn::Blocked => self.round(token),
            close => close,
        }
    }

    /// A parked connection's wait may be due: answers it if so, and goes on
    /// with the input that followed it.
    /// True when the wait is over (or the connection gone): the caller
    /// takes it off the parked list.
    fn resume(&mut self, token: usize) -> bool {
        let Some(conn) = self.conns.get_mut(token).and_then(Option::as_mut) else {
            return true;
        };
        let Some(wait) = conn.session.pending_wait() else {
            return true;
        };
        self.out.clear();
        if !conn.session.resume_wait(&mut self.out) {
            return false;
        }
        // An answered wait is a request completed: the idle timeout counts
        // from here, not from the line that asked.
        conn.last_request = self.woke_at;
        self.waits.end(wait.mailbox);
        let turn = self.send_replies(token);
        self.after_turn(token, turn);
        true
    }

    /// Resumes one parked connection, taking it off the list if it is done.
    fn resume_one(&mut self, token: usize) {
        if self.resume(token) {
            self.waiting.retain(|&t| t != token);
        }
    }

    /// Pushes a timer (every timer goes in here); when stale entries (of
    /// closed connections, or superseded) have piled up, the heap is
    /// rebuilt without them.
    fn push_timer(&mut self, at: Instant, serial: u64, token: usize, kind: TimerKind) {
        self.timers.push(Reverse((at, serial, token, kind)));
        if self.timers.len() > 1024 + 4 * self.open {
            let conns = &self.conns;
            self.timers.retain(|&Reverse((at, serial, token, kind))| {
                conns
                    .get(token)
                    .and_then(Option::as_ref)
                    .is_some_and(|c| c.serial == serial && c.timer_is_current(kind, at))
            });
        }
    }

    fn after_turn(&mut self, token: usize, turn: Turn) {
        match turn {
            Turn::Blocked => {}
            Turn::Again => self.again.push(token),
            Turn::Close(ending) => self.close(token, ending),
        }
    }

    /// The slot's eventfd fired (or the worker is stopping): every parked
    /// connection looks at its mailbox again, after the wakes are drained.
    fn wake_waiters(&mut self) {
        self.waits.drain();
        let parked = std::mem::take(&mut self.waiting);
        let mut still = Vec::with_capacity(parked.len());
        for token in parked {
            if !self.resume(token) {
                still.push(token);
            }
        }
        // Whatever close() or park() did to the list meanwhile is kept.
        still.append(&mut self.waiting);
        self.waiting = still;
    }

    /// A parked connection's client closed its side or the socket failed:
    /// nobody is left to answer.
    fn hung_up_while_waiting(&self, token: usize, events: EpollFlags) -> bool {
        let gone = EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR;
        events.intersects(gone)
            && self
                .conns
                .get(token)
                .and_then(Option::as_ref)
                .is_some_and(|c| c.session.pending_wait().is_some())
    }
}

/// Feeds `input` to the connection's session until the replies reach the
/// high-water mark; what is left waits in `unfed`.
fn feed(conn: &mut Conn<'_>, mut input: &[u8], out: &mut Vec<u8>) -> Flow {
    while !input.is_empty() {
        let (used, flow) = conn.session.feed_some(input, out);
        input = &input[used..];
        if flow == Flow::Close {
            return Flow::Close;
        }
        if flow == Flow::Wait {
            // What followed the wait is fed once it is answered.
            conn.unfed.extend_from_slice(input);
            return Flow::Wait;
        }
        if out.len() >= OUT_HIGH_WATER {
            conn.unfed.extend_from_slice(input);
            break;
        }
    }
    Flow::Continue
}

/// Makes the epoll set wait for `flags` on the connection's socket, if it
/// does not already.
fn set_interest(
    epoll: &Epoll,
    conn: &mut Conn<'_>,
    token: usize,
    flags: EpollFlags,
) -> io::Result<()> {
    if conn.interest != flags {
        let mut event = EpollEvent::new(flags, token as u64);
        epoll.modify(conn.stream.as_fd(), &mut event)?;
        conn.interest = flags;
    }
    Ok(())
}

/// One non-blocking send: how many bytes the socket took (0 when full).
/// MSG_NOSIGNAL: a vanished client is an EPIPE error, never a SIGPIPE.
fn send_some(stream: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    loop {
        match send(stream.as_raw_fd(), bytes, MsgFlags::MSG_NOSIGNAL) {
            Ok(n) => return Ok(n),
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return Ok(0),
            Err(e) => return Err(e.into()),
        }
    }
}
