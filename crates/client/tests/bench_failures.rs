//! `client bench` against servers that fail it: none listening, one that
//! hangs up mid-run, one that never answers, one that answers garbage.
//! Each run must end with a clear message and a non-zero status.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

use common::{client, free_port};

#[test]
fn a_closed_port_is_connection_refused() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let addr = format!("127.0.0.1:{}", free_port());
    let out = client(dir.path(), &["bench", "-s", &addr, "-n", "10"]);
    assert!(!out.status.success(), "{}", out.describe());
    assert!(
        out.stderr.contains(&format!(
            "cannot connect to {addr}: connection refused (is the server running?)"
        )),
        "{}",
        out.describe()
    );
    assert!(out.stdout.is_empty(), "{}", out.describe());
}

/// A server on a thread of the test: it accepts one connection and hands
/// it to `behave`.
fn one_shot_server(behave: impl FnOnce(std::net::TcpStream) + Send + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    thread::spawn(move || {
        if let Ok((stream, _)) = listener.accept() {
            behave(stream);
        }
    });
    addr
}

#[test]
fn a_server_that_hangs_up_mid_run_ends_the_run() {
    let addr = one_shot_server(|mut stream| {
        // Answer one read, then hang up.
        let mut buf = [0u8; 256];
        let _ = stream.read(&mut buf);
        let _ = stream.write_all(b"OK 1 bytes from mailbox 1, version 1\nx\n");
        thread::sleep(Duration::from_millis(50));
    });
    let dir = tempfile::tempdir().expect("temporary directory");
    let out = client(
        dir.path(),
        &["bench", "-s", &addr, "-n", "1000", "--no-prefill"],
    );
    assert!(!out.status.success(), "{}", out.describe());
    assert!(out.stderr.contains("mid-run"), "{}", out.describe());
    assert!(
        out.stderr.contains("closed") || out.stderr.contains("reset"),
        "{}",
        out.describe()
    );
}

#[test]
fn a_server_that_never_answers_ends_the_run_after_10_s() {
    let addr = one_shot_server(|mut stream| {
        // Read and say nothing until the client gives up.
        let mut buf = [0u8; 256];
        while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
    });
    let dir = tempfile::tempdir().expect("temporary directory");
    let started = Instant::now();
    let out = client(
        dir.path(),
        &["bench", "-s", &addr, "-n", "10", "--no-prefill"],
    );
    assert!(!out.status.success(), "{}", out.describe());
    assert!(out.stderr.contains("no reply from"), "{}", out.describe());
    assert!(out.stderr.contains("for 10 s"), "{}", out.describe());
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_read_reply_with_an_unreadable_length_is_a_protocol_error() {
    let addr = one_shot_server(|mut stream| {
        let mut buf = [0u8; 256];
        let _ = stream.read(&mut buf);
        let _ = stream.write_all(b"OK lots of bytes from mailbox 1\n");
        thread::sleep(Duration::from_secs(1));
    });
    let dir = tempfile::tempdir().expect("temporary directory");
    let out = client(
        dir.path(),
        &["bench", "-s", &addr, "-n", "10", "--no-prefill"],
    );
    assert!(!out.status.success(), "{}", out.describe());
    assert!(out.stderr.contains("protocol error"), "{}", out.describe());
    assert!(
        out.stderr.contains("cannot parse the length"),
        "{}",
        out.describe()
    );
    assert!(
        out.stderr.contains("OK lots of bytes"),
        "{}",
        out.describe()
    );
}

#[test]
fn bad_options_are_refused_before_any_connection() {
    let dir = tempfile::tempdir().expect("temporary directory");
    for args in [
        &["bench", "--mix", "read:80,jump:20"][..],
        &["bench", "--protocol", "http"],
        &["bench", "-c", "0"],
        &["bench", "-P", "0"],
        &["bench", "-d", "-1"],
        &["bench", "-n", "0"],
        &["ceiling"],
    ] {
        let out = client(dir.path(), args);
        assert_eq!(out.status.code(), Some(2), "{}", out.describe());
        assert!(!out.stderr.is_empty(), "{}", out.describe());
    }
}
