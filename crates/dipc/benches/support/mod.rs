//! A daemon for the benchmarks: started on a free port in a scratch
//! directory, stopped with dipcrm when dropped, as a user would.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use hdrhistogram::Histogram;

pub struct Daemon {
    pub port: u16,
    dipcrm: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// `dipc <mailboxes> 8 <port> 2 <extra>`: 8 KiB mailboxes, 2 KiB packets.
    pub fn start(mailboxes: u32, extra: &[&str]) -> Daemon {
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
                .args(extra)
                .arg("--log")
                .arg(dir.path().join("dipc.log"))
                .arg("--pid-file")
                .arg(dir.path().join("dipc.pid"))
                .arg("--db")
                .arg(dir.path().join("database.txt"))
                .stdout(std::process::Stdio::null())
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

/// `cargo bench` passes --bench; `cargo test --benches` would run the
/// harness-less benchmarks too: they only run when asked for a benchmark.
pub fn asked_to_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// Reads one reply: a line, and for `OK <len> bytes from ...` the content.
pub fn read_reply(reader: &mut BufReader<TcpStream>, line: &mut String) {
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

/// One connection sending `request` and waiting for each reply until
/// `until`; the latencies, in microseconds.
pub fn client(port: u16, request: Vec<u8>, until: Instant) -> Histogram<u64> {
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
