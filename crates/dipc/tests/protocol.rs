//! The wire protocol of docs/prog3.md, against a real daemon: framing, every
//! request and reply, every error reply, binary data, the seed-style client.

mod common;

use std::thread;
use std::time::Duration;

use common::*;

/// The geometry of the spec's examples: 4 mailboxes of 8 KiB, 2 KiB packets,
/// so the data limit is 2048 bytes and the line limit 2112.
fn spec_daemon() -> Daemon {
    Daemon::start(4, 8, 2, &["--workers", "2"])
}

#[test]
fn write_read_round_trip_with_crlf_lines() {
    let d = spec_daemon();
    let mut c = d.client();

    assert_eq!(
        c.request("w 1 hello world"),
        "OK wrote 11 bytes to mailbox 1, version 1"
    );
    c.send(b"r 1\r\n");
    assert_eq!(c.read_line(), "OK 11 bytes from mailbox 1, version 1");
    assert_eq!(c.read_bytes(11), b"hello world");
    assert_eq!(c.read_bytes(1), b"\n");

    // Overwrite: the version counts writes, the content is replaced whole.
    assert_eq!(
        c.request("write 1 bye"),
        "OK wrote 3 bytes to mailbox 1, version 2"
    );
    assert_eq!(c.read_mailbox(1), (2, b"bye".to_vec()));

    // The text is the rest of the line after one separator: inner and
    // trailing spaces are kept, only the CR of CRLF goes.
    assert_eq!(
        c.request("w 3 a  b  "),
        "OK wrote 6 bytes to mailbox 3, version 1"
    );
    assert_eq!(c.read_mailbox(3), (1, b"a  b  ".to_vec()));

    // Untouched mailboxes are empty at version 0, and writes stay in their mailbox.
    assert_eq!(c.read_mailbox(2), (0, Vec::new()));
    assert_eq!(c.read_mailbox(4), (0, Vec::new()));

    // Another connection sees the same contents.
    drop(c);
    let mut c2 = d.client();
    assert_eq!(c2.read_mailbox(1), (2, b"bye".to_vec()));
    assert_eq!(c2.read_mailbox(3), (1, b"a  b  ".to_vec()));
    drop(c2);
    d.stop();
}

#[test]
fn commands_are_case_insensitive_and_take_glued_numbers() {
    let d = spec_daemon();
    let mut c = d.client();
    assert_eq!(
        c.request("W 2 upper"),
        "OK wrote 5 bytes to mailbox 2, version 1"
    );
    assert_eq!(
        c.request("Write 2 mixed"),
        "OK wrote 5 bytes to mailbox 2, version 2"
    );
    assert_eq!(
        c.request("w2 glued"),
        "OK wrote 5 bytes to mailbox 2, version 3"
    );
    for form in ["R 2", "READ 2", "r2", "Read2", "  read   2  "] {
        c.send_line(form);
        assert_eq!(
            c.read_reply_of(2),
            (3, b"glued".to_vec()),
            "request {form:?}"
        );
    }
    assert_eq!(c.request("STAT 2"), "OK mailbox 2: 5 bytes, version 3");
    assert_eq!(c.request("stat2"), "OK mailbox 2: 5 bytes, version 3");
    drop(c);
    d.stop();
}

#[test]
fn lf_crlf_and_nul_terminators_and_pipelined_requests() {
    let d = spec_daemon();
    let mut c = d.client();
    // Three writes and three reads in one send, each with its own terminator.
    c.send(b"w 1 lf\nw 2 crlf\r\nw 3 nul\0r 1\nr 2\r\nr 3\0");
    assert_eq!(c.read_line(), "OK wrote 2 bytes to mailbox 1, version 1");
    assert_eq!(c.read_line(), "OK wrote 4 bytes to mailbox 2, version 1");
    assert_eq!(c.read_line(), "OK wrote 3 bytes to mailbox 3, version 1");
    assert_eq!(c.read_reply_of(1), (1, b"lf".to_vec()));
    assert_eq!(c.read_reply_of(2), (1, b"crlf".to_vec()));
    assert_eq!(c.read_reply_of(3), (1, b"nul".to_vec()));

    // 100 requests in one send: 100 replies, in order.
    let mut batch = Vec::new();
    for i in 0..50 {
        batch.extend_from_slice(format!("w 4 n{i}\n").as_bytes());
        batch.extend_from_slice(b"stat 4\n");
    }
    c.send(&batch);
    for i in 0..50u64 {
        let text = format!("n{i}");
        assert_eq!(
            c.read_line(),
            format!(
                "OK wrote {} bytes to mailbox 4, version {}",
                text.len(),
                i + 1
            )
        );
        assert_eq!(
            c.read_line(),
            format!("OK mailbox 4: {} bytes, version {}", text.len(), i + 1)
        );
    }
    drop(c);
    d.stop();
}

#[test]
fn nul_terminated_requests_of_c_clients_are_answered() {
    let d = spec_daemon();
    let mut c = d.client();
    // What a C client sends with write(fd, s, strlen(s) + 1).
    c.send(b"w 1 from C\0");
    assert_eq!(c.read_line(), "OK wrote 6 bytes to mailbox 1, version 1");
    c.send(b"r 1\0");
    assert_eq!(c.read_line(), "OK 6 bytes from mailbox 1, version 1");
    assert_eq!(c.read_bytes(7), b"from C\n");
    c.send(b"stat 1\0");
    assert_eq!(c.read_line(), "OK mailbox 1: 6 bytes, version 1");
    // A lone NUL is an empty line: no reply (the stat reply comes first).
    c.send(b"\0stat 2\0");
    assert_eq!(c.read_line(), "OK mailbox 2: 0 bytes, version 0");
    drop(c);
    d.stop();
}

#[test]
fn two_step_write() {
    let d = spec_daemon();
    let mut c = d.client();
    assert_eq!(
        c.request("w 2"),
        "DATA send mailbox 2's content as one line of at most 2048 bytes"
    );
    // The data line is stored, even when it looks like a command.
    assert_eq!(c.request("r 1"), "OK wrote 3 bytes to mailbox 2, version 1");
    assert_eq!(c.read_mailbox(2), (1, b"r 1".to_vec()));
    assert_eq!(c.read_mailbox(1), (0, Vec::new()));

    assert_eq!(
        c.request("write 3"),
        "DATA send mailbox 3's content as one line of at most 2048 bytes"
    );
    assert_eq!(
        c.request("  spaced  text  "),
        "OK wrote 16 bytes to mailbox 3, version 1"
    );
    assert_eq!(c.read_mailbox(3), (1, b"  spaced  text  ".to_vec()));

    // Data of exactly the limit is accepted.
    let full = "d".repeat(2048);
    assert_eq!(
        c.request("w 4"),
        "DATA send mailbox 4's content as one line of at most 2048 bytes"
    );
    assert_eq!(
        c.request(&full),
        "OK wrote 2048 bytes to mailbox 4, version 1"
    );
    assert_eq!(c.read_mailbox(4), (1, full.into_bytes()));

    // The two steps may come in separate sends with LF only.
    c.send(b"w 1\n");
    assert_eq!(
        c.read_line(),
        "DATA send mailbox 1's content as one line of at most 2048 bytes"
    );
    c.send(b"second\n");
    assert_eq!(c.read_line(), "OK wrote 6 bytes to mailbox 1, version 1");
    // After the data line, lines are requests again.
    assert_eq!(c.request("stat 1"), "OK mailbox 1: 6 bytes, version 1");
    drop(c);
    d.stop();
}

#[test]
fn two_step_write_with_too_much_data_is_refused_and_connection_goes_on() {
    let d = spec_daemon();
    let mut c = d.client();
    assert_eq!(
        c.request("w 1"),
        "DATA send mailbox 1's content as one line of at most 2048 bytes"
    );
    // 2049 bytes: over the data limit, within the line limit.
    assert_eq!(
        c.request(&"x".repeat(2049)),
        "ERR data is 2049 bytes, over the 2048-byte packet size"
    );
    assert_eq!(
        c.request("w 1"),
        "DATA send mailbox 1's content as one line of at most 2048 bytes"
    );
    // 3000 bytes: over the line limit too; still reported as data.
    c.send(&[vec![b'y'; 3000], b"\n".to_vec()].concat());
    assert_eq!(
        c.read_line(),
        "ERR data is 3000 bytes, over the 2048-byte packet size"
    );
    // Nothing was written, and the next line is a request again.
    assert_eq!(c.request("stat 1"), "OK mailbox 1: 0 bytes, version 0");
    assert_eq!(c.read_mailbox(1), (0, Vec::new()));
    drop(c);
    d.stop();
}

#[test]
fn seed_style_python_client() {
    let d = spec_daemon();
    let port = d.port.to_string();
    let messages = [
        "w 1 hello from python",
        "r 1",
        "w 2",
        "two step data",
        "r 2",
        "stat 1",
        "r 9",
        "bogus",
        "quit",
    ];
    let mut args = vec![
        seed_client_script().to_string_lossy().into_owned(),
        port.clone(),
    ];
    args.extend(messages.iter().map(|s| s.to_string()));
    let python = std::path::Path::new("python3");
    let out = run(python, &args, d.dir.path());
    assert!(
        out.status.success(),
        "seed client failed:\n{}",
        out.describe()
    );
    let expected = [
        r"Received b'OK wrote 17 bytes to mailbox 1, version 1\n'",
        r"Received b'OK 17 bytes from mailbox 1, version 1\nhello from python\n'",
        r#"Received b"DATA send mailbox 2's content as one line of at most 2048 bytes\n""#,
        r"Received b'OK wrote 13 bytes to mailbox 2, version 1\n'",
        r"Received b'OK 13 bytes from mailbox 2, version 1\ntwo step data\n'",
        r"Received b'OK mailbox 1: 17 bytes, version 1\n'",
        r"Received b'ERR mailbox 9 is out of range 1..4\n'",
        r#"Received b"ERR unknown command 'bogus'\n""#,
        r"Received b'Goodbye'",
    ];
    let got: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(got, expected, "\n{}", out.describe());

    // Messages from stdin, one per line; 'q' ends the session unsent.
    let input = d.dir.path().join("seed-input.txt");
    std::fs::write(&input, "r 1\n\nw 3 via stdin\nq\nr 3\n").unwrap();
    let out = try_run_with_stdin(
        python,
        &[seed_client_script().to_string_lossy().into_owned(), port],
        d.dir.path(),
        CMD_TIMEOUT,
        Some(&input),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "seed client (stdin) failed:\n{}",
        out.describe()
    );
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        [
            r"Received b'OK 17 bytes from mailbox 1, version 1\nhello from python\n'",
            r"Received b'OK wrote 9 bytes to mailbox 3, version 1\n'",
        ],
        "\n{}",
        out.describe()
    );

    // What the pause-framed writes stored: exactly the text, no newline.
    let mut c = d.client();
    assert_eq!(c.read_mailbox(1), (1, b"hello from python".to_vec()));
    assert_eq!(c.read_mailbox(2), (1, b"two step data".to_vec()));
    assert_eq!(c.read_mailbox(3), (1, b"via stdin".to_vec()));
    drop(c);
    d.stop();
}

#[test]
fn binary_round_trip() {
    let d = spec_daemon();
    let mut c = d.client();

    // Every byte value, terminators included.
    let all: Vec<u8> = (0..=255u8).collect();
    c.send(b"wb 1 256\n");
    c.send(&all);
    assert_eq!(c.read_line(), "OK wrote 256 bytes to mailbox 1, version 1");
    assert_eq!(c.read_mailbox(1), (1, all.clone()));

    // Content ending in CR and LF keeps them.
    c.send(b"wb 2 5\r\nab\r\n\0");
    assert_eq!(c.read_line(), "OK wrote 5 bytes to mailbox 2, version 1");
    assert_eq!(c.read_mailbox(2), (1, b"ab\r\n\0".to_vec()));

    // Zero bytes: an empty mailbox, one version more.
    assert_eq!(
        c.request("wb 2 0"),
        "OK wrote 0 bytes to mailbox 2, version 2"
    );
    assert_eq!(c.read_mailbox(2), (2, Vec::new()));

    // Exactly the data limit, random bytes.
    let big = pseudo_random_bytes(7, 2048);
    c.send(b"WB 3 2048\n");
    c.send(&big);
    assert_eq!(c.read_line(), "OK wrote 2048 bytes to mailbox 3, version 1");
    assert_eq!(c.read_mailbox(3), (1, big));

    // The bytes may trickle in with pauses longer than the line pause: they
    // are counted, not framed.
    let slow = pseudo_random_bytes(11, 300);
    c.send(b"wb 4 300\n");
    for piece in slow.chunks(100) {
        c.send(piece);
        thread::sleep(Duration::from_millis(150));
    }
    assert_eq!(c.read_line(), "OK wrote 300 bytes to mailbox 4, version 1");

    // Binary data followed at once by the next request in the same send.
    c.send(b"wb 1 3\nxyzr 4\n");
    assert_eq!(c.read_line(), "OK wrote 3 bytes to mailbox 1, version 2");
    assert_eq!(c.read_reply_of(4), (1, slow));
    assert_eq!(c.read_mailbox(1), (2, b"xyz".to_vec()));
    drop(c);
    d.stop();
}

#[test]
fn error_replies_match_the_spec() {
    let d = spec_daemon();
    let mut c = d.client();
    let cases: &[(&str, &str)] = &[
        ("x 1", "ERR unknown command 'x'"),
        ("frobnicate", "ERR unknown command 'frobnica'"),
        ("r", "ERR r needs a mailbox number 1..4"),
        ("r abc", "ERR mailbox 'abc' is not a number in 1..4"),
        ("r 7", "ERR mailbox 7 is out of range 1..4"),
        ("r 0", "ERR mailbox 0 is out of range 1..4"),
        ("r 5", "ERR mailbox 5 is out of range 1..4"),
        ("r 1 2", "ERR r takes one mailbox number"),
        ("stat 1 2", "ERR stat takes at most one mailbox number"),
        ("stat 9", "ERR mailbox 9 is out of range 1..4"),
        ("w 7 text", "ERR mailbox 7 is out of range 1..4"),
        ("w abc text", "ERR mailbox 'abc' is not a number in 1..4"),
        ("wb 1", "ERR wb needs a byte length 0..2048"),
        ("wb 1 abc", "ERR wb needs a byte length 0..2048"),
    ];
    // Every case is sent and the mismatches reported together at the end.
    let mut mismatches = Vec::new();
    for (request, reply) in cases {
        let got = c.request(request);
        if got != *reply {
            mismatches.push(format!(
                "request {request:?}: expected {reply:?}, got {got:?}"
            ));
        }
    }
    // Data over the limit in a one-line write (line within the line limit).
    let request = format!("w 1 {}", "a".repeat(2049));
    assert_eq!(
        c.request(&request),
        "ERR data is 2049 bytes, over the 2048-byte packet size"
    );
    // ... and over the line limit as well: still reported as data.
    let request = format!("w 1 {}", "a".repeat(3000));
    assert_eq!(
        c.request(&request),
        "ERR data is 3000 bytes, over the 2048-byte packet size"
    );
    // A line too long that is not a write.
    c.send(&[vec![b'z'; 3000], b"\n".to_vec()].concat());
    assert_eq!(
        c.read_line(),
        "ERR line of 3000 bytes is over the 2112-byte line limit"
    );
    // None of the refused writes wrote anything, and the connection still
    // serves every request properly.
    assert_eq!(c.request("stat 1"), "OK mailbox 1: 0 bytes, version 0");
    assert_eq!(
        c.request("w 1 fine"),
        "OK wrote 4 bytes to mailbox 1, version 1"
    );
    assert_eq!(c.read_mailbox(1), (1, b"fine".to_vec()));
    drop(c);
    d.stop();
    assert!(mismatches.is_empty(), "\n{}", mismatches.join("\n"));
}

#[test]
fn overlong_line_gets_err_and_the_connection_stays_usable() {
    let d = spec_daemon();
    let mut c = d.client();

    // Exactly at the line limit (2112 bytes): parsed as a request.
    c.send(&[vec![b'x'; 2112], b"\n".to_vec()].concat());
    let reply = c.read_line();
    assert!(
        reply.starts_with("ERR unknown command '"),
        "a 2112-byte line is within the limit and is parsed: {reply:?}"
    );
    // One byte more: refused as a line.
    c.send(&[vec![b'x'; 2113], b"\n".to_vec()].concat());
    assert_eq!(
        c.read_line(),
        "ERR line of 2113 bytes is over the 2112-byte line limit"
    );
    assert_eq!(c.request("stat 1"), "OK mailbox 1: 0 bytes, version 0");

    // A huge line sent in pieces, with a request in the same send after its
    // end: one ERR, then the request's reply.
    let piece = vec![b'r'; 20_000];
    for _ in 0..5 {
        c.send(&piece);
    }
    c.send(b"\nw 2 after\n");
    assert_eq!(
        c.read_line(),
        "ERR line of 100000 bytes is over the 2112-byte line limit"
    );
    assert_eq!(c.read_line(), "OK wrote 5 bytes to mailbox 2, version 1");
    assert_eq!(c.read_mailbox(2), (1, b"after".to_vec()));
    drop(c);
    d.stop();
}

#[test]
fn wb_over_the_limit_skips_exactly_its_bytes() {
    let d = spec_daemon();
    let mut c = d.client();
    // 5000 bytes that look like requests: they must be skipped, not run.
    let mut junk = b"w 1 junk\nr 1\n".repeat(5000 / 13 + 1);
    junk.truncate(5000);
    c.send(b"wb 1 5000\n");
    c.send(&junk);
    c.send(b"stat 1\n");
    let refusal = c.read_line();
    // The skipped bytes ran nothing: the next reply is stat's.
    assert_eq!(c.read_line(), "OK mailbox 1: 0 bytes, version 0");
    assert_eq!(
        c.request("w 1 ok"),
        "OK wrote 2 bytes to mailbox 1, version 1"
    );
    drop(c);
    d.stop();
    assert_eq!(
        refusal,
        "ERR data is 5000 bytes, over the 2048-byte packet size; the 5000 bytes that follow are skipped"
    );
}

#[test]
fn mailbox_size_limits_data_when_smaller_than_the_packet() {
    // 1 KiB mailboxes, 2 KiB packets: the data limit is 1024 (the mailbox
    // size), the line limit 1088.
    let d = Daemon::start(2, 1, 2, &["--workers", "2"]);
    let mut c = d.client();
    assert_eq!(
        c.request("w 1"),
        "DATA send mailbox 1's content as one line of at most 1024 bytes"
    );
    assert_eq!(
        c.request(&"m".repeat(1025)),
        "ERR data is 1025 bytes, over the 1024-byte mailbox size"
    );
    assert_eq!(
        c.request(&format!("w 1 {}", "m".repeat(1500))),
        "ERR data is 1500 bytes, over the 1024-byte mailbox size"
    );
    assert_eq!(c.request("wb 1 x"), "ERR wb needs a byte length 0..1024");
    c.send(b"wb 1 2000\n");
    c.send(&[b'j'; 2000]);
    let wb_refusal = c.read_line();
    // Lines are bounded by the packet (a put carries a packet-sized value).
    c.send(&[vec![b'z'; 2113], b"\n".to_vec()].concat());
    assert_eq!(
        c.read_line(),
        "ERR line of 2113 bytes is over the 2112-byte line limit"
    );
    let full = "f".repeat(1024);
    assert_eq!(
        c.request(&format!("w 2 {full}")),
        "OK wrote 1024 bytes to mailbox 2, version 1"
    );
    assert_eq!(c.read_mailbox(2), (1, full.into_bytes()));
    assert_eq!(c.read_mailbox(1), (0, Vec::new()));
    drop(c);
    d.stop();
    assert_eq!(
        wb_refusal,
        "ERR data is 2000 bytes, over the 1024-byte mailbox size; the 2000 bytes that follow are skipped"
    );
}

#[test]
fn blank_lines_get_no_reply_and_there_is_no_banner() {
    let d = spec_daemon();
    let mut c = d.client();
    // No banner: nothing arrives before a request.
    c.assert_silent(Duration::from_millis(300));
    // Blank lines of every kind: no reply; the first reply is stat's.
    c.send(b"\n\r\n   \n\t\t\r\n \t \0\n");
    c.send(b"stat 3\n");
    assert_eq!(c.read_line(), "OK mailbox 3: 0 bytes, version 0");
    // A blank line left without terminator past the pause: still no reply.
    c.send(b"   ");
    c.assert_silent(Duration::from_millis(300));
    assert_eq!(c.request("stat 4"), "OK mailbox 4: 0 bytes, version 0");
    drop(c);
    d.stop();
}

#[test]
fn quit_sends_goodbye_then_closes() {
    let d = spec_daemon();
    for quit in ["q", "quit", "exit", "Q", "q 1", "QUIT 3"] {
        let mut c = d.client();
        c.send(format!("{quit}\r\n").as_bytes());
        assert_eq!(
            c.read_to_eof(),
            b"Goodbye",
            "request {quit:?}: exactly Goodbye, then EOF"
        );
    }
    // Requests after q in the same send are not answered.
    let mut c = d.client();
    c.send(b"w 1 before\nq\nw 1 after\n");
    assert_eq!(
        c.read_to_eof(),
        b"OK wrote 6 bytes to mailbox 1, version 1\nGoodbye"
    );
    // The server goes on; the write after q did not happen.
    let mut c = d.client();
    assert_eq!(c.read_mailbox(1), (1, b"before".to_vec()));
    drop(c);
    d.stop();
}

#[test]
fn help_is_a_framed_reply() {
    let d = spec_daemon();
    let mut c = d.client();
    for form in ["help", "HELP"] {
        c.send_line(form);
        let header = c.read_line();
        let len: usize = header
            .strip_prefix("OK ")
            .and_then(|r| r.strip_suffix(" bytes of help"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("bad help header {header:?}"));
        assert!(len > 0);
        let text = c.read_body(&header);
        assert_eq!(text.len(), len);
        let text = String::from_utf8(text).expect("help text is UTF-8");
        assert!(
            text.contains('r') && text.contains('w') && text.contains('q'),
            "{text}"
        );
    }
    // Framing intact after it.
    assert_eq!(c.request("stat 1"), "OK mailbox 1: 0 bytes, version 0");
    drop(c);
    d.stop();
}

#[test]
fn stat_replies() {
    let d = spec_daemon();
    let mut c = d.client();
    assert_stat_geometry(
        c.request("stat"),
        format!(
            "OK mailboxes=4 mailbox_bytes=8192 packet_bytes=2048 workers=2 port={} pid={}",
            d.port, d.pid
        ),
    );
    assert_eq!(c.request("stat 1"), "OK mailbox 1: 0 bytes, version 0");
    c.write_mailbox(1, "one");
    c.write_mailbox(1, "three");
    assert_eq!(c.request("stat 1"), "OK mailbox 1: 5 bytes, version 2");
    assert_eq!(c.request("stat 4"), "OK mailbox 4: 0 bytes, version 0");
    drop(c);
    d.stop();
}

#[test]
fn read_larger_than_a_packet_arrives_complete() {
    // 1 KiB packets: a read of a full mailbox (1024 bytes of content plus the
    // header and LF) is larger than a packet and goes out in pieces.
    let d = Daemon::start(2, 4, 1, &["--workers", "2"]);
    let mut c = d.client();
    let content = pseudo_random_bytes(3, 1024);
    c.send(b"wb 2 1024\n");
    c.send(&content);
    assert_eq!(c.read_line(), "OK wrote 1024 bytes to mailbox 2, version 1");
    for _ in 0..3 {
        assert_eq!(c.read_mailbox(2), (1, content.clone()));
    }
    let text = "t".repeat(1024);
    assert_eq!(
        c.request(&format!("w 1 {text}")),
        "OK wrote 1024 bytes to mailbox 1, version 1"
    );
    // Both reads in one send: the replies follow each other exactly.
    c.send(b"r 1\nr 2\n");
    assert_eq!(c.read_reply_of(1), (1, text.into_bytes()));
    assert_eq!(c.read_reply_of(2), (1, content));
    drop(c);
    d.stop();
}

#[test]
fn line_pause_completes_an_unterminated_line() {
    // A long pause, so that the timing of this test is not tight.
    let d = Daemon::start(2, 1, 1, &["--workers", "2", "--line-pause-ms", "1000"]);
    let mut c = d.client();
    // A line in two sends, 100 ms apart (less than the pause): one line.
    c.send(b"w 1 hel");
    thread::sleep(Duration::from_millis(100));
    c.send(b"lo\n");
    assert_eq!(c.read_line(), "OK wrote 5 bytes to mailbox 1, version 1");
    // No terminator at all: answered once the pause has passed.
    c.send(b"r 1");
    assert_eq!(c.read_line(), "OK 5 bytes from mailbox 1, version 1");
    assert_eq!(c.read_bytes(6), b"hello\n");
    drop(c);
    d.stop();
}

#[test]
fn a_client_vanishing_mid_request_harms_nothing() {
    let d = spec_daemon();
    {
        let mut c = d.client();
        c.write_mailbox(1, "kept");
        // A binary write cut short, then the client closes.
        c.send(b"wb 1 100\n0123456789");
    }
    {
        // A binary write cut short by an abortive close (RST).
        let mut c = d.client();
        set_linger_zero(&c.stream);
        c.send(b"wb 1 50\nabc");
    }
    {
        // Replies left unread when the client leaves.
        let mut c = d.client();
        c.send(&b"r 1\n".repeat(200));
    }
    let mut c = d.client();
    assert_eq!(c.read_mailbox(1), (1, b"kept".to_vec()));
    assert_eq!(c.request("stat 1"), "OK mailbox 1: 4 bytes, version 1");
    drop(c);
    d.stop();
}

#[test]
fn stat_figures_add_up_against_a_known_workload() {
    let d = Daemon::start(3, 4, 2, &["--workers", "2"]);
    let mut c = d.client();
    assert!(c.request("w 1 a").starts_with("OK"));
    assert!(c.request("w 2 bb").starts_with("OK"));
    assert!(c.request("r 1").starts_with("OK"));
    assert_eq!(c.read_line(), "a");
    assert!(c.request("stat 2").starts_with("OK"));
    assert!(c.request("bogus").starts_with("ERR"));
    assert!(c.request("r 9").starts_with("ERR"));
    let f = stat_fields(&c.request("stat"));
    let n = |k: &str| -> u64 {
        f.get(k)
            .unwrap_or_else(|| panic!("stat has no {k}: {f:?}"))
            .parse()
            .unwrap_or_else(|_| panic!("stat's {k} is not a number: {f:?}"))
    };
    assert_eq!(n("connections"), 1, "{f:?}");
    assert_eq!(n("writes"), 2, "{f:?}");
    assert_eq!(n("reads"), 1, "{f:?}");
    // stat 2, and this stat itself.
    assert_eq!(n("stats"), 2, "{f:?}");
    // bogus and r 9, refused as they are parsed.
    assert_eq!(n("other"), 2, "{f:?}");
    assert_eq!(n("errors"), 2, "{f:?}");
    assert_eq!(n("lock_timeouts"), 0, "{f:?}");
    assert_eq!(n("busy"), 1, "{f:?}");
    assert_eq!(f["lengths"], "1,2,0", "{f:?}");
    assert_eq!(f["versions"], "1,1,0", "{f:?}");
    // The other worker shows idle once it has reached its accept loop.
    assert!(
        wait_until(Duration::from_secs(2), || {
            let f = stat_fields(&c.request("stat"));
            f.get("idle").map(String::as_str) == Some("1")
        }),
        "the second worker never showed idle"
    );
    drop(c);
    d.stop();
}
