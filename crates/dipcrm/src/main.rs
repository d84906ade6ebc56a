//! `dipcrm <port>`: stops the dipc daemon of that port and removes everything
//! it created: its workers, its segment (and with it the locks that live
//! in it), its pid file and its database's lock file (the database itself
//! stays). Leftovers of a daemon killed with SIGKILL are
//! removed all the same; running it twice is harmless.

use std::path::PathBuf;
use std::process::ExitCode;
use std::thread::sleep;
use std::time::{Duration, Instant};

use clap::Parser;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use shmlib::owner::{ownership, Ownership, ProcessState};
use shmlib::{segment_path, Segment, ShmError};

/// Stop the dipc daemon serving a port and remove what it created.
#[derive(Debug, Parser)]
#[command(name = "dipcrm", version)]
struct Args {
    /// The port the daemon serves
    port: u64,
    /// Seconds to wait after SIGTERM before SIGKILL (default: the daemon's
    /// own --grace plus 5 s)
    #[arg(long, value_name = "SECS")]
    grace: Option<f64>,
}

/// What the port's segment and pid file say.
struct Found {
    supervisor: Option<i32>,
    /// The daemon's own shutdown grace period, when the header says.
    grace: Option<Duration>,
    workers: Vec<i32>,
    pid_file: PathBuf,
    /// The key-value store's lock file, when the header names one.
    db_lock_file: Option<PathBuf>,
    segment_exists: bool,
}

/// Reports one action on stdout; a closed stdout must not stop the cleanup.
fn say(line: String) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "dipcrm: {line}");
}

fn find(port: u16) -> Result<Found, String> {
    let default_pid_file = shmlib::default_pid_file(port);
    let mut grace = None;
    let mut db_lock_file = None;
    let (mut supervisor, workers, pid_file, segment_exists) = match Segment::open(port) {
        Ok(segment) => {
            let info = segment.info();
            grace = Some(info.grace);
            db_lock_file =
                (!info.db_lock_file.is_empty()).then(|| PathBuf::from(&info.db_lock_file));
            let workers = segment
                .worker_slots()
                .iter()
                .map(|w| w.pid())
                .filter(|&p| p > 0)
                .collect();
            let pid_file = if info.pid_file.is_empty() {
                default_pid_file
            } else {
                PathBuf::from(info.pid_file)
            };
            (Some(info.supervisor_pid), workers, pid_file, true)
        }
        Err(ShmError::NotFound { .. }) => (None, Vec::new(), default_pid_file, false),
        Err(ShmError::NotDipc { .. }) => (None, Vec::new(), default_pid_file, true),
        Err(e) => return Err(e.to_string()),
    };
    if supervisor.is_none() {
        supervisor = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok());
    }
    Ok(Found {
        supervisor,
        grace,
        workers,
        pid_file,
        db_lock_file,
        segment_exists,
    })
}

/// Waits until none of `pids` is alive (zombies count as dead).
fn wait_gone(pids: &[i32], limit: Duration) -> bool {
    let start = Instant::now();
    loop {
        if pids.iter().all(|&p| !ProcessState::of(p).is_alive()) {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        sleep(Duration::from_millis(20));
    }
}

/// The pids among `pids` that are live dipc processes of ours on this port.
fn ours(pids: &[i32], port: u16) -> Vec<i32> {
    pids.iter()
        .copied()
        .filter(|&p| ownership(p, port) == Ownership::Daemon)
        .collect()
}

fn run(args: Args) -> Result<ExitCode, String> {
    let port = u16::try_from(args.port)
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| format!("port must be 1..65535, got {}", args.port))?;
    let found = find(port)?;
    let grace = match args.grace {
        Some(secs) if secs > 0.0 && secs <= 3600.0 => Duration::from_secs_f64(secs),
        Some(secs) => {
            return Err(format!(
                "grace must be more than 0 and at most 3600 seconds, got {secs}"
            ))
        }
        None => found.grace.unwrap_or(Duration::from_secs(5)) + Duration::from_secs(5),
    };
    let pid_file_exists = found.pid_file.exists();
    let mut did_something = false;

    if let Some(pid) = found.supervisor {
        match ownership(pid, port) {
            Ownership::Daemon => {
                kill(Pid::from_raw(pid), Signal::SIGTERM)
                    .map_err(|e| format!("cannot signal pid {pid}: {e}"))?;
                say(format!(
                    "sent SIGTERM to the dipc daemon of port {port} (pid {pid})"
                ));
                if wait_gone(&[pid], grace) {
                    let segment = segment_path(port);
                    if std::path::Path::new(&segment).exists() {
                        say(format!("daemon {pid} stopped"));
                    } else {
                        say(format!("daemon {pid} stopped and removed {segment}"));
                    }
                } else {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                    say(format!(
                        "daemon {pid} did not stop within {:.1} s; sent SIGKILL",
                        grace.as_secs_f64()
                    ));
                    wait_gone(&[pid], Duration::from_secs(2));
                }
                did_something = true;
            }
            Ownership::Dead => {
                if found.segment_exists || pid_file_exists {
                    say(format!(
                        "the daemon of port {port} (pid {pid}) is not running; removing its leftovers"
                    ));
                }
            }
            Ownership::Recycled => {
                say(format!(
                    "pid {pid}, named by the daemon of port {port}, is now an unrelated process: \
                     not signalling it; removing the daemon's leftovers"
                ));
            }
            Ownership::Foreign(why) => {
                return Err(format!("refusing to touch port {port}'s daemon: {why}"));
            }
        }
    }

    // Workers normally exit with their supervisor (or on its death); any
    // still alive after a moment are stopped here.
    let workers = ours(&found.workers, port);
    if !workers.is_empty() && !wait_gone(&workers, Duration::from_secs(2)) {
        for &w in &ours(&workers, port) {
            let _ = kill(Pid::from_raw(w), Signal::SIGKILL);
            say(format!("killed leftover worker {w}"));
        }
        wait_gone(&workers, Duration::from_secs(2));
        did_something = true;
    }

    match Segment::unlink(port) {
        Ok(()) => {
            say(format!("removed {}", segment_path(port)));
            did_something = true;
        }
        Err(ShmError::NotFound { .. }) => {}
        Err(e) => return Err(e.to_string()),
    }
    if found.pid_file.exists() {
        std::fs::remove_file(&found.pid_file)
            .map_err(|e| format!("cannot remove {}: {e}", found.pid_file.display()))?;
        say(format!("removed {}", found.pid_file.display()));
        did_something = true;
    }

    // Left by a daemon killed with SIGKILL; the database itself is the
    // user's data and stays.
    if let Some(lock) = &found.db_lock_file {
        if shmlib::remove_stale_lock(lock) {
            say(format!("removed {}", lock.display()));
        }
    }

    if did_something {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("dipcrm: no dipc daemon on port {port}");
        Ok(ExitCode::FAILURE)
    }
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or("bad arguments");
            eprintln!(
                "dipcrm: {} (usage: dipcrm <port>)",
                first.trim_start_matches("error: ")
            );
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(code) => code,
        Err(reason) => {
            eprintln!("dipcrm: error: {reason}");
            ExitCode::FAILURE
        }
    }
}
