//! `client chat`: three people chatting through pseudo-terminals, each
//! line shown once by every client, in the same order; a late comer sees
//! the mailbox's lines on entry. Against tests/common/fake_dipc.rs (which
//! has append and wait), and against the real daemon once it has them.

mod common;

use std::ffi::OsStr;
use std::time::{Duration, Instant};

use common::fake_dipc::FakeDipc;
use common::pty::Terminal;
use common::{client, client_bin, client_with_input, Daemon};

const SHOWN: Duration = Duration::from_secs(5);
const NICKS: [&str; 3] = ["alice", "bob", "carol"];
const ROUNDS: usize = 3;

fn chatter(server: &str, nick: &str, home: &OsStr) -> Terminal {
    let mut term = Terminal::spawn(
        &client_bin(),
        &["-s", server, "chat", "1", "--nick", nick],
        &[("HOME", home), ("TERM", OsStr::new("xterm"))],
    );
    term.expect(&format!("chat in mailbox 1 of {server} as {nick}"), SHOWN);
    term.expect(&format!("{nick}> "), SHOWN);
    term
}

/// Each message as it is signed in the mailbox: `NICK: NICK-ROUND`.
fn messages(rounds: usize) -> Vec<String> {
    (0..rounds)
        .flat_map(|round| {
            NICKS
                .iter()
                .map(move |nick| format!("{nick}: {nick}-{round}"))
        })
        .collect()
}

/// The messages in the order `screen` shows them; panics if one is shown
/// more than once.
fn order_shown(screen: &str, messages: &[String]) -> Vec<String> {
    let mut shown: Vec<(usize, String)> = Vec::new();
    for message in messages {
        let at: Vec<usize> = screen
            .match_indices(message.as_str())
            .map(|(i, _)| i)
            .collect();
        assert!(
            at.len() <= 1,
            "{message:?} shown {} times:\n{screen}",
            at.len()
        );
        if let Some(&i) = at.first() {
            shown.push((i, message.clone()));
        }
    }
    shown.sort();
    shown.into_iter().map(|(_, m)| m).collect()
}

fn three_chatters_see_every_line_once_in_one_order(server: &str) {
    let home = tempfile::tempdir().expect("a home directory");
    let mut terms: Vec<Terminal> = NICKS
        .iter()
        .map(|nick| chatter(server, nick, home.path().as_os_str()))
        .collect();
    for round in 0..ROUNDS {
        // Everyone types at once.
        std::thread::scope(|scope| {
            for (term, nick) in terms.iter_mut().zip(NICKS) {
                scope.spawn(move || term.type_slowly(&format!("{nick}-{round}\r")));
            }
        });
        let wanted = messages(round + 1);
        let deadline = Instant::now() + Duration::from_secs(5);
        while terms
            .iter()
            .any(|t| order_shown(&t.screen(), &wanted).len() < wanted.len())
        {
            assert!(
                Instant::now() < deadline,
                "round {round}: not every line shown everywhere within 5 s:\n{}",
                terms
                    .iter()
                    .map(Terminal::screen)
                    .collect::<Vec<_>>()
                    .join("\n-----\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let wanted = messages(ROUNDS);
    let orders: Vec<Vec<String>> = terms
        .iter()
        .map(|t| order_shown(&t.screen(), &wanted))
        .collect();
    for order in &orders[1..] {
        assert_eq!(
            order, &orders[0],
            "two clients show the lines in other orders"
        );
    }
    // Each line is signed with the time: `HH:MM:SS alice: alice-0`.
    let screen = terms[0].screen();
    let at = screen.find("alice: alice-0").expect("shown");
    // The screen is the raw output, escapes included: the 9 bytes before
    // the nick are the stamp and its space.
    let time = screen.get(at.saturating_sub(9)..at).unwrap_or("");
    let shape: String = time
        .chars()
        .map(|c| if c.is_ascii_digit() { '9' } else { c })
        .collect();
    assert!(
        shape == "99:99:99 ",
        "no time before the nick: {:?}",
        &screen[at.saturating_sub(20)..at + 14]
    );
    // A late comer sees them all on entry, in the same order.
    let late = chatter(server, "dave", home.path().as_os_str());
    assert_eq!(
        order_shown(&late.screen(), &wanted),
        orders[0],
        "{}",
        late.screen()
    );
    // /quit and Ctrl-D both leave, cleanly.
    for (i, mut term) in terms.into_iter().chain([late]).enumerate() {
        term.type_slowly(if i % 2 == 0 { "/quit\r" } else { "\x04" });
        let status = term.wait(SHOWN).expect("the chat exits");
        assert!(status.success(), "{status}:\n{}", term.screen());
    }
}

#[test]
fn three_chatters_through_terminals() {
    let server = FakeDipc::start();
    three_chatters_see_every_line_once_in_one_order(&server.addr());
}

#[test]
fn three_chatters_through_terminals_on_dipc() {
    let d = Daemon::start(1);
    three_chatters_see_every_line_once_in_one_order(&d.addr());
}

#[test]
fn a_server_without_wait_cannot_hold_a_chat() {
    let server = FakeDipc::without_wait();
    let dir = tempfile::tempdir().expect("a directory");
    let out = client(
        dir.path(),
        &["-s", &server.addr(), "chat", "1", "--nick", "x"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.describe());
    assert_eq!(
        out.stderr,
        format!(
            "client chat: {} cannot hold a chat: it answered `wait` with \"unknown command \
             'wait'\" (a chat needs dipc's append and wait requests)\n",
            server.addr()
        ),
        "{}",
        out.describe()
    );
    // A bad --nick is a usage error.
    let out = client(
        dir.path(),
        &["-s", &server.addr(), "chat", "1", "--nick", " "],
    );
    assert_eq!(out.status.code(), Some(2), "{}", out.describe());
    assert!(out.stderr.contains("--nick"), "{}", out.describe());
}

/// The chat lines `nick` signed in a chat's output, without their
/// `HH:MM:SS ` stamp.
fn lines_of<'a>(stdout: &'a str, nick: &str) -> Vec<&'a str> {
    let signed = format!("{nick}: ");
    stdout
        .lines()
        .filter_map(|l| l.get("HH:MM:SS ".len()..))
        .filter(|l| l.starts_with(&signed))
        .collect()
}

/// Input from a pipe: plain lines, each appended; a later comer shows them.
#[test]
fn piped_lines_are_appended_and_shown_to_the_next_comer() {
    let server = FakeDipc::start();
    let dir = tempfile::tempdir().expect("a directory");
    let args = ["-s", &server.addr(), "chat", "1", "--nick", "pipe"];
    let out = client_with_input(dir.path(), &args, b"first\n\nsecond\n/quit\nnot sent\n");
    assert_eq!(out.status.code(), Some(0), "{}", out.describe());
    let out = client_with_input(dir.path(), &args, b"");
    assert_eq!(out.status.code(), Some(0), "{}", out.describe());
    let shown = lines_of(&out.stdout, "pipe");
    assert_eq!(shown, ["pipe: first", "pipe: second"], "{}", out.describe());
}

/// Piped bytes that are not UTF-8 do not end the chat: the line goes with
/// its bad bytes replaced (U+FFFD), and the next line too.
#[test]
fn piped_bytes_that_are_not_utf8_are_sent_lossily() {
    let server = FakeDipc::start();
    let dir = tempfile::tempdir().expect("a directory");
    let args = ["-s", &server.addr(), "chat", "1", "--nick", "pipe"];
    let out = client_with_input(dir.path(), &args, b"caf\xe9 au lait\nnext\n");
    assert_eq!(out.status.code(), Some(0), "{}", out.describe());
    assert_eq!(out.stderr, "", "{}", out.describe());
    let out = client_with_input(dir.path(), &args, b"");
    let shown = lines_of(&out.stdout, "pipe");
    assert_eq!(
        shown,
        ["pipe: caf\u{fffd} au lait", "pipe: next"],
        "{}",
        out.describe()
    );
}

/// The server gone (dipc stopped), the chat says so once, ends at the next
/// Enter, and exits 4 with the reason on stderr.
#[test]
fn a_lost_server_ends_the_chat_with_status_4() {
    let d = Daemon::start(1);
    let addr = d.addr();
    let home = tempfile::tempdir().expect("a home directory");
    let mut term = chatter(&addr, "alice", home.path().as_os_str());
    term.type_slowly("before\r");
    term.expect("alice: before", SHOWN);
    drop(d);
    term.expect(
        &format!("-- {addr} is lost: the chat is over (Enter or Ctrl-D leaves) --"),
        SHOWN,
    );
    term.type_slowly("after\r");
    let status = term.wait(SHOWN).expect("the chat exits");
    assert_eq!(status.code(), Some(4), "{status}:\n{}", term.screen());
    let screen = term.screen();
    assert!(
        screen.contains("client chat: no longer following mailbox 1: "),
        "{screen}"
    );
    assert_eq!(
        screen.matches(" is lost: the chat is over").count(),
        1,
        "{screen}"
    );
}

/// A write (not an append) between appends: the chat shows a marker and
/// the whole new content, then goes on with the appends after it; every
/// line once.
#[test]
fn a_rewritten_mailbox_is_shown_whole_after_a_marker() {
    let d = Daemon::start(1);
    let addr = d.addr();
    let dir = d.dir.path();
    let home = tempfile::tempdir().expect("a home directory");
    let mut term = chatter(&addr, "alice", home.path().as_os_str());
    client(dir, &["-s", &addr, "append", "1", "appended-one"]);
    term.expect("appended-one", SHOWN);
    // One version, two lines: the last (versions) lines would be only the
    // second.
    client(
        dir,
        &["-s", &addr, "write", "1", "rewritten-1\nrewritten-2\n"],
    );
    term.expect("-- mailbox rewritten --", SHOWN);
    term.expect("rewritten-1", SHOWN);
    term.expect("rewritten-2", SHOWN);
    client(dir, &["-s", &addr, "append", "1", "appended-two"]);
    term.expect("appended-two", SHOWN);
    term.type_slowly("/quit\r");
    let status = term.wait(SHOWN).expect("the chat exits");
    assert!(status.success(), "{status}:\n{}", term.screen());
    let screen = term.screen();
    for line in [
        "appended-one",
        "-- mailbox rewritten --",
        "rewritten-1",
        "rewritten-2",
        "appended-two",
    ] {
        assert_eq!(screen.matches(line).count(), 1, "{line}:\n{screen}");
    }
}
