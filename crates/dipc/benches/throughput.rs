//! `make bench`: request throughput and latency of a real daemon over
//! loopback, for reads and writes of 100-byte mailboxes, at 1 and 8
//! connections, each connection sending one request and waiting for its
//! reply (no pipelining); then fairness over TCP: 50 clients reading one
//! mailbox flat out beside one writing it flat out, and 8 writers beside one
//! reader, each client with its own worker. The daemon is started on a free
//! port and stopped with dipcrm, as a user would.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use support::{client, Daemon};

const RUN: Duration = Duration::from_secs(3);

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
    let daemon = Daemon::start(
        1,
        &[
            "--model",
            "prefork",
            "--workers",
            &(READERS + 2).to_string(),
        ],
    );
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
    if !support::asked_to_run() {
        return;
    }
    let daemon = Daemon::start(8, &["--model", "prefork", "--workers", "8"]);
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
