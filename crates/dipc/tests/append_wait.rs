//! The chat requests end to end, in every server model: `append` keeps a
//! mailbox's recent whole lines, and `wait` sleeps (no CPU) until a write
//! wakes it, answers at once when the mailbox is already past the version,
//! times out with TIMEOUT, keeps pipelined requests in order, and lets a
//! stopping daemon go.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// A daemon of 2 mailboxes of 1 KiB in `model`.
fn daemon(model: &str) -> Daemon {
    Daemon::start(2, 1, 1, &["--model", model, "--keys", "0"])
}

/// `append <m> <text>`, checking the reply's form; returns the version.
fn append(c: &mut Client, mailbox: u32, text: &str) -> u64 {
    let reply = c.request(&format!("append {mailbox} {text}"));
    let prefix = format!(
        "OK appended {} bytes to mailbox {mailbox}, version ",
        text.len() + 1
    );
    reply
        .strip_prefix(&prefix)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("bad reply to append: {reply:?}"))
}

#[test]
fn append_keeps_the_newest_whole_lines() {
    for model in MODELS {
        let d = daemon(model);
        let mut c = d.client();
        assert_eq!(append(&mut c, 1, "first"), 1);
        assert_eq!(append(&mut c, 1, "second"), 2);
        assert_eq!(
            c.read_mailbox(1),
            (2, b"first\nsecond\n".to_vec()),
            "{model}"
        );
        // 1 KiB fills: the oldest whole lines go, never part of one.
        let line = |i: usize| format!("{i:03} {}", "x".repeat(96));
        for i in 0..40 {
            append(&mut c, 1, &line(i));
        }
        let (_, content) = c.read_mailbox(1);
        let text = String::from_utf8(content).expect("text");
        let kept: Vec<&str> = text.lines().collect();
        let expected: Vec<String> = (40 - kept.len()..40).map(line).collect();
        assert_eq!(kept, expected, "{model}: the newest lines, whole, in order");
        assert!(
            text.len() <= 1024 && text.len() + 101 > 1024,
            "{model}: {}",
            text.len()
        );
        // After a plain write without a final LF, the next line starts on
        // a line of its own.
        c.write_mailbox(2, "no newline");
        append(&mut c, 2, "next");
        assert_eq!(c.read_mailbox(2).1, b"no newline\nnext\n", "{model}");
        // A line that cannot fit even alone is refused, and nothing changes.
        let reply = c.request(&format!("append 2 {}", "y".repeat(1024)));
        assert!(
            reply.starts_with("ERR a line of 1025 bytes"),
            "{model}: {reply}"
        );
        assert_eq!(c.read_mailbox(2).0, 2, "{model}");
        drop(c);
        d.stop();
    }
}

#[test]
fn wait_answers_at_once_times_out_and_keeps_pipelined_order() {
    for model in MODELS {
        let d = daemon(model);
        let mut c = d.client();
        c.write_mailbox(1, "hello");
        // Already past version 0: a read's reply at once.
        c.send_line("wait 1 0");
        assert_eq!(c.read_reply_of(1), (1, b"hello".to_vec()), "{model}");
        // Not past version 1 within 100 ms.
        let started = Instant::now();
        assert_eq!(
            c.request("wait 1 1 100"),
            "TIMEOUT mailbox 1 is at version 1",
            "{model}"
        );
        assert!(started.elapsed() >= Duration::from_millis(100), "{model}");
        // Pipelined: the requests behind a wait are answered after it, in
        // order, and none of them runs early.
        c.send(b"wait 2 0 150\nw 2 late\nr 2\n");
        assert_eq!(
            c.read_line(),
            "TIMEOUT mailbox 2 is at version 0",
            "{model}"
        );
        assert_eq!(
            c.read_line(),
            "OK wrote 4 bytes to mailbox 2, version 1",
            "{model}"
        );
        assert_eq!(c.read_reply_of(2), (1, b"late".to_vec()), "{model}");
        // Refusals.
        for (line, error) in [
            ("wait 3 0", "ERR mailbox 3 is out of range 1..2"),
            (
                "wait 1 x",
                "ERR wait needs a version number after the mailbox",
            ),
            ("wait 1 0 0", "ERR wait timeout must be 1..3600000 ms"),
        ] {
            assert_eq!(c.request(line), error, "{model}");
        }
        drop(c);
        d.stop();
    }
}

/// Clock ticks of CPU (user + system) used by `pids` so far; every one of
/// them must still be there, or a count of nothing would pass for idle.
fn cpu_ticks(pids: &[i32]) -> u64 {
    pids.iter()
        .map(|&pid| match proc_stat(pid) {
            Some(stat) => stat.cpu_ticks,
            None => panic!("process {pid} is gone"),
        })
        .sum()
}

#[test]
fn a_waiting_client_costs_no_cpu_and_a_write_wakes_it_at_once() {
    for model in MODELS {
        let d = daemon(model);
        let mut waiter = d.client();
        waiter.send_line("wait 1 0 60000");
        thread::sleep(Duration::from_millis(300));
        let mut pids = vec![d.pid];
        pids.extend(d.workers());
        let before = cpu_ticks(&pids);
        thread::sleep(Duration::from_secs(2));
        let used = cpu_ticks(&pids) - before;
        // 100 ticks a second: a polling loop would use about 200 here; the
        // supervisor's and workers' once-a-second housekeeping, about none.
        assert!(used <= 5, "{model}: {used} ticks of CPU in 2 s of waiting");
        let mut writer = d.client();
        let written = Instant::now();
        writer.write_mailbox(1, "wake up");
        assert_eq!(waiter.read_reply_of(1), (1, b"wake up".to_vec()), "{model}");
        let latency = written.elapsed();
        // Printed, not asserted: timings belong to the benchmarks.
        eprintln!("{model}: woken {latency:?} after the write; {used} ticks while waiting");
        drop((waiter, writer));
        d.stop();
    }
}

/// One event worker, so one worker slot: its locks take no fence, and a
/// waiter and the writer that wakes it are connections of the same loop.
/// A lost wake would leave the waiter to its 20 s timeout, past the test
/// client's read timeout.
#[test]
fn on_the_only_event_worker_every_write_wakes_its_waiter() {
    let d = Daemon::start(
        2,
        1,
        1,
        &["--model", "event", "--keys", "0", "--workers", "1"],
    );
    let mut waiter = d.client();
    let mut writer = d.client();
    for version in 0..40u64 {
        waiter.send_line(&format!("wait 1 {version} 20000"));
        // Half the writes come while the wait is surely parked, half race
        // its arrival.
        if version % 2 == 0 {
            thread::sleep(Duration::from_millis(5));
        }
        let text = format!("round {version}");
        writer.write_mailbox(1, &text);
        assert_eq!(
            waiter.read_reply_of(1),
            (version + 1, text.into_bytes()),
            "round {version}"
        );
    }
    drop((waiter, writer));
    d.stop();
}

#[test]
fn many_waiters_on_one_mailbox_all_wake() {
    for model in MODELS {
        let d = Daemon::start(
            2,
            1,
            1,
            &["--model", model, "--keys", "0", "--workers", "6"],
        );
        let mut waiters: Vec<Client> = (0..5).map(|_| d.client()).collect();
        for (i, w) in waiters.iter_mut().enumerate() {
            // Mailbox 2 for one of them: it must not wake for mailbox 1.
            let mailbox = if i == 4 { 2 } else { 1 };
            w.send_line(&format!("wait {mailbox} 0 20000"));
        }
        thread::sleep(Duration::from_millis(200));
        let mut writer = d.client();
        append(&mut writer, 1, "to all");
        for w in &mut waiters[..4] {
            assert_eq!(w.read_reply_of(1), (1, b"to all\n".to_vec()), "{model}");
        }
        waiters[4].assert_silent(Duration::from_millis(300));
        append(&mut writer, 2, "to the last");
        assert_eq!(waiters[4].read_reply_of(2).0, 1, "{model}");
        drop((waiters, writer));
        d.stop();
    }
}

#[test]
fn a_stopping_daemon_answers_its_waiters_and_a_hung_up_one_frees_its_worker() {
    for model in MODELS {
        let d = Daemon::start(
            2,
            1,
            1,
            &["--model", model, "--keys", "0", "--workers", "1"],
        );
        // The only worker (prefork) waits for a client that then leaves:
        // the wait ends with the client, and the worker serves the next.
        let mut gone = d.client();
        gone.send_line("wait 1 0 60000");
        thread::sleep(Duration::from_millis(200));
        drop(gone);
        let mut next = d.client();
        next.set_read_timeout(Duration::from_secs(3));
        assert_eq!(
            next.request("wait 1 0 50"),
            "TIMEOUT mailbox 1 is at version 0",
            "{model}"
        );
        // dipcrm while a client waits: it is told, and the daemon stops.
        next.send_line("wait 1 0 60000");
        thread::sleep(Duration::from_millis(200));
        let mut d = d;
        let out = d.dipcrm();
        assert!(out.status.success(), "{model}: {}", out.describe());
        assert_eq!(
            next.read_line(),
            "ERR mailbox 1: not served, the server is stopping",
            "{model}"
        );
        d.assert_gone();
    }
}

#[test]
fn a_wait_cut_off_by_its_clients_eof_does_not_silence_the_others() {
    for model in MODELS {
        // One event worker: both waits share its slot's registration.
        let workers = if model == "event" { "1" } else { "3" };
        let d = Daemon::start(
            2,
            1,
            1,
            &["--model", model, "--keys", "0", "--workers", workers],
        );
        let mut waiter = d.client();
        waiter.send_line("wait 1 0 20000");
        // Another client's last line is a wait with no terminator, and it
        // closes its side at once: that wait is dropped with it.
        let mut quitter = std::net::TcpStream::connect(("127.0.0.1", d.port)).expect("connect");
        std::io::Write::write_all(&mut quitter, b"wait 1 0 20000").expect("send");
        quitter
            .shutdown(std::net::Shutdown::Write)
            .expect("shutdown");
        thread::sleep(Duration::from_millis(300));
        // Silenced, an event worker's waiter would hear only its 20 s
        // deadline, and the client's read times out long before; a blocking
        // worker's would still hear it within its 1 s tick, which this does
        // not tell from a wake.
        d.client().write_mailbox(1, "still heard");
        assert_eq!(
            waiter.read_reply_of(1),
            (1, b"still heard".to_vec()),
            "{model}"
        );
        drop((waiter, quitter));
        d.stop();
    }
}
