//! The session state machine against a real segment in /dev/shm: framing,
//! every reply form, and arbitrary splits of the same stream.
//!
//! Segments here use ports below 1024 (one per test), which the end-to-end
//! tests never pick, and are unlinked when the test's Segment drops.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use shmlib::{Geometry, Segment};
use worker::auth::Secret;
use worker::reply_line::ReplyLines;
use worker::session::{mailbox_views, Flow, Session};
use worker::SessionConfig;

fn segment(port: u16, mailboxes: u64, mailbox_kib: u64, packet_kib: u64) -> Segment {
    let g = Geometry::from_kib(mailboxes, mailbox_kib, packet_kib, 2).expect("geometry");
    Segment::create_scratch(port, g).expect("create test segment")
}

static NO_STOP: AtomicBool = AtomicBool::new(false);

fn config(port: u16) -> SessionConfig {
    SessionConfig {
        lock_timeout: Duration::from_secs(1),
        port,
        supervisor_pid: 1,
        worker_slot: 0,
        secret: None,
    }
}

/// Feeds `chunks` one after the other (each followed by nothing: no pause).
fn run(session: &mut Session<'_>, chunks: &[&[u8]]) -> (Vec<u8>, Flow) {
    let mut out = Vec::new();
    let mut flow = Flow::Continue;
    for c in chunks {
        flow = session.feed(c, &mut out);
        if flow == Flow::Close {
            break;
        }
    }
    (out, flow)
}

/// `stream` cut at `cuts` (sorted, clamped to its length).
fn split_at(stream: &[u8], cuts: Vec<usize>) -> Vec<&[u8]> {
    let mut points: Vec<usize> = cuts.into_iter().map(|c| c.min(stream.len())).collect();
    points.sort_unstable();
    let mut pieces = Vec::new();
    let mut last = 0;
    for p in points {
        pieces.push(&stream[last..p]);
        last = p;
    }
    pieces.push(&stream[last..]);
    pieces
}

#[test]
fn write_then_read_with_crlf() {
    let seg = segment(901, 4, 8, 2);
    let mut s = Session::new(&seg, config(901), &NO_STOP);
    let (out, _) = run(&mut s, &[b"w 1 hello world\r\nr 1\r\n"]);
    assert_eq!(
        out,
        b"OK wrote 11 bytes to mailbox 1, version 1\nOK 11 bytes from mailbox 1, version 1\nhello world\n"
    );
}

#[test]
fn unterminated_line_waits_for_the_pause() {
    let seg = segment(902, 4, 8, 2);
    let mut s = Session::new(&seg, config(902), &NO_STOP);
    let (out, _) = run(&mut s, &[b"w 2 abc"]);
    assert!(out.is_empty());
    assert!(s.has_partial_line());
    let mut out = Vec::new();
    s.on_pause(&mut out);
    assert_eq!(out, b"OK wrote 3 bytes to mailbox 2, version 1\n");
    assert!(!s.has_partial_line());
}

#[test]
fn nul_ends_a_line_and_blank_lines_get_no_reply() {
    let seg = segment(903, 4, 8, 2);
    let mut s = Session::new(&seg, config(903), &NO_STOP);
    let (out, _) = run(&mut s, &[b"stat 1\0\n\r\n  \n\0"]);
    assert_eq!(out, b"OK mailbox 1: 0 bytes, version 0\n");
}

#[test]
fn two_step_write() {
    let seg = segment(904, 4, 8, 2);
    let mut s = Session::new(&seg, config(904), &NO_STOP);
    let (out, _) = run(&mut s, &[b"w 3\n", b"\n", b"the data\n", b"r 3\n"]);
    assert_eq!(
        String::from_utf8_lossy(&out),
        "DATA send mailbox 3's content as one line of at most 2048 bytes\n\
         OK wrote 8 bytes to mailbox 3, version 1\n\
         OK 8 bytes from mailbox 3, version 1\nthe data\n"
    );
}

#[test]
fn binary_write_round_trips_every_byte() {
    let seg = segment(905, 2, 1, 1);
    let mut s = Session::new(&seg, config(905), &NO_STOP);
    let data: Vec<u8> = (0..=255u8).collect();
    let mut input = b"wb 2 256\n".to_vec();
    input.extend_from_slice(&data);
    input.extend_from_slice(b"r 2\n");
    let (out, _) = run(&mut s, &[&input]);
    let mut want =
        b"OK wrote 256 bytes to mailbox 2, version 1\nOK 256 bytes from mailbox 2, version 1\n"
            .to_vec();
    want.extend_from_slice(&data);
    want.push(b'\n');
    assert_eq!(out, want);
}

#[test]
fn overlong_lines_are_skipped_and_the_stream_stays_in_step() {
    let seg = segment(906, 4, 8, 2);
    let mut s = Session::new(&seg, config(906), &NO_STOP);
    let long_write = [b"w 1 ".as_slice(), &[b'x'; 5000], b"\n"].concat();
    let long_junk = [[b'j'; 5000].as_slice(), b"\r\n"].concat();
    let (out, _) = run(&mut s, &[&long_write, &long_junk, b"stat 1\n"]);
    assert_eq!(
        String::from_utf8_lossy(&out),
        "ERR data is 5000 bytes, over the 2048-byte packet size\n\
         ERR line of 5000 bytes is over the 2112-byte line limit\n\
         OK mailbox 1: 0 bytes, version 0\n"
    );
}

#[test]
fn oversized_binary_write_skips_its_bytes() {
    let seg = segment(907, 4, 8, 2);
    let mut s = Session::new(&seg, config(907), &NO_STOP);
    let input = [b"wb 1 3000\n".as_slice(), &[b'r'; 3000], b"stat 1\n"].concat();
    let (out, _) = run(&mut s, &[&input]);
    assert_eq!(
        String::from_utf8_lossy(&out),
        "ERR data is 3000 bytes, over the 2048-byte packet size; the 3000 bytes that follow are skipped\n\
         OK mailbox 1: 0 bytes, version 0\n"
    );
}

#[test]
fn mailbox_smaller_than_packet_limits_the_data() {
    let seg = segment(908, 1, 1, 4);
    let mut s = Session::new(&seg, config(908), &NO_STOP);
    let input = [b"w 1 ".as_slice(), &[b'a'; 1025], b"\n"].concat();
    let (out, _) = run(&mut s, &[&input]);
    assert_eq!(
        out,
        b"ERR data is 1025 bytes, over the 1024-byte mailbox size\n"
    );
}

#[test]
fn quit_says_goodbye_and_closes() {
    let seg = segment(909, 4, 8, 2);
    let mut s = Session::new(&seg, config(909), &NO_STOP);
    let (out, flow) = run(&mut s, &[b"q 1\nr 1\n"]);
    assert_eq!(out, b"Goodbye");
    assert_eq!(flow, Flow::Close);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// However the stream is split into reads, the replies are the same.
    /// (Cuts range over the whole stream, which is 4,365 bytes long.)
    #[test]
    fn any_split_gives_the_same_replies(cuts in proptest::collection::vec(0usize..=4365, 0..12)) {
        let stream = [
            b"w 1 alpha\r\nr 1\nwb 2 5\nab\ncdr 2\0w 3\nbeta\nstat 3\nzz\nr 9\n".as_slice(),
            &[b'j'; 2200],
            b"\r\nw 4 ",
            &[b'k'; 2100],
            b"\nr 1\n",
        ]
        .concat();
        let stream = stream.as_slice();
        let seg = segment(910, 4, 8, 2);
        let whole = run(&mut Session::new(&seg, config(910), &NO_STOP), &[stream]).0;
        let seg2 = segment(911, 4, 8, 2);
        let mut s = Session::new(&seg2, config(911), &NO_STOP);
        let pieces = split_at(stream, cuts);
        let split = run(&mut s, &pieces).0;
        prop_assert_eq!(String::from_utf8_lossy(&split), String::from_utf8_lossy(&whole));
    }
}

/// Lines that are often plain reads, writes and gets (`r <m>`, `w <m>
/// <text>`, `get <key>`) and often nearly: a command, a separator, a
/// number, a separator, pieces of text and an end, each drawn with the
/// plain spelling the likeliest. The long piece alone takes a text past the
/// 1 KiB data limit.
fn plain_looking_line() -> impl Strategy<Value = Vec<u8>> {
    use proptest::sample::select;
    const COMMANDS: &[&[u8]] = &[
        b"r", b"w", b"get", b"r", b"w", b"get", b"R", b"ge", b"x", b"",
    ];
    const SEPARATORS: &[&[u8]] = &[b" ", b" ", b" ", b"  ", b"\t", b"", b"\n"];
    const NUMBERS: &[&[u8]] = &[b"1", b"3", b"4", b"5", b"0", b"01", b"", b"x"];
    const PIECES: &[&[u8]] = &[
        b" ",
        b"\t",
        b"\r",
        b"\0",
        b"ab",
        b"r 1",
        b"w",
        b"7",
        &[b'z'; 1030],
    ];
    const ENDS: &[&[u8]] = &[b"\n", b"\n", b"\n", b"\r\n", b"\0", b""];
    (
        select(COMMANDS),
        select(SEPARATORS),
        select(NUMBERS),
        select(SEPARATORS),
        proptest::collection::vec(select(PIECES), 0..5),
        select(ENDS),
    )
        .prop_map(|(command, space, number, separator, pieces, end)| {
            [command, space, number, separator, &pieces.concat(), end].concat()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Fed whole, every plain read, write and get takes the session's
    /// shortcut; fed a byte at a time, none can (the shortcut needs the
    /// whole line in one input), so every line goes the general way. The
    /// first session also has an event worker's reply lines and mailbox
    /// views, so its repeated reads and writes use kept replies, where the
    /// second builds every one. Replies, contents and counters must be the
    /// same.
    #[test]
    fn the_shortcut_and_the_general_path_agree(
        lines in proptest::collection::vec(plain_looking_line(), 1..12),
    ) {
        let stream = [
            b"put 1 one\nput 3 three\n".as_slice(),
            lines.concat().as_slice(),
            b"\nr 1\nr 3\nr 4\n",
        ]
        .concat();
        let whole_seg = segment(926, 4, 1, 1);
        let lines = RefCell::new(ReplyLines::new(4));
        let views = mailbox_views(&whole_seg);
        let mut whole_session = Session::new(&whole_seg, config(926), &NO_STOP)
            .with_reply_lines(&lines)
            .with_mailbox_views(&views);
        let (whole, _) = run(&mut whole_session, &[&stream]);
        let bytes_seg = segment(927, 4, 1, 1);
        let mut bytes_session = Session::new(&bytes_seg, config(927), &NO_STOP);
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        let (by_byte, _) = run(&mut bytes_session, &bytes);
        prop_assert_eq!(String::from_utf8_lossy(&whole), String::from_utf8_lossy(&by_byte));
        prop_assert_eq!(whole_session.requests(), bytes_session.requests());
        let counters = |seg: &Segment| {
            let st = seg.stats();
            [&st.reads, &st.writes, &st.gets, &st.other, &st.errors]
                .map(|c| c.load(Ordering::Relaxed))
        };
        prop_assert_eq!(counters(&whole_seg), counters(&bytes_seg));
    }
}

#[test]
fn a_refused_binary_write_skips_its_payload_whatever_the_reason() {
    let seg = segment(912, 4, 8, 2);
    let mut s = Session::new(&seg, config(912), &NO_STOP);
    let (out, _) = run(
        &mut s,
        &[b"wb 9 12\nw 1 pwned!!\nwb 1 5 x\nw 2 5\nstat 1\nstat 2\n"],
    );
    assert_eq!(
        String::from_utf8_lossy(&out),
        "ERR mailbox 9 is out of range 1..4; the 12 bytes that follow are skipped\n\
         ERR wb takes a mailbox number and a byte length; the 5 bytes that follow are skipped\n\
         OK mailbox 1: 0 bytes, version 0\n\
         OK mailbox 2: 0 bytes, version 0\n"
    );
}

#[test]
fn an_unskippable_binary_length_closes_the_connection() {
    let seg = segment(913, 4, 8, 2);
    let mut s = Session::new(&seg, config(913), &NO_STOP);
    let (out, flow) = run(&mut s, &[b"wb 1 9223372036854775808\nw 1 x\n"]);
    assert_eq!(flow, Flow::Close);
    assert_eq!(
        String::from_utf8_lossy(&out),
        "ERR wb length 9223372036854775808 is over 1073741824; closing the connection\n"
    );
}

#[test]
fn the_line_limit_does_not_count_the_cr_of_crlf() {
    let seg = segment(914, 4, 8, 2);
    let mut s = Session::new(&seg, config(914), &NO_STOP);
    // 2112 bytes is the limit (2048-byte packet + 64).
    let at_limit = [[b'x'; 2112].as_slice(), b"\r\n"].concat();
    let over = [[b'x'; 2113].as_slice(), b"\r\n"].concat();
    let over_lf = [[b'x'; 2113].as_slice(), b"\n"].concat();
    let (out, _) = run(&mut s, &[&at_limit, &over, &over_lf[..2113], b"\n"]);
    let text = String::from_utf8_lossy(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("ERR unknown command 'xxx"),
        "{}",
        lines[0]
    );
    assert_eq!(
        lines[1],
        "ERR line of 2113 bytes is over the 2112-byte line limit"
    );
    assert_eq!(
        lines[2],
        "ERR line of 2113 bytes is over the 2112-byte line limit"
    );
    assert_eq!(lines.len(), 3);
}

#[test]
fn spaces_after_the_mailbox_are_text_not_a_two_step_write() {
    let seg = segment(915, 4, 8, 2);
    let mut s = Session::new(&seg, config(915), &NO_STOP);
    let (out, _) = run(&mut s, &[b"w 3    \nr 3\n"]);
    assert_eq!(
        String::from_utf8_lossy(&out),
        "OK wrote 3 bytes to mailbox 3, version 1\nOK 3 bytes from mailbox 3, version 1\n   \n"
    );
}

#[test]
fn pipelined_reads_are_answered_in_bounded_batches() {
    let seg = segment(916, 1, 8, 8);
    let mut s = Session::new(&seg, config(916), &NO_STOP);
    let content = [b"w 1 ".as_slice(), &[b'c'; 8000], b"\n"].concat();
    let (out, _) = run(&mut s, &[&content]);
    assert_eq!(out, b"OK wrote 8000 bytes to mailbox 1, version 1\n");
    let reads = b"r 1\n".repeat(3000);
    let mut fed = reads.as_slice();
    let mut replies = 0;
    while !fed.is_empty() {
        let mut out = Vec::new();
        let (used, flow) = s.feed_some(fed, &mut out);
        assert_eq!(flow, Flow::Continue);
        assert!(used > 0);
        assert!(
            out.len() < worker::session::OUT_HIGH_WATER + 8100,
            "buffered {} bytes of replies",
            out.len()
        );
        replies += out.windows(3).filter(|w| w == b"OK ").count();
        fed = &fed[used..];
    }
    assert_eq!(replies, 3000);
}

#[test]
fn a_lock_timeout_is_an_err_that_changes_nothing() {
    let seg = segment(917, 2, 8, 2);
    let mut s = Session::new(&seg, config(917), &NO_STOP);
    let _ = run(&mut s, &[b"w 1 before\n"]);
    // Another process's writer holds mailbox 1 (here: this thread, through
    // its own mapping) for longer than the session's 1 s lock timeout.
    let other = Segment::open(917).expect("second mapping");
    let lock = other.mailbox_lock(0).expect("lock");
    let held = lock
        .write(
            other.participant(1).expect("second worker slot"),
            &shmlib::Deadline::after(Duration::from_secs(1)),
        )
        .expect("hold the write lock");
    // A read needs no lock: it gets what is published.
    let (out, _) = run(&mut s, &[b"w 1 after\nr 1\nstat 1\nstat 2\n"]);
    assert_eq!(
        String::from_utf8_lossy(&out),
        "ERR mailbox 1 is busy: lock not granted within 1 s\n\
         OK 6 bytes from mailbox 1, version 1\nbefore\n\
         ERR mailbox 1 is busy: lock not granted within 1 s\n\
         OK mailbox 2: 0 bytes, version 0\n"
    );
    drop(held);
    // A stat takes the read lock: the lock is free again.
    let (out, _) = run(&mut s, &[b"r 1\nstat 1\n"]);
    assert_eq!(
        String::from_utf8_lossy(&out),
        "OK 6 bytes from mailbox 1, version 1\nbefore\nOK mailbox 1: 6 bytes, version 1\n"
    );
}

/// The key-value requests in one stream, as the lab's exercise types them,
/// and every refusal within the lab client's 31-byte reads, overlong lines
/// included.
#[test]
fn key_value_session_and_short_refusals() {
    let seg = segment(918, 2, 4, 1);
    let mut s = Session::new(&seg, config(918), &NO_STOP);
    let (out, flow) = run(
        &mut s,
        &[b"put 1 hello world\nput 1 again\nget 1\nget 2\ndel 1\ndel 1\nBye\n"],
    );
    assert_eq!(
        String::from_utf8_lossy(&out),
        "OK\nERR key exists\nhello world\nERR no such key\nOK\nERR no such key\nGoodbye"
    );
    assert_eq!(flow, Flow::Close);
    let mut s = Session::new(&seg, config(918), &NO_STOP);
    let long_get = [b"get ".as_slice(), &[b'0'; 3000], b"1\n"].concat();
    let long_put = [b"put 1 ".as_slice(), &[b'v'; 3000], b"\n"].concat();
    let (out, _) = run(&mut s, &[&long_get, &long_put, b"put 2 x\nget 2\n"]);
    let text = String::from_utf8_lossy(&out);
    let replies: Vec<&str> = text.split_inclusive('\n').collect();
    assert_eq!(
        replies,
        [
            "ERR line too long\n",
            "ERR value over 1024 bytes\n",
            "OK\n",
            "x\n"
        ]
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A pipelined run of puts and dels is made as one group under one
    /// hold of the store's lock; its replies, and the store it leaves, are
    /// those of the same lines sent one at a time, however the stream is
    /// split.
    #[test]
    fn pipelined_changes_answer_as_one_at_a_time(
        ops in proptest::collection::vec((0u8..4, -2i64..3), 1..400),
        cuts in proptest::collection::vec(0usize..=6000, 0..8),
    ) {
        let lines: Vec<String> = ops
            .iter()
            .enumerate()
            .map(|(n, (op, key))| match op {
                0 | 1 => format!("put {key} v{n}\n"),
                2 => format!("del {key}\n"),
                _ => format!("get {key}\r\n"),
            })
            .chain(["stat\n".to_string()])
            .collect();
        let stream = lines.concat().into_bytes();

        let seg = segment(919, 2, 4, 1);
        let mut alone = Session::new(&seg, config(919), &NO_STOP);
        let mut one_at_a_time = Vec::new();
        for line in &lines {
            alone.feed(line.as_bytes(), &mut one_at_a_time);
        }

        let seg2 = segment(920, 2, 4, 1);
        let mut s = Session::new(&seg2, config(920), &NO_STOP);
        let pieces = split_at(&stream, cuts);
        let grouped = run(&mut s, &pieces).0;
        // The replies, and the store's figures from the final stat.
        let figures = |out: &[u8]| {
            let text = String::from_utf8_lossy(out).into_owned();
            let (replies, stat) = text.trim_end().rsplit_once('\n').unwrap_or(("", &text));
            let store: Vec<String> = stat
                .split(' ')
                .filter(|f| ["keys=", "gets=", "puts=", "dels="].iter().any(|p| f.starts_with(p)))
                .map(str::to_string)
                .collect();
            (replies.to_string(), store)
        };
        prop_assert_eq!(figures(&grouped), figures(&one_at_a_time));
        prop_assert_eq!(s.requests(), lines.len() as u64);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary bytes, split anywhere, never panic the session, never make
    /// it keep more than a line, and never knock it out of step: after a
    /// pause, a valid request gets its proper reply. (Bytes that make a
    /// request swallow what follows by design, `w` and `wb`, or end the
    /// connection, `q`, `bye`, `exit`, are left out of the garbage.)
    #[test]
    fn garbage_never_panics_grows_or_desynchronises(
        garbage in proptest::collection::vec(
            any::<u8>().prop_filter("a swallowing or closing command", |b| !b"wWqQbBeE".contains(b)),
            0..4000,
        ),
        cuts in proptest::collection::vec(0usize..=4000, 0..8),
    ) {
        let seg = segment(921, 2, 1, 1);
        let mut s = Session::new(&seg, config(921), &NO_STOP);
        let mut out = Vec::new();
        for piece in split_at(&garbage, cuts) {
            prop_assert_eq!(s.feed(piece, &mut out), Flow::Continue);
            prop_assert!(s.buffered() <= s.line_limit() + 1, "{} buffered", s.buffered());
        }
        s.on_pause(&mut out);
        out.clear();
        prop_assert_eq!(s.feed(b"stat 1\n", &mut out), Flow::Continue);
        prop_assert_eq!(String::from_utf8_lossy(&out), "OK mailbox 1: 0 bytes, version 0\n");
    }
}

#[test]
fn sessions_sharing_reply_lines_see_every_write() {
    let seg = segment(923, 4, 8, 2);
    let lines = RefCell::new(ReplyLines::new(4));
    let mut reader = Session::new(&seg, config(923), &NO_STOP).with_reply_lines(&lines);
    let mut writer = Session::new(&seg, config(923), &NO_STOP).with_reply_lines(&lines);
    let read = |reader: &mut Session<'_>| {
        String::from_utf8(run(reader, &[b"r 1\nr 1\n"]).0).expect("ASCII")
    };
    run(&mut writer, &[b"w 1 abc\n"]);
    let first = "OK 3 bytes from mailbox 1, version 1\nabc\n";
    assert_eq!(read(&mut reader), first.repeat(2));
    // The same length at a new version, then a new length.
    run(&mut writer, &[b"w 1 xyz\n"]);
    assert_eq!(
        read(&mut reader),
        "OK 3 bytes from mailbox 1, version 2\nxyz\n".repeat(2)
    );
    run(&mut writer, &[b"w 1 longer\n"]);
    assert_eq!(
        read(&mut writer),
        "OK 6 bytes from mailbox 1, version 3\nlonger\n".repeat(2)
    );
    // A session without the shared lines builds the same line.
    let mut alone = Session::new(&seg, config(923), &NO_STOP);
    assert_eq!(
        read(&mut alone),
        "OK 6 bytes from mailbox 1, version 3\nlonger\n".repeat(2)
    );
}

/// Write replies built from a worker's kept prefixes name their own
/// mailbox, length and version, whichever session of the worker and
/// whichever way in: with one entry, every mailbox shares it.
#[test]
fn write_replies_through_shared_lines_name_their_own_mailbox_length_and_version() {
    let seg = segment(928, 4, 8, 2);
    let lines = RefCell::new(ReplyLines::new(1));
    // One session with the worker's views of every mailbox, one with a
    // view of mailbox 1 only (mailbox 2's is built per request).
    let views = mailbox_views(&seg);
    let session = |views| {
        Session::new(&seg, config(928), &NO_STOP)
            .with_reply_lines(&lines)
            .with_mailbox_views(views)
    };
    let mut sessions = [session(&views), session(&views[..1])];
    let wrote = |len: usize, mailbox: u32, version: u64| {
        format!("OK wrote {len} bytes to mailbox {mailbox}, version {version}\n")
    };
    let data_prompt = "DATA send mailbox 2's content as one line of at most 2048 bytes\n";
    // (session, input, reply)
    let steps: [(usize, &[u8], String); 6] = [
        (0, b"w 1 abc\n", wrote(3, 1, 1)),
        (1, b"w 2 abc\n", wrote(3, 2, 1)),
        // The general path (a CRLF), a two-step write and a wb.
        (0, b"w 2 abc\r\n", wrote(3, 2, 2)),
        (1, b"w 2\nabc\n", format!("{data_prompt}{}", wrote(3, 2, 3))),
        (0, b"wb 2 5\nhello", wrote(5, 2, 4)),
        (1, b"w 1 abc\n", wrote(3, 1, 2)),
    ];
    for (which, input, expected) in steps {
        let (out, _) = run(&mut sessions[which], &[input]);
        assert_eq!(String::from_utf8_lossy(&out), expected, "after {input:?}");
    }
}

#[test]
fn a_kept_read_reply_is_sent_only_for_its_own_version() {
    let seg = segment(929, 4, 8, 2);
    let lines = RefCell::new(ReplyLines::new(4));
    let views = mailbox_views(&seg);
    let mut reader = Session::new(&seg, config(929), &NO_STOP)
        .with_reply_lines(&lines)
        .with_mailbox_views(&views);
    // Another worker's session: its writes never touch the reader's lines.
    let mut writer = Session::new(&seg, config(929), &NO_STOP);
    // Same lengths, and once the same content, with a new version each.
    for (version, content) in [(1, "abc"), (2, "xyz"), (3, "xyz"), (4, "abd")] {
        run(&mut writer, &[format!("w 1 {content}\n").as_bytes()]);
        // The plain path and the general one (CRLF), twice each.
        let (out, _) = run(&mut reader, &[b"r 1\nr 1\r\nr 1\nr 1\r\n"]);
        let reply = format!("OK 3 bytes from mailbox 1, version {version}\n{content}\n");
        assert_eq!(
            String::from_utf8_lossy(&out),
            reply.repeat(4),
            "version {version}"
        );
    }
    // A mailbox the writer never wrote, in another entry, is untouched.
    let (out, _) = run(&mut reader, &[b"r 2\n"]);
    assert_eq!(
        String::from_utf8_lossy(&out),
        "OK 0 bytes from mailbox 2, version 0\n\n"
    );
}

#[test]
fn plain_requests_wait_for_the_secret_like_every_request() {
    let seg = segment(924, 4, 8, 2);
    let config = SessionConfig {
        secret: Secret::new(b"open sesame"),
        ..config(924)
    };
    let mut s = Session::new(&seg, config, &NO_STOP);
    let refused = "ERR authentication required: send auth <secret> first\n";
    let (out, _) = run(&mut s, &[b"r 1\nr 1\r\nw 1 early\n"]);
    assert_eq!(String::from_utf8_lossy(&out), refused.repeat(3));
    let (out, _) = run(&mut s, &[b"auth open sesame\nr 1\nr 1\r\nw 1 late\nr 1\n"]);
    assert_eq!(
        String::from_utf8_lossy(&out),
        "OK\n".to_owned()
            + &"OK 0 bytes from mailbox 1, version 0\n\n".repeat(2)
            + "OK wrote 4 bytes to mailbox 1, version 1\n\
               OK 4 bytes from mailbox 1, version 1\nlate\n"
    );
}

#[test]
fn plain_requests_count_as_theirs_and_are_data_where_data_is_due() {
    let seg = segment(925, 4, 8, 2);
    let mut s = Session::new(&seg, config(925), &NO_STOP);
    run(&mut s, &[b"r 1\nr 1\r\nw 2 a\nw 2 b\r\nget 1\nget 1\r\n"]);
    assert_eq!(s.requests(), 6);
    let stat = || {
        let (out, _) = run(&mut Session::new(&seg, config(925), &NO_STOP), &[b"stat\n"]);
        String::from_utf8_lossy(&out).into_owned()
    };
    let counted = |stat: String| stat.contains(" reads=2 writes=2 ") && stat.contains(" gets=2 ");
    assert!(counted(stat()), "{}", stat());
    // A plain line as the data line of a two-step write, and as the bytes
    // of a binary one: written, never served. Mailbox 1 and the store are
    // left alone.
    let data_prompt = "DATA send mailbox 3's content as one line of at most 2048 bytes\n";
    for (version, line) in (1..).zip(["r 1", "w 1 x", "get 1"]) {
        let (text, bytes) = (line.len(), line.len() + 1);
        let input = format!("w 3\n{line}\nwb 4 {bytes}\n{line}\nr 3\nr 4\nr 1\n");
        let (out, _) = run(&mut s, &[input.as_bytes()]);
        assert_eq!(
            String::from_utf8_lossy(&out),
            format!(
                "{data_prompt}OK wrote {text} bytes to mailbox 3, version {version}\n\
                 OK wrote {bytes} bytes to mailbox 4, version {version}\n\
                 OK {text} bytes from mailbox 3, version {version}\n{line}\n\
                 OK {bytes} bytes from mailbox 4, version {version}\n{line}\n\n\
                 OK 0 bytes from mailbox 1, version 0\n\n"
            )
        );
    }
    // Only the two gets served at first: the data lines were not gets.
    assert!(stat().contains(" gets=2 "), "{}", stat());
}
