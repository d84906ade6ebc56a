//! Finding the server: given with --server, or handed out by a gateway
//! (seed 000's message A and B), whose address and port the user types when
//! --gateway is not given either.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use anyhow::{bail, Context};
use gateway::wire::{Kind, Message, MESSAGE_LEN};

use crate::keyboard::{Keyboard, Typed};

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

pub fn resolve(target: &str) -> anyhow::Result<SocketAddr> {
    gateway::resolve_v4(target).with_context(|| format!("{target}: expected HOST:PORT"))
}

/// The server to talk to, asking the user what --server and --gateway do
/// not say; None when the user leaves instead.
pub fn find(
    server: Option<&str>,
    gateway: Option<&str>,
    keyboard: &mut dyn Keyboard,
) -> anyhow::Result<Option<SocketAddr>> {
    if let Some(server) = server {
        return resolve(server).map(Some);
    }
    let gateway = match gateway {
        Some(gateway) => resolve(gateway)?,
        None => ask_gateway_address(keyboard)?,
    };
    server_from_gateway(gateway, keyboard)
}

/// One typed answer; Ctrl-C asks again.
fn answer(keyboard: &mut dyn Keyboard, prompt: &str) -> anyhow::Result<Option<String>> {
    loop {
        match keyboard.line(prompt)? {
            Typed::Line(line) => return Ok(Some(line)),
            Typed::Interrupted => {}
            Typed::End => return Ok(None),
        }
    }
}

/// The seed's way: the gateway's address, then its port, from the keyboard.
fn ask_gateway_address(keyboard: &mut dyn Keyboard) -> anyhow::Result<SocketAddr> {
    let Some(address) = answer(keyboard, "gateway address: ")? else {
        bail!("no gateway address given");
    };
    let Some(port) = answer(keyboard, "gateway port: ")? else {
        bail!("no gateway port given");
    };
    let port: u16 = port
        .trim()
        .parse()
        .with_context(|| format!("gateway port {port:?}: expected 1..65535"))?;
    resolve(&format!("{}:{port}", address.trim()))
}

/// Asks the gateway until it names a server, or the user gives up; None
/// then.
fn server_from_gateway(
    gateway: SocketAddr,
    keyboard: &mut dyn Keyboard,
) -> anyhow::Result<Option<SocketAddr>> {
    loop {
        match ask_once(gateway) {
            Ok(server) => {
                println!("gateway {gateway} handed out server {server}");
                return Ok(Some(server));
            }
            Err(GatewayError::NoServer { .. }) => {
                eprintln!(
                    "no server available: the gateway at {gateway} knows none that can take a \
                     connection now. Press Enter to ask again, Ctrl-D to leave."
                );
                if !matches!(keyboard.line("")?, Typed::Line(_)) {
                    return Ok(None);
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// One request (message A), retried on silence. A socket of its own: a
/// late answer to an earlier request is never taken for this one's.
pub fn ask_once(gateway: SocketAddr) -> Result<SocketAddr, GatewayError> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).map_err(GatewayError::Socket)?;
    socket
        .set_read_timeout(Some(GATEWAY_WAIT))
        .map_err(GatewayError::Socket)?;
    let request = Message::new(Kind::Request, None, 0).encode();
    let mut buf = [0u8; 512];
    for _ in 0..GATEWAY_TRIES {
        socket
            .send_to(&request, gateway)
            .map_err(|cause| GatewayError::Send { gateway, cause })?;
        match socket.recv_from(&mut buf) {
            Ok((n, from)) if from == gateway && n == MESSAGE_LEN => {
                let reply = Message::decode(&buf[..n]).map_err(|e| GatewayError::BadReply {
                    gateway,
                    reason: e.to_string(),
                })?;
                if reply.kind != Kind::Announce {
                    return Err(GatewayError::NoServer { gateway });
                }
                // No address in the reply: the server is on the gateway's
                // host.
                let ip = reply.address_field().unwrap_or(match gateway {
                    SocketAddr::V4(v4) => *v4.ip(),
                    SocketAddr::V6(_) => Ipv4Addr::LOCALHOST,
                });
                return Ok(SocketAddr::from((ip, Message::tcp_port(reply.port))));
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(cause) => return Err(GatewayError::Receive { gateway, cause }),
        }
    }
    Err(GatewayError::Silent {
        gateway,
        secs: GATEWAY_WAIT.as_secs() * u64::from(GATEWAY_TRIES),
    })
}
