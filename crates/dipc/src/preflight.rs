//! Everything checked before the daemon detaches, so that every refusal is
//! one line on the user's terminal and leaves nothing behind.

use std::net::TcpListener;
use std::path::PathBuf;

use shmlib::owner::{ownership, Ownership};
use shmlib::{segment_path, Segment, ShmError};

use crate::cli::Config;

/// What start-up found of an earlier daemon on this port.
#[derive(Debug)]
pub enum Leftover {
    Nothing,
    /// A segment whose daemon is dead (pid given when the header names one).
    StaleSegment {
        pid: Option<i32>,
        size: usize,
        /// The dead daemon's pid file, as its header names it.
        pid_file: Option<PathBuf>,
    },
}

/// Checks the port's segment, the memory and the port itself; returns the
/// bound listening socket and what to reclaim.
pub fn check(config: &Config) -> Result<(TcpListener, Leftover), String> {
    let port = config.port;
    let leftover = match Segment::open(port) {
        Ok(segment) => {
            let info = segment.info();
            match ownership(info.supervisor_pid, port) {
                Ownership::Daemon => {
                    return Err(format!(
                        "a dipc daemon (pid {}) already serves port {port}; stop it with: dipcrm {port}",
                        info.supervisor_pid
                    ))
                }
                Ownership::Dead | Ownership::Recycled => Leftover::StaleSegment {
                    pid: Some(info.supervisor_pid),
                    size: info.size,
                    pid_file: (!info.pid_file.is_empty()).then(|| PathBuf::from(&info.pid_file)),
                },
                Ownership::Foreign(why) => {
                    return Err(format!(
                        "{} names a live process this user may not touch ({why}); not starting",
                        segment_path(port)
                    ))
                }
            }
        }
        Err(ShmError::NotFound { .. }) => Leftover::Nothing,
        Err(ShmError::NotDipc { .. }) => Leftover::StaleSegment {
            pid: None,
            size: std::fs::metadata(segment_path(port))
                .map(|m| m.len() as usize)
                .unwrap_or(0),
            pid_file: None,
        },
        Err(e) => return Err(e.to_string()),
    };
    let reclaimable = match leftover {
        Leftover::StaleSegment { size, .. } => size,
        Leftover::Nothing => 0,
    };
    check_memory(config.geometry.segment_size(), reclaimable)?;
    let bind = config.server.bind;
    let listener = TcpListener::bind((bind, port)).map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            format!("port {port} is already in use by another program")
        }
        std::io::ErrorKind::AddrNotAvailable => {
            format!("cannot listen on {bind} port {port}: no interface of this host has {bind}")
        }
        _ => format!("cannot listen on {bind} port {port}: {e}"),
    })?;
    // std's bind asks for a backlog of 128: a thousand clients connecting
    // at once overflowed it, and the kernel dropped their SYNs, which the
    // clients sent again only after 1, 3, 7... s (a 0.5 s benchmark of
    // 1,000 connections took 40 to 60 s). nginx and Redis ask for 511; we
    // ask for SOMAXCONN, and the kernel caps it at net.core.somaxconn.
    nix::sys::socket::listen(&listener, nix::sys::socket::Backlog::MAXCONN)
        .map_err(|e| format!("cannot listen on {bind} port {port}: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot listen on port {port}: {e}"))?;
    Ok((listener, leftover))
}

const MIB: f64 = 1024.0 * 1024.0;

fn check_memory(needed: usize, reclaimable: usize) -> Result<(), String> {
    let shm = nix::sys::statvfs::statvfs("/dev/shm")
        .map_err(|e| format!("cannot inspect /dev/shm: {e}"))?;
    let free = (shm.blocks_available() as u128 * shm.fragment_size() as u128)
        .saturating_add(reclaimable as u128);
    if needed as u128 > free {
        return Err(format!(
            "the segment needs {:.1} MiB but /dev/shm has only {:.1} MiB free",
            needed as f64 / MIB,
            free as f64 / MIB
        ));
    }
    if let Some(available) = mem_available() {
        if needed as u128 > available as u128 {
            return Err(format!(
                "the segment needs {:.1} MiB but only {:.1} MiB of memory is available",
                needed as f64 / MIB,
                available as f64 / MIB
            ));
        }
    }
    Ok(())
}

/// MemAvailable from /proc/meminfo, in bytes.
fn mem_available() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}
