//! Clients that do not play along: silent ones, slow ones (slowloris), and
//! ones that wait; every model closes the first two after `--idle-timeout`
//! and goes on serving.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const MODELS: [&str; 4] = ["event", "prefork", "fork", "thread"];

fn daemon(model: &str) -> Daemon {
    daemon_with(model, &[])
}

fn daemon_with(model: &str, extra: &[&str]) -> Daemon {
    let mut args = vec![
        "--model",
        model,
        "--keys",
        "0",
        "--workers",
        "2",
        "--idle-timeout",
        "1",
    ];
    args.extend_from_slice(extra);
    Daemon::start(1, 1, 1, &args)
}

/// Waits (up to 5 s) for the server to close `stream`; how long it took.
fn closed_within(stream: &mut TcpStream) -> Option<Duration> {
    let started = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Some(started.elapsed()),
            Err(_) => return None,
        }
    }
}

#[test]
fn a_silent_client_is_closed_after_the_idle_timeout() {
    for model in MODELS {
        let d = daemon(model);
        let mut silent = TcpStream::connect(("127.0.0.1", d.port)).expect("connect");
        let took = closed_within(&mut silent);
        assert!(took.is_some(), "{model}: still open after 5 s");
        d.assert_logged("no request completed in 1 s");
        assert!(d.client().request("stat 1").starts_with("OK"), "{model}");
        d.stop();
    }
}

#[test]
fn a_slowloris_cannot_hold_a_worker() {
    for model in MODELS {
        // A byte every 20 ms, well under the line pause (1 s here, so that
        // a late wake-up on a busy machine does not end the line): a line
        // that never ends, so no request ever completes.
        let d = daemon_with(model, &["--line-pause-ms", "1000"]);
        let mut slow = TcpStream::connect(("127.0.0.1", d.port)).expect("connect");
        slow.set_nonblocking(true).expect("nonblocking");
        let started = Instant::now();
        let mut closed = false;
        while started.elapsed() < Duration::from_secs(5) {
            if slow.write_all(b"x").is_err() {
                closed = true;
                break;
            }
            let mut buf = [0u8; 256];
            match slow.read(&mut buf) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                    closed = true;
                    break;
                }
                _ => {}
            }
            thread::sleep(Duration::from_millis(20));
        }
        assert!(closed, "{model}: a slowloris held its connection for 5 s");
        assert!(d.client().request("stat 1").starts_with("OK"), "{model}");
        d.stop();
    }
}

#[test]
fn a_client_that_keeps_asking_or_waits_is_not_idle() {
    for model in MODELS {
        let d = daemon(model);
        let mut busy = d.client();
        for _ in 0..8 {
            assert!(busy.request("stat 1").starts_with("OK"), "{model}");
            thread::sleep(Duration::from_millis(300));
        }
        // A wait longer than the idle timeout is answered, not cut off.
        assert_eq!(
            busy.request("wait 1 0 2500"),
            "TIMEOUT mailbox 1 is at version 0",
            "{model}"
        );
        drop(busy);
        d.stop();
    }
}
