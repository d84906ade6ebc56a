//! Finding the server: given with --server, or handed out by a gateway
//! (seed 000's message A and B), whose address and port the user types when
//! --gateway is not given either.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use gateway::wire::{Kind, Message};

use crate::dipc_client::resolve;
use crate::keyboard::{self, Keyboard, Typed};
use crate::outcome::Failure;
use crate::say;

/// How long a gateway has to answer one request, and how many are sent.
const GATEWAY_WAIT: Duration = Duration::from_secs(2);
const GATEWAY_TRIES: u32 = 3;

/// Why a gateway named no server.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("no UDP socket to ask the gateway with: {0}")]
    Socket(io::Error),
    #[error("cannot send to the gateway at {gateway}: {cause}")]
    Send {
        gateway: SocketAddr,
        cause: io::Error,
    },
    #[error("the gateway at {gateway} did not answer: {cause} (is it running on that port?)")]
    Receive {
        gateway: SocketAddr,
        cause: io::Error,
    },
    #[error(
        "the gateway at {gateway} did not answer within {secs} s (is it running on that port?)"
    )]
    Silent { gateway: SocketAddr, secs: u64 },
    #[error("the gateway at {gateway} sent a bad reply: {reason}")]
    BadReply { gateway: SocketAddr, reason: String },
    #[error(
        "no server available: the gateway at {gateway} knows none that can take a connection now"
    )]
    NoServer { gateway: SocketAddr },
}

/// The server to talk to, asking the user what --server and --gateway do
/// not say; None when the user leaves instead.
pub(crate) fn find(
    server: Option<&str>,
    gateway: Option<&str>,
    keyboard: &mut dyn Keyboard,
) -> Result<Option<SocketAddr>, Failure> {
    if let Some(server) = server {
        return Ok(Some(resolve(server)?));
    }
    let gateway = match gateway {
        Some(gateway) => resolve(gateway)?,
        None => ask_gateway_address(keyboard)?,
    };
    server_from_gateway(gateway, keyboard)
}

/// One typed answer; Ctrl-C asks again.
fn answer(keyboard: &mut dyn Keyboard, prompt: &str) -> Result<Option<String>, Failure> {
    loop {
        match keyboard.line(prompt).map_err(Failure::Keyboard)? {
            Typed::Line(line) => return Ok(Some(keyboard::text(&line).into_owned())),
            Typed::Interrupted => {}
            Typed::End => return Ok(None),
        }
    }
}

/// The seed's way: the gateway's address, then its port, from the keyboard.
fn ask_gateway_address(keyboard: &mut dyn Keyboard) -> Result<SocketAddr, Failure> {
    let Some(address) = answer(keyboard, "gateway address: ")? else {
        return Err(Failure::Usage("no gateway address given".to_string()));
    };
    let Some(port) = answer(keyboard, "gateway port: ")? else {
        return Err(Failure::Usage("no gateway port given".to_string()));
    };
    let port: u16 = port
        .trim()
        .parse()
        .map_err(|e| Failure::Usage(format!("gateway port {port:?}: expected 1..65535 ({e})")))?;
    Ok(resolve(&format!("{}:{port}", address.trim()))?)
}

/// Asks the gateway until it names a server, or the user gives up; None
/// then.
fn server_from_gateway(
    gateway: SocketAddr,
    keyboard: &mut dyn Keyboard,
) -> Result<Option<SocketAddr>, Failure> {
    loop {
        match ask_once(gateway) {
            Ok(server) => {
                say::line(&format!("gateway {gateway} handed out server {server}"));
                return Ok(Some(server));
            }
            Err(GatewayError::NoServer { .. }) => {
                say::err_line(&format!(
                    "no server available: the gateway at {gateway} knows none that can take a \
                     connection now. Press Enter to ask again, Ctrl-D to leave."
                ));
                let typed = keyboard.line("").map_err(Failure::Keyboard)?;
                if !matches!(typed, Typed::Line(_)) {
                    return Ok(None);
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// One request (message A), retried on silence. A socket of its own: a
/// late answer to an earlier request is never taken for this one's.
/// Datagrams from any other address are no answer: they are skipped, and
/// the try goes on waiting until its deadline.
pub fn ask_once(gateway: SocketAddr) -> Result<SocketAddr, GatewayError> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).map_err(GatewayError::Socket)?;
    let request = Message::new(Kind::Request, None, 0).encode();
    for _ in 0..GATEWAY_TRIES {
        socket
            .send_to(&request, gateway)
            .map_err(|cause| GatewayError::Send { gateway, cause })?;
        if let Some(reply) = answer_by(&socket, gateway, Instant::now() + GATEWAY_WAIT)? {
            return server_in(gateway, &reply);
        }
    }
    Err(GatewayError::Silent {
        gateway,
        secs: GATEWAY_WAIT.as_secs() * u64::from(GATEWAY_TRIES),
    })
}

/// The first datagram from `gateway` before `deadline`; None when none
/// came.
fn answer_by(
    socket: &UdpSocket,
    gateway: SocketAddr,
    deadline: Instant,
) -> Result<Option<Vec<u8>>, GatewayError> {
    let mut buf = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        socket
            .set_read_timeout(Some(left))
            .map_err(GatewayError::Socket)?;
        match socket.recv_from(&mut buf) {
            Ok((n, from)) if from == gateway => return Ok(Some(buf[..n].to_vec())),
            // Not the gateway's: not an answer.
            Ok(_) => {}
            Err(e) if gateway::nothing_received(&e) => {}
            Err(cause) => return Err(GatewayError::Receive { gateway, cause }),
        }
    }
}

/// The server a gateway's reply names: an Announce (message B) names one,
/// a Request means none is available, anything else is a bad reply.
fn server_in(gateway: SocketAddr, datagram: &[u8]) -> Result<SocketAddr, GatewayError> {
    let bad = |reason: String| GatewayError::BadReply { gateway, reason };
    let reply = Message::decode(datagram).map_err(|e| bad(e.to_string()))?;
    match reply.kind {
        Kind::Announce => {}
        Kind::Request => return Err(GatewayError::NoServer { gateway }),
        other => {
            return Err(bad(format!(
                "a message of kind {other:?} where a server's address was expected"
            )))
        }
    }
    // No address in the reply: the server is on the gateway's host.
    let ip = reply.address_field().unwrap_or(match gateway {
        SocketAddr::V4(v4) => *v4.ip(),
        SocketAddr::V6(_) => Ipv4Addr::LOCALHOST,
    });
    Ok(SocketAddr::from((ip, Message::tcp_port(reply.port))))
}
