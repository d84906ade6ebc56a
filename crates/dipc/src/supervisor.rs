//! The supervisor: the daemon's first process.
//!
//! Process model, stated once:
//! - The supervisor creates the segment, owns it (only it may unlink it),
//!   forks the children and never serves a client. It is single-threaded, so
//!   fork() is safe at any point of its loop.
//! - Its children depend on `--model`: a fixed pool of workers, one per CPU,
//!   each serving many clients from one epoll loop and accepting while it
//!   holds the accept lock (event, the default); a pool of workers that
//!   accept one client at a time under the accept lock (prefork, sized
//!   between the spare bounds); one child per
//!   connection, forked after the supervisor itself accepted (fork); or one
//!   process with a thread per connection (thread).
//! - Handled signals are blocked in the supervisor except inside ppoll();
//!   handlers only raise flags; the loop acts on them in a fixed order:
//!   quit, terminate, child deaths, log reopening (then SIGHUP to every
//!   child, which reopens its own between requests), respawns, pool
//!   maintenance, the journal's once-a-second flush and check, the
//!   gateway's busy/free and heartbeat, and (fork model) accepting.
//! - Children are forked with those signals blocked and unblock them only
//!   once their own state is set up, so a signal sent right after fork() is
//!   never lost: it stays pending until the child can act on it.
//! - A child disowns the segment (its exit never unlinks it) and asks the
//!   kernel for SIGTERM when the supervisor dies (PR_SET_PDEATHSIG).
//! - A worker slot is its owner's identity in every mailbox lock (a thread
//!   server's threads each have one). When a child dies, however it dies,
//!   the supervisor reaps it, then clears its slots' entries from every
//!   mailbox lock (a dead holder or waiter blocks nobody after that), and
//!   only then gives the slots to another child.
//! - Before the daemon detaches, errors go to the terminal; after, to the log,
//!   and start-up errors also reach the terminal through the readiness pipe.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::ops::Range;
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::time::TimeSpec;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use shmlib::{Database, Participant, Segment, WorkerState};
use worker::{ServeContext, SessionConfig, WorkerContext};

use crate::announcer::Announcer;
use crate::cli::{Config, Model};
use crate::pool_policy::{PoolAction, PoolSizer};
use crate::signals::{self, SignalFlags};
use crate::startup::Readiness;
use crate::title::ProcTitle;

/// What a child process is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// A prefork pool worker: one client at a time.
    PoolWorker,
    /// An event pool worker: many clients from one epoll loop.
    EventWorker,
    /// Serves the one client the supervisor accepted for it (fork model).
    ConnectionChild,
    /// Serves every client, a thread each (thread model).
    ThreadServer,
}

impl Role {
    /// Whether its slots are claimed and given its pid around the fork (by
    /// the supervisor, and by the child itself, whichever comes first); a
    /// thread server fills in its own slots as its threads start.
    fn slots_filled_at_fork(self) -> bool {
        self != Role::ThreadServer
    }
}

struct Child {
    pid: Pid,
    started: Instant,
    slots: Range<usize>,
    role: Role,
    /// Asked to retire (SIGUSR1): its exit is expected.
    retiring: bool,
}

impl Child {
    /// One of the children that should run all the time (a pool worker not
    /// retiring, or the thread server), as opposed to a connection's child.
    fn is_steady(&self) -> bool {
        self.role != Role::ConnectionChild && !self.retiring
    }

    /// The first slot: how the log and `ps` name a child.
    fn slot(&self) -> usize {
        self.slots.start
    }
}

pub struct Supervisor {
    config: Config,
    segment: Segment,
    /// The key-value store's journal; the workers inherit it.
    database: Option<Database>,
    /// When the journal is next flushed (`--fsync everysec`) and checked
    /// for a removal by hand.
    next_flush: Instant,
    listener: Option<TcpListener>,
    flags: SignalFlags,
    children: Vec<Child>,
    /// Which worker slots a live child holds.
    slot_taken: Vec<bool>,
    sizer: PoolSizer,
    next_maintenance: Instant,
    readiness: Option<Readiness>,
    /// Workers that died within a second of starting, in a row.
    fast_deaths: u32,
    respawn_at: Instant,
    stopping_since: Option<Instant>,
    killed_stragglers: bool,
    /// What `ps` shows; None where it cannot be set.
    title: Option<ProcTitle>,
    /// `--gateway`: keeps the gateway told; None without one, or once
    /// withdrawn.
    announcer: Option<Announcer>,
}

/// A worker that dies sooner than this after its start counts as failing to
/// start, and its replacement is delayed.
const MIN_HEALTHY_LIFE: Duration = Duration::from_secs(1);
const MAX_RESPAWN_DELAY: Duration = Duration::from_secs(5);
/// Deaths right after start that are replaced at once, before backing off.
const RESPAWN_BURST: u32 = 3;
/// How often the pool's idle workers are counted.
const MAINTENANCE_TICK: Duration = Duration::from_millis(100);
/// `--fsync everysec`.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

impl Supervisor {
    pub fn new(
        config: Config,
        segment: Segment,
        database: Option<Database>,
        listener: TcpListener,
        flags: SignalFlags,
        readiness: Readiness,
        title: Option<ProcTitle>,
    ) -> Supervisor {
        let slots = config.geometry.worker_slots as usize;
        let announcer = config.server.gateway.and_then(|gateway| {
            Announcer::new(gateway, config.server.advertise, config.port)
                .map_err(|e| log::error!("gateway {gateway}: cannot make a UDP socket: {e}"))
                .ok()
        });
        Supervisor {
            announcer,
            sizer: PoolSizer::new(config.pool),
            config,
            segment,
            database,
            next_flush: Instant::now() + FLUSH_INTERVAL,
            listener: Some(listener),
            flags,
            children: Vec::new(),
            slot_taken: vec![false; slots],
            next_maintenance: Instant::now(),
            readiness: Some(readiness),
            fast_deaths: 0,
            respawn_at: Instant::now(),
            stopping_since: None,
            killed_stragglers: false,
            title,
        }
    }

    /// Forks the first children, reports readiness, and supervises until
    /// shutdown. Returns once every child is gone and the segment is removed.
    pub fn run(mut self) {
        let shape = format!("port {}, {}", self.config.port, self.config.shape());
        if let Some(title) = &self.title {
            title.set(&format!("supervisor, {shape}"));
        }
        self.respawn_missing();
        if self.config.model != Model::Fork && self.children.is_empty() {
            if let Some(r) = self.readiness.take() {
                r.failed(&self.config, "could not start any worker (see the log)");
            }
            self.remove_segment();
            return;
        }
        log::info!("serving {shape}");
        if let Some(r) = self.readiness.take() {
            r.ready(&self.config);
        }
        if let Some(a) = &mut self.announcer {
            a.announce();
        }
        loop {
            if self.flags.quit.swap(false, Ordering::SeqCst) {
                log::info!("SIGQUIT: stopping now");
                self.withdraw_from_gateway();
                self.listener = None;
                self.signal_children(Signal::SIGKILL);
                self.stopping_since.get_or_insert_with(Instant::now);
                self.killed_stragglers = true;
            }
            if self.flags.terminate.swap(false, Ordering::SeqCst) && self.stopping_since.is_none() {
                log::info!(
                    "SIGTERM or SIGINT: stopping; requests in flight have {:.1} s",
                    self.config.server.grace.as_secs_f64()
                );
                self.begin_shutdown();
            }
            if self.flags.child.swap(false, Ordering::SeqCst) {
                self.reap();
            }
            if self.flags.reopen_log.swap(false, Ordering::SeqCst) {
                reopen_log(&self.config);
                // Each child reopens its own copy of the descriptor between
                // requests, as nginx's do.
                self.signal_children(Signal::SIGHUP);
            }
            // Only children read their SIGUSR1 flag.
            self.flags.retire.store(false, Ordering::Relaxed);
            if let Some(since) = self.stopping_since {
                if self.children.is_empty() {
                    break;
                }
                if !self.killed_stragglers && since.elapsed() >= self.config.server.grace {
                    log::warn!("grace period over: killing the children still running");
                    self.signal_children(Signal::SIGKILL);
                    self.killed_stragglers = true;
                }
            } else {
                self.respawn_missing();
                self.maintain_pool();
            }
            self.flush_journal();
            self.tell_gateway();
            if self.wait_for_signal_or_client() {
                self.accept_and_fork();
            }
        }
        // Whatever the workers appended since the last tick.
        self.flush_journal_now();
        self.remove_segment();
        log::info!("stopped");
    }

    /// Sleeps until a signal arrives, the next timed action is due, or (fork
    /// model, with a slot free) a client is waiting; true in that last case.
    fn wait_for_signal_or_client(&self) -> bool {
        let now = Instant::now();
        let timeout = if self.stopping_since.is_some() {
            Duration::from_millis(100)
        } else if self.pool_workers() < self.wanted_children() && self.free_slot().is_some() {
            // (With no slot free, a retiring worker still serving its last
            // client holds it: nothing to do until that one exits.)
            self.respawn_at
                .saturating_duration_since(now)
                .max(Duration::from_millis(10))
        } else if self.config.model == Model::Prefork {
            self.next_maintenance.saturating_duration_since(now)
        } else {
            Duration::from_secs(1)
        };
        // Woken early (a child exits, a signal), it still keeps the once a
        // second of the journal flush and the gateway's heartbeat.
        let next = self
            .announcer
            .as_ref()
            .map_or(self.next_flush, |a| a.next_due().min(self.next_flush));
        let timeout = timeout.min(next.saturating_duration_since(now));
        let timeout = TimeSpec::from_duration(timeout);
        let accepting = self.config.model == Model::Fork && self.free_slot().is_some();
        let mut fds: Vec<PollFd<'_>> = match (&self.listener, accepting) {
            (Some(listener), true) => vec![PollFd::new(listener.as_fd(), PollFlags::POLLIN)],
            _ => Vec::new(),
        };
        // ppoll unblocks the handled signals only while it waits, so a signal
        // is either handled before the loop checks its flags or wakes ppoll.
        let ready = nix::poll::ppoll(&mut fds, Some(timeout), Some(SigSet::empty())).unwrap_or(0);
        ready > 0
    }

    fn begin_shutdown(&mut self) {
        self.withdraw_from_gateway();
        self.stopping_since = Some(Instant::now());
        self.segment.set_stopping();
        // Children keep their own copies of the listening socket until they
        // exit; the fork model's supervisor stops accepting here.
        self.listener = None;
        self.signal_children(Signal::SIGTERM);
    }

    /// `--gateway`: busy or free, and the heartbeat.
    fn tell_gateway(&mut self) {
        // No gateway, or stopping (both ways of stopping withdraw, taking
        // the announcer away): nothing to tell, and no workers to count.
        if self.announcer.is_none() {
            return;
        }
        let busy = self.is_busy();
        if let Some(a) = &mut self.announcer {
            a.tick(busy);
        }
    }

    fn withdraw_from_gateway(&mut self) {
        if let Some(mut a) = self.announcer.take() {
            a.withdraw();
        }
    }

    /// Whether no worker could take a new client now (what the gateway is
    /// told): prefork, every worker the pool may have is serving one; fork
    /// and thread, as many clients as --max-workers are connected. An event
    /// loop takes every client, so an event pool is never busy.
    fn is_busy(&self) -> bool {
        let max = self.config.pool.max_workers;
        match self.config.model {
            Model::Event => false,
            Model::Prefork => self.pool_workers() >= max && self.idle_workers() == 0,
            Model::Fork | Model::Thread => {
                let open = self
                    .segment
                    .stats()
                    .open_connections
                    .load(Ordering::Relaxed);
                open >= max as u64
            }
        }
    }

    fn signal_children(&self, signal: Signal) {
        for child in &self.children {
            let _ = kill(child.pid, signal);
        }
    }

    fn free_slot(&self) -> Option<usize> {
        self.slot_taken.iter().position(|taken| !taken)
    }

    /// Children that should be running all the time: the pool, or the
    /// thread server.
    fn wanted_children(&self) -> usize {
        match self.config.model {
            Model::Prefork | Model::Event => self.sizer.wanted(),
            Model::Thread => 1,
            Model::Fork => 0,
        }
    }

    /// Pool workers (or the thread server) running and not retiring.
    fn pool_workers(&self) -> usize {
        self.children.iter().filter(|c| c.is_steady()).count()
    }

    /// Pool workers free to take a client (or about to be).
    fn idle_workers(&self) -> usize {
        let table = self.segment.worker_slots();
        self.children
            .iter()
            .filter(|c| c.is_steady())
            .filter(|c| {
                matches!(
                    table[c.slot()].state(),
                    WorkerState::Idle | WorkerState::Starting
                )
            })
            .count()
    }

    fn spawn(
        &mut self,
        role: Role,
        slots: Range<usize>,
        client: Option<(TcpStream, SocketAddr)>,
    ) -> nix::Result<()> {
        if role.slots_filled_at_fork() {
            // Before the fork: the child may write its slot at once.
            for slot in slots.clone() {
                self.segment.worker_slots()[slot].claim();
            }
        }
        // SAFETY: the supervisor is single-threaded (see the module comment),
        // so the child is a complete copy with no lock held by a vanished
        // thread; the child only runs its role's loop and then exits.
        let forked = unsafe { fork() }.inspect_err(|_| {
            for slot in slots.clone() {
                self.segment.worker_slots()[slot].release(self.segment.stats());
            }
        })?;
        match forked {
            ForkResult::Child => {
                let code = self.become_child(role, slots, client);
                std::process::exit(code);
            }
            ForkResult::Parent { child } => {
                if role.slots_filled_at_fork() {
                    for slot in slots.clone() {
                        self.segment.worker_slots()[slot].set_pid(child.as_raw());
                    }
                }
                for slot in slots.clone() {
                    self.slot_taken[slot] = true;
                }
                self.children.push(Child {
                    pid: child,
                    started: Instant::now(),
                    slots,
                    role,
                    retiring: false,
                });
                Ok(())
            }
        }
    }

    /// Runs in the forked child; returns its exit code.
    fn become_child(
        &mut self,
        role: Role,
        slots: Range<usize>,
        client: Option<(TcpStream, SocketAddr)>,
    ) -> i32 {
        let supervisor = self.segment.info().supervisor_pid;
        if nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).is_err()
            || nix::unistd::getppid().as_raw() != supervisor
        {
            return 1;
        }
        self.segment.disown();
        if role.slots_filled_at_fork() {
            // The supervisor records the pid too, once fork() returns to it,
            // but this child may serve a client first, and `stat` counts a
            // worker by its slot's pid.
            let me = nix::unistd::getpid().as_raw();
            for slot in slots.clone() {
                self.segment.worker_slots()[slot].set_pid(me);
            }
        }
        // The readiness pipe is the supervisor's alone.
        drop(self.readiness.take());
        let listener = match role {
            Role::ConnectionChild => {
                // Its one client is all it serves.
                self.listener = None;
                None
            }
            _ => match self.listener.take() {
                Some(listener) => Some(listener),
                // Stopping already.
                None => return 0,
            },
        };
        if let Err(e) = signals::set_blocked(false) {
            log::error!("cannot unblock signals: {e}");
            return 1;
        }
        let config = &self.config;
        let reopen = move || reopen_log(config);
        let serve = ServeContext {
            segment: &self.segment,
            session: SessionConfig {
                lock_timeout: self.config.lock_timeout,
                port: self.config.port,
                supervisor_pid: supervisor,
                worker_slot: slots.start,
                secret: self.config.secret.clone(),
            },
            line_pause: self.config.line_pause,
            idle_timeout: self.config.server.idle_timeout,
            send_timeout: self.config.server.send_timeout,
            stop: &self.flags.terminate,
            reopen_log: &self.flags.reopen_log,
            reopen: &reopen,
            grace: self.config.server.grace,
            database: self.database.as_ref(),
            service: self.config.service,
        };
        let title = self.title.as_ref();
        let set_title = |activity: &str| {
            if let Some(title) = title {
                title.set(activity);
            }
        };
        match (role, listener, client) {
            (Role::PoolWorker | Role::EventWorker, Some(listener), _) => {
                let slot = slots.start;
                let ctx = WorkerContext {
                    serve,
                    listener: &listener,
                    slot,
                    retire: &self.flags.retire,
                    set_title: &|activity| set_title(&format!("worker {slot}: {activity}")),
                };
                if role == Role::EventWorker {
                    worker::run_event_worker(&ctx, self.config.pool.start);
                } else {
                    worker::run_worker(&ctx);
                }
            }
            (Role::ThreadServer, Some(listener), _) => {
                worker::run_thread_server(&serve, &listener, slots, &set_title);
            }
            (Role::ConnectionChild, _, Some((stream, peer))) => {
                set_title(&format!("worker {}: serving {peer}", slots.start));
                serve.serve_client(slots.start, stream, peer);
            }
            _ => return 1,
        }
        0
    }

    /// Collects every exited child and logs how it ended.
    fn reap(&mut self) {
        loop {
            let status = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(status) => status,
            };
            let (pid, cause, clean_exit, killed_from_outside) = match status {
                WaitStatus::Exited(pid, code) => {
                    (pid, format!("exited with status {code}"), code == 0, false)
                }
                WaitStatus::Signaled(pid, sig, core) => (
                    pid,
                    format!(
                        "was killed by {}{}",
                        sig.as_str(),
                        if core { " (core dumped)" } else { "" }
                    ),
                    false,
                    sig == Signal::SIGKILL,
                ),
                _ => continue,
            };
            let Some(index) = self.children.iter().position(|c| c.pid == pid) else {
                log::info!("reaped process {pid}, which {cause}");
                continue;
            };
            let child = self.children.swap_remove(index);
            for slot in child.slots.clone() {
                self.release_locks_of(slot);
                self.segment.worker_slots()[slot].release(self.segment.stats());
                self.slot_taken[slot] = false;
            }
            let name = match child.role {
                Role::PoolWorker | Role::EventWorker => format!("worker {}", child.slot()),
                Role::ConnectionChild => format!("connection child {}", child.slot()),
                Role::ThreadServer => "thread server".to_string(),
            };
            if self.stopping_since.is_some() {
                log::info!("{name} (pid {pid}) {cause}");
                continue;
            }
            if child.retiring {
                // The pool already counts it out: it is not replaced.
                if clean_exit {
                    log::info!("{name} (pid {pid}) retired: more idle workers than --max-spare");
                } else {
                    log::warn!("{name} (pid {pid}) {cause} while retiring");
                }
                continue;
            }
            if child.role == Role::ConnectionChild {
                if clean_exit {
                    log::info!("{name} (pid {pid}) {cause}");
                } else {
                    log::warn!("{name} (pid {pid}) {cause}; its client is disconnected");
                }
                continue;
            }
            log::warn!("{name} (pid {pid}) {cause}; replacing it");
            self.note_death(child.started, killed_from_outside);
        }
    }

    /// Decides when a dead pool worker (or thread server) is replaced: at
    /// once, unless workers keep dying right after they start.
    fn note_death(&mut self, started: Instant, killed_from_outside: bool) {
        // SIGKILL comes from outside (an operator, the OOM killer): that is
        // not a worker failing to start. It is replaced at once, even while a
        // crash loop elsewhere holds the others back.
        if killed_from_outside {
            self.respawn_at = self.respawn_at.min(Instant::now());
        } else if started.elapsed() < MIN_HEALTHY_LIFE {
            self.fast_deaths += 1;
            if self.fast_deaths > RESPAWN_BURST {
                let doublings = (self.fast_deaths - RESPAWN_BURST).min(6);
                let delay =
                    (Duration::from_millis(100) * 2u32.pow(doublings)).min(MAX_RESPAWN_DELAY);
                log::warn!(
                    "workers are dying right after start ({} in a row); next start in {} ms",
                    self.fast_deaths,
                    delay.as_millis()
                );
                self.respawn_at = Instant::now() + delay;
            }
        } else {
            self.fast_deaths = 0;
        }
    }

    /// Clears a reaped child's entries from every mailbox lock and the
    /// store's, after rebuilding the store if it died inside a change. A
    /// store that cannot be rebuilt stays locked, and the daemon stops.
    fn release_locks_of(&mut self, slot: usize) {
        let Some(dead) = self.segment.participant(slot) else {
            return;
        };
        // A store that could not be rebuilt keeps its lock: the repair
        // leaves a writer that died inside a change in place.
        self.rebuild_store_after(slot, dead);
        let repaired = self.segment.repair_participant(dead);
        if repaired > 0 {
            log::warn!(
                "worker slot {slot} died holding or awaiting {repaired} lock(s); released them"
            );
        }
    }

    /// If the worker in `slot` died inside a key-value change, rebuilds the
    /// store from its database; when that fails, the daemon stops.
    fn rebuild_store_after(&mut self, slot: usize, dead: Participant) {
        let (Some(db), Some(kv)) = (&self.database, self.segment.key_value()) else {
            return;
        };
        let path = db.path().display();
        // SAFETY: the child was reaped just now, and its lock entries are
        // repaired only after this returns.
        match unsafe { db.recover(&kv, dead) } {
            Ok(None) => {}
            Ok(Some(report)) => {
                log::warn!(
                    "worker slot {slot} died in the middle of a key-value change; rebuilt the \
                     store from {path}: {} keys{}",
                    report.pairs,
                    if report.torn.is_some() {
                        " (its unfinished line cut off)"
                    } else {
                        ""
                    }
                );
            }
            Err(e) => {
                log::error!(
                    "worker slot {slot} died in the middle of a key-value change, and the store \
                     cannot be rebuilt: {e}; the store stays locked and dipc stops: mend the \
                     file and start dipc again"
                );
                if self.stopping_since.is_none() {
                    self.begin_shutdown();
                }
            }
        }
    }

    /// Forks the pool workers (or the thread server) the pool is short of.
    fn respawn_missing(&mut self) {
        if Instant::now() < self.respawn_at {
            return;
        }
        while self.pool_workers() < self.wanted_children() {
            let (role, slots) = match (self.config.model, self.free_slot()) {
                (Model::Thread, _) => (Role::ThreadServer, 0..self.slot_taken.len()),
                (Model::Event, Some(slot)) => (Role::EventWorker, slot..slot + 1),
                (_, Some(slot)) => (Role::PoolWorker, slot..slot + 1),
                // Retiring workers still hold theirs.
                (_, None) => return,
            };
            let first = slots.start;
            if let Err(e) = self.spawn(role, slots, None) {
                log::error!("cannot fork worker {first}: {e}");
                self.respawn_at = Instant::now() + MAX_RESPAWN_DELAY;
                return;
            }
            if let Some(child) = self.children.last() {
                log::info!("worker {first} started (pid {})", child.pid);
            }
        }
    }

    /// Once a second: `--fsync everysec` flushes the journal if it was
    /// written to, and a journal removed by hand is noticed.
    fn flush_journal(&mut self) {
        let now = Instant::now();
        if now < self.next_flush {
            return;
        }
        self.next_flush = now + FLUSH_INTERVAL;
        self.flush_journal_now();
    }

    fn flush_journal_now(&self) {
        let (Some(db), Some(kv)) = (&self.database, self.segment.key_value()) else {
            return;
        };
        if let Err(e) = db.flush_if_written(&kv) {
            log::error!("flushing the key-value store's database: {e}");
        }
        match db.notice_removal(&kv) {
            Ok(false) => {}
            Ok(true) => log::warn!(
                "{} was removed while the daemon ran: the next change writes it whole again",
                db.path().display()
            ),
            Err(e) => log::error!("checking the key-value store's database: {e}"),
        }
    }

    /// Prefork: grows or shrinks the pool by its idle workers, once a tick.
    fn maintain_pool(&mut self) {
        let now = Instant::now();
        if self.config.model != Model::Prefork || now < self.next_maintenance {
            return;
        }
        self.next_maintenance = now + MAINTENANCE_TICK;
        let idle = self.idle_workers();
        match self.sizer.tick(self.pool_workers(), idle) {
            PoolAction::Hold => {}
            PoolAction::Grow(n) => {
                log::info!(
                    "{idle} idle workers, fewer than --min-spare: forking {n} more ({} in all)",
                    self.sizer.wanted()
                );
                self.respawn_missing();
            }
            PoolAction::RetireOne => self.retire_one_idle_worker(idle),
        }
    }

    /// Claims the idle worker in the highest slot (so the pool stays low)
    /// for retirement and wakes it with SIGUSR1. The claim is a compare and
    /// swap on the slot's state, which the worker also makes (idle to busy)
    /// before it accepts: a worker that is taking a client is never retired.
    fn retire_one_idle_worker(&mut self, idle: usize) {
        let table = self.segment.worker_slots();
        let mut candidates: Vec<&mut Child> =
            self.children.iter_mut().filter(|c| c.is_steady()).collect();
        candidates.sort_by_key(|c| std::cmp::Reverse(c.slot()));
        let Some(child) = candidates
            .into_iter()
            .find(|c| table[c.slot()].transition(WorkerState::Idle, WorkerState::Retiring))
        else {
            return;
        };
        log::info!(
            "{idle} idle workers, more than --max-spare: retiring worker {} (pid {})",
            child.slot(),
            child.pid
        );
        child.retiring = true;
        let _ = kill(child.pid, Signal::SIGUSR1);
        self.sizer.retired();
    }

    /// Fork model: accepts the waiting clients, one forked child each, while
    /// worker slots are free.
    fn accept_and_fork(&mut self) {
        while let Some(slot) = self.free_slot() {
            let Some(listener) = &self.listener else {
                return;
            };
            let Some((stream, peer)) = worker::accept_blocking_stream(listener) else {
                return;
            };
            if let Err(e) = self.spawn(Role::ConnectionChild, slot..slot + 1, Some((stream, peer)))
            {
                // The client's socket closes here: it sees the connection end.
                log::error!("cannot fork a child for client {peer}: {e}");
                return;
            }
        }
    }

    /// Unlinks the segment, the pid file and the database's lock file:
    /// nothing left behind (the database itself is the user's).
    fn remove_segment(&mut self) {
        if let Some(db) = &self.database {
            db.remove_lock_file();
        }
        self.segment.disown();
        if let Err(e) = Segment::unlink(self.config.port) {
            log::warn!("removing the segment: {e}");
        }
        crate::startup::remove_pid_file(&self.config.server.pid_file);
    }
}

/// Points stderr, where the log goes, at a freshly opened log file (SIGHUP,
/// after log rotation). Safe to call from any process or thread.
fn reopen_log(config: &Config) {
    if config.server.foreground {
        return;
    }
    match crate::startup::open_log(&config.server.log_path) {
        Ok(file) => {
            use std::os::fd::AsRawFd;
            // SAFETY: dup2 onto stderr swaps which file fd 2 names; the
            // logger writes whole lines to fd 2, before or after the swap.
            unsafe { libc::dup2(file.as_raw_fd(), libc::STDERR_FILENO) };
            log::info!(
                "SIGHUP: log file {} reopened",
                config.server.log_path.display()
            );
        }
        Err(e) => log::error!("SIGHUP: cannot reopen the log: {e}"),
    }
}
