//! The supervisor: the daemon's first process.
//!
//! Process model, stated once:
//! - The supervisor creates the segment, owns it (only it may unlink it),
//!   forks the workers and never serves a client. It is single-threaded, so
//!   fork() is safe at any point of its loop.
//! - Handled signals are blocked in the supervisor except inside ppoll();
//!   handlers only raise flags; the loop acts on them in a fixed order:
//!   quit, terminate, child deaths, log reopening (then SIGHUP to every
//!   worker, which reopens its own between requests), respawns.
//! - Workers are forked with those signals blocked and unblock them only once
//!   their own state is set up, so a signal sent right after fork() is never
//!   lost: it stays pending until the worker can act on it.
//! - A worker disowns the segment (its exit never unlinks it) and asks the
//!   kernel for SIGTERM when the supervisor dies (PR_SET_PDEATHSIG).
//! - A worker's slot is its identity in every mailbox lock. When a worker
//!   dies, however it dies, the supervisor reaps it, then clears its entries
//!   from every mailbox lock (a dead holder or waiter blocks nobody after
//!   that), and only then gives the slot to a new worker.
//! - Before the daemon detaches, errors go to the terminal; after, to the log,
//!   and start-up errors also reach the terminal through the readiness pipe.

use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::time::TimeSpec;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use shmlib::Segment;
use worker::{SessionConfig, WorkerContext};

use crate::cli::Config;
use crate::signals::{self, SignalFlags};
use crate::startup::Readiness;
use crate::title::ProcTitle;

struct Running {
    pid: Pid,
    started: Instant,
}

pub struct Supervisor {
    config: Config,
    segment: Segment,
    listener: Option<TcpListener>,
    flags: SignalFlags,
    workers: Vec<Option<Running>>,
    readiness: Option<Readiness>,
    /// Workers that died within a second of starting, in a row.
    fast_deaths: u32,
    respawn_at: Instant,
    stopping_since: Option<Instant>,
    killed_stragglers: bool,
    /// What `ps` shows; None where it cannot be set.
    title: Option<ProcTitle>,
}

/// A worker that dies sooner than this after its start counts as failing to
/// start, and its replacement is delayed.
const MIN_HEALTHY_LIFE: Duration = Duration::from_secs(1);
const MAX_RESPAWN_DELAY: Duration = Duration::from_secs(5);
/// Deaths right after start that are replaced at once, before backing off.
const RESPAWN_BURST: u32 = 3;

impl Supervisor {
    pub fn new(
        config: Config,
        segment: Segment,
        listener: TcpListener,
        flags: SignalFlags,
        readiness: Readiness,
        title: Option<ProcTitle>,
    ) -> Supervisor {
        let slots = config.geometry.worker_slots as usize;
        Supervisor {
            config,
            segment,
            listener: Some(listener),
            flags,
            workers: (0..slots).map(|_| None).collect(),
            readiness: Some(readiness),
            fast_deaths: 0,
            respawn_at: Instant::now(),
            stopping_since: None,
            killed_stragglers: false,
            title,
        }
    }

    /// Forks the pool, reports readiness, and supervises until shutdown.
    /// Returns once every worker is gone and the segment is removed.
    pub fn run(mut self) {
        if let Some(title) = &self.title {
            let g = self.config.geometry;
            title.set(&format!(
                "supervisor, port {}, {} mailboxes of {} KiB, {} KiB packets, {} workers",
                self.config.port,
                g.mailboxes,
                g.mailbox_size / 1024,
                g.packet_size / 1024,
                self.workers.len()
            ));
        }
        for slot in 0..self.workers.len() {
            if let Err(e) = self.spawn(slot) {
                log::error!("cannot fork worker {slot}: {e}");
            }
        }
        if self.workers.iter().all(Option::is_none) {
            if let Some(r) = self.readiness.take() {
                r.failed("could not start any worker (see the log)");
            }
            self.remove_segment();
            return;
        }
        log::info!(
            "serving port {}: {} mailboxes of {} bytes, {}-byte packets, {} workers",
            self.config.port,
            self.config.geometry.mailboxes,
            self.config.geometry.mailbox_size,
            self.config.geometry.packet_size,
            self.workers.len()
        );
        if let Some(r) = self.readiness.take() {
            r.ready(&self.config);
        }
        loop {
            if self.flags.quit.swap(false, Ordering::SeqCst) {
                log::info!("SIGQUIT: stopping now");
                self.signal_workers(Signal::SIGKILL);
                self.stopping_since.get_or_insert_with(Instant::now);
                self.killed_stragglers = true;
            }
            if self.flags.terminate.swap(false, Ordering::SeqCst) && self.stopping_since.is_none() {
                log::info!(
                    "SIGTERM or SIGINT: stopping; requests in flight have {:.1} s",
                    self.config.grace.as_secs_f64()
                );
                self.begin_shutdown();
            }
            if self.flags.child.swap(false, Ordering::SeqCst) {
                self.reap();
            }
            if self.flags.reopen_log.swap(false, Ordering::SeqCst) {
                self.reopen_log();
                // Each worker reopens its own copy of the descriptor between
                // requests, as nginx's do.
                self.signal_workers(Signal::SIGHUP);
            }
            if let Some(since) = self.stopping_since {
                if self.workers.iter().all(Option::is_none) {
                    break;
                }
                if !self.killed_stragglers && since.elapsed() >= self.config.grace {
                    log::warn!("grace period over: killing the workers still running");
                    self.signal_workers(Signal::SIGKILL);
                    self.killed_stragglers = true;
                }
            } else {
                self.respawn_missing();
            }
            self.wait_for_signal();
        }
        self.remove_segment();
        log::info!("stopped");
    }

    /// Sleeps until a signal arrives or the next timed action is due.
    fn wait_for_signal(&self) {
        let timeout = if self.stopping_since.is_some() {
            Duration::from_millis(100)
        } else if self.workers.iter().any(Option::is_none) {
            self.respawn_at
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(10))
        } else {
            Duration::from_secs(1)
        };
        let timeout = TimeSpec::from_duration(timeout);
        // ppoll unblocks the handled signals only while it waits, so a signal
        // is either handled before the loop checks its flags or wakes ppoll.
        let _ = nix::poll::ppoll(&mut [], Some(timeout), Some(SigSet::empty()));
    }

    fn begin_shutdown(&mut self) {
        self.stopping_since = Some(Instant::now());
        self.segment.set_stopping();
        // Workers keep their own copies of the listening socket until they exit.
        self.listener = None;
        self.signal_workers(Signal::SIGTERM);
    }

    fn signal_workers(&self, signal: Signal) {
        for running in self.workers.iter().flatten() {
            let _ = kill(running.pid, signal);
        }
    }

    fn spawn(&mut self, slot: usize) -> nix::Result<()> {
        // SAFETY: the supervisor is single-threaded (see the module comment),
        // so the child is a complete copy with no lock held by a vanished
        // thread; the child only runs the worker loop and then exits.
        match unsafe { fork() }? {
            ForkResult::Child => {
                let code = self.become_worker(slot);
                std::process::exit(code);
            }
            ForkResult::Parent { child } => {
                self.segment.worker_slots()[slot].set_pid(child.as_raw());
                self.workers[slot] = Some(Running {
                    pid: child,
                    started: Instant::now(),
                });
                Ok(())
            }
        }
    }

    /// Runs in the forked child; returns its exit code.
    fn become_worker(&mut self, slot: usize) -> i32 {
        let supervisor = self.segment.info().supervisor_pid;
        if nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).is_err()
            || nix::unistd::getppid().as_raw() != supervisor
        {
            return 1;
        }
        self.segment.disown();
        // The readiness pipe is the supervisor's alone.
        drop(self.readiness.take());
        let Some(listener) = self.listener.as_ref() else {
            return 0;
        };
        if let Err(e) = signals::set_blocked(false) {
            log::error!("cannot unblock signals: {e}");
            return 1;
        }
        let ctx = WorkerContext {
            listener,
            segment: &self.segment,
            slot,
            session: SessionConfig {
                lock_timeout: self.config.lock_timeout,
                port: self.config.port,
                workers: self.workers.len() as u32,
                supervisor_pid: supervisor,
                worker_slot: slot,
            },
            line_pause: self.config.line_pause,
            stop: &self.flags.terminate,
            reopen_log: &self.flags.reopen_log,
            reopen: &|| self.reopen_log(),
            set_title: &|activity| {
                if let Some(title) = &self.title {
                    title.set(&format!("worker {slot}: {activity}"));
                }
            },
        };
        worker::run_worker(&ctx);
        0
    }

    /// Collects every exited worker and logs how it ended.
    fn reap(&mut self) {
        loop {
            let status = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(status) => status,
            };
            let (pid, cause, killed_from_outside) = match status {
                WaitStatus::Exited(pid, code) => (pid, format!("exited with status {code}"), false),
                WaitStatus::Signaled(pid, sig, core) => (
                    pid,
                    format!(
                        "was killed by {}{}",
                        sig.as_str(),
                        if core { " (core dumped)" } else { "" }
                    ),
                    sig == Signal::SIGKILL,
                ),
                _ => continue,
            };
            let Some(slot) = self
                .workers
                .iter()
                .position(|w| w.as_ref().is_some_and(|r| r.pid == pid))
            else {
                log::info!("reaped process {pid}, which {cause}");
                continue;
            };
            let started = self.workers[slot].take().map(|r| r.started);
            self.release_locks_of(slot);
            self.segment.worker_slots()[slot].set_pid(0);
            if self.stopping_since.is_some() {
                log::info!("worker {slot} (pid {pid}) {cause}");
                continue;
            }
            log::warn!("worker {slot} (pid {pid}) {cause}; replacing it");
            // SIGKILL comes from outside (an operator, the OOM killer): that
            // is not a worker failing to start. It is replaced at once, even
            // while a crash loop elsewhere holds the others back.
            let died_young = started.is_some_and(|s| s.elapsed() < MIN_HEALTHY_LIFE);
            if killed_from_outside {
                self.respawn_at = self.respawn_at.min(Instant::now());
            } else if died_young {
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
    }

    /// Clears a reaped worker's entries from every mailbox lock.
    fn release_locks_of(&self, slot: usize) {
        let Some(dead) = self.segment.participant(slot) else {
            return;
        };
        let repaired = self.segment.repair_participant(dead);
        if repaired > 0 {
            log::warn!(
                "worker {slot} died holding or awaiting {repaired} mailbox lock(s); released them"
            );
        }
    }

    fn respawn_missing(&mut self) {
        if Instant::now() < self.respawn_at {
            return;
        }
        for slot in 0..self.workers.len() {
            if self.workers[slot].is_none() {
                match self.spawn(slot) {
                    Ok(()) => {
                        if let Some(r) = &self.workers[slot] {
                            log::info!("worker {slot} started (pid {})", r.pid);
                        }
                    }
                    Err(e) => {
                        log::error!("cannot fork worker {slot}: {e}");
                        self.respawn_at = Instant::now() + MAX_RESPAWN_DELAY;
                        return;
                    }
                }
            }
        }
    }

    fn reopen_log(&self) {
        if self.config.foreground {
            return;
        }
        match crate::startup::open_log(&self.config.log_path) {
            Ok(file) => {
                use std::os::fd::AsRawFd;
                // SAFETY: dup2 onto stderr swaps which file fd 2 names; the
                // logger writes whole lines to fd 2, before or after the swap.
                unsafe { libc::dup2(file.as_raw_fd(), libc::STDERR_FILENO) };
                log::info!(
                    "SIGHUP: log file {} reopened",
                    self.config.log_path.display()
                );
            }
            Err(e) => log::error!("SIGHUP: cannot reopen the log: {e}"),
        }
    }

    /// Unlinks the segment and the pid file: nothing left behind.
    fn remove_segment(&mut self) {
        self.segment.disown();
        if let Err(e) = Segment::unlink(self.config.port) {
            log::warn!("removing the segment: {e}");
        }
        crate::startup::remove_pid_file(&self.config.pid_file);
    }
}
