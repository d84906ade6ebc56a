//! The gateway end to end: the real `gateway` binary on a free UDP port,
//! real dipc daemons registering with `--gateway`, and a client and a server
//! in C written from seed 000's text alone, compiled here with cc.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use common::*;
use gateway::wire::{Kind, Message, MESSAGE_LEN};

const HEALTH_INTERVAL: &str = "0.3";
const TTL: &str = "1.5";

/// A gateway in the foreground for one test; dropping it stops it.
struct Gateway {
    port: u16,
    child: Child,
}

impl Gateway {
    fn start() -> Gateway {
        let bin = dipc_bin().with_file_name("gateway");
        assert!(
            bin.exists(),
            "{} is missing: cargo build --workspace",
            bin.display()
        );
        let child = Command::new(&bin)
            .args(["0", "--foreground", "--bind", "127.0.0.1"])
            .args(["--health-interval", HEALTH_INTERVAL, "--ttl", TTL])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the gateway");
        // In its guard before anything can fail.
        let mut gateway = Gateway { port: 0, child };
        let mut line = String::new();
        let stdout = gateway.child.stdout.take().expect("stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("serving line");
        // "gateway: serving UDP 127.0.0.1:PORT (pid N)"
        gateway.port = line
            .split_whitespace()
            .nth(3)
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        gateway
    }

    fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn send(&self, bytes: &[u8]) -> UdpSocket {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("udp");
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        socket
            .send_to(bytes, ("127.0.0.1", self.port))
            .expect("send");
        socket
    }

    /// Message A, and the server of message B (None: type 0).
    fn ask(&self) -> Option<(Ipv4Addr, i32)> {
        let socket = self.send(&Message::new(Kind::Request, None, 0).encode());
        let mut buf = [0u8; 64];
        let n = socket.recv(&mut buf).expect("the gateway's answer");
        assert_eq!(n, MESSAGE_LEN, "message B is the whole struct");
        let m = Message::decode(&buf[..n]).expect("message B");
        match m.kind {
            Kind::Announce => Some((m.address_field().expect("an address"), m.port)),
            Kind::Request => None,
            other => panic!("unexpected reply type {other:?}"),
        }
    }

    /// The status text; asked again when a datagram is lost (a flood fills
    /// the gateway's receive buffer, and UDP drops what does not fit).
    fn status(&self) -> String {
        for _ in 0..10 {
            let socket = self.send(&Message::new(Kind::Status, None, 0).encode());
            socket
                .set_read_timeout(Some(Duration::from_millis(500)))
                .expect("timeout");
            let mut buf = vec![0u8; 65_536];
            if let Ok(n) = socket.recv(&mut buf) {
                return String::from_utf8_lossy(&buf[..n]).into_owned();
            }
        }
        panic!("no status from the gateway in 10 tries");
    }

    /// The state of the server on TCP port `port`, per the status.
    fn state_of(&self, port: u16) -> Option<String> {
        let status = self.status();
        let prefix = format!(":{port} state=");
        status.lines().find_map(|l| {
            let at = l.find(&prefix)?;
            let rest = &l[at + prefix.len()..];
            Some(rest.split(' ').next().unwrap_or("").to_string())
        })
    }

    fn wait_state(&self, port: u16, state: &str) {
        assert!(
            wait_until(Duration::from_secs(10), || self.state_of(port).as_deref()
                == Some(state)),
            "server {port} never became {state}:\n{}",
            self.status()
        );
    }

    fn counter(&self, name: &str) -> u64 {
        let status = self.status();
        let first = status.lines().next().unwrap_or("");
        first
            .split(' ')
            .find_map(|f| f.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {first:?}"))
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // SAFETY-free: a plain signal to our own child.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        if !wait_until(Duration::from_secs(3), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        }) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn registered(gw: &Gateway, extra: &[&str]) -> Daemon {
    let target = gw.target();
    let mut args = vec!["--keys", "16", "--gateway", target.as_str()];
    args.extend_from_slice(extra);
    let d = Daemon::start(2, 1, 1, &args);
    gw.wait_state(d.port, "available");
    d
}

#[test]
fn round_robin_across_three_daemons() {
    let gw = Gateway::start();
    assert_eq!(gw.ask(), None, "no server yet: type 0");
    let daemons: Vec<Daemon> = (0..3).map(|_| registered(&gw, &[])).collect();
    let ports: Vec<i32> = daemons.iter().map(|d| i32::from(d.port)).collect();
    let handed: Vec<i32> = (0..6).map(|_| gw.ask().expect("a server").1).collect();
    assert_eq!(
        handed,
        [ports.clone(), ports.clone()].concat(),
        "announcement order, twice"
    );
    // Every address handed out serves.
    let (address, port) = gw.ask().expect("a server");
    let mut tcp = TcpStream::connect((address, port as u16)).expect("connect to it");
    tcp.write_all(b"stat\n").expect("send");
    let mut reply = [0u8; 2];
    tcp.read_exact(&mut reply).expect("reply");
    assert_eq!(&reply, b"OK");
    // A daemon that stops withdraws at once.
    let mut daemons = daemons;
    let first = daemons.remove(0);
    let first_port = first.port;
    first.stop();
    assert!(
        wait_until(Duration::from_secs(5), || gw.state_of(first_port).is_none()),
        "still listed after its withdrawal:\n{}",
        gw.status()
    );
    let handed: Vec<i32> = (0..4).map(|_| gw.ask().expect("a server").1).collect();
    assert!(!handed.contains(&i32::from(first_port)), "{handed:?}");
}

#[test]
fn a_busy_daemon_is_skipped_until_it_is_free() {
    let gw = Gateway::start();
    let busy = registered(&gw, &["--model", "prefork", "--workers", "1"]);
    let other = registered(&gw, &[]);
    // Its only worker serves this client: no worker for another.
    let held = busy.client();
    gw.wait_state(busy.port, "busy");
    for _ in 0..4 {
        assert_eq!(gw.ask().map(|s| s.1), Some(i32::from(other.port)));
    }
    drop(held);
    gw.wait_state(busy.port, "available");
    let handed: Vec<i32> = (0..4).map(|_| gw.ask().expect("a server").1).collect();
    assert!(handed.contains(&i32::from(busy.port)), "{handed:?}");
}

#[test]
fn a_sigkilled_daemon_stops_being_handed_out() {
    let gw = Gateway::start();
    let killed = registered(&gw, &[]);
    let alive = registered(&gw, &[]);
    killed.sigkill_everything();
    // Its port refuses at the next health check, and its heartbeats stop.
    gw.wait_state(killed.port, "down");
    for _ in 0..4 {
        assert_eq!(gw.ask().map(|s| s.1), Some(i32::from(alive.port)));
    }
    drop(killed);
    drop(alive);
}

#[test]
fn garbage_datagrams_are_counted_and_dropped() {
    let gw = Gateway::start();
    let d = registered(&gw, &[]);
    let mut unknown = Message::new(Kind::Request, None, 0).encode();
    unknown[..4].copy_from_slice(&77i32.to_ne_bytes());
    let mut no_nul = Message::new(Kind::Announce, None, 4242).encode();
    no_nul[4..24].fill(b'z');
    let garbage: Vec<Vec<u8>> = vec![
        vec![],
        vec![1, 2, 3],
        vec![0; 27],
        vec![0; 29],
        vec![0xff; 400],
        unknown.to_vec(),
        no_nul.to_vec(),
    ];
    for g in &garbage {
        gw.send(g);
    }
    // Each one counted, before the flood could account for any.
    let garbage_count = garbage.len() as u64;
    assert!(
        wait_until(Duration::from_secs(5), || gw.counter("bad_datagrams")
            == garbage_count),
        "{}",
        gw.status()
    );
    // A flood from one socket, as fast as it goes: what the kernel does not
    // drop is counted too.
    let flood = UdpSocket::bind("127.0.0.1:0").expect("udp");
    for i in 0..20_000u32 {
        let _ = flood.send_to(&i.to_ne_bytes(), ("127.0.0.1", gw.port));
    }
    assert!(
        wait_until(Duration::from_secs(5), || gw.counter("bad_datagrams")
            > garbage_count),
        "{}",
        gw.status()
    );
    assert!(
        gw.status().lines().all(|l| !l.contains(":4242 ")),
        "{}",
        gw.status()
    );
    assert_eq!(
        gw.ask().map(|s| s.1),
        Some(i32::from(d.port)),
        "still answering"
    );
}

/// Runs `program <args>` with `keyboard` as its input (killed if it
/// outlives CMD_TIMEOUT).
fn run_typed(program: &Path, args: &[&str], keyboard: &str, dir: &Path) -> RunOutput {
    let input = dir.join(format!("keyboard-{}", free_port()));
    std::fs::write(&input, keyboard).expect("write the keyboard's input");
    try_run_with_stdin(program, args, dir, CMD_TIMEOUT, Some(&input))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn rust_client() -> PathBuf {
    dipc_bin().with_file_name("client")
}

/// Compiles one of the C programs of tests/gateway_c into `dir`.
fn compile(name: &str, dir: &Path) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/gateway_c")
        .join(format!("{name}.c"));
    let out = dir.join(name);
    let status = Command::new("cc")
        .arg("-o")
        .arg(&out)
        .arg(&source)
        .status()
        .expect("run cc");
    assert!(status.success(), "cc {} failed", source.display());
    out
}

/// A C server's process, killed when dropped.
struct CServer {
    child: Child,
    stdout: Option<BufReader<ChildStdout>>,
}

impl CServer {
    fn start(bin: &Path, gateway_port: u16, port: u16) -> CServer {
        let child = Command::new(bin)
            .args([gateway_port.to_string(), port.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the C server");
        // In its guard before anything can fail; the pipe stays open, or the
        // server's printf would die of SIGPIPE.
        let mut server = CServer {
            child,
            stdout: None,
        };
        let mut stdout = BufReader::new(server.child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("its first line");
        server.stdout = Some(stdout);
        assert_eq!(line.trim(), format!("announced {port}"));
        server
    }
}

impl Drop for CServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn c_programs_written_from_the_seed_interoperate() {
    let dir = temp_dir();
    let c_client = compile("client", dir.path());
    let c_server = compile("server", dir.path());
    let gw = Gateway::start();

    // The C server registers (zeros in its address field) and is handed out;
    // it echoes in upper case, NUL included.
    let port = free_port();
    let server = CServer::start(&c_server, gw.port, port);
    gw.wait_state(port, "available");
    let (address, handed) = gw.ask().expect("the C server");
    assert_eq!((address, handed), (Ipv4Addr::LOCALHOST, i32::from(port)));
    let mut tcp = TcpStream::connect((address, handed as u16)).expect("connect");
    tcp.write_all(b"hello gateway\0").expect("send");
    let mut reply = [0u8; 14];
    tcp.read_exact(&mut reply).expect("reply");
    assert_eq!(&reply, b"HELLO GATEWAY\0");
    drop(tcp);

    // Killed without a word (it never heartbeats), it is found down by the
    // health check; started again, it is handed out again.
    drop(server);
    gw.wait_state(port, "down");
    assert_eq!(gw.ask(), None, "no server available: type 0");
    let out = run_typed(&rust_client(), &["--gateway", &gw.target()], "", dir.path());
    assert_eq!(out.code(), Some(4), "no server reached: {}", out.describe());
    assert!(
        out.stderr.contains("no server available"),
        "{}",
        out.describe()
    );
    let server = CServer::start(&c_server, gw.port, port);
    gw.wait_state(port, "available");
    assert_eq!(gw.ask().map(|s| s.1), Some(i32::from(port)));

    // The Rust client, the gateway's address and port typed on the
    // keyboard as the seed's client asks for them, is handed the C server.
    let keyboard = format!("127.0.0.1\n{}\nhello from rust\n", gw.port);
    let out = run_typed(&rust_client(), &[], &keyboard, dir.path());
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    let handed = format!("handed out server 127.0.0.1:{port}");
    assert!(out.stdout.contains(&handed), "{}", out.describe());
    assert!(
        out.stdout.contains("HELLO FROM RUST\n"),
        "{}",
        out.describe()
    );

    // A dipc daemon handed to the C client (the only server available once
    // the C server is gone again), which talks to it.
    let d = registered(&gw, &[]);
    drop(server);
    gw.wait_state(port, "down");
    let input = format!("127.0.0.1 {}\nput 7 from C\nget 7\n", gw.port);
    let out = run_typed(&c_client, &[], &input, dir.path());
    let text = &out.stdout;
    assert!(out.status.success(), "C client failed:\n{}", out.describe());
    assert!(
        text.starts_with(&format!("server 127.0.0.1 {}\n", d.port)),
        "{text}"
    );
    assert!(
        text.contains("reply OK\n") && text.contains("reply from C\n"),
        "{text}"
    );
}

/// Sends `frame` and reads back exactly as many bytes, as lab clients do,
/// then checks that nothing more follows.
fn echoed(tcp: &mut Client, frame: &[u8]) -> Vec<u8> {
    tcp.send(frame);
    let reply = tcp.read_bytes(frame.len());
    tcp.assert_silent(Duration::from_millis(200));
    reply
}

/// A lab frame: `text`, zero-padded to `len` bytes.
fn frame(text: &[u8], len: usize) -> Vec<u8> {
    let mut f = text.to_vec();
    f.resize(len, 0);
    f
}

#[test]
fn the_upper_case_echo_server_through_the_gateway() {
    let dir = temp_dir();
    let c_client = compile("client", dir.path());
    let gw = Gateway::start();
    let target = gw.target();
    let echo = Daemon::start_echo_server(&["--workers", "1", "--gateway", &target]);
    gw.wait_state(echo.port, "available");
    let (address, port) = gw.ask().expect("the echo server");
    assert_eq!((address, port), (Ipv4Addr::LOCALHOST, i32::from(echo.port)));

    // Every byte back, letters upper-cased, nothing added or dropped: a
    // string with its NUL, and fixed 100- and 108-byte zero-padded frames.
    let mut tcp = Client::connect(port as u16);
    assert_eq!(
        echoed(&mut tcp, b"hello, gateway 1\0"),
        b"HELLO, GATEWAY 1\0"
    );
    let mixed = b"Mixed cAsE: caf\xc3\xa9 [x]\r\n";
    let mut upper = b"MIXED CASE: CAF\xc3\xa9 [X]\r\n".to_vec();
    assert_eq!(echoed(&mut tcp, &frame(mixed, 100)), frame(&upper, 100));
    upper.resize(108, 0);
    assert_eq!(echoed(&mut tcp, &frame(mixed, 108)), upper);
    // It prints what it receives.
    echo.assert_logged(": hello, gateway 1");
    echo.assert_logged(": Mixed cAsE: caf\u{e9} [x]");

    // Its one worker is taken: the gateway hears busy, then free.
    gw.wait_state(echo.port, "busy");
    assert_eq!(gw.ask(), None, "no server available while it is busy");
    drop(tcp);
    gw.wait_state(echo.port, "available");

    // The lab's C client and the Rust client, both through the gateway.
    let input = format!("127.0.0.1 {}\nfrom the c client\n", gw.port);
    let out = run_typed(&c_client, &[], &input, dir.path());
    assert!(out.status.success(), "C client failed:\n{}", out.describe());
    assert!(
        out.stdout.contains("reply FROM THE C CLIENT\n"),
        "{}",
        out.describe()
    );
    let out = run_typed(
        &rust_client(),
        &["--gateway", &target],
        "from rust\n",
        dir.path(),
    );
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert!(out.stdout.contains("FROM RUST"), "{}", out.describe());

    // dipcrm stops it like dipc, and it withdraws from the gateway.
    let echo_port = echo.port;
    echo.stop();
    assert!(
        wait_until(Duration::from_secs(5), || gw.state_of(echo_port).is_none()),
        "still listed after its withdrawal:\n{}",
        gw.status()
    );
}

/// A detached gateway, known by its pid file's name, unique to the test's
/// directory; dropping it stops it: SIGTERM through the pid file, then
/// SIGKILL for any process whose command line still names the file.
struct DetachedGateway {
    pid_file: PathBuf,
}

impl DetachedGateway {
    fn name(&self) -> String {
        self.pid_file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

impl Drop for DetachedGateway {
    fn drop(&mut self) {
        let ours = processes_mentioning(&self.name());
        if let Some(pid) = std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
            .filter(|pid| ours.iter().any(|p| p.pid == *pid))
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
            wait_until(Duration::from_secs(5), || !self.pid_file.exists());
        }
        sweep_marker(&self.name());
    }
}

#[test]
fn a_detached_gateway_writes_a_relative_pid_file_where_it_was_typed() {
    let dir = temp_dir();
    let bin = dipc_bin().with_file_name("gateway");
    let unique = dir
        .path()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let pid_name = format!("gw-{unique}.pid");
    let gateway = DetachedGateway {
        pid_file: dir.path().join(&pid_name),
    };
    let status = Command::new(&bin)
        .current_dir(dir.path())
        .args(["0", "--bind", "127.0.0.1", "--pid-file", &pid_name])
        .args(["--log", "gw.log"])
        .stdout(Stdio::null())
        .status()
        .expect("run the gateway");
    assert!(status.success(), "the gateway did not start: {status}");
    assert!(
        wait_until(Duration::from_secs(5), || gateway.pid_file.exists()),
        "no pid file in {} (the directory it was typed in)",
        dir.path().display()
    );
    assert!(
        dir.path().join("gw.log").exists(),
        "no log where it was typed"
    );
    drop(gateway);
    assert!(
        !dir.path().join(&pid_name).exists(),
        "the stopped gateway left its pid file"
    );
}
