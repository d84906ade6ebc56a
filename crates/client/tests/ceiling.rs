//! `client ceiling` in each model, loaded by `client bench --protocol
//! fixed`, and stopped by its guard: every request answered, none lost,
//! and no process left behind.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{children_of, client, eventually, process_exists, Ceiling};

/// Runs the brief's bench against a ceiling and checks its JSON.
fn bench_fixed(ceiling: &Ceiling) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let addr = ceiling.addr();
    let out = client(
        dir.path(),
        &[
            "bench",
            "--server",
            &addr,
            "--protocol",
            "fixed",
            "--reply-bytes",
            "100",
            "-n",
            "2000",
            "-c",
            "4",
            "-P",
            "8",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", out.describe());
    let report = out.json();
    assert_eq!(report["requests"], 2000, "{}", out.describe());
    assert_eq!(report["errors"], 0, "{}", out.describe());
    assert_eq!(report["connections"], 4);
    assert_eq!(report["pipeline"], 8);
    assert_eq!(report["protocol"], "fixed");
    for key in ["seconds", "rps", "p50_us", "p99_us", "p999_us", "max_us"] {
        let value = report[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key}: {report}"));
        assert!(value > 0.0, "{key} = {value}: {report}");
    }
    assert!(
        report["p50_us"].as_f64() <= report["max_us"].as_f64(),
        "{report}"
    );
}

#[test]
fn epoll_ceiling_serves_a_pipelined_bench_and_stops_cleanly() {
    let mut ceiling = Ceiling::start(&["--model", "epoll"]);
    bench_fixed(&ceiling);
    // stop() waits for the exit: a status means the process is gone.
    let status = ceiling.stop().expect("the ceiling exits on SIGTERM");
    assert!(status.success(), "exit status after SIGTERM: {status}");
}

#[test]
fn prefork_ceiling_serves_a_pipelined_bench_and_reaps_its_children() {
    let mut ceiling = Ceiling::start(&["--model", "prefork", "--processes", "6"]);
    let pid = ceiling.pid;
    // The children are forked right after the "serving" line.
    assert!(
        eventually(Duration::from_secs(5), || children_of(pid).len() == 6),
        "children of {pid}: {:?}",
        children_of(pid)
    );
    let children = children_of(pid);
    bench_fixed(&ceiling);
    let status = ceiling.stop().expect("the ceiling exits on SIGTERM");
    assert!(status.success(), "exit status after SIGTERM: {status}");
    for child in children {
        assert!(!process_exists(child), "child {child} was not reaped");
    }
}

#[test]
fn prefork_children_exit_when_the_parent_is_killed() {
    let ceiling = Ceiling::start(&["--model", "prefork", "--processes", "3"]);
    let pid = ceiling.pid;
    assert!(eventually(Duration::from_secs(5), || children_of(pid)
        .len()
        == 3));
    let children = children_of(pid);
    // SIGKILL: the parent gets no chance to stop them; PR_SET_PDEATHSIG does.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::SIGKILL,
    )
    .expect("kill");
    drop(ceiling);
    // Orphans are reaped by whoever adopts them, which may take a moment
    // (or, in a container whose init reaps nothing, leave zombies: a
    // zombie has exited, which is what counts).
    let exited = |child: u32| {
        std::fs::read_to_string(format!("/proc/{child}/stat"))
            .map(|stat| {
                stat.rsplit(')')
                    .next()
                    .and_then(|rest| rest.split_whitespace().next())
                    == Some("Z")
            })
            .unwrap_or(true)
    };
    assert!(
        eventually(Duration::from_secs(5), || children
            .iter()
            .all(|&c| exited(c))),
        "children still running: {children:?}"
    );
}

/// What a raw client gets: every complete line answered with exactly
/// reply-bytes bytes, a line split across writes answered once complete.
#[test]
fn ceiling_answers_each_complete_line() {
    for model in ["epoll", "prefork"] {
        let ceiling = Ceiling::start(&["--model", model, "--processes", "2", "--reply-bytes", "5"]);
        let mut stream = TcpStream::connect(ceiling.addr()).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        stream.write_all(b"a\nb\nhalf").expect("write");
        let mut reply = [0u8; 10];
        stream.read_exact(&mut reply).expect("two replies");
        assert_eq!(&reply, b"xxxx\nxxxx\n", "{model}");
        stream.write_all(b" a line\n").expect("write");
        let mut reply = [0u8; 5];
        stream.read_exact(&mut reply).expect("the third reply");
        assert_eq!(&reply, b"xxxx\n", "{model}");
        // Nothing more is owed.
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let mut extra = [0u8; 1];
        assert!(stream.read(&mut extra).is_err(), "{model}: an extra byte");
    }
}

#[test]
fn bench_detects_replies_longer_than_it_expects() {
    let ceiling = Ceiling::start(&["--reply-bytes", "100"]);
    let dir = tempfile::tempdir().expect("temporary directory");
    let out = client(
        dir.path(),
        &[
            "bench",
            "-s",
            &ceiling.addr(),
            "--protocol",
            "fixed",
            "--reply-bytes",
            "50",
            "-n",
            "10",
            "--no-prefill",
        ],
    );
    // One 100-byte reply framed as 50-byte ones is two replies to one
    // request: the second answers nothing that was asked.
    assert!(!out.status.success(), "{}", out.describe());
    assert!(out.stderr.contains("protocol error"), "{}", out.describe());
    assert!(
        out.stderr.contains("no request asked for"),
        "{}",
        out.describe()
    );
}
