//! locate::ask_once against a scripted gateway on a UDP socket: datagrams
//! from other addresses are skipped without using up a try, and a reply of
//! a kind that is no answer is a bad reply, not "no server".

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use client::locate::{ask_once, GatewayError};
use gateway::wire::{Kind, Message, MESSAGE_LEN};

/// A gateway that answers the first request it gets with `reply`, after
/// `strays` datagrams sent to the asker from another socket; joined, it
/// gives how many requests it got within 1 s of its answer.
fn scripted_gateway(reply: Message, strays: usize) -> (SocketAddr, JoinHandle<usize>) {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let addr = socket.local_addr().expect("local_addr");
    let gateway = thread::spawn(move || {
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut buf = [0u8; 512];
        let (n, asker) = socket.recv_from(&mut buf).expect("a request");
        assert_eq!(n, MESSAGE_LEN, "the request's size");
        let stranger = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        for _ in 0..strays {
            stranger
                .send_to(&Message::new(Kind::Announce, None, 9).encode(), asker)
                .expect("a stray datagram");
        }
        socket.send_to(&reply.encode(), asker).expect("the answer");
        let mut requests = 1;
        socket
            .set_read_timeout(Some(Duration::from_secs(1)))
            .expect("timeout");
        while socket.recv_from(&mut buf).is_ok() {
            requests += 1;
        }
        requests
    });
    (addr, gateway)
}

#[test]
fn stray_datagrams_do_not_use_up_the_tries() {
    let (gateway, requests) = scripted_gateway(Message::new(Kind::Announce, None, 4321), 3);
    let server = ask_once(gateway).expect("the gateway's answer, behind three strays");
    assert_eq!(server, SocketAddr::from((Ipv4Addr::LOCALHOST, 4321)));
    // A stray taken for the answer would have used up a try: more requests.
    assert_eq!(requests.join().expect("the gateway"), 1, "requests sent");
}

#[test]
fn replies_of_other_kinds_are_bad_replies() {
    let (gateway, requests) = scripted_gateway(Message::new(Kind::Busy, None, 0), 0);
    match ask_once(gateway) {
        Err(GatewayError::BadReply { reason, .. }) => {
            assert!(reason.contains("Busy"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    requests.join().expect("the gateway");
    // A Request as a reply: no server available.
    let (gateway, requests) = scripted_gateway(Message::new(Kind::Request, None, 0), 0);
    assert!(matches!(
        ask_once(gateway),
        Err(GatewayError::NoServer { .. })
    ));
    requests.join().expect("the gateway");
}
