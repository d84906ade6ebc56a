//! The command line, checked into a [`Config`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use shmlib::{FsyncPolicy, Geometry, JournalOptions};
use worker::auth::Secret;
use worker::Service;

use crate::pool_policy::PoolPolicy;

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
    /// How clients are served: a preforked pool of event loops, a preforked
    /// pool of processes serving one client each, one forked process per
    /// connection, or one thread per connection
    #[arg(long, value_enum, default_value_t = Model::Event)]
    pub model: Model,
    /// A fixed pool of exactly N workers (replaced when they die, never more
    /// or fewer); with --model fork or thread, the most clients at once
    #[arg(
        long,
        value_name = "N",
        conflicts_with_all = ["start_workers", "min_spare", "max_spare", "max_workers"]
    )]
    pub workers: Option<u64>,
    /// --model prefork: workers forked at start [default: 8, or --max-workers
    /// if less]
    #[arg(long, value_name = "N")]
    pub start_workers: Option<u64>,
    /// --model prefork: fork more workers when fewer than this are idle
    /// [default: 2]
    #[arg(long, value_name = "N")]
    pub min_spare: Option<u64>,
    /// --model prefork: retire idle workers above this many [default: 8, or
    /// --min-spare if more]
    #[arg(long, value_name = "N")]
    pub max_spare: Option<u64>,
    /// The most workers (event: the cap on one per CPU; fork or thread: the
    /// most clients served at once); beyond it clients wait in the listen
    /// backlog
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub max_workers: u64,
    /// Longest wait for a mailbox lock, in seconds, before the request gets ERR
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    pub lock_timeout: f64,
    /// Bytes left without a newline this long count as a complete line
    #[arg(long, default_value_t = 50, value_name = "MS")]
    pub line_pause_ms: u64,
    /// Key-value store capacity in keys, each with room for a packet-sized
    /// value; 0: no store [default: 1024, fewer with packets over 8 KiB]
    #[arg(long, value_name = "N")]
    pub keys: Option<u64>,
    /// The key-value store's database file, loaded at start and appended to
    /// by every put and del
    #[arg(long, default_value = "database.txt", value_name = "PATH")]
    pub db: PathBuf,
    /// When the database is flushed to disk: after every change (a power cut
    /// loses nothing acknowledged), once a second, or when the kernel
    /// decides. A crash of dipc loses nothing acknowledged in any mode
    #[arg(long, value_enum, default_value_t = Fsync::Everysec)]
    pub fsync: Fsync,
    /// The database is compacted (rewritten as one put per pair) once it is
    /// over this size and over twice what its pairs need (Redis's
    /// auto-aof-rewrite-min-size)
    #[arg(long, default_value_t = JournalOptions::DEFAULT_COMPACT_MIN_BYTES >> 10, value_name = "KiB")]
    pub db_compact_min: u64,
    /// A file holding a shared secret (its first line): a connection must
    /// send `auth <secret>` before any other request. The file must not be
    /// readable by group or others (chmod 600)
    #[arg(long, value_name = "PATH")]
    pub auth_file: Option<PathBuf>,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// The options of every program on this engine (dipc and echo-server):
/// attaching, logging, slow clients, stopping, the address, the gateway.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// Stay attached to the terminal and log to it
    #[arg(long)]
    pub foreground: bool,
    /// A connection that completes no request for this long is closed (a
    /// silent or slow client cannot hold a worker longer; a `wait` is not idle)
    #[arg(long, default_value_t = 300.0, value_name = "SECS")]
    pub idle_timeout: f64,
    /// A reply the client does not take for this long closes its connection
    /// (a client that stops reading cannot hold a worker longer)
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    pub send_timeout: f64,
    /// On SIGTERM, how long requests in flight may take before workers are killed
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    pub grace: f64,
    /// Log file [default: /tmp/<program>-<port>.log]
    #[arg(long, value_name = "PATH")]
    pub log: Option<PathBuf>,
    /// Pid file [default: /tmp/<program>-<port>.pid]
    #[arg(long, value_name = "PATH")]
    pub pid_file: Option<PathBuf>,
    /// The address to listen on: 0.0.0.0 (the default) accepts clients on
    /// every interface of this host, 127.0.0.1 only from this host
    #[arg(long, default_value = "0.0.0.0", value_name = "ADDR")]
    pub bind: IpAddr,
    /// Announce this server to the gateway at HOST:PORT (UDP): heartbeats,
    /// busy and free reports, and a withdrawal when it stops
    #[arg(long, value_name = "HOST:PORT")]
    pub gateway: Option<String>,
    /// The IPv4 address the gateway hands to clients for this server
    /// [default: the address the gateway sees the announcements come from]
    #[arg(long, value_name = "ADDR", requires = "gateway")]
    pub advertise: Option<Ipv4Addr>,
}

/// [`ServerArgs`], checked.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub foreground: bool,
    pub idle_timeout: Duration,
    pub send_timeout: Duration,
    pub grace: Duration,
    pub log_path: PathBuf,
    pub pid_file: PathBuf,
    pub bind: IpAddr,
    pub gateway: Option<SocketAddr>,
    pub advertise: Option<Ipv4Addr>,
}

impl ServerArgs {
    /// Checks the values; the log and pid file default to
    /// `/tmp/<program>-<port>.log` and `.pid`.
    pub fn check(self, service: Service, port: u16) -> Result<ServerSettings, String> {
        let default_path = |ext: &str| shmlib::default_file(program_name(service), port, ext);
        Ok(ServerSettings {
            foreground: self.foreground,
            idle_timeout: seconds("idle timeout", self.idle_timeout, 86_400.0)?,
            send_timeout: seconds("send timeout", self.send_timeout, 3600.0)?,
            grace: seconds("grace period", self.grace, 3600.0)?,
            log_path: absolute(self.log.unwrap_or_else(|| default_path("log")))?,
            pid_file: absolute(self.pid_file.unwrap_or_else(|| default_path("pid")))?,
            bind: self.bind,
            gateway: self.gateway.as_deref().map(resolve_gateway).transpose()?,
            advertise: self.advertise,
        })
    }
}

/// A port argument: 1..65535.
pub(crate) fn parse_port(value: u64) -> Result<u16, String> {
    u16::try_from(value)
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| format!("port must be 1..65535, got {value}"))
}

/// Redis's appendfsync choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fsync {
    Always,
    Everysec,
    No,
}

impl From<Fsync> for FsyncPolicy {
    fn from(f: Fsync) -> FsyncPolicy {
        match f {
            Fsync::Always => FsyncPolicy::Always,
            Fsync::Everysec => FsyncPolicy::EverySec,
            Fsync::No => FsyncPolicy::No,
        }
    }
}

/// nginx's server design and the lecture's, all on the same segment and
/// locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Model {
    /// Preforked pool, each worker serving many clients from one epoll
    /// loop (nginx); --workers, default one per CPU
    Event,
    /// Preforked pool accepting under the accept lock (Apache prefork)
    Prefork,
    /// The supervisor accepts and forks one child per connection (TCPechod)
    Fork,
    /// One process, one thread per connection
    Thread,
}

/// A program's name, for its messages, its default log and pid file and
/// `ps`.
fn program_name(service: Service) -> &'static str {
    match service {
        Service::Mailboxes => "dipc",
        Service::UpperEcho => "echo-server",
    }
}

impl Config {
    /// The geometry and how clients are served, as the start-up line, the
    /// log and the supervisor's title say it.
    pub fn shape(&self) -> String {
        let g = self.geometry;
        if self.service == Service::UpperEcho {
            return format!("upper-case echo, {}", self.serving());
        }
        format!(
            "{} mailboxes of {} KiB, {} KiB packets, {}",
            g.mailboxes,
            g.mailbox_size / 1024,
            g.packet_size / 1024,
            self.serving()
        )
    }

    /// The program's name, for its messages, its log and `ps`.
    pub fn program(&self) -> &'static str {
        program_name(self.service)
    }

    fn serving(&self) -> String {
        let pool = self.pool;
        match self.model {
            Model::Prefork if pool.is_fixed() => {
                format!("prefork pool of {} workers", pool.start)
            }
            Model::Prefork => format!(
                "prefork pool of {} workers ({}..{} idle, at most {})",
                pool.start, pool.min_spare, pool.max_spare, pool.max_workers
            ),
            Model::Event => format!("event pool of {} workers", pool.start),
            Model::Fork => format!("a process per client (at most {})", pool.max_workers),
            Model::Thread => format!("a thread per client (at most {})", pool.max_workers),
        }
    }
}

/// Everything the daemon was asked for, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// What connections speak: dipc's requests, or the seed's echo.
    pub service: Service,
    pub geometry: Geometry,
    pub model: Model,
    pub pool: PoolPolicy,
    pub port: u16,
    pub lock_timeout: Duration,
    pub line_pause: Duration,
    /// The key-value store's database (unused with no store).
    pub db_path: PathBuf,
    pub journal: JournalOptions,
    /// `--auth-file`'s secret.
    pub secret: Option<Secret>,
    /// Attaching, logging, slow clients, stopping, the address, the gateway.
    pub server: ServerSettings,
}

/// Reads `--auth-file`: its first line is the secret. A file others may
/// read is refused, as ssh refuses a private key that others may read.
fn read_secret(path: &std::path::Path) -> Result<Secret, String> {
    use std::os::unix::fs::MetadataExt;
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("--auth-file {shown}: {e}"))?;
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "--auth-file {shown} may be read by others (mode {:o}): chmod 600 it",
            meta.mode() & 0o777
        ));
    }
    let text = std::fs::read(path).map_err(|e| format!("--auth-file {shown}: {e}"))?;
    let line = text.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Secret::new(line).ok_or_else(|| format!("--auth-file {shown}: the first line is empty"))
}

/// `--gateway HOST:PORT` to the gateway's IPv4 socket address.
fn resolve_gateway(target: &str) -> Result<SocketAddr, String> {
    gateway::resolve_v4(target).map_err(|e| format!("--gateway {target}: {e} (expected HOST:PORT)"))
}

/// KiB to bytes, refusing what overflows (at most 1 TiB).
fn kib(name: &str, value: u64) -> Result<u64, String> {
    const MAX_KIB: u64 = 1 << 30;
    if value > MAX_KIB {
        return Err(format!("{name} must be at most {MAX_KIB} KiB, got {value}"));
    }
    Ok(value * 1024)
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
    fn pool(&self) -> Result<PoolPolicy, String> {
        let sizing = [
            ("--start-workers", self.start_workers),
            ("--min-spare", self.min_spare),
            ("--max-spare", self.max_spare),
        ];
        if self.model != Model::Prefork {
            if let Some((name, _)) = sizing.iter().find(|(_, v)| v.is_some()) {
                return Err(format!(
                    "{name} sizes a prefork pool; --model event, fork and thread take only \
                     --max-workers (or --workers)"
                ));
            }
        }
        let policy = match self.workers {
            Some(n) => PoolPolicy::fixed(n),
            None if self.model == Model::Event => PoolPolicy::per_cpu(self.max_workers),
            None => {
                let min_spare = self.min_spare.unwrap_or(2);
                PoolPolicy::dynamic(
                    self.start_workers.unwrap_or(self.max_workers.min(8)),
                    min_spare,
                    self.max_spare.unwrap_or(min_spare.max(8)),
                    self.max_workers,
                )
            }
        };
        policy.map_err(|e| e.to_string())
    }

    pub fn into_config(self) -> Result<Config, String> {
        let port = parse_port(self.port)?;
        let pool = self.pool()?;
        // Every worker (or client thread, or per-connection child) needs a
        // slot of its own in the mailbox locks.
        let geometry = Geometry::from_kib(
            self.mailboxes,
            self.mailbox_kib,
            self.packet_kib,
            pool.max_workers as u64,
        )
        .map_err(|e| e.to_string())?;
        let geometry = match self.keys {
            Some(keys) => geometry.with_keys(keys).map_err(|e| e.to_string())?,
            None => geometry,
        };
        if !(1..=10_000).contains(&self.line_pause_ms) {
            return Err(format!(
                "line pause must be 1..10000 ms, got {}",
                self.line_pause_ms
            ));
        }
        let server = self.server.check(Service::Mailboxes, port)?;
        Ok(Config {
            service: Service::Mailboxes,
            geometry,
            model: self.model,
            pool,
            port,
            lock_timeout: seconds("lock timeout", self.lock_timeout, 3600.0)?,
            line_pause: Duration::from_millis(self.line_pause_ms),
            db_path: absolute(self.db)?,
            journal: JournalOptions {
                fsync: self.fsync.into(),
                compact_min_bytes: kib("--db-compact-min", self.db_compact_min)?,
            },
            secret: self.auth_file.as_deref().map(read_secret).transpose()?,
            server,
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
        assert_eq!(c.server.log_path, PathBuf::from("/tmp/dipc-50007.log"));
        assert_eq!(c.model, Model::Event);
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(
            c.pool,
            PoolPolicy::fixed(cpus.min(64) as u64).expect("valid")
        );
        assert_eq!(c.geometry.worker_slots as usize, cpus.min(64));
    }

    #[test]
    fn workers_means_a_fixed_pool() {
        let c = config(&["4", "8", "50007", "2", "--workers", "3"]).expect("valid");
        assert_eq!(c.pool, PoolPolicy::fixed(3).expect("valid"));
        assert_eq!(c.geometry.worker_slots, 3);
    }

    #[test]
    fn pool_defaults_follow_max_workers() {
        let prefork = |extra: &[&'static str]| {
            let mut args = vec!["4", "8", "50007", "2", "--model", "prefork"];
            args.extend_from_slice(extra);
            config(&args).expect("valid")
        };
        let c = prefork(&["--max-workers", "4"]);
        assert_eq!((c.pool.start, c.pool.max_workers), (4, 4));
        let c = prefork(&["--min-spare", "12"]);
        assert_eq!((c.pool.min_spare, c.pool.max_spare), (12, 12));
        let c = config(&[
            "4",
            "8",
            "50007",
            "2",
            "--model",
            "thread",
            "--workers",
            "5",
        ])
        .expect("valid");
        assert_eq!(c.geometry.worker_slots, 5);
    }

    #[test]
    fn refuses_bad_numbers_with_the_reason() {
        let geometry = |m: &'static str, kib, port, packet| vec![m, kib, port, packet];
        let seed = || geometry("4", "8", "50007", "2");
        let with = |extra: &[&'static str]| {
            let mut args = seed();
            args.extend_from_slice(extra);
            args
        };
        let cases: Vec<(Vec<&str>, &str)> = vec![
            (geometry("0", "8", "50007", "2"), "number of mailboxes"),
            (geometry("4", "8", "0", "2"), "port must be"),
            (geometry("4", "8", "70000", "2"), "port must be"),
            (geometry("4", "0", "50007", "2"), "mailbox size"),
            (geometry("4", "8", "50007", "0"), "packet size"),
            (geometry("x", "8", "50007", "2"), "invalid value 'x'"),
            (with(&["--lock-timeout", "0"]), "lock timeout"),
            (with(&["--line-pause-ms", "0"]), "line pause"),
            (
                with(&["--workers", "2", "--max-workers", "4"]),
                "cannot be used with",
            ),
            (
                with(&["--model", "prefork", "--min-spare", "5", "--max-spare", "4"]),
                "--max-spare must be",
            ),
            (
                with(&[
                    "--model",
                    "prefork",
                    "--start-workers",
                    "9",
                    "--max-workers",
                    "8",
                ]),
                "--start-workers must be",
            ),
            (
                with(&["--model", "prefork", "--max-workers", "257"]),
                "--max-workers must be 1..256",
            ),
            (
                with(&["--max-workers", "257"]),
                "--max-workers must be 1..256",
            ),
            (with(&["--model", "threads"]), "invalid value 'threads'"),
            (
                with(&["--model", "fork", "--min-spare", "1"]),
                "sizes a prefork pool",
            ),
        ];
        for (args, reason) in cases {
            match config(&args) {
                Ok(_) => panic!("{args:?} accepted"),
                Err(e) => assert!(
                    e.contains(reason),
                    "{args:?}: {e:?} does not say {reason:?}"
                ),
            }
        }
    }
}
