//! `client bench` against the real dipc daemon (built by `cargo build
//! --workspace`), cross-checked with the daemon's own counters (`stat`).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{client, Daemon};

/// The daemon's `stat` figures, by name.
fn stat(daemon: &Daemon) -> std::collections::HashMap<String, u64> {
    let mut stream = TcpStream::connect(daemon.addr()).expect("connect for stat");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    stream.write_all(b"stat\n").expect("send stat");
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .expect("stat reply");
    assert!(line.starts_with("OK "), "stat replied {line:?}");
    line.split_whitespace()
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// `client bench -s <the daemon> <args>`.
fn bench(daemon: &Daemon, args: &[&str]) -> common::Output {
    let addr = daemon.addr();
    let mut all = vec!["bench", "-s", &addr];
    all.extend_from_slice(args);
    client(daemon.dir.path(), &all)
}

#[test]
fn every_request_reaches_the_daemon_once() {
    let daemon = Daemon::start(4);
    let out = bench(
        &daemon,
        &[
            "-n",
            "1000",
            "-c",
            "4",
            "-P",
            "4",
            "--mix",
            "read:50,write:50",
            "--spread",
            "4",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", out.describe());
    let report = out.json();
    assert_eq!(report["requests"], 1000, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert_eq!(report["mix"], "read:50,write:50", "{report}");
    let figures = stat(&daemon);
    // The 1000 requests, and the prefill's one write per mailbox.
    assert_eq!(
        figures["reads"] + figures["writes"],
        1000 + 4,
        "{figures:?}"
    );
    assert!(
        figures["reads"] > 300 && figures["writes"] > 300,
        "{figures:?}"
    );
    assert_eq!(figures["errors"], 0, "{figures:?}");
    // The prefill wrote value-size bytes to each mailbox.
    let lengths = {
        let mut stream = TcpStream::connect(daemon.addr()).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        stream.write_all(b"stat 4\n").expect("send");
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).expect("reply");
        line
    };
    assert!(
        lengths.starts_with("OK mailbox 4: 100 bytes"),
        "{lengths:?}"
    );
}

#[test]
fn error_replies_are_counted_and_the_run_goes_on() {
    let daemon = Daemon::start(4);
    // Mailboxes 5..8 do not exist: the prefill's 4 writes to them and
    // every read of them get ERR.
    let out = bench(
        &daemon,
        &["-n", "400", "-c", "2", "-P", "4", "--spread", "8", "--json"],
    );
    assert!(out.status.success(), "{}", out.describe());
    let report = out.json();
    assert_eq!(report["requests"], 400, "{report}");
    let errors = report["errors"].as_u64().expect("errors");
    assert!(errors > 100 && errors < 300, "{report}");
    assert!(
        out.stderr.contains("got error replies"),
        "{}",
        out.describe()
    );
    assert!(out.stderr.contains("out of range"), "{}", out.describe());
    assert_eq!(stat(&daemon)["errors"], 4 + errors);

    // get/put/del: whatever the daemon answers, one line each; refusals
    // are counted (and --fail-on-error turns them into exit status 1).
    let out = bench(
        &daemon,
        &[
            "-n",
            "100",
            "-P",
            "3",
            "--mix",
            "get:50,put:40,del:10",
            "--no-prefill",
            "--json",
            "--fail-on-error",
        ],
    );
    let report = out.json();
    assert_eq!(report["requests"], 100, "{}", out.describe());
    let more = report["errors"].as_u64().expect("errors");
    let expected_code = if more > 0 { 1 } else { 0 };
    assert_eq!(out.status.code(), Some(expected_code), "{}", out.describe());
    assert_eq!(stat(&daemon)["errors"], 4 + errors + more);
}

#[test]
fn a_duration_run_reports_a_rate() {
    let daemon = Daemon::start(4);
    let out = bench(
        &daemon,
        &[
            "-d",
            "0.5",
            "--warmup",
            "0.1",
            "-c",
            "3",
            "--mix",
            "read:80,write:20",
            "--spread",
            "4",
        ],
    );
    assert!(out.status.success(), "{}", out.describe());
    for key in [
        "server",
        "protocol",
        "connections",
        "pipeline",
        "mix",
        "value size",
        "requests",
        "errors",
        "duration",
        "throughput",
        "latency",
    ] {
        assert!(
            out.stdout.lines().any(|line| line.starts_with(key)),
            "no {key} line: {}",
            out.describe()
        );
    }
    assert!(out.stdout.contains("req/s"), "{}", out.describe());
    assert!(out.stdout.contains("p99.9"), "{}", out.describe());
    // The recorded span is the duration, give or take the last replies.
    let seconds: f64 = out
        .stdout
        .lines()
        .find_map(|line| {
            line.strip_prefix("duration")?
                .trim()
                .strip_suffix(" s")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("{}", out.describe()));
    assert!(
        (0.45..1.5).contains(&seconds),
        "{seconds}: {}",
        out.describe()
    );
}

/// Key-value requests: gets of prefilled keys, and the churn of puts and
/// dels that all succeed, counted by the daemon.
#[test]
fn key_value_requests_reach_the_store() {
    let daemon = Daemon::start(4);
    let run = |mix: &str| {
        let out = bench(
            &daemon,
            &[
                "-n", "1000", "-c", "4", "-P", "4", "--mix", mix, "--spread", "8", "--json",
            ],
        );
        assert!(out.status.success(), "{}", out.describe());
        let report = out.json();
        assert_eq!(report["requests"], 1000, "{report}");
        assert_eq!(report["errors"], 0, "{report}");
    };
    run("get");
    let figures = stat(&daemon);
    // The prefill's put of every key, then the gets.
    assert_eq!(figures["puts"], 8, "{figures:?}");
    assert_eq!(figures["gets"], 1000, "{figures:?}");
    assert_eq!(figures["keys"], 8, "{figures:?}");
    run("churn");
    let figures = stat(&daemon);
    // Batches of 4 requests: every put is followed by its del.
    assert_eq!(figures["puts"], 8 + 500, "{figures:?}");
    assert_eq!(figures["dels"], 500, "{figures:?}");
    assert_eq!(figures["keys"], 8, "{figures:?}");
    assert_eq!(figures["errors"], 0, "{figures:?}");
}
