//! `client bench --protocol redis|memcached` against the real servers,
//! when they are installed (`redis-server`, `memcached` on PATH); skipped
//! with a note otherwise. The parser tests cover both protocols regardless.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{client, eventually, free_port, on_path, wait_for};

/// A server process, killed and reaped when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    /// Starts `program` on a free port and makes sure that it is the one
    /// answering there: `probe` is a request, `greeting` how its reply
    /// starts. The two servers' tests run in parallel, and a port free a
    /// moment ago may be the other one's by the time a server binds it: that
    /// server exits, and connecting alone would find the other one.
    fn start(
        program: &PathBuf,
        args: impl Fn(u16) -> Vec<String>,
        probe: &[u8],
        greeting: &str,
    ) -> Server {
        for _ in 0..5 {
            let port = free_port();
            let child = Command::new(program)
                .args(args(port))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
            let mut server = Server { child, port };
            let answered = eventually(Duration::from_secs(10), || {
                TcpStream::connect(server.addr()).is_ok()
                    || matches!(server.child.try_wait(), Ok(Some(_)))
            });
            assert!(
                answered,
                "{} is not listening on {}",
                program.display(),
                server.addr()
            );
            let alive = matches!(server.child.try_wait(), Ok(None));
            if alive && try_ask(&server.addr(), probe).is_some_and(|r| r.starts_with(greeting)) {
                return server;
            }
            // Another server has the port: drop (kill, reap) and try again.
        }
        panic!("{} found no port of its own in 5 tries", program.display());
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = wait_for(&mut self.child, Duration::from_secs(10));
    }
}

/// Sends one request and returns the first line of the reply.
fn ask(addr: &str, request: &[u8]) -> String {
    try_ask(addr, request).unwrap_or_else(|| panic!("no reply from {addr}"))
}

/// [`ask`], None on any failure to connect, send or read.
fn try_ask(addr: &str, request: &[u8]) -> Option<String> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(request).ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    Some(line)
}

fn bench_mixed(addr: &str, protocol: &str) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("temporary directory");
    let out = client(
        dir.path(),
        &[
            "bench",
            "-s",
            addr,
            "--protocol",
            protocol,
            "-n",
            "3000",
            "-c",
            "4",
            "-P",
            "8",
            "--mix",
            "read:60,put:30,del:10",
            "--spread",
            "50",
            "--value-size",
            "300",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", out.describe());
    let report = out.json();
    assert_eq!(report["requests"], 3000, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    report
}

#[test]
fn redis_server_if_installed() {
    let Some(program) = on_path("redis-server") else {
        eprintln!("note: redis-server is not on PATH; the live redis test is skipped");
        return;
    };
    let server = Server::start(
        &program,
        |port| {
            [
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ]
            .map(String::from)
            .to_vec()
        },
        b"*1\r\n$4\r\nPING\r\n",
        "+PONG",
    );
    bench_mixed(&server.addr(), "redis");
    // The prefill and the puts stored 300-byte values under key:<i>.
    let reply = ask(&server.addr(), b"*2\r\n$6\r\nSTRLEN\r\n$6\r\nkey:49\r\n");
    assert!(reply == ":300\r\n" || reply == ":0\r\n", "{reply:?}");
    let reply = ask(&server.addr(), b"*1\r\n$6\r\nDBSIZE\r\n");
    let keys: u64 = reply
        .trim()
        .trim_start_matches(':')
        .parse()
        .expect("DBSIZE");
    assert!((1..=50).contains(&keys), "{reply:?}");
}

#[test]
fn memcached_if_installed() {
    let Some(program) = on_path("memcached") else {
        eprintln!("note: memcached is not on PATH; the live memcached test is skipped");
        return;
    };
    let server = Server::start(
        &program,
        |port| {
            let mut args = vec!["-p".to_owned(), port.to_string()];
            args.extend(["-U", "0", "-l", "127.0.0.1", "-m", "16"].map(String::from));
            // memcached refuses to run as root without a user to switch to.
            if nix::unistd::geteuid().is_root() {
                args.extend(["-u", "root"].map(String::from));
            }
            args
        },
        b"version\r\n",
        "VERSION",
    );
    bench_mixed(&server.addr(), "memcached");
    let reply = ask(&server.addr(), b"stats\r\n");
    assert!(reply.starts_with("STAT "), "{reply:?}");
}
