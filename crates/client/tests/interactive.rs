//! `client` with no subcommand: the interactive session, with its input
//! piped (the seed's plain loop) and on a real pseudo-terminal (rustyline:
//! prompts, line editing, Ctrl-C, Ctrl-D, history), against a live daemon
//! and a real gateway.

mod common;

use std::ffi::OsStr;
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use common::gateway::Gateway;
use common::pty::Terminal;
use common::{client, client_bin, client_with_input, Daemon};

const SHOWN: Duration = Duration::from_secs(5);

#[test]
fn piped_requests_get_readable_replies() {
    let d = Daemon::start(2);
    let dir = d.dir.path();
    let input = b"w 1 tab\there, bell\x07\n\nr 1\nr2\nput 4 four\nget 4\nget 5\nstat 1\nwb 1 3\n";
    let out = client_with_input(dir, &["-s", &d.addr()], input);
    assert_eq!(out.status.code(), Some(0), "{}", out.describe());
    let expected = format!(
        "connected to {}; type help for the commands, Ctrl-D to leave\n\
         > OK wrote 15 bytes to mailbox 1, version 1\n\
         > > mailbox 1, version 1, 15 bytes:\n\
         tab\there, bell\\x07\n\
         > mailbox 2, version 0: empty\n\
         > OK\n\
         > four\n\
         > ERR no such key\n\
         > OK mailbox 1: 15 bytes, version 1\n\
         > > \n\
         Goodbye\n",
        d.addr()
    );
    assert_eq!(out.stdout, expected, "{}", out.describe());
    // wb is refused here, not sent: its bytes cannot be typed.
    assert!(
        out.stderr.starts_with("wb needs exact bytes"),
        "{}",
        out.describe()
    );
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.describe());
}

/// After a two-step `w <m>` (DATA), the next non-blank line is the
/// content, sent as it is even when it looks like a command the session
/// would keep (`wb`, `help`).
#[test]
fn a_two_step_writes_content_is_sent_as_it_is() {
    let d = Daemon::start(1);
    let input = b"w 1\nwb 1 5 looks like a command\nw 1\n\nhelp me\nr 1\n";
    let out = client_with_input(d.dir.path(), &["-s", &d.addr()], input);
    assert_eq!(out.status.code(), Some(0), "{}", out.describe());
    assert_eq!(out.stderr, "", "{}", out.describe());
    let replies: Vec<&str> = out.stdout.split("> ").skip(1).collect();
    assert!(
        replies.len() == 7
            && replies[0].starts_with("DATA send mailbox 1's content")
            && replies[1] == "OK wrote 27 bytes to mailbox 1, version 1\n"
            && replies[2].starts_with("DATA send mailbox 1's content")
            && replies[3].is_empty()
            && replies[4] == "OK wrote 7 bytes to mailbox 1, version 2\n"
            && replies[5] == "mailbox 1, version 2, 7 bytes:\nhelp me\n",
        "{replies:?}: {}",
        out.describe()
    );
}

/// Piped bytes that are not UTF-8 go to the server as they are.
#[test]
fn piped_bytes_that_are_not_utf8_are_sent_as_they_are() {
    let d = Daemon::start(1);
    let out = client_with_input(
        d.dir.path(),
        &["-s", &d.addr()],
        b"w 1 caf\xe9 \xff\xfe\nr 1\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", out.describe());
    assert!(
        out.stdout
            .contains("> OK wrote 7 bytes to mailbox 1, version 1\n")
            && out
                .stdout
                .contains("> mailbox 1, version 1, 7 bytes:\ncaf\\xe9 \\xff\\xfe\n"),
        "{}",
        out.describe()
    );
    let out = client(d.dir.path(), &["-s", &d.addr(), "read", "1"]);
    assert_eq!(out.stdout_bytes, b"caf\xe9 \xff\xfe", "{}", out.describe());
}

/// Runs `client <args>` with `input` on stdin and a stdout whose reader is
/// gone (as under `| head -1` once head is done): its exit status.
fn run_with_stdout_closed(args: &[&str], input: &[u8]) -> std::process::ExitStatus {
    let mut child = std::process::Command::new(client_bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the client");
    drop(child.stdout.take());
    let mut stdin = child.stdin.take().expect("piped stdin");
    // The client may be gone already: a failed write is its business.
    let _ = stdin.write_all(input);
    drop(stdin);
    common::wait_for(&mut child, Duration::from_secs(30)).expect("the client exits")
}

/// A closed stdout panics nothing: the session goes on sending what is
/// typed, and leaves with status 0.
#[test]
fn a_closed_stdout_does_not_stop_the_session() {
    let d = Daemon::start(1);
    let status = run_with_stdout_closed(&["-s", &d.addr()], b"w 1 still sent\nr 1\n");
    assert_eq!(status.code(), Some(0), "{status}");
    let out = client(d.dir.path(), &["-s", &d.addr(), "read", "1"]);
    assert_eq!(out.stdout, "still sent", "{}", out.describe());
    // The chat too.
    let status = run_with_stdout_closed(
        &["-s", &d.addr(), "chat", "1", "--nick", "blind"],
        b"typed blind\n",
    );
    assert_eq!(status.code(), Some(0), "{status}");
    let out = client(d.dir.path(), &["-s", &d.addr(), "read", "1"]);
    assert!(
        out.stdout.ends_with(" blind: typed blind\n"),
        "{}",
        out.describe()
    );
}

#[test]
fn help_shows_the_clients_commands_then_the_servers() {
    let d = Daemon::start(1);
    let out = client_with_input(d.dir.path(), &["-s", &d.addr()], b"help\nq\n");
    assert_eq!(out.status.code(), Some(0), "{}", out.describe());
    for wanted in [
        "  r 1                 read mailbox 1\n",
        "  append 1 hi there ",
        "  Ctrl-D              leave",
        "The server's help:\n",
        // The server's own text, without its length line.
        "wb <m> <len>",
    ] {
        assert!(
            out.stdout.contains(wanted),
            "{wanted:?}: {}",
            out.describe()
        );
    }
    assert!(!out.stdout.contains("bytes of help"), "{}", out.describe());
    // `q` goes to the server, which says Goodbye and closes: the end.
    assert!(out.stdout.ends_with("> Goodbye\n"), "{}", out.describe());
}

#[test]
fn a_closed_connection_ends_the_session() {
    let d = Daemon::start(1);
    // `quit` ends the connection like `q`: nothing after it is sent.
    let out = client_with_input(d.dir.path(), &["-s", &d.addr()], b"quit\nw 1 late\n");
    assert_eq!(out.status.code(), Some(0), "{}", out.describe());
    assert!(out.stdout.ends_with("> Goodbye\n"), "{}", out.describe());
    let out = client(d.dir.path(), &["-s", &d.addr(), "stat", "1"]);
    assert_eq!(out.stdout, "OK mailbox 1: 0 bytes, version 0\n");
}

/// The seed's way on a real terminal: the gateway's address and port typed
/// at the prompts, a server handed out, requests typed with the line
/// editor, a line dropped with Ctrl-C, then Ctrl-D.
#[test]
fn the_gateway_prompts_and_requests_on_a_terminal() {
    let gw = Gateway::start();
    let d = Daemon::start_with(2, &["--gateway", &gw.addr()]);
    gw.wait_available(d.port);
    let home = tempfile::tempdir().expect("a home directory");
    let mut term = Terminal::spawn(
        &client_bin(),
        &[],
        &[
            ("HOME", home.path().as_os_str()),
            ("TERM", OsStr::new("xterm")),
        ],
    );
    term.expect("gateway address: ", SHOWN);
    term.type_keys("127.0.0.1\r");
    term.expect("gateway port: ", SHOWN);
    term.type_keys(&format!("{}\r", gw.port));
    term.expect(
        &format!("gateway {} handed out server {}", gw.addr(), d.addr()),
        SHOWN,
    );
    term.expect(&format!("connected to {}", d.addr()), SHOWN);
    term.expect("> ", SHOWN);
    // A typo mended with the line editor: Ctrl-A (start of line), Ctrl-K
    // (kill to the end), then the real request.
    term.type_keys("w 2 a typo\x01\x0bw 2 typed on a terminal\r");
    term.expect("OK wrote 19 bytes to mailbox 2, version 1", SHOWN);
    term.expect("> ", SHOWN);
    term.type_keys("r 2\r");
    term.expect("mailbox 2, version 1, 19 bytes:", SHOWN);
    term.expect("typed on a terminal", SHOWN);
    term.expect("> ", SHOWN);
    // Ctrl-C drops the line being typed: it is never sent.
    term.type_keys("w 2 dropped\x03");
    term.expect("> ", SHOWN);
    term.type_keys("stat 2\r");
    term.expect("OK mailbox 2: 19 bytes, version 1", SHOWN);
    term.expect("> ", SHOWN);
    // Ctrl-D: q goes to the server, its Goodbye is shown, exit 0.
    term.type_keys("\x04");
    term.expect("Goodbye", SHOWN);
    let status = term.wait(SHOWN).expect("the client exits after Ctrl-D");
    assert!(status.success(), "{status}; the screen:\n{}", term.screen());
    // The requests are in the history; the dropped line and the gateway's
    // address are not.
    let history = std::fs::read_to_string(home.path().join(".dipc_history"))
        .expect("~/.dipc_history written");
    assert!(history.contains("w 2 typed on a terminal"), "{history}");
    assert!(history.contains("stat 2"), "{history}");
    assert!(!history.contains("dropped"), "{history}");
    assert!(!history.contains("127.0.0.1"), "{history}");
}

/// The history of one session is there, with the Up arrow, in the next.
#[test]
fn history_carries_over_to_the_next_session() {
    let d = Daemon::start(1);
    let home = tempfile::tempdir().expect("a home directory");
    let env = [
        ("HOME", home.path().as_os_str()),
        ("TERM", OsStr::new("xterm")),
    ];
    let mut term = Terminal::spawn(&client_bin(), &["-s", &d.addr()], &env);
    term.expect("> ", SHOWN);
    term.type_keys("w 1 remembered\r");
    term.expect("OK wrote 10 bytes to mailbox 1, version 1", SHOWN);
    term.expect("> ", SHOWN);
    term.type_keys("\x04");
    term.expect("Goodbye", SHOWN);
    assert!(term.wait(SHOWN).is_some_and(|s| s.success()));

    let mut term = Terminal::spawn(&client_bin(), &["-s", &d.addr()], &env);
    term.expect("> ", SHOWN);
    // Up: the last request again, sent as it was.
    term.type_keys("\x1b[A\r");
    term.expect("OK wrote 10 bytes to mailbox 1, version 2", SHOWN);
    term.expect("> ", SHOWN);
    term.type_keys("q\r");
    term.expect("Goodbye", SHOWN);
    assert!(term.wait(SHOWN).is_some_and(|s| s.success()));
}
