//! The reply parsers of every protocol, fed as a network would: whole,
//! split at every byte offset, one byte at a time, several replies in one
//! buffer; and the bytes no server would send, which must be refused
//! rather than misframed. Also what the encoders send, and the mix.

use client::bench::{Mix, Rng};
use client::protocol::{Codec, Inbox, Op, Protocol, Reply};

/// Frames `chunks` (received in that order) as the replies to `ops`.
fn frame(codec: &Codec, ops: &[Op], chunks: &[&[u8]]) -> Result<Vec<Reply>, String> {
    let mut inbox = Inbox::new();
    let mut replies: Vec<Reply> = Vec::new();
    for chunk in chunks {
        inbox.frame(chunk, |bytes| {
            let Some(&op) = ops.get(replies.len()) else {
                return Err(format!("bytes after the last reply: {bytes:?}"));
            };
            match codec.parse(op, bytes).map_err(|e| e.to_string())? {
                Some(reply) => {
                    replies.push(reply);
                    Ok(Some(reply.len))
                }
                None => Ok(None),
            }
        })?;
    }
    if inbox.pending() != 0 {
        return Err(format!(
            "{} bytes left incomplete after {} replies",
            inbox.pending(),
            replies.len()
        ));
    }
    Ok(replies)
}

/// The replies `parts` (each `(bytes, error)`) make, framed from their
/// concatenation whole, split in two at every offset, and byte by byte.
fn check_every_split(codec: &Codec, ops: &[Op], parts: &[(&[u8], bool)]) {
    assert_eq!(ops.len(), parts.len(), "one op per reply");
    let stream: Vec<u8> = parts
        .iter()
        .flat_map(|(bytes, _)| bytes.iter().copied())
        .collect();
    let expected: Vec<Reply> = parts
        .iter()
        .map(|&(bytes, error)| Reply {
            len: bytes.len(),
            error,
        })
        .collect();
    assert_eq!(
        frame(codec, ops, &[&stream]).as_ref(),
        Ok(&expected),
        "whole"
    );
    for cut in 0..=stream.len() {
        let (a, b) = stream.split_at(cut);
        assert_eq!(
            frame(codec, ops, &[a, b]).as_ref(),
            Ok(&expected),
            "split at byte {cut} of {:?}",
            String::from_utf8_lossy(&stream)
        );
    }
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(
        frame(codec, ops, &bytes).as_ref(),
        Ok(&expected),
        "byte by byte"
    );
}

/// The error a lone reply `bytes` to `op` gives (framed whole).
fn refusal(codec: &Codec, op: Op, bytes: &[u8]) -> String {
    match codec.parse(op, bytes) {
        Err(e) => e.to_string(),
        Ok(reply) => panic!(
            "{:?} was taken as {reply:?}",
            String::from_utf8_lossy(bytes)
        ),
    }
}

fn dipc() -> Codec {
    Codec::new(Protocol::Dipc, 5, 100)
}

fn redis() -> Codec {
    Codec::new(Protocol::Redis, 5, 100)
}

fn memcached() -> Codec {
    Codec::new(Protocol::Memcached, 5, 100)
}

#[test]
fn dipc_replies_split_anywhere() {
    check_every_split(
        &dipc(),
        &[
            Op::Read,
            Op::Write,
            Op::Read,
            Op::Read,
            Op::Get,
            Op::Put,
            Op::Del,
            Op::Read,
        ],
        &[
            (b"OK 5 bytes from mailbox 1, version 3\nhello\n", false),
            (b"OK wrote 100 bytes to mailbox 2, version 4\n", false),
            (b"ERR mailbox 7 is out of range 1..4\n", true),
            // Content may hold newlines: only the length frames it.
            (b"OK 4 bytes from mailbox 1, version 9\na\nb\n\n", false),
            (b"ERR unknown command 'get'; try help\n", true),
            (b"ERR unknown command 'put'; try help\n", true),
            (b"OK deleted\n", false),
            (b"OK 0 bytes from mailbox 4, version 0\n\n", false),
        ],
    );
}

#[test]
fn dipc_get_reply_is_the_value_line() {
    check_every_split(
        &dipc(),
        &[Op::Get, Op::Get],
        &[(b"xxxxx\n", false), (b"ERR no key 3\n", true)],
    );
}

#[test]
fn dipc_refuses_what_no_read_reply_looks_like() {
    let codec = dipc();
    let e = refusal(
        &codec,
        Op::Read,
        b"OK many bytes from mailbox 1, version 1\nabc\n",
    );
    assert!(e.contains("cannot parse the length"), "{e}");
    let e = refusal(&codec, Op::Read, b"OK\n");
    assert!(e.contains("neither OK nor ERR"), "{e}");
    let e = refusal(&codec, Op::Read, b"DATA send mailbox 1's content\n");
    assert!(e.contains("neither OK nor ERR"), "{e}");
    let e = refusal(
        &codec,
        Op::Read,
        b"OK 3 bytes from mailbox 1, version 1\nabcX",
    );
    assert!(e.contains("not followed by a newline"), "{e}");
    let e = refusal(&codec, Op::Read, &[b'O'; 300]);
    assert!(e.contains("runs over"), "{e}");
    // The message shows the reply, escaped.
    assert!(e.contains("OOOO"), "{e}");
    // A short header without its newline yet is merely incomplete.
    assert_eq!(codec.parse(Op::Read, b"OK 3 bytes"), Ok(None));
}

#[test]
fn redis_replies_split_anywhere() {
    check_every_split(
        &redis(),
        &[
            Op::Get,
            Op::Put,
            Op::Del,
            Op::Get,
            Op::Read,
            Op::Write,
            Op::Get,
            Op::Get,
        ],
        &[
            (b"$5\r\nhello\r\n", false),
            (b"+OK\r\n", false),
            (b":1\r\n", false),
            (b"$-1\r\n", false),
            (b"-ERR wrong number of arguments\r\n", true),
            (b"-OOM command not allowed\r\n", true),
            (b"$0\r\n\r\n", false),
            // A value holding CRLF, and an array (framed element by element).
            (b"*3\r\n$4\r\na\r\nb\r\n:3\r\n*-1\r\n", false),
        ],
    );
}

#[test]
fn redis_refuses_what_is_no_resp() {
    let codec = redis();
    let e = refusal(&codec, Op::Get, b"?what\r\n");
    assert!(e.contains("not a RESP2 reply"), "{e}");
    let e = refusal(&codec, Op::Get, b"+OK\n");
    assert!(e.contains("CRLF"), "{e}");
    let e = refusal(&codec, Op::Get, b"$abc\r\n");
    assert!(e.contains("not a number"), "{e}");
    let e = refusal(&codec, Op::Get, b"$3\r\nabcXY");
    assert!(e.contains("not followed by CRLF"), "{e}");
    let e = refusal(&codec, Op::Get, b"$-5\r\n");
    assert!(e.contains("negative"), "{e}");
    let e = refusal(&codec, Op::Get, b"\r\n");
    assert!(e.contains("empty RESP line"), "{e}");
    assert_eq!(codec.parse(Op::Get, b"$5\r\nhel"), Ok(None));
}

#[test]
fn memcached_replies_split_anywhere() {
    check_every_split(
        &memcached(),
        &[
            Op::Get,
            Op::Get,
            Op::Put,
            Op::Del,
            Op::Del,
            Op::Read,
            Op::Write,
            Op::Get,
            Op::Get,
            Op::Write,
        ],
        &[
            (b"VALUE key:1 0 5\r\nhello\r\nEND\r\n", false),
            (b"END\r\n", false),
            (b"STORED\r\n", false),
            (b"DELETED\r\n", false),
            (b"NOT_FOUND\r\n", false),
            // Data holding CRLF, a cas field, and two values in one reply.
            (
                b"VALUE key:0 3 2 99\r\n\r\n\r\nVALUE key:2 0 1\r\nz\r\nEND\r\n",
                false,
            ),
            (b"SERVER_ERROR out of memory storing object\r\n", true),
            (b"ERROR\r\n", true),
            (b"CLIENT_ERROR bad command line format\r\n", true),
            (b"NOT_STORED\r\n", false),
        ],
    );
}

#[test]
fn memcached_refuses_what_no_get_reply_looks_like() {
    let codec = memcached();
    let e = refusal(&codec, Op::Get, b"HUH\r\n");
    assert!(e.contains("neither VALUE nor END"), "{e}");
    let e = refusal(&codec, Op::Get, b"VALUE k 0 x\r\n");
    assert!(e.contains("cannot parse the length"), "{e}");
    let e = refusal(&codec, Op::Get, b"VALUE k 0 2\r\nabXY");
    assert!(e.contains("not followed by CRLF"), "{e}");
    let e = refusal(&codec, Op::Put, b"STORED\n");
    assert!(e.contains("CRLF"), "{e}");
    assert_eq!(
        codec.parse(Op::Get, b"VALUE k 0 5\r\nhello\r\nEN"),
        Ok(None)
    );
}

#[test]
fn fixed_replies_are_counted_in_bytes() {
    let codec = Codec::new(Protocol::Fixed, 5, 7);
    check_every_split(
        &codec,
        &[Op::Read, Op::Write, Op::Read],
        &[
            (b"xxxxxx\n", false),
            (b"ERR abc", false),
            (b"\n\n\n\n\n\n\n", false),
        ],
    );
}

fn encoded(codec: &Codec, op: Op, index: u64) -> String {
    let mut out = Vec::new();
    codec.encode(op, index, &mut out);
    String::from_utf8(out).expect("requests are text")
}

#[test]
fn requests_as_each_protocol_sends_them() {
    let d = dipc();
    assert_eq!(encoded(&d, Op::Read, 0), "r 1\n");
    assert_eq!(encoded(&d, Op::Write, 41), "w 42 xxxxx\n");
    assert_eq!(encoded(&d, Op::Get, 0), "get 0\n");
    assert_eq!(encoded(&d, Op::Put, 7), "put 7 xxxxx\n");
    assert_eq!(encoded(&d, Op::Del, 12), "del 12\n");
    assert_eq!(
        encoded(&Codec::new(Protocol::Fixed, 2, 10), Op::Write, 0),
        "w 1 xx\n"
    );

    let r = redis();
    assert_eq!(
        encoded(&r, Op::Read, 3),
        "*2\r\n$3\r\nGET\r\n$5\r\nkey:3\r\n"
    );
    assert_eq!(
        encoded(&r, Op::Get, 10),
        "*2\r\n$3\r\nGET\r\n$6\r\nkey:10\r\n"
    );
    assert_eq!(
        encoded(&r, Op::Put, 0),
        "*3\r\n$3\r\nSET\r\n$5\r\nkey:0\r\n$5\r\nxxxxx\r\n"
    );
    assert_eq!(
        encoded(&r, Op::Del, 0),
        "*2\r\n$3\r\nDEL\r\n$5\r\nkey:0\r\n"
    );

    let m = memcached();
    assert_eq!(encoded(&m, Op::Get, 5), "get key:5\r\n");
    assert_eq!(encoded(&m, Op::Write, 5), "set key:5 0 0 5\r\nxxxxx\r\n");
    assert_eq!(encoded(&m, Op::Del, 5), "delete key:5\r\n");

    // Requests append to what the buffer holds (a pipelined batch).
    let mut batch = Vec::new();
    d.encode(Op::Read, 0, &mut batch);
    d.encode(Op::Read, 1, &mut batch);
    assert_eq!(batch, b"r 1\nr 2\n");
}

#[test]
fn mixes_parse_and_print() {
    for (text, shown) in [
        ("read", "read"),
        ("write", "write"),
        ("read:80,write:20", "read:80,write:20"),
        ("get:90,put:10", "get:90,put:10"),
        ("del", "del"),
        ("read:5", "read"),
        ("READ:1, write:3", "read:1,write:3"),
        ("read:0,write:2", "write"),
        ("get,put,del", "get:1,put:1,del:1"),
    ] {
        let mix: Mix = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(mix.to_string(), shown, "{text}");
    }
    for bad in [
        "",
        "foo",
        "read:x",
        "read:0",
        "read,read:2",
        "read:-1",
        ",read",
    ] {
        assert!(bad.parse::<Mix>().is_err(), "{bad:?} was accepted");
    }
}

#[test]
fn a_mix_keeps_its_proportions() {
    let mix: Mix = "read:80,write:20".parse().expect("a mix");
    let mut rng = Rng::new(0);
    let draws = 100_000;
    let reads = (0..draws)
        .filter(|_| mix.pick(&mut rng) == Op::Read)
        .count();
    let share = reads as f64 / f64::from(draws);
    assert!((0.79..0.81).contains(&share), "read share {share}");
}

#[test]
fn the_generator_is_deterministic_and_in_range() {
    let a: Vec<u64> = {
        let mut rng = Rng::new(7);
        (0..100).map(|_| rng.below(10)).collect()
    };
    let b: Vec<u64> = {
        let mut rng = Rng::new(7);
        (0..100).map(|_| rng.below(10)).collect()
    };
    assert_eq!(a, b);
    assert!(a.iter().all(|&n| n < 10));
    // Every value of a small range comes up.
    assert!((0..10).all(|n| a.contains(&n)), "{a:?}");
    // Neighbouring seeds give different streams.
    assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
}
