//! `client` with no subcommand: seed 000's client. It finds a server (given
//! with --server, or handed out by a gateway: --gateway, or the gateway's
//! address and port asked on the keyboard), connects, and then reads a line
//! from the keyboard, sends it, and prints the response, until end of input
//! or `Goodbye`. (The full interactive client, with line editing and
//! history, is issue 8's.)

use std::io::{self, BufRead, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use gateway::wire::{Kind, Message, MESSAGE_LEN};

/// How long a gateway has to answer one request, and how many are sent.
const GATEWAY_WAIT: Duration = Duration::from_secs(2);
const GATEWAY_TRIES: u32 = 3;
/// A reply is complete once the server has been quiet this long.
const REPLY_QUIET: Duration = Duration::from_millis(150);
/// Longer than dipc's default lock timeout (5 s), after which a request
/// queued behind a lock gets its ERR.
const FIRST_BYTE_WAIT: Duration = Duration::from_secs(10);

pub fn run(server: Option<&str>, gateway: Option<&str>) -> anyhow::Result<ExitCode> {
    let stdin = io::stdin();
    let mut input = stdin.lock();
    let server = match (server, gateway) {
        (Some(s), _) => resolve(s)?,
        (None, Some(g)) => match server_from_gateway(resolve(g)?, &mut input)? {
            Some(s) => s,
            None => return Ok(ExitCode::FAILURE),
        },
        (None, None) => {
            let gateway = ask_gateway_address(&mut input)?;
            match server_from_gateway(gateway, &mut input)? {
                Some(s) => s,
                None => return Ok(ExitCode::FAILURE),
            }
        }
    };
    talk(server, &mut input)
}

fn resolve(target: &str) -> anyhow::Result<SocketAddr> {
    gateway::resolve_v4(target).with_context(|| format!("{target}: expected HOST:PORT"))
}

fn prompt(text: &str) {
    print!("{text}");
    let _ = io::stdout().flush();
}

fn read_line(input: &mut impl BufRead) -> anyhow::Result<Option<String>> {
    let mut line = String::new();
    if input.read_line(&mut line).context("reading the keyboard")? == 0 {
        return Ok(None);
    }
    Ok(Some(line.trim_end_matches(['\n', '\r']).to_string()))
}

/// The seed's way: the gateway's address, then its port, from the keyboard.
fn ask_gateway_address(input: &mut impl BufRead) -> anyhow::Result<SocketAddr> {
    prompt("gateway address: ");
    let Some(address) = read_line(input)? else {
        bail!("no gateway address given");
    };
    prompt("gateway port: ");
    let Some(port) = read_line(input)? else {
        bail!("no gateway port given");
    };
    let port: u16 = port
        .trim()
        .parse()
        .with_context(|| format!("gateway port {port:?}: expected 1..65535"))?;
    resolve(&format!("{}:{port}", address.trim()))
}

/// Asks the gateway (message A) until it names a server (message B), or the
/// user gives up; None then.
fn server_from_gateway(
    gateway: SocketAddr,
    input: &mut impl BufRead,
) -> anyhow::Result<Option<SocketAddr>> {
    loop {
        match ask_once(gateway)? {
            Some(server) => {
                println!("gateway {gateway} handed out server {server}");
                return Ok(Some(server));
            }
            None => {
                eprintln!(
                    "no server available: the gateway at {gateway} knows none that can take a \
                     connection now. Press Enter to ask again, Ctrl-D to leave."
                );
                if read_line(input)?.is_none() {
                    return Ok(None);
                }
            }
        }
    }
}

/// One request, retried on silence. A socket of its own: a late answer to
/// an earlier request is never taken for this one's.
fn ask_once(gateway: SocketAddr) -> anyhow::Result<Option<SocketAddr>> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).context("a UDP socket")?;
    socket.set_read_timeout(Some(GATEWAY_WAIT))?;
    let request = Message::new(Kind::Request, None, 0).encode();
    let mut buf = [0u8; 512];
    for _ in 0..GATEWAY_TRIES {
        socket
            .send_to(&request, gateway)
            .with_context(|| format!("cannot send to the gateway at {gateway}"))?;
        match socket.recv_from(&mut buf) {
            Ok((n, from)) if from == gateway && n == MESSAGE_LEN => {
                let reply = Message::decode(&buf[..n])
                    .with_context(|| format!("the gateway at {gateway} sent a bad reply"))?;
                return Ok(match reply.kind {
                    Kind::Announce => {
                        let ip = reply.address_field().unwrap_or(*match &gateway {
                            SocketAddr::V4(v4) => v4.ip(),
                            SocketAddr::V6(_) => &Ipv4Addr::LOCALHOST,
                        });
                        Some(SocketAddr::from((ip, Message::tcp_port(reply.port))))
                    }
                    _ => None,
                });
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => {
                bail!("the gateway at {gateway} did not answer: {e} (is it running on that port?)")
            }
        }
    }
    bail!(
        "the gateway at {gateway} did not answer within {} s (is it running on that port?)",
        GATEWAY_WAIT.as_secs() * u64::from(GATEWAY_TRIES)
    )
}

/// The seed's loop: read a line, send it, print the response.
fn talk(server: SocketAddr, input: &mut impl BufRead) -> anyhow::Result<ExitCode> {
    let mut stream =
        TcpStream::connect_timeout(&server, Duration::from_secs(5)).with_context(|| {
            format!("cannot connect to {server} (is a server running on that port?)")
        })?;
    println!("connected to {server}; type a request, Ctrl-D to leave");
    loop {
        prompt("> ");
        let Some(line) = read_line(input)? else {
            println!();
            return Ok(ExitCode::SUCCESS);
        };
        stream
            .write_all(format!("{line}\n").as_bytes())
            .with_context(|| format!("sending to {server}"))?;
        let reply = read_reply(&mut stream).with_context(|| format!("reading from {server}"))?;
        if reply.is_empty() {
            println!("{server} closed the connection");
            return Ok(ExitCode::SUCCESS);
        }
        let text = String::from_utf8_lossy(&reply);
        print!("{text}");
        if !text.ends_with('\n') {
            println!();
        }
        if text.trim_end() == "Goodbye" {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

/// Whatever the server sends until it is quiet for a moment (the protocol
/// of a server handed out by a gateway is not known here); empty when the
/// server closed the connection.
fn read_reply(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut reply = Vec::new();
    let mut buf = [0u8; 8192];
    stream.set_read_timeout(Some(FIRST_BYTE_WAIT))?;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(reply),
            Ok(n) => {
                reply.extend_from_slice(&buf[..n]);
                stream.set_read_timeout(Some(REPLY_QUIET))?;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if reply.is_empty() {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no reply within {} s", FIRST_BYTE_WAIT.as_secs()),
                    ));
                }
                return Ok(reply);
            }
            Err(e) => return Err(e),
        }
    }
}
