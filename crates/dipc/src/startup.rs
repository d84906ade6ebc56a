//! From a checked command line to a running supervisor: detaching (daemonize
//! crate), reclaiming a stale segment, creating the segment, the pid file, and
//! telling the user's terminal when the daemon serves or why it could not.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use daemonize::{Daemonize, Outcome};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use shmlib::{segment_path, DaemonRecord, Database, Segment};

use crate::cli::Config;
use crate::preflight::Leftover;
use crate::signals::{self, SignalFlags};
use crate::supervisor::Supervisor;

/// The line the user sees when the daemon serves.
fn serving_line(config: &Config, pid: u32) -> String {
    let log = if config.server.foreground {
        "this terminal".to_string()
    } else {
        config.server.log_path.display().to_string()
    };
    let database = if config.geometry.keys > 0 {
        format!("; database {}", config.db_path.display())
    } else {
        String::new()
    };
    format!(
        "{}: serving port {} (pid {pid}): {}; log {log}{database}",
        config.program(),
        config.port,
        config.shape()
    )
}

/// Prints a line on stdout; a closed stdout is no reason to fail or panic.
fn say(line: &str) {
    let _ = writeln!(std::io::stdout(), "{line}");
}

/// How the daemon tells the user's terminal that it serves, or why not.
pub enum Readiness {
    /// Detached: through a pipe to the waiting original process.
    Pipe(File),
    /// Foreground: straight to stdout/stderr.
    Terminal,
}

impl Readiness {
    pub fn ready(self, config: &Config) {
        let line = serving_line(config, std::process::id());
        match self {
            Readiness::Pipe(mut pipe) => {
                let _ = writeln!(pipe, "READY {line}");
            }
            Readiness::Terminal => say(&line),
        }
    }

    pub fn failed(self, config: &Config, reason: &str) {
        log::error!("{reason}");
        match self {
            Readiness::Pipe(mut pipe) => {
                let _ = writeln!(pipe, "ERROR {reason}");
            }
            Readiness::Terminal => eprintln!("{}: error: {reason}", config.program()),
        }
    }
}

pub fn open_log(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

fn write_pid_file(path: &Path) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o644)
        .open(path)?;
    writeln!(file, "{}", std::process::id())
}

/// Removes the pid file if it still names this process.
pub fn remove_pid_file(path: &Path) {
    if names_pid(path, std::process::id() as i32) {
        let _ = std::fs::remove_file(path);
    }
}

/// Removes a dead daemon's pid file, if it still names that daemon (a file
/// rewritten since belongs to someone else).
fn remove_stale_pid_file(path: &Path, dead: i32) {
    if names_pid(path, dead) && std::fs::remove_file(path).is_ok() {
        log::warn!(
            "removed {}, the pid file of dead dipc pid {dead}",
            path.display()
        );
    }
}

fn names_pid(path: &Path, pid: i32) -> bool {
    std::fs::read_to_string(path)
        .map(|s| s.trim() == pid.to_string())
        .unwrap_or(false)
}

/// Starts the daemon: detached unless `--foreground`.
pub fn start(config: Config, listener: TcpListener, leftover: Leftover) -> ExitCode {
    let program = config.program();
    if config.server.foreground {
        return run_daemon(config, listener, leftover, Readiness::Terminal);
    }
    let log = match open_log(&config.server.log_path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!(
                "{program}: error: cannot open log {}: {e}",
                config.server.log_path.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let (from_daemon, to_parent) = match nix::unistd::pipe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{program}: error: cannot create a pipe: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
    let daemon = Daemonize::new()
        .working_directory(cwd)
        .umask(0o077)
        .stderr(log);
    match daemon.execute() {
        Outcome::Parent(Ok(_)) => {
            drop(to_parent);
            wait_until_ready(from_daemon, &config)
        }
        Outcome::Parent(Err(e)) => {
            eprintln!("{program}: error: cannot detach: {e}");
            ExitCode::FAILURE
        }
        Outcome::Child(result) => {
            drop(from_daemon);
            let readiness = Readiness::Pipe(File::from(to_parent));
            if let Err(e) = result {
                readiness.failed(&config, &format!("cannot detach: {e}"));
                return ExitCode::FAILURE;
            }
            run_daemon(config, listener, leftover, readiness)
        }
    }
}

/// How long the user's terminal waits for the detached daemon to report.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

fn wait_until_ready(pipe: OwnedFd, config: &Config) -> ExitCode {
    let mut fds = [PollFd::new(pipe.as_fd(), PollFlags::POLLIN)];
    let ms = PollTimeout::try_from(READY_TIMEOUT).unwrap_or(PollTimeout::MAX);
    let mut message = String::new();
    let got = matches!(poll(&mut fds, ms), Ok(n) if n > 0);
    if got {
        let _ = File::from(pipe).take(4096).read_to_string(&mut message);
    }
    let log = config.server.log_path.display();
    let program = config.program();
    match message.lines().next() {
        Some(line) if line.starts_with("READY ") => {
            say(&line["READY ".len()..]);
            ExitCode::SUCCESS
        }
        Some(line) if line.starts_with("ERROR ") => {
            eprintln!("{program}: error: {}", &line["ERROR ".len()..]);
            ExitCode::FAILURE
        }
        _ if !got => {
            eprintln!(
                "{program}: error: the daemon did not report within {READY_TIMEOUT:?}; see {log}"
            );
            ExitCode::FAILURE
        }
        _ => {
            eprintln!("{program}: error: the daemon exited during start-up; see {log}");
            ExitCode::FAILURE
        }
    }
}

/// The daemon proper, detached or not: reclaim, create, supervise.
fn run_daemon(
    config: Config,
    listener: TcpListener,
    leftover: Leftover,
    readiness: Readiness,
) -> ExitCode {
    crate::logging::set_supervisor_pid(std::process::id() as i32);
    crate::logging::init(config.program());
    let port = config.port;
    if let Leftover::StaleSegment { pid, pid_file, .. } = leftover {
        match Segment::unlink(port) {
            Ok(()) => log::warn!(
                "reclaimed stale segment {} left by {}",
                segment_path(port),
                pid.map(|p| format!("pid {p}, which is no longer running"))
                    .unwrap_or_else(|| "a daemon that died while starting".into())
            ),
            Err(e) => {
                readiness.failed(&config, &format!("cannot reclaim the stale segment: {e}"));
                return ExitCode::FAILURE;
            }
        }
        if let (Some(pid), Some(path)) = (pid, pid_file) {
            remove_stale_pid_file(&path, pid);
        }
    }
    let flags = match SignalFlags::install().and_then(|f| signals::set_blocked(true).map(|()| f)) {
        Ok(f) => f,
        Err(e) => {
            readiness.failed(&config, &format!("cannot set up signal handling: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let pid_file = config.server.pid_file.display().to_string();
    let log_file = config.server.log_path.display().to_string();
    let db_lock_file = if config.geometry.keys > 0 {
        Database::lock_path_for(&config.db_path)
            .display()
            .to_string()
    } else {
        String::new()
    };
    let record = DaemonRecord {
        pid_file: &pid_file,
        log_file: &log_file,
        db_lock_file: &db_lock_file,
        grace: config.server.grace,
    };
    let segment = match Segment::create(port, config.geometry, &record) {
        Ok(s) => s,
        Err(e) => {
            readiness.failed(&config, &e.to_string());
            return ExitCode::FAILURE;
        }
    };
    // From here on, a failure must remove the segment: dropping `segment`
    // (its owner) unlinks it.
    if let Err(e) = segment.reserve_memory() {
        readiness.failed(
            &config,
            &format!("cannot reserve the segment's memory: {e}"),
        );
        return ExitCode::FAILURE;
    }
    let database = match open_database(&config, &segment) {
        Ok(db) => db,
        Err(e) => {
            readiness.failed(&config, &e);
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = write_pid_file(&config.server.pid_file) {
        readiness.failed(&config, &format!("cannot write pid file {pid_file}: {e}"));
        if let Some(db) = &database {
            db.remove_lock_file();
        }
        return ExitCode::FAILURE;
    }
    // SAFETY: the supervisor is single-threaded (it never starts a thread;
    // `--model thread`'s threads live in a forked child), and
    // nothing holds pointers into the original argv or environment: clap
    // and the logger copied what they read.
    let title = unsafe { crate::title::ProcTitle::claim(config.program()) };
    Supervisor::new(config, segment, database, listener, flags, readiness, title).run();
    ExitCode::SUCCESS
}

/// Opens and loads the key-value store's database (none without a store),
/// and logs what it found.
fn open_database(config: &Config, segment: &Segment) -> Result<Option<Database>, String> {
    let Some(kv) = segment.key_value() else {
        return Ok(None);
    };
    let path = config.db_path.display();
    // SAFETY: no worker exists yet: the supervisor is the store's only user.
    let (db, report) = unsafe { Database::open(&config.db_path, config.journal, &kv) }
        .map_err(|e| format!("cannot load the key-value store: {e}"))?;
    if let Some((line, bytes)) = report.torn {
        log::warn!(
            "{path}: line {line} was torn (a crash in the middle of writing it): its {bytes} \
             bytes are cut off; the rest is loaded"
        );
    }
    log::info!(
        "{path}: {} keys loaded from {} changes{}",
        report.pairs,
        report.records,
        if report.compacted { "; compacted" } else { "" }
    );
    Ok(Some(db))
}
