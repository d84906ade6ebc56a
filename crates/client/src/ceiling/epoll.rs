//! The ceiling's event-loop model: one thread, one epoll instance
//! (level-triggered), non-blocking sockets, a signalfd for the stop.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};

use anyhow::Context;
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::signal::SigSet;
use nix::sys::signalfd::{SfdFlags, SignalFd};

use super::replies::{count_lines, Replies};

const LISTENER: u64 = u64::MAX;
const SIGNALS: u64 = u64::MAX - 1;
const READ_BUFFER: usize = 64 * 1024;

/// One client: the replies it is owed and how far into a reply the last
/// write stopped.
struct Client {
    stream: TcpStream,
    owed: usize,
    phase: usize,
    /// Whether the interest is EPOLLOUT (owing) rather than EPOLLIN.
    writing: bool,
}

/// What happened to a client after an event.
enum Next {
    Keep,
    Close,
}

pub fn serve(listener: TcpListener, replies: &Replies, mask: &SigSet) -> anyhow::Result<()> {
    listener
        .set_nonblocking(true)
        .context("making the listener non-blocking")?;
    let signals = SignalFd::with_flags(mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .context("signalfd")?;
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).context("epoll_create1")?;
    epoll
        .add(&listener, EpollEvent::new(EpollFlags::EPOLLIN, LISTENER))
        .context("epoll_ctl")?;
    epoll
        .add(&signals, EpollEvent::new(EpollFlags::EPOLLIN, SIGNALS))
        .context("epoll_ctl")?;

    // Clients live in a slab: the epoll token is the index.
    let mut clients: Vec<Option<Client>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut events = vec![EpollEvent::empty(); 1024];
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        let ready = match epoll.wait(&mut events, EpollTimeout::NONE) {
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e).context("epoll_wait"),
        };
        for event in &events[..ready] {
            match event.data() {
                SIGNALS => {
                    // SIGCHLD is in the mask too but this model has no
                    // children: only a stop signal ends the loop.
                    if let Ok(Some(info)) = signals.read_signal() {
                        if info.ssi_signo != libc::SIGCHLD as u32 {
                            return Ok(());
                        }
                    }
                }
                LISTENER => accept_all(&listener, &epoll, &mut clients, &mut free)?,
                token => {
                    let i = token as usize;
                    let Some(client) = clients.get_mut(i).and_then(Option::as_mut) else {
                        continue;
                    };
                    let next = if client.writing {
                        flush(client, replies)
                    } else {
                        serve_read(client, replies, &mut buf)
                    };
                    let next = match next {
                        Next::Keep => update_interest(&epoll, client, i),
                        Next::Close => Next::Close,
                    };
                    if let Next::Close = next {
                        // Dropping the stream closes it, which also takes it
                        // out of the epoll set.
                        clients[i] = None;
                        free.push(i);
                    }
                }
            }
        }
    }
}

fn accept_all(
    listener: &TcpListener,
    epoll: &Epoll,
    clients: &mut Vec<Option<Client>>,
    free: &mut Vec<usize>,
) -> anyhow::Result<()> {
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // Out of descriptors, or a connection reset before it was
                // accepted: the server goes on with the clients it has.
                eprintln!("ceiling: accept: {e}");
                return Ok(());
            }
        };
        if stream.set_nonblocking(true).is_err() || stream.set_nodelay(true).is_err() {
            continue;
        }
        let i = free.pop().unwrap_or_else(|| {
            clients.push(None);
            clients.len() - 1
        });
        epoll
            .add(&stream, EpollEvent::new(EpollFlags::EPOLLIN, i as u64))
            .context("epoll_ctl")?;
        clients[i] = Some(Client {
            stream,
            owed: 0,
            phase: 0,
            writing: false,
        });
    }
}

/// Reads once, owes a reply per complete line, and sends them in one write
/// (more only if the socket buffer fills).
fn serve_read(client: &mut Client, replies: &Replies, buf: &mut [u8]) -> Next {
    match client.stream.read(buf) {
        Ok(0) => Next::Close,
        Ok(n) => {
            client.owed += count_lines(&buf[..n]) * replies.reply_len();
            flush(client, replies)
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            Next::Keep
        }
        Err(_) => Next::Close,
    }
}

/// Writes what the client is owed until done or the socket buffer is full.
fn flush(client: &mut Client, replies: &Replies) -> Next {
    while client.owed > 0 {
        let chunk = replies.next_chunk(client.phase, client.owed);
        match client.stream.write(chunk) {
            Ok(0) => return Next::Close,
            Ok(n) => {
                client.owed -= n;
                client.phase = (client.phase + n) % replies.reply_len();
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Next::Close,
        }
    }
    Next::Keep
}

/// A client that is owed bytes waits for writability and is not read from
/// meanwhile: one that sends without reading cannot make the server buffer
/// without bound.
fn update_interest(epoll: &Epoll, client: &mut Client, i: usize) -> Next {
    let writing = client.owed > 0;
    if writing == client.writing {
        return Next::Keep;
    }
    let flags = if writing {
        EpollFlags::EPOLLOUT
    } else {
        EpollFlags::EPOLLIN
    };
    client.writing = writing;
    match epoll.modify(&client.stream, &mut EpollEvent::new(flags, i as u64)) {
        Ok(()) => Next::Keep,
        Err(_) => Next::Close,
    }
}
