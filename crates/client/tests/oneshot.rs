//! The one-shot subcommands (`client -s HOST:PORT read 1`...) against a
//! live dipc daemon: what each prints on stdout and stderr, and its exit
//! status (0 done, 1 the server's ERR, 2 usage, 3 wait timed out, 4 no
//! server reached). append and wait run against dipc and against
//! tests/common/fake_dipc.rs.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::fake_dipc::FakeDipc;
use common::gateway::Gateway;
use common::{client, client_bin, client_with_input, free_port, wait_for, Daemon, Output};

/// Checks a run's exit status, stdout and stderr exactly.
fn assert_run(out: &Output, code: i32, stdout: &str, stderr: &str) {
    assert_eq!(out.status.code(), Some(code), "{}", out.describe());
    assert_eq!(out.stdout, stdout, "stdout of {}", out.describe());
    assert_eq!(out.stderr, stderr, "stderr of {}", out.describe());
}

#[test]
fn write_then_read_prints_exactly_the_content() {
    let d = Daemon::start(2);
    let dir = d.dir.path();
    let s = d.addr();
    let out = client(dir, &["-s", &s, "write", "1", "hello world"]);
    assert_run(&out, 0, "OK wrote 11 bytes to mailbox 1, version 1\n", "");
    let out = client(dir, &["-s", &s, "read", "1"]);
    assert_run(&out, 0, "hello world", "");
    // The target after the subcommand; a text that looks like an option.
    let out = client(dir, &["write", "1", "-n x", "-s", &s]);
    assert_run(&out, 0, "OK wrote 4 bytes to mailbox 1, version 2\n", "");
    let out = client(dir, &["read", "1", "--header", "--server", &s]);
    assert_run(&out, 0, "OK 4 bytes from mailbox 1, version 2\n-n x", "");
    // An empty content, and an empty mailbox.
    let out = client(dir, &["-s", &s, "write", "1", ""]);
    assert_run(&out, 0, "OK wrote 0 bytes to mailbox 1, version 3\n", "");
    let out = client(dir, &["-s", &s, "read", "1"]);
    assert_run(&out, 0, "", "");
    let out = client(dir, &["-s", &s, "read", "2", "--header"]);
    assert_run(&out, 0, "OK 0 bytes from mailbox 2, version 0\n", "");
}

/// Every byte value, through `write --file` and back through `read`.
#[test]
fn every_byte_value_round_trips_through_a_file_and_stdin() {
    let d = Daemon::start(2);
    let dir = d.dir.path();
    let s = d.addr();
    let bytes: Vec<u8> = (0..=255u8).collect();
    let file = dir.join("all-bytes");
    std::fs::write(&file, &bytes).expect("writing the file");
    let file = file.to_str().expect("utf-8 path");
    let out = client(dir, &["-s", &s, "write", "2", "--file", file]);
    assert_run(&out, 0, "OK wrote 256 bytes to mailbox 2, version 1\n", "");
    let out = client(dir, &["-s", &s, "read", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", out.describe());
    assert_eq!(out.stdout_bytes, bytes, "read 2 gave other bytes");

    // `--file -`: stdin, here the bytes backwards, newlines and NULs first.
    let backwards: Vec<u8> = bytes.iter().rev().copied().collect();
    let out = client_with_input(dir, &["-s", &s, "write", "2", "--file", "-"], &backwards);
    assert_run(&out, 0, "OK wrote 256 bytes to mailbox 2, version 2\n", "");
    let out = client(dir, &["-s", &s, "read", "2"]);
    assert_eq!(out.stdout_bytes, backwards, "read 2 gave other bytes");
    // A text argument is sent as given, byte for byte, through wb.
    let out = client(dir, &["-s", &s, "write", "1", "line one\nline two\r\n"]);
    assert_run(&out, 0, "OK wrote 19 bytes to mailbox 1, version 1\n", "");
    let out = client(dir, &["-s", &s, "read", "1"]);
    assert_run(&out, 0, "line one\nline two\r\n", "");
}

#[test]
fn key_value_subcommands() {
    let d = Daemon::start(2);
    let dir = d.dir.path();
    let s = d.addr();
    assert_run(
        &client(dir, &["-s", &s, "put", "5", "hello there"]),
        0,
        "OK\n",
        "",
    );
    assert_run(&client(dir, &["-s", &s, "get", "5"]), 0, "hello there", "");
    assert_run(
        &client(dir, &["-s", &s, "put", "5", "again"]),
        1,
        "",
        "client put: key exists\n",
    );
    assert_run(&client(dir, &["-s", &s, "get", "5"]), 0, "hello there", "");
    // Negative keys, and values that look like options.
    assert_run(&client(dir, &["-s", &s, "put", "-3", "-v"]), 0, "OK\n", "");
    assert_run(&client(dir, &["-s", &s, "get", "-3"]), 0, "-v", "");
    assert_run(&client(dir, &["-s", &s, "del", "5"]), 0, "OK\n", "");
    assert_run(
        &client(dir, &["-s", &s, "get", "5"]),
        1,
        "",
        "client get: no such key\n",
    );
    assert_run(
        &client(dir, &["-s", &s, "del", "5"]),
        1,
        "",
        "client del: no such key\n",
    );
    // A value with a newline cannot be one request line: refused here.
    let out = client(dir, &["-s", &s, "put", "6", "two\nlines"]);
    assert_eq!(out.status.code(), Some(2), "{}", out.describe());
    assert!(
        out.stderr
            .starts_with("client put: a value cannot hold a newline"),
        "{}",
        out.describe()
    );
    assert_run(
        &client(dir, &["-s", &s, "get", "6"]),
        1,
        "",
        "client get: no such key\n",
    );
}

#[test]
fn stat_prints_the_servers_line() {
    let d = Daemon::start(2);
    let dir = d.dir.path();
    let s = d.addr();
    client(dir, &["-s", &s, "write", "2", "abc"]);
    let out = client(dir, &["-s", &s, "stat"]);
    assert_eq!(out.status.code(), Some(0), "{}", out.describe());
    assert!(
        out.stdout.starts_with("OK mailboxes=2 mailbox_bytes=8192 ")
            && out.stdout.contains(&format!(" port={} ", d.port))
            && out.stdout.contains(" lengths=0,3 versions=0,1 ")
            && out.stdout.ends_with('\n')
            && out.stdout.lines().count() == 1,
        "{}",
        out.describe()
    );
    assert_run(
        &client(dir, &["-s", &s, "stat", "2"]),
        0,
        "OK mailbox 2: 3 bytes, version 1\n",
        "",
    );
}

#[test]
fn server_refusals_exit_1_with_the_reason() {
    let d = Daemon::start(2);
    let dir = d.dir.path();
    let s = d.addr();
    assert_run(
        &client(dir, &["-s", &s, "read", "3"]),
        1,
        "",
        "client read: mailbox 3 is out of range 1..2\n",
    );
    assert_run(
        &client(dir, &["-s", &s, "stat", "9"]),
        1,
        "",
        "client stat: mailbox 9 is out of range 1..2\n",
    );
    // Over the 2 KiB packet: refused, and nothing written.
    let big = vec![b'x'; 3000];
    let out = client_with_input(dir, &["-s", &s, "write", "1", "--file", "-"], &big);
    assert_run(
        &out,
        1,
        "",
        "client write: data is 3000 bytes, over the 2048-byte packet size; the 3000 bytes that \
         follow are skipped\n",
    );
    assert_run(
        &client(dir, &["-s", &s, "stat", "1"]),
        0,
        "OK mailbox 1: 0 bytes, version 0\n",
        "",
    );
}

#[test]
fn usage_errors_exit_2() {
    let d = Daemon::start(1);
    let dir = d.dir.path();
    let s = d.addr();
    assert_run(
        &client(dir, &["read", "1"]),
        2,
        "",
        "client read: which server? give --server HOST:PORT or --gateway HOST:PORT\n",
    );
    let out = client(
        dir,
        &["-s", &s, "write", "1", "--file", "/nonexistent/file"],
    );
    assert_run(
        &out,
        2,
        "",
        "client write: cannot read /nonexistent/file: No such file or directory (os error 2)\n",
    );
    let out = client(dir, &["-s", &s, "append", "1", "a\nb"]);
    assert_eq!(out.status.code(), Some(2), "{}", out.describe());
    assert!(
        out.stderr
            .starts_with("client append: appended text cannot hold a newline"),
        "{}",
        out.describe()
    );
    // clap's own usage errors: a write with no content, a bad number, a
    // wait timeout out of range.
    for args in [
        &["-s", &s, "write", "1"][..],
        &["-s", &s, "read", "one"],
        &["-s", &s, "wait", "1", "0", "--timeout-ms", "0"],
        &["-s", &s, "write", "1", "text", "--file", "f"],
    ] {
        let out = client(dir, args);
        assert_eq!(out.status.code(), Some(2), "{}", out.describe());
        assert!(out.stdout.is_empty(), "{}", out.describe());
    }
}

#[test]
fn connection_refused_is_said_plainly() {
    let dir = tempfile::tempdir().expect("temporary directory");
    // A port nothing listens on (free a moment ago).
    let target = format!("127.0.0.1:{}", free_port());
    let out = client(dir.path(), &["-s", &target, "read", "1"]);
    assert_run(
        &out,
        4,
        "",
        &format!(
            "client read: cannot connect to {target}: connection refused (is dipc running on that \
             port?)\n"
        ),
    );
    // The interactive session and the chat say the same, with the same
    // status.
    let out = client(dir.path(), &["-s", &target]);
    assert_eq!(out.status.code(), Some(4), "{}", out.describe());
    assert_eq!(
        out.stderr,
        format!(
            "client session: cannot connect to {target}: connection refused (is dipc running on \
             that port?)\n"
        ),
        "{}",
        out.describe()
    );
    let out = client(dir.path(), &["-s", &target, "chat", "1", "--nick", "n"]);
    assert_eq!(out.status.code(), Some(4), "{}", out.describe());
    assert_eq!(
        out.stderr,
        format!(
            "client chat: cannot connect to {target}: connection refused (is dipc running on that \
             port?)\n"
        ),
        "{}",
        out.describe()
    );
    // A server that closes the connection on a request: lost, 4.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closer = listener.local_addr().expect("local_addr").to_string();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(&stream), &mut line);
        line
    });
    let out = client_with_input(dir.path(), &["-s", &closer], b"r 1\nr 2\n");
    assert_eq!(out.status.code(), Some(4), "{}", out.describe());
    assert_eq!(
        out.stderr,
        format!("client session: {closer} closed the connection\n"),
        "{}",
        out.describe()
    );
    assert_eq!(server.join().expect("the server"), "r 1\n");
    // Bad addresses, given or typed: usage, 2.
    let out = client(dir.path(), &["-s", "no-port-here"]);
    assert_eq!(out.status.code(), Some(2), "{}", out.describe());
    assert!(
        out.stderr
            .starts_with("client session: no-port-here: expected HOST:PORT"),
        "{}",
        out.describe()
    );
    let out = client_with_input(dir.path(), &[], b"127.0.0.1\nport\n");
    assert_eq!(out.status.code(), Some(2), "{}", out.describe());
    assert!(
        out.stderr
            .starts_with("client session: gateway port \"port\": expected 1..65535"),
        "{}",
        out.describe()
    );
    let out = client(dir.path(), &["-s", "no-port-here", "stat"]);
    assert_eq!(out.status.code(), Some(2), "{}", out.describe());
    assert!(
        out.stderr
            .starts_with("client stat: no-port-here: expected HOST:PORT"),
        "{}",
        out.describe()
    );
}

#[test]
fn one_shots_through_a_gateway() {
    let gw = Gateway::start();
    let d = Daemon::start_with(2, &["--gateway", &gw.addr()]);
    gw.wait_available(d.port);
    let dir = d.dir.path();
    let g = gw.addr();
    let out = client(dir, &["-g", &g, "write", "2", "via the gateway"]);
    assert_run(&out, 0, "OK wrote 15 bytes to mailbox 2, version 1\n", "");
    let out = client(dir, &["read", "2", "--gateway", &g]);
    assert_run(&out, 0, "via the gateway", "");
    // The daemon gone, the gateway has no server: exit 4.
    let port = d.port;
    drop(d);
    assert!(
        common::eventually(Duration::from_secs(5), || gw
            .status()
            .is_some_and(|s| !s.contains(&format!(":{port} ")))),
        "the daemon is still listed: {:?}",
        gw.status()
    );
    let dir = tempfile::tempdir().expect("temporary directory");
    let out = client(dir.path(), &["-g", &g, "read", "1"]);
    assert_run(
        &out,
        4,
        "",
        &format!(
            "client read: no server available: the gateway at {g} knows none that can take a \
             connection now\n"
        ),
    );
}

/// Fails, clearly, when the daemon under test lacks `append` and `wait`.
fn require_append_and_wait(dir: &Path, server: &str) {
    let out = client(dir, &["-s", server, "wait", "1", "0", "--timeout-ms", "1"]);
    assert!(
        !out.stderr.contains("unknown command"),
        "this dipc has no `wait` request yet (it answered {:?}): these tests need the server's \
         append and wait",
        out.stderr
    );
}

/// Appends to mailbox 1, then overflows mailbox 2 (2 KiB).
/// `capacity`: the server's mailbox size.
fn append_adds_lines_and_drops_the_oldest(dir: &Path, s: &str, capacity: usize) {
    require_append_and_wait(dir, s);
    let out = client(dir, &["-s", s, "append", "1", "first"]);
    assert_run(&out, 0, "OK appended 6 bytes to mailbox 1, version 1\n", "");
    let out = client(dir, &["-s", s, "append", "1", "second line"]);
    assert_run(
        &out,
        0,
        "OK appended 12 bytes to mailbox 1, version 2\n",
        "",
    );
    assert_run(
        &client(dir, &["-s", s, "read", "1"]),
        0,
        "first\nsecond line\n",
        "",
    );
    // Lines of 50 bytes overflow the mailbox: the oldest whole lines go,
    // the newest stay, in order.
    let lines = capacity / 50 + 20;
    for i in 0..lines {
        let line = format!("line {i:03} {}", "x".repeat(40));
        let out = client(dir, &["-s", s, "append", "2", &line]);
        assert_eq!(out.status.code(), Some(0), "{}", out.describe());
    }
    let out = client(dir, &["-s", s, "read", "2"]);
    let content = out.stdout;
    assert!(content.len() <= capacity, "{} bytes", content.len());
    let numbers: Vec<usize> = content
        .lines()
        .map(|l| {
            assert_eq!(l.len(), 49, "not a whole line: {l:?}");
            l[5..8].parse().expect("a line number")
        })
        .collect();
    assert_eq!(numbers.last(), Some(&(lines - 1)), "{content}");
    assert_eq!(numbers.len(), capacity / 50, "{content}");
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
    assert!(content.ends_with('\n'));
}

/// Waits on mailbox 1: at once, timed out (exit 3), woken by an append.
fn wait_returns_at_once_on_a_change_or_times_out(dir: &Path, s: &str) {
    require_append_and_wait(dir, s);
    client(dir, &["-s", s, "append", "1", "v1"]);
    // Already past version 0: at once, like a read.
    assert_run(&client(dir, &["-s", s, "wait", "1", "0"]), 0, "v1\n", "");
    assert_run(
        &client(dir, &["-s", s, "wait", "1", "0", "--header"]),
        0,
        "OK 3 bytes from mailbox 1, version 1\nv1\n",
        "",
    );
    // Nothing new within 200 ms.
    let started = Instant::now();
    let out = client(dir, &["-s", s, "wait", "1", "1", "--timeout-ms", "200"]);
    assert_run(
        &out,
        3,
        "",
        "client wait: timed out: mailbox 1 is at version 1\n",
    );
    assert!(started.elapsed() >= Duration::from_millis(200));
    // A waiter, then an append: it returns with the new content well
    // before its 10 s.
    let out_path = dir.join("waiter.stdout");
    let mut waiter = Command::new(client_bin())
        .args(["-s", s, "wait", "1", "1", "--timeout-ms", "10000"])
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .spawn()
        .expect("starting the waiter");
    std::thread::sleep(Duration::from_millis(300));
    client(dir, &["-s", s, "append", "1", "v2"]);
    // Woken, it exits 0 long before its deadline. A lost wake-up would be
    // answered only at the deadline (with the new content: the version is
    // looked at first), so the patience here is half of it.
    let status = wait_for(&mut waiter, Duration::from_secs(5)).expect("the waiter returned");
    assert!(status.success(), "{status}");
    assert_eq!(
        std::fs::read(&out_path).expect("the waiter's stdout"),
        b"v1\nv2\n"
    );
}

#[test]
fn append_on_a_stand_in_server() {
    let server = FakeDipc::start();
    let dir = tempfile::tempdir().expect("a directory");
    append_adds_lines_and_drops_the_oldest(dir.path(), &server.addr(), 2048);
}

#[test]
fn wait_on_a_stand_in_server() {
    let server = FakeDipc::start();
    let dir = tempfile::tempdir().expect("a directory");
    wait_returns_at_once_on_a_change_or_times_out(dir.path(), &server.addr());
}

#[test]
fn append_on_dipc() {
    let d = Daemon::start(2);
    append_adds_lines_and_drops_the_oldest(d.dir.path(), &d.addr(), 8192);
}

#[test]
fn wait_on_dipc() {
    let d = Daemon::start(2);
    wait_returns_at_once_on_a_change_or_times_out(d.dir.path(), &d.addr());
}
