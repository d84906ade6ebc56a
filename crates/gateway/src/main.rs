//! `gateway <port>`: the UDP directory of dipc servers (seed 000).
//!
//! One process, two threads. The main thread owns the UDP socket: it answers
//! clients' requests round robin over the available servers, records the
//! servers' announcements, heartbeats and busy/free reports, and expires
//! heartbeating servers that fall silent. The health thread connects to
//! every registered server over TCP once an interval and closes at once,
//! so that a server that died without a word stops being handed out. The
//! directory (`Registry`) is shared behind a mutex; neither thread blocks
//! while holding it. Signals only set flags (SIGTERM, SIGINT: stop).
//!
//! Errors before detaching go to the terminal; after, to the log.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use daemonize::{Daemonize, Outcome};

use gateway::registry::{Registry, ServerId};
use gateway::wire::{Kind, Message, MESSAGE_LEN};

/// The UDP directory of dipc servers: servers announce themselves, clients
/// ask for one and get the next available server, round robin.
#[derive(Debug, Parser)]
#[command(name = "gateway", version)]
struct Cli {
    /// UDP port to serve (0: any free port, printed)
    #[arg(required_unless_present = "status")]
    port: Option<u16>,
    /// Address to listen on
    #[arg(long, default_value = "0.0.0.0")]
    bind: Ipv4Addr,
    /// Stay attached to the terminal, logging to stderr
    #[arg(long)]
    foreground: bool,
    /// Log file when detached (default /tmp/gateway-<port>.log)
    #[arg(long, value_name = "PATH")]
    log: Option<PathBuf>,
    /// Pid file when detached (default /tmp/gateway-<port>.pid)
    #[arg(long, value_name = "PATH")]
    pid_file: Option<PathBuf>,
    /// Seconds between TCP health checks of every registered server
    #[arg(long, default_value_t = 2.0, value_name = "SECS")]
    health_interval: f64,
    /// Seconds of silence after which a server that heartbeats expires
    #[arg(long, default_value_t = 6.0, value_name = "SECS")]
    ttl: f64,
    /// Print the status of the gateway at HOST:PORT and exit
    #[arg(long, value_name = "HOST:PORT")]
    status: Option<String>,
}

/// At most this many servers are registered (announcement floods).
const MAX_SERVERS: usize = 4096;
/// Server lines in a status reply: one datagram of a few KiB, so that a
/// 28-byte request cannot draw a reply many times its size.
const STATUS_SERVERS: usize = 64;
/// How long the loop waits for a datagram before its timed work.
const TICK: Duration = Duration::from_millis(200);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.status {
        Some(target) => print_status(target),
        None => serve(&cli),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gateway: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn seconds(name: &str, value: f64) -> anyhow::Result<Duration> {
    if !(value > 0.0 && value <= 3600.0) {
        bail!("{name} must be more than 0 and at most 3600 seconds, got {value}");
    }
    Ok(Duration::from_secs_f64(value))
}

fn serve(cli: &Cli) -> anyhow::Result<()> {
    let health_interval = seconds("--health-interval", cli.health_interval)?;
    let ttl = seconds("--ttl", cli.ttl)?;
    let port = cli.port.unwrap_or(0);
    let socket = UdpSocket::bind((cli.bind, port))
        .with_context(|| format!("cannot bind UDP {}:{port}", cli.bind))?;
    let local = socket.local_addr().context("the socket's address")?;
    socket
        .set_read_timeout(Some(TICK))
        .context("socket timeout")?;
    // A reply never waits for long: a full send buffer drops it instead.
    socket
        .set_write_timeout(Some(Duration::from_millis(100)))
        .context("socket timeout")?;
    // Absolute before detaching, which moves to /: a relative path means
    // where the user typed it.
    let path_or_default = |given: &Option<PathBuf>, ext: &str| -> anyhow::Result<PathBuf> {
        let path = given
            .clone()
            .unwrap_or_else(|| format!("/tmp/gateway-{}.{ext}", local.port()).into());
        std::path::absolute(&path).with_context(|| path.display().to_string())
    };
    let log_path = path_or_default(&cli.log, "log")?;
    let pid_file = path_or_default(&cli.pid_file, "pid")?;
    if cli.foreground {
        println!("gateway: serving UDP {local} (pid {})", std::process::id());
        let _ = io::stdout().flush();
    } else {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open log {}", log_path.display()))?;
        println!(
            "gateway: serving UDP {local}; log {}; pid in {}",
            log_path.display(),
            pid_file.display()
        );
        let _ = io::stdout().flush();
        let daemon = Daemonize::new()
            .pid_file(&pid_file)
            .working_directory("/")
            .stderr(log);
        match daemon.execute() {
            Outcome::Parent(Ok(_)) => return Ok(()),
            Outcome::Parent(Err(e)) => bail!("cannot detach: {e}"),
            Outcome::Child(Err(e)) => bail!("cannot detach: {e}"),
            Outcome::Child(Ok(_)) => {}
        }
    }
    init_log();
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).context("signal handler")?;
    }
    let registry = Arc::new(Mutex::new(Registry::new(ttl, MAX_SERVERS)));
    log::info!(
        "serving UDP {local}: health checks every {:.1} s, heartbeat TTL {:.1} s",
        health_interval.as_secs_f64(),
        ttl.as_secs_f64()
    );
    let health = {
        let registry = Arc::clone(&registry);
        let stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("health".into())
            .spawn(move || health_checks(&registry, health_interval, &stop))
            .context("starting the health-check thread")?
    };
    serve_datagrams(&socket, &registry, &stop);
    let _ = health.join();
    if !cli.foreground {
        let _ = std::fs::remove_file(&pid_file);
    }
    log::info!("stopped");
    Ok(())
}

fn init_log() {
    let mut builder = env_logger::Builder::new();
    builder
        .filter_level(log::LevelFilter::Info)
        .parse_env("GATEWAY_LOG")
        .format(|buf, record| {
            writeln!(
                buf,
                "{} gateway[{}] {}: {}",
                buf.timestamp_seconds(),
                std::process::id(),
                record.level(),
                record.args()
            )
        });
    let _ = builder.try_init();
}

fn lock(registry: &Mutex<Registry>) -> MutexGuard<'_, Registry> {
    // A panic elsewhere leaves the directory as consistent as each of its
    // methods does: usable.
    registry.lock().unwrap_or_else(|p| p.into_inner())
}

fn serve_datagrams(socket: &UdpSocket, registry: &Mutex<Registry>, stop: &AtomicBool) {
    // Room for more than a message, so that a long datagram is seen as long.
    let mut buf = [0u8; 512];
    let mut next_expiry = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => handle(socket, registry, &buf[..n], from),
            Err(e) if gateway::nothing_received(&e) => {}
            Err(e) => {
                log::error!("receiving: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        // Once a tick, not per datagram: a flood must not cost a walk of
        // every server each.
        let now = Instant::now();
        if now >= next_expiry {
            next_expiry = now + TICK;
            lock(registry).expire(now);
        }
    }
}

fn handle(socket: &UdpSocket, registry: &Mutex<Registry>, datagram: &[u8], from: SocketAddr) {
    let message = match Message::decode(datagram) {
        Ok(m) => m,
        Err(e) => {
            lock(registry).counters.bad_datagrams += 1;
            log::debug!("dropped a datagram from {from}: {e}");
            return;
        }
    };
    // A server names itself: the address field, or else the source.
    let id = || ServerId {
        address: message.address_field().unwrap_or(match from {
            SocketAddr::V4(v4) => *v4.ip(),
            SocketAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
        }),
        port: message.port,
    };
    let now = Instant::now();
    let reply = {
        let mut registry = lock(registry);
        match message.kind {
            Kind::Request => Some(
                match registry.pick() {
                    Some(s) => Message::new(Kind::Announce, Some(s.address), s.port),
                    None => Message::none_available(),
                }
                .encode()
                .to_vec(),
            ),
            Kind::Announce => {
                registry.announce(id(), now);
                None
            }
            Kind::Heartbeat => {
                registry.heartbeat(id(), now);
                None
            }
            Kind::Busy => {
                registry.set_busy(id(), true, now);
                None
            }
            Kind::Free => {
                registry.set_busy(id(), false, now);
                None
            }
            Kind::Withdraw => {
                registry.withdraw(id());
                None
            }
            Kind::Status => Some(registry.status(now, STATUS_SERVERS).into_bytes()),
        }
    };
    if let Some(reply) = reply {
        if let Err(e) = socket.send_to(&reply, from) {
            log::warn!("cannot answer {from}: {e}");
        }
    }
}

/// Every interval: a TCP connect (and close) to each registered server.
fn health_checks(registry: &Mutex<Registry>, interval: Duration, stop: &AtomicBool) {
    let timeout = interval.min(Duration::from_secs(1));
    let mut next = Instant::now() + interval;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now < next {
            std::thread::sleep((next - now).min(TICK));
            continue;
        }
        next = now + interval;
        let targets = lock(registry).check_targets();
        for id in targets {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let addr = SocketAddrV4::new(id.address, Message::tcp_port(id.port));
            let reachable = TcpStream::connect_timeout(&addr.into(), timeout).is_ok();
            lock(registry).checked(id, reachable);
        }
    }
}

/// `gateway --status HOST:PORT`: asks and prints the text reply.
fn print_status(target: &str) -> anyhow::Result<()> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).context("a UDP socket")?;
    socket
        .connect(target)
        .with_context(|| format!("cannot reach {target}"))?;
    socket.set_read_timeout(Some(Duration::from_secs(2)))?;
    let ask = Message::new(Kind::Status, None, 0).encode();
    let mut buf = vec![0u8; 65_536];
    for _ in 0..3 {
        socket
            .send(&ask)
            .with_context(|| format!("cannot send to {target}"))?;
        match socket.recv(&mut buf) {
            Ok(n) if n != MESSAGE_LEN => {
                print!("{}", String::from_utf8_lossy(&buf[..n]));
                return Ok(());
            }
            Ok(_) => bail!("{target} answered with a message, not a status: not a dipc gateway?"),
            Err(e) if gateway::nothing_received(&e) => {}
            Err(e) => bail!("no status from {target}: {e} (is the gateway running?)"),
        }
    }
    bail!("no status from {target} within 6 s (is the gateway running on that port?)")
}
