//! Is the process a segment names still its live daemon? Read from /proc,
//! so that a stale segment is told from a live one and a recycled pid is
//! never taken for the daemon.

use std::fs;
use std::os::unix::fs::MetadataExt;

use crate::segment::segment_path;

/// What /proc says of a pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessState {
    /// No such process.
    Gone,
    /// Exited but not yet reaped: dead for every purpose of ours.
    Zombie,
    Alive,
}

impl ProcessState {
    pub fn of(pid: i32) -> ProcessState {
        if pid <= 0 {
            return ProcessState::Gone;
        }
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return ProcessState::Gone;
        };
        // The state follows the parenthesised command name, which may itself
        // contain spaces and parentheses: take the last ')'.
        let state = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next());
        match state {
            Some("Z") | Some("X") | Some("x") => ProcessState::Zombie,
            Some(_) => ProcessState::Alive,
            None => ProcessState::Gone,
        }
    }

    pub fn is_alive(self) -> bool {
        self == ProcessState::Alive
    }
}

/// How a pid relates to the daemon of a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// Gone or a zombie: the segment is stale.
    Dead,
    /// Alive, ours, and mapping this port's segment: the daemon itself (or
    /// one of its workers).
    Daemon,
    /// Alive, ours, but not mapping this port's segment: the pid was
    /// recycled by an unrelated process, so the segment is stale.
    Recycled,
    /// Alive and not ours (or not inspectable): never signal it, never take
    /// its segment.
    Foreign(String),
}

/// Decides whether `pid` is a live dipc process of this user serving `port`.
pub fn ownership(pid: i32, port: u16) -> Ownership {
    if !ProcessState::of(pid).is_alive() {
        return Ownership::Dead;
    }
    let my_uid = nix::unistd::getuid().as_raw();
    match fs::metadata(format!("/proc/{pid}")) {
        Ok(meta) if meta.uid() != my_uid => {
            return Ownership::Foreign(format!(
                "pid {pid} belongs to uid {}, not to this user (uid {my_uid})",
                meta.uid()
            ))
        }
        Ok(_) => {}
        Err(_) => return Ownership::Dead,
    }
    let wanted = segment_path(port);
    match fs::read_to_string(format!("/proc/{pid}/maps")) {
        Ok(maps) if maps.lines().any(|l| maps_line_names(l, &wanted)) => Ownership::Daemon,
        Ok(_) => Ownership::Recycled,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ownership::Dead,
        Err(e) => Ownership::Foreign(format!("pid {pid}: cannot read its memory map: {e}")),
    }
}

fn maps_line_names(line: &str, path: &str) -> bool {
    // The path is the last field, possibly followed by " (deleted)".
    line.split_whitespace().nth(5) == Some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_pid_zero_is_gone() {
        assert_eq!(
            ProcessState::of(std::process::id() as i32),
            ProcessState::Alive
        );
        assert_eq!(ProcessState::of(0), ProcessState::Gone);
        assert_eq!(ProcessState::of(-5), ProcessState::Gone);
    }

    #[test]
    fn a_process_without_the_segment_is_a_recycled_pid() {
        let me = std::process::id() as i32;
        assert_eq!(ownership(me, 1), Ownership::Recycled);
    }

    #[test]
    fn maps_line_parsing() {
        let line = "7f00-7f10 rw-s 00000000 00:1a 123   /dev/shm/dipc.50007 (deleted)";
        assert!(maps_line_names(line, "/dev/shm/dipc.50007"));
        assert!(!maps_line_names(line, "/dev/shm/dipc.5000"));
    }
}
