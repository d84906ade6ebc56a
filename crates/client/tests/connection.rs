//! `dipc_client::Connection` against a scripted server: the exact bytes of
//! each request, and the parsing of each reply, the requests that dipc is
//! only getting now (append, wait) included, replies cut into pieces, and
//! the ways a reply can be wrong.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use client::dipc_client::{ClientError, Connection, Content, Waited};

/// One exchange: the request the client must send, and the reply, sent in
/// pieces with a pause between them.
type Step = (&'static [u8], &'static [&'static [u8]]);

/// A server that plays `script` to one client, then closes; joined, it
/// gives what the client sent, step by step.
fn scripted(script: &'static [Step]) -> (Connection, JoinHandle<Vec<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut received = Vec::new();
        for (request, pieces) in script {
            let mut got = vec![0u8; request.len()];
            if stream.read_exact(&mut got).is_err() {
                break;
            }
            received.push(got);
            for piece in *pieces {
                stream.write_all(piece).expect("reply");
                thread::sleep(Duration::from_millis(30));
            }
        }
        received
    });
    let connection = Connection::connect(addr).expect("connect");
    (connection, server)
}

fn sent(server: JoinHandle<Vec<Vec<u8>>>, script: &[Step]) {
    let received = server.join().expect("the scripted server");
    let expected: Vec<Vec<u8>> = script.iter().map(|(r, _)| r.to_vec()).collect();
    assert_eq!(received, expected, "the requests sent");
}

#[test]
fn append_and_wait_replies() {
    static SCRIPT: &[Step] = &[
        (
            b"append 1 hi there\n",
            &[b"OK appended 9 bytes to mailbox 1, version 4\n"],
        ),
        (b"wait 1 4 250\n", &[b"TIMEOUT mailbox 1 is at version 4\n"]),
        (
            b"wait 1 4\n",
            &[
                b"OK 9 bytes from mailbox 1, ver",
                b"sion 5\nhi the",
                b"re\n\n",
            ],
        ),
        (b"append 2 x\n", &[b"ERR unknown command 'append'\n"]),
    ];
    let (mut c, server) = scripted(SCRIPT);
    let stored = c.append(1, b"hi there").expect("append");
    assert_eq!((stored.len, stored.mailbox, stored.version), (9, 1, 4));
    assert_eq!(stored.line, "OK appended 9 bytes to mailbox 1, version 4");
    assert_eq!(
        c.wait(1, 4, Some(250)).expect("wait"),
        Waited::TimedOut {
            mailbox: 1,
            version: 4
        }
    );
    assert_eq!(
        c.wait(1, 4, None).expect("wait"),
        Waited::Changed(Content {
            mailbox: 1,
            version: 5,
            data: b"hi there\n".to_vec(),
            header: "OK 9 bytes from mailbox 1, version 5".to_string(),
        })
    );
    match c.append(2, b"x") {
        Err(ClientError::Refusal(reason)) => assert_eq!(reason, "unknown command 'append'"),
        other => panic!("{other:?}"),
    }
    // Refused here: nothing is sent.
    assert!(matches!(
        c.append(1, b"two\nlines"),
        Err(ClientError::Argument(_))
    ));
    drop(c);
    sent(server, SCRIPT);
}

#[test]
fn exact_bodies_and_binary_writes() {
    static SCRIPT: &[Step] = &[
        (
            b"wb 1 4\n\0\n\r\xff",
            &[b"OK wrote 4 bytes to mailbox 1, version 1\n"],
        ),
        // A read's body holding what looks like replies, and the next
        // reply in the same piece: each is taken where it belongs.
        (
            b"r 1\n",
            &[b"OK 7 bytes from mailbox 1, version 1\nOK\nERR\n\n"],
        ),
        (b"get 5\n", &[b"a value\n"]),
        (b"put -3 v w\n", &[b"OK\n"]),
        (b"del 5\n", &[b"ERR no such key\n"]),
        (b"stat\n", &[b"OK mailboxes=1 port=1\n"]),
        (b"help\n", &[b"OK 4 bytes of help\nr 1\n\n"]),
        (b"q\n", &[b"Goodbye"]),
    ];
    let (mut c, server) = scripted(SCRIPT);
    let stored = c.write(1, b"\0\n\r\xff").expect("write");
    assert_eq!(stored.version, 1);
    assert_eq!(c.read(1).expect("read").data, b"OK\nERR\n");
    assert_eq!(c.get(5).expect("get"), b"a value");
    assert_eq!(c.put(-3, b"v w").expect("put"), "OK");
    assert!(matches!(c.del(5), Err(ClientError::Refusal(r)) if r == "no such key"));
    assert_eq!(c.stat(None).expect("stat"), "OK mailboxes=1 port=1");
    assert_eq!(c.help().expect("help"), b"r 1\n");
    assert_eq!(c.quit().expect("quit"), b"Goodbye");
    sent(server, SCRIPT);
}

#[test]
fn replies_that_are_wrong() {
    static CUT: &[Step] = &[(b"r 1\n", &[b"OK 10 bytes from mailbox 1, version 1\nabc"])];
    let (mut c, server) = scripted(CUT);
    let error = c.read(1).expect_err("a body cut short");
    assert!(matches!(error, ClientError::Closed { .. }), "{error:?}");
    sent(server, CUT);

    static NO_LF: &[Step] = &[(b"r 1\n", &[b"OK 3 bytes from mailbox 1, version 1\nabcd"])];
    let (mut c, server) = scripted(NO_LF);
    let error = c.read(1).expect_err("no LF after the body");
    assert!(matches!(error, ClientError::Protocol { .. }), "{error:?}");
    sent(server, NO_LF);

    static NOT_DIPC: &[Step] = &[(b"r 1\n", &[b"R 1\n"])];
    let (mut c, server) = scripted(NOT_DIPC);
    let error = c.read(1).expect_err("an echo is no read reply");
    assert!(error.to_string().contains("not a read's header"), "{error}");
    sent(server, NOT_DIPC);
}

/// A server that never reads: once the socket buffers are full, a send
/// gives up after the reply wait (10 s with no progress) with NoReply
/// instead of hanging.
#[test]
fn a_server_that_does_not_read_fails_the_send() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    // A small receive buffer, not grown by the kernel: the window closes
    // for good soon after the first megabytes.
    nix::sys::socket::setsockopt(&listener, nix::sys::socket::sockopt::RcvBuf, &4096)
        .expect("SO_RCVBUF");
    let addr = listener.local_addr().expect("local_addr");
    let (done, finished) = std::sync::mpsc::channel();
    let server = thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        // Holds the connection open, reading nothing, until the client is
        // done.
        let _ = finished.recv_timeout(Duration::from_secs(90));
        drop(stream);
    });
    let (result, outcome) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let mut c = Connection::connect(addr).expect("connect");
        // Far more than any socket buffers hold.
        let _ = result.send(c.write(1, &vec![b'x'; 64 << 20]));
    });
    let error = outcome
        .recv_timeout(Duration::from_secs(45))
        .expect("the send still hangs after 45 s")
        .expect_err("a server that reads nothing took 64 MiB");
    assert!(matches!(error, ClientError::NoReply { .. }), "{error:?}");
    let _ = done.send(());
    server.join().expect("the server");
}
