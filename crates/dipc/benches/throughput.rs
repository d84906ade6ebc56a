//! `make bench`: request throughput and latency of a real daemon over
//! loopback, for reads and writes of 100-byte mailboxes, at 1 and 8
//! connections, each connection sending one request and waiting for its
//! reply (no pipelining); then fairness over TCP: 50 clients reading one
//! mailbox flat out beside one writing it flat out, and 8 writers beside one
//! reader, each client with its own worker. The daemon is started on a free
//! port and stopped with dipcrm, as a user would.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

const RUN: Duration = Duration::from_secs(3);

struct Daemon {
    port: u16,
    dipcrm: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start(mailboxes: u32, workers: usize) -> Daemon {
        let dipc = PathBuf::from(env!("CARGO_BIN_EXE_dipc"));
        let dipcrm = dipc.with_file_name("dipcrm");
        let dir = tempfile::tempdir().expect("temp dir");
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            let status = Command::new(&dipc)
                .args([&mailboxes.to_string(), "8", &port.to_string(), "2"])
                .args(["--workers", &workers.to_string()])
                .arg("--log")
                .arg(dir.path().join("dipc.log"))
                .arg("--pid-file")
                .arg(dir.path().join("dipc.pid"))
                .status()
                .expect("run dipc");
            if status.success() {
                return Daemon {
                    port,
                    dipcrm,
                    _dir: dir,
                };
            }
        }
        panic!("could not start dipc");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new(&self.dipcrm)
            .arg(self.port.to_string())
            .output();
    }
}

/// Reads one reply: a line, and for `OK <len> bytes from ...` the content.
fn read_reply(reader: &mut BufReader<TcpStream>, line: &mut String) {
    line.clear();
    reader.read_line(line).expect("reply line");
    if line.contains(" bytes from mailbox ") {
        let len: usize = line
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .expect("length");
        let mut content = vec![0u8; len + 1];
        reader.read_exact(&mut content).expect("content");
    }
    assert!(line.starts_with("OK"), "unexpected reply {line:?}");
}

fn client(port: u16, request: Vec<u8>, until: Instant) -> Histogram<u64> {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    let mut line = String::new();
    while Instant::now() < until {
        let start = Instant::now();
        writer.write_all(&request).expect("send");
        read_reply(&mut reader, &mut line);
        hist.record(start.elapsed().as_micros() as u64)
            .expect("record");
    }
    let _ = writer.write_all(b"q\n");
    hist
}

fn measure(port: u16, conns: usize, op: &str) -> (f64, Histogram<u64>) {
    let body = "x".repeat(100);
    let until = Instant::now() + RUN;
    let threads: Vec<_> = (0..conns)
        .map(|c| {
            let mailbox = 1 + c % 8;
            let request = match op {
                "r" => format!("r {mailbox}\n"),
                _ => format!("w {mailbox} {body}\n"),
            }
            .into_bytes();
            std::thread::spawn(move || client(port, request, until))
        })
        .collect();
    let mut all = Histogram::<u64>::new(3).expect("histogram");
    for t in threads {
        all.add(t.join().expect("client")).expect("merge");
    }
    (all.len() as f64 / RUN.as_secs_f64(), all)
}

/// `crowd` connections send `crowd_request` and one probe connection sends
/// `probe_request`, all flat out on the same mailbox: the latencies of each.
fn mixed(
    port: u16,
    crowd: usize,
    crowd_request: &str,
    probe_request: &str,
) -> (Histogram<u64>, Histogram<u64>) {
    let until = Instant::now() + RUN;
    let crowd_threads: Vec<_> = (0..crowd)
        .map(|_| {
            let request = crowd_request.as_bytes().to_vec();
            std::thread::spawn(move || client(port, request, until))
        })
        .collect();
    let request = probe_request.as_bytes().to_vec();
    let probe = std::thread::spawn(move || client(port, request, until));
    let mut all = Histogram::<u64>::new(3).expect("histogram");
    for t in crowd_threads {
        all.add(t.join().expect("crowd client")).expect("merge");
    }
    (all, probe.join().expect("probe client"))
}

fn fairness() {
    const READERS: usize = 50;
    const WRITERS: usize = 8;
    let daemon = Daemon::start(1, READERS + 2);
    let write = format!("w 1 {}\n", "x".repeat(100));
    println!();
    println!(
        "fairness over TCP: one mailbox, {} workers, every client flat out, {RUN:?} per row",
        READERS + 2
    );
    println!("| scenario | kind | requests | p50 us | p99 us | max us |");
    println!("|---|---|---|---|---|---|");
    let row = |scenario: &str, kind: &str, h: &Histogram<u64>| {
        println!(
            "| {scenario} | {kind} | {} | {} | {} | {} |",
            h.len(),
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.max()
        )
    };
    let (readers, writer) = mixed(daemon.port, READERS, "r 1\n", &write);
    let scenario = format!("{READERS} readers + 1 writer");
    row(&scenario, "read", &readers);
    row(&scenario, "write", &writer);
    let (writers, reader) = mixed(daemon.port, WRITERS, &write, "r 1\n");
    let scenario = format!("{WRITERS} writers + 1 reader");
    row(&scenario, "write", &writers);
    row(&scenario, "read", &reader);
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` would too: only
    // run when asked for a benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let daemon = Daemon::start(8, 8);
    // Every mailbox holds 100 bytes, as in the writes.
    let mut setup = TcpStream::connect(("127.0.0.1", daemon.port)).expect("connect");
    for m in 1..=8 {
        writeln!(setup, "w {m} {}", "x".repeat(100)).expect("setup write");
    }
    writeln!(setup, "q").expect("quit");
    let mut sink = Vec::new();
    let _ = setup.read_to_end(&mut sink);

    println!("dipc, 8 workers, 100-byte mailboxes, {RUN:?} per row, loopback");
    println!("| request | conns | req/s | p50 us | p99 us | max us |");
    println!("|---|---|---|---|---|---|");
    for op in ["r", "w"] {
        for conns in [1, 8] {
            let (rate, h) = measure(daemon.port, conns, op);
            println!(
                "| {op} | {conns} | {rate:.0} | {} | {} | {} |",
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.99),
                h.max()
            );
        }
    }
    fairness();
}
