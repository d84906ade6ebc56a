//! Clients that do not play along: silent ones, slow ones (slowloris), and
//! ones that wait; every model closes the first two after `--idle-timeout`
//! and goes on serving.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

fn daemon(model: &str) -> Daemon {
    daemon_with(model, &[])
}

fn daemon_with(model: &str, extra: &[&str]) -> Daemon {
    daemon_idle_after(model, "1", extra)
}

/// A daemon of `model` whose idle timeout is `idle_secs`.
fn daemon_idle_after(model: &str, idle_secs: &str, extra: &[&str]) -> Daemon {
    let mut args = vec![
        "--model",
        model,
        "--keys",
        "0",
        "--workers",
        "2",
        "--idle-timeout",
        idle_secs,
    ];
    args.extend_from_slice(extra);
    Daemon::start(1, 1, 1, &args)
}

/// Whether the server closes `stream` within 5 s.
fn closed_within_5s(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn a_silent_client_is_closed_after_the_idle_timeout() {
    for model in MODELS {
        let d = daemon(model);
        let mut silent = TcpStream::connect(("127.0.0.1", d.port)).expect("connect");
        assert!(
            closed_within_5s(&mut silent),
            "{model}: still open after 5 s"
        );
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

/// A wait answered after more than the idle timeout is a request completed
/// then: the idle timeout counts from the answer, not from the line that
/// asked. (With a 2 s timeout the event loop's idle check comes at about
/// 2 s, 4 s, ...: counting from the line would close the connection at
/// about 4 s, 1 s after the answer; counting from the answer, at 5 s.)
#[test]
fn an_answered_wait_restarts_the_idle_timeout() {
    for model in MODELS {
        let d = daemon_idle_after(model, "2", &[]);
        let mut client = d.client();
        assert_eq!(
            client.request("wait 1 0 3000"),
            "TIMEOUT mailbox 1 is at version 0",
            "{model}"
        );
        thread::sleep(Duration::from_millis(1400));
        assert!(
            client.request("stat 1").starts_with("OK"),
            "{model}: served after its wait was answered"
        );
        drop(client);
        d.stop();
    }
}

/// A request that waits for a mailbox lock holds up its event worker's
/// loop for up to the lock timeout; when its reply goes out, however late,
/// its connection has just been served and is not idle. (The event model
/// alone: in the others each client has its own process or thread, and
/// its idle time starts after the reply.)
#[test]
fn a_reply_after_a_long_lock_wait_is_not_followed_by_an_idle_close() {
    use shmlib::{Deadline, Segment};
    let d = daemon_with("event", &["--lock-timeout", "3"]);
    let mut client = d.client();
    assert!(client.request("stat 1").starts_with("OK"));
    let segment = Segment::open(d.port).expect("map the daemon's segment");
    // The worker that is not serving our client holds mailbox 1's lock.
    let holder = segment
        .participant(idle_worker_slot(&segment))
        .expect("the idle worker's slot");
    let lock = segment.mailbox_lock(0).expect("mailbox 1's lock");
    let held = lock
        .write(holder, &Deadline::after(Duration::from_secs(1)))
        .expect("take mailbox 1's lock in the idle worker's name");
    let asked = Instant::now();
    let reply = client.request("w 1 held up");
    assert!(reply.starts_with("ERR mailbox 1 is busy"), "{reply}");
    assert!(
        asked.elapsed() >= Duration::from_secs(2),
        "the write did not wait for the lock ({:?})",
        asked.elapsed()
    );
    drop(held);
    assert!(
        client.request("w 1 after").starts_with("OK"),
        "served right after the late reply"
    );
    drop(client);
    d.stop();
}

/// Resident memory of `pids`, in KiB.
fn rss_kib(pids: &[i32]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|status| {
            let line = status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))?
                .to_string();
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .sum()
}

#[test]
fn twice_max_workers_clients_at_once_are_all_served() {
    for model in MODELS {
        let d = Daemon::start(
            1,
            1,
            1,
            &["--model", model, "--keys", "0", "--max-workers", "4"],
        );
        let port = d.port;
        let mut pids = vec![d.pid];
        pids.extend(d.workers());
        let before = rss_kib(&pids);
        // Eight at once, each holding its connection a moment: the first
        // four are served, the others wait in the listen backlog and are
        // served as workers come free (event: all at once).
        let clients: Vec<_> = (0..8)
            .map(|_| {
                thread::spawn(move || {
                    let mut c = Client::connect(port);
                    c.set_read_timeout(Duration::from_secs(10));
                    let reply = c.request("stat 1");
                    thread::sleep(Duration::from_millis(200));
                    reply
                })
            })
            .collect();
        for client in clients {
            let reply = client.join().expect("client thread");
            assert!(reply.starts_with("OK mailbox 1:"), "{model}: {reply}");
        }
        pids.extend(d.workers());
        let grown = rss_kib(&pids).saturating_sub(before);
        assert!(grown < 32 * 1024, "{model}: the daemon grew by {grown} KiB");
        assert!(d.client().request("stat 1").starts_with("OK"), "{model}");
        d.stop();
    }
}

#[test]
fn a_burst_of_clients_waits_in_the_backlog_and_none_is_dropped() {
    // One prefork worker, busy with a first client: every later client
    // waits in the listen backlog. Past the backlog the kernel drops a
    // client's SYN, and its connect waits a second or more for the retry,
    // and then again while the backlog stays full (std's bind asks for a
    // backlog of 128).
    let d = Daemon::start(
        1,
        1,
        1,
        &["--model", "prefork", "--keys", "0", "--max-workers", "1"],
    );
    let mut first = d.client();
    assert!(first.request("stat 1").starts_with("OK"));
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], d.port));
    let waiting: Vec<TcpStream> = (0..300)
        .map(|i| {
            TcpStream::connect_timeout(&addr, Duration::from_secs(3))
                .unwrap_or_else(|e| panic!("client {i} of 300 could not connect: {e}"))
        })
        .collect();
    drop(first);
    drop(waiting);
    assert!(d.client().request("stat 1").starts_with("OK"));
    d.stop();
}

#[test]
fn length_prefix_lies_and_garbage_leave_the_stream_in_step() {
    for model in MODELS {
        let d = daemon(model);
        let mut c = d.client();
        // Too short: the 3 bytes are the data; the rest is a line of its own.
        c.send(b"wb 1 3\nabcdefg\n");
        assert_eq!(
            c.read_line(),
            "OK wrote 3 bytes to mailbox 1, version 1",
            "{model}"
        );
        assert_eq!(c.read_line(), "ERR unknown command 'defg'", "{model}");
        // Negative and not a number: refused, nothing follows to skip.
        assert_eq!(
            c.request("wb 1 -5"),
            "ERR wb needs a byte length 0..1024",
            "{model}"
        );
        assert_eq!(
            c.request("wb 1 x"),
            "ERR wb needs a byte length 0..1024",
            "{model}"
        );
        // Binary garbage and invalid UTF-8 between valid requests.
        // (the NUL ends a line, as a C client's string terminator does).
        c.send(b"\xff\xfe\x00\x80garbage\x01\x02\n");
        for _ in 0..2 {
            assert!(c.read_line().starts_with("ERR unknown command"), "{model}");
        }
        c.send(b"\xc3\x28\xa0\xa1\n");
        assert!(c.read_line().starts_with("ERR"), "{model}");
        assert_eq!(c.read_mailbox(1), (1, b"abc".to_vec()), "{model}");
        // Too long: its bytes are skipped, and the stream stays in step.
        c.send(b"wb 1 2000\n");
        c.send(&[b'r'; 2000]);
        assert_eq!(
            c.read_line(),
            "ERR data is 2000 bytes, over the 1024-byte packet size; the 2000 bytes that follow are skipped",
            "{model}"
        );
        assert_eq!(c.read_mailbox(1).0, 1, "{model}");
        // Huge (2^63): no allocation, no skipping: an error, then closed.
        c.send(b"wb 1 9223372036854775808\n");
        assert_eq!(
            c.read_line(),
            "ERR wb length 9223372036854775808 is over 1073741824; closing the connection",
            "{model}"
        );
        assert!(c.read_to_eof().is_empty(), "{model}");
        // Half-closed: a request and then the end of input still get the
        // reply, then the close.
        let mut half = std::net::TcpStream::connect(("127.0.0.1", d.port)).expect("connect");
        half.write_all(b"stat 1\n").expect("send");
        half.shutdown(std::net::Shutdown::Write).expect("shutdown");
        let mut reply = String::new();
        half.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        half.read_to_string(&mut reply)
            .expect("the reply, then the close");
        assert_eq!(reply, "OK mailbox 1: 3 bytes, version 1\n", "{model}");
        d.stop();
    }
}

#[test]
fn a_client_that_stops_reading_cannot_hold_a_worker() {
    for model in MODELS {
        let d = Daemon::start(
            1,
            256,
            256,
            &[
                "--model",
                model,
                "--keys",
                "0",
                "--workers",
                "1",
                "--send-timeout",
                "1",
            ],
        );
        let mut c = d.client();
        let content = "x".repeat(200 * 1024);
        c.write_mailbox(1, &content);
        drop(c);
        // 40 MiB of replies asked for and never read: the socket buffers
        // fill, and the reply waits on a client that does not take it.
        let mut stuck = TcpStream::connect(("127.0.0.1", d.port)).expect("connect");
        stuck.write_all(&b"r 1\n".repeat(200)).expect("send");
        d.assert_logged("client stopped reading (send timed out)");
        // The worker is free again for the next client.
        let mut next = d.client();
        next.set_read_timeout(Duration::from_secs(5));
        assert!(
            next.request("stat 1")
                .starts_with("OK mailbox 1: 204800 bytes"),
            "{model}"
        );
        drop((stuck, next));
        d.stop();
    }
}
