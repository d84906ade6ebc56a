//! `make bench`: the server models side by side on the same daemon code.
//! For each of `--model event`, `prefork`, `fork` and `thread`: connections per
//! second when every client connects, sends one read, and the server closes
//! after the reply (`r 1` then `q` in one write); and requests per second
//! on 8 long connections, each sending a read and waiting for the reply.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use support::{client, Daemon};

const RUN: Duration = Duration::from_secs(3);
/// Clients opening connections at once in the connect-request-close rows.
const CONNECTING_CLIENTS: usize = 4;
const LONG_CONNECTIONS: usize = 8;

/// One client opening connection after connection until `until`: the time
/// from connect to the server's close, in microseconds.
fn connect_request_close(port: u16, until: Instant) -> Histogram<u64> {
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    let mut reply = Vec::with_capacity(256);
    while Instant::now() < until {
        let start = Instant::now();
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        // The server closes first, so TIME_WAIT stays on its side and the
        // client's ephemeral ports are not used up.
        stream.write_all(b"r 1\nq\n").expect("send");
        reply.clear();
        stream.read_to_end(&mut reply).expect("reply");
        assert!(reply.ends_with(b"Goodbye"), "reply {reply:?}");
        hist.record(start.elapsed().as_micros() as u64)
            .expect("record");
    }
    hist
}

fn run_clients<F>(n: usize, one: F) -> Histogram<u64>
where
    F: Fn() -> Histogram<u64> + Send + Sync + Copy + 'static,
{
    let threads: Vec<_> = (0..n).map(|_| std::thread::spawn(one)).collect();
    let mut all = Histogram::<u64>::new(3).expect("histogram");
    for t in threads {
        all.add(t.join().expect("client")).expect("merge");
    }
    all
}

fn main() {
    if !support::asked_to_run() {
        return;
    }
    println!();
    println!(
        "server models: 100-byte mailbox reads, {RUN:?} per figure, loopback; \
         {CONNECTING_CLIENTS} clients connecting, {LONG_CONNECTIONS} long connections"
    );
    println!("| model | connections/s | p50 us | p99 us | requests/s (long) | p50 us | p99 us |");
    println!("|---|---|---|---|---|---|---|");
    for model in ["event", "prefork", "fork", "thread"] {
        let daemon = Daemon::start(1, &["--model", model]);
        let port = daemon.port;
        let mut setup = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        setup
            .write_all(format!("w 1 {}\nq\n", "x".repeat(100)).as_bytes())
            .expect("setup write");
        let _ = setup.read_to_end(&mut Vec::new());

        let until = Instant::now() + RUN;
        let conns = run_clients(CONNECTING_CLIENTS, move || {
            connect_request_close(port, until)
        });
        let until = Instant::now() + RUN;
        let long = run_clients(LONG_CONNECTIONS, move || {
            client(port, b"r 1\n".to_vec(), until)
        });
        let per_second = |h: &Histogram<u64>| h.len() as f64 / RUN.as_secs_f64();
        println!(
            "| {model} | {:.0} | {} | {} | {:.0} | {} | {} |",
            per_second(&conns),
            conns.value_at_quantile(0.5),
            conns.value_at_quantile(0.99),
            per_second(&long),
            long.value_at_quantile(0.5),
            long.value_at_quantile(0.99),
        );
    }
}
