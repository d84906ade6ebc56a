//! The command line, checked into a [`Config`].

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use shmlib::Geometry;

/// dipc: k mailboxes in POSIX shared memory, served over TCP by a preforked
/// pool of worker processes. Stop it with `dipcrm <port>`.
#[derive(Debug, Parser)]
#[command(name = "dipc", version)]
pub struct Args {
    /// Number of mailboxes (1..4096)
    pub mailboxes: u64,
    /// Size of one mailbox in KiB
    pub mailbox_kib: u64,
    /// TCP port to serve (1..65535)
    pub port: u64,
    /// Size of a communication packet in KiB: the most data one request carries
    pub packet_kib: u64,
    /// Worker processes in the preforked pool
    #[arg(long, default_value_t = 8)]
    pub workers: u64,
    /// Stay attached to the terminal and log to it
    #[arg(long)]
    pub foreground: bool,
    /// Longest wait for a mailbox lock, in seconds, before the request gets ERR
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    pub lock_timeout: f64,
    /// Bytes left without a newline this long count as a complete line
    #[arg(long, default_value_t = 50, value_name = "MS")]
    pub line_pause_ms: u64,
    /// On SIGTERM, how long requests in flight may take before workers are killed
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    pub grace: f64,
    /// Log file (default /tmp/dipc-<port>.log)
    #[arg(long, value_name = "PATH")]
    pub log: Option<PathBuf>,
    /// Pid file (default /tmp/dipc-<port>.pid)
    #[arg(long, value_name = "PATH")]
    pub pid_file: Option<PathBuf>,
}

/// Everything the daemon was asked for, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub geometry: Geometry,
    pub port: u16,
    pub foreground: bool,
    pub lock_timeout: Duration,
    pub line_pause: Duration,
    pub grace: Duration,
    pub log_path: PathBuf,
    pub pid_file: PathBuf,
}

fn seconds(name: &str, value: f64, max: f64) -> Result<Duration, String> {
    if !(value > 0.0 && value <= max) {
        return Err(format!(
            "{name} must be more than 0 and at most {max} seconds, got {value}"
        ));
    }
    Ok(Duration::from_secs_f64(value))
}

/// Makes a path absolute against the start directory: the daemon's working
/// directory is fixed, but the user's relative paths mean where they typed.
fn absolute(path: PathBuf) -> Result<PathBuf, String> {
    std::path::absolute(&path).map_err(|e| format!("{}: {e}", path.display()))
}

impl Args {
    pub fn into_config(self) -> Result<Config, String> {
        let port = u16::try_from(self.port)
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("port must be 1..65535, got {}", self.port))?;
        let geometry = Geometry::from_kib(
            self.mailboxes,
            self.mailbox_kib,
            self.packet_kib,
            self.workers,
        )
        .map_err(|e| e.to_string())?;
        if !(1..=10_000).contains(&self.line_pause_ms) {
            return Err(format!(
                "line pause must be 1..10000 ms, got {}",
                self.line_pause_ms
            ));
        }
        let log_path = self
            .log
            .unwrap_or_else(|| PathBuf::from(format!("/tmp/dipc-{port}.log")));
        let pid_file = self
            .pid_file
            .unwrap_or_else(|| shmlib::default_pid_file(port));
        Ok(Config {
            geometry,
            port,
            foreground: self.foreground,
            lock_timeout: seconds("lock timeout", self.lock_timeout, 3600.0)?,
            line_pause: Duration::from_millis(self.line_pause_ms),
            grace: seconds("grace period", self.grace, 3600.0)?,
            log_path: absolute(log_path)?,
            pid_file: absolute(pid_file)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Result<Config, String> {
        let argv = std::iter::once("dipc").chain(args.iter().copied());
        Args::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .into_config()
    }

    #[test]
    fn accepts_the_seed_example() {
        let c = config(&["4", "8", "50007", "2"]).expect("valid");
        assert_eq!(c.port, 50007);
        assert_eq!(c.geometry.mailbox_size, 8192);
        assert_eq!(c.geometry.packet_size, 2048);
        assert_eq!(c.log_path, PathBuf::from("/tmp/dipc-50007.log"));
    }

    #[test]
    fn refuses_bad_numbers() {
        for bad in [
            &["0", "8", "50007", "2"][..],
            &["4", "8", "0", "2"],
            &["4", "8", "70000", "2"],
            &["4", "0", "50007", "2"],
            &["4", "8", "50007", "0"],
            &["x", "8", "50007", "2"],
            &["4", "8", "50007", "2", "--lock-timeout", "0"],
            &["4", "8", "50007", "2", "--line-pause-ms", "0"],
        ] {
            assert!(config(bad).is_err(), "{bad:?} accepted");
        }
    }
}
