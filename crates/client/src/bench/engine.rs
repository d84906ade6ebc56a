//! The event loop: one thread, one epoll instance (level-triggered), every
//! connection non-blocking, closed loop. Each connection sends a batch of
//! `depth` requests in one write, waits for all their replies, then sends
//! the next batch.
//!
//! The per-request path allocates nothing: a connection's request buffer
//! and op list keep their capacity from batch to batch, replies are framed
//! straight from one shared 64 KiB read buffer, and only a reply split
//! across reads is copied (into the connection's [`Inbox`]).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

use super::progress::Progress;
use super::rng::Rng;
use super::tally::Tally;
use super::workload::Source;
use crate::protocol::{Codec, Inbox, Op, ProtocolError};

/// A connection whose batch gets no byte of reply for this long aborts the
/// run: a benchmark must end, whatever the server does.
pub const NO_REPLY_LIMIT: Duration = Duration::from_secs(10);
const READ_BUFFER: usize = 64 * 1024;
/// How often the loop wakes, at the least, to check for silent connections
/// and to draw the progress bar.
const CHECK_EVERY: Duration = Duration::from_millis(100);
/// A reply longer than this is a server gone wrong, not a value.
const MAX_PENDING: usize = 1 << 30;

/// What a phase of the run may do.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Batches sent from then on are recorded; None: nothing is.
    pub record_from: Option<Instant>,
    /// No batch is sent from then on.
    pub deadline: Option<Instant>,
    /// No more than this many recorded requests are sent.
    pub max_recorded: Option<u64>,
}

/// One connection and its batch in flight.
struct Conn {
    stream: TcpStream,
    /// The batch's requests, as sent.
    out: Vec<u8>,
    /// How much of `out` is written.
    written: usize,
    /// The batch's operations, in order: reply `i` answers `ops[i]`.
    ops: Vec<Op>,
    /// How many replies of the batch have arrived.
    answered: usize,
    inbox: Inbox,
    /// When the batch was sent: each of its requests' latency counts from
    /// then.
    sent_at: Instant,
    /// When the connection last made progress (a batch sent, bytes read).
    last_heard: Instant,
    /// Whether the batch was sent after the warmup.
    recorded: bool,
    /// Whether a batch is in flight.
    busy: bool,
    /// Whether EPOLLOUT is in the interest set (a write was cut short).
    wants_out: bool,
    /// Replies received since the connection opened, all phases.
    replies: u64,
    /// Churn requests sent so far (put and del in turn).
    churns: u64,
    rng: Rng,
}

/// A phase's running state, apart from the engine so that both can be
/// borrowed at once.
struct Phase<'a> {
    source: &'a mut Source,
    limits: Limits,
    tally: &'a mut Tally,
    /// Recorded requests sent so far.
    issued: u64,
    /// Connections with a batch in flight.
    busy: usize,
}

pub struct Engine {
    epoll: Epoll,
    conns: Vec<Conn>,
    codec: Codec,
    depth: usize,
    server: String,
    buf: Vec<u8>,
    events: Vec<EpollEvent>,
}

impl Engine {
    pub fn new(
        streams: Vec<TcpStream>,
        codec: Codec,
        depth: usize,
        server: &str,
    ) -> anyhow::Result<Self> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).context("epoll_create1")?;
        let now = Instant::now();
        let mut conns = Vec::with_capacity(streams.len());
        for (i, stream) in streams.into_iter().enumerate() {
            epoll
                .add(&stream, EpollEvent::new(EpollFlags::EPOLLIN, i as u64))
                .context("adding a connection to epoll")?;
            conns.push(Conn {
                stream,
                out: Vec::new(),
                written: 0,
                ops: Vec::with_capacity(depth),
                answered: 0,
                inbox: Inbox::new(),
                sent_at: now,
                last_heard: now,
                recorded: false,
                busy: false,
                wants_out: false,
                replies: 0,
                churns: 0,
                rng: Rng::new(i as u64),
            });
        }
        let events = vec![EpollEvent::empty(); conns.len().clamp(1, 1024)];
        Ok(Engine {
            epoll,
            conns,
            codec,
            depth,
            server: server.to_owned(),
            buf: vec![0; READ_BUFFER],
            events,
        })
    }

    /// Runs until no connection has a batch in flight and none may send
    /// another: the source is exhausted, or the limits reached.
    pub fn run(
        &mut self,
        source: &mut Source,
        limits: Limits,
        tally: &mut Tally,
        progress: &mut Progress,
    ) -> anyhow::Result<()> {
        let mut phase = Phase {
            source,
            limits,
            tally,
            issued: 0,
            busy: 0,
        };
        for i in 0..self.conns.len() {
            self.start_batch(i, &mut phase)?;
        }
        let mut last_check = Instant::now();
        let timeout = EpollTimeout::try_from(CHECK_EVERY).unwrap_or(EpollTimeout::MAX);
        while phase.busy > 0 {
            let ready = match self.epoll.wait(&mut self.events, timeout) {
                Ok(n) => n,
                Err(Errno::EINTR) => 0,
                Err(e) => return Err(e).context("epoll_wait"),
            };
            for k in 0..ready {
                let event = self.events[k];
                let i = event.data() as usize;
                let flags = event.events();
                if flags.contains(EpollFlags::EPOLLOUT) {
                    self.flush(i)?;
                }
                if flags
                    .intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR)
                {
                    self.receive(i, &mut phase)?;
                }
            }
            let now = Instant::now();
            if now - last_check >= CHECK_EVERY {
                last_check = now;
                self.check_silence(now)?;
                progress.tick(now, phase.tally.requests);
            }
        }
        Ok(())
    }

    /// Sends connection `i` its next batch, if the phase allows one.
    fn start_batch(&mut self, i: usize, phase: &mut Phase) -> anyhow::Result<()> {
        let now = Instant::now();
        if phase
            .limits
            .deadline
            .is_some_and(|deadline| now >= deadline)
        {
            return Ok(());
        }
        let recording = phase.limits.record_from.is_some_and(|from| now >= from);
        let mut size = (self.depth as u64).min(phase.source.remaining());
        if let (true, Some(max)) = (recording, phase.limits.max_recorded) {
            size = size.min(max - phase.issued);
        }
        if size == 0 {
            return Ok(());
        }
        let conn = &mut self.conns[i];
        conn.out.clear();
        conn.ops.clear();
        for _ in 0..size {
            let (mut op, mut index) = phase.source.next(&mut conn.rng);
            if op == Op::Churn {
                (op, index) = Op::churn(conn.churns, i as u64, phase.source.spread());
                conn.churns += 1;
            }
            self.codec.encode(op, index, &mut conn.out);
            conn.ops.push(op);
        }
        if recording {
            phase.issued += size;
        }
        conn.written = 0;
        conn.answered = 0;
        conn.recorded = recording;
        conn.busy = true;
        phase.busy += 1;
        conn.sent_at = Instant::now();
        conn.last_heard = conn.sent_at;
        self.flush(i)
    }

    /// Writes what is left of connection `i`'s batch, asking epoll for
    /// writability only while the socket buffer is full.
    fn flush(&mut self, i: usize) -> anyhow::Result<()> {
        let count = self.conns.len();
        let conn = &mut self.conns[i];
        while conn.written < conn.out.len() {
            match conn.stream.write(&conn.out[conn.written..]) {
                Ok(0) => return Err(closed(&self.server, i, count, None)),
                Ok(n) => conn.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !conn.wants_out {
                        let mut event =
                            EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT, i as u64);
                        self.epoll
                            .modify(&conn.stream, &mut event)
                            .context("epoll_ctl")?;
                        conn.wants_out = true;
                    }
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(closed(&self.server, i, count, Some(e))),
            }
        }
        if conn.wants_out {
            let mut event = EpollEvent::new(EpollFlags::EPOLLIN, i as u64);
            self.epoll
                .modify(&conn.stream, &mut event)
                .context("epoll_ctl")?;
            conn.wants_out = false;
        }
        Ok(())
    }

    /// Reads once from connection `i`, frames the replies that completed,
    /// records them, and starts the next batch when the last one is in.
    fn receive(&mut self, i: usize, phase: &mut Phase) -> anyhow::Result<()> {
        let count = self.conns.len();
        let conn = &mut self.conns[i];
        let n = loop {
            match conn.stream.read(&mut self.buf) {
                Ok(0) => return Err(closed(&self.server, i, count, None)),
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(closed(&self.server, i, count, Some(e))),
            }
        };
        let now = Instant::now();
        conn.last_heard = now;
        let codec = &self.codec;
        let tally = &mut *phase.tally;
        conn.inbox
            .frame(&self.buf[..n], |bytes| {
                let Some(&op) = conn.ops.get(conn.answered) else {
                    return Err(ProtocolError::new(
                        "the server sent bytes that no request asked for",
                        bytes,
                    ));
                };
                let Some(reply) = codec.parse(op, bytes)? else {
                    return Ok(None);
                };
                tally.reply(
                    conn.recorded,
                    reply.error,
                    conn.sent_at,
                    now,
                    &bytes[..reply.len],
                );
                conn.answered += 1;
                conn.replies += 1;
                Ok(Some(reply.len))
            })
            .with_context(|| {
                format!(
                    "protocol error from {} ({}) on connection {} of {count}",
                    self.server,
                    self.codec.protocol(),
                    i + 1
                )
            })?;
        if conn.inbox.pending() > MAX_PENDING {
            bail!(
                "connection {} of {count}: a reply from {} runs over {MAX_PENDING} bytes",
                i + 1,
                self.server
            );
        }
        if conn.busy && conn.answered == conn.ops.len() {
            conn.busy = false;
            phase.busy -= 1;
            self.start_batch(i, phase)?;
        }
        Ok(())
    }

    /// Fails the run if a connection has waited too long for a reply.
    fn check_silence(&self, now: Instant) -> anyhow::Result<()> {
        let count = self.conns.len();
        for (i, conn) in self.conns.iter().enumerate() {
            if conn.busy && now - conn.last_heard > NO_REPLY_LIMIT {
                // A connection that never had a reply is most likely not
                // served at all: still in the listen backlog of a server
                // that serves a fixed number of connections at once.
                let hint = if conn.replies == 0 {
                    "; it has had no reply since it opened: a server serving at most a \
                     fixed number of connections at once (a prefork pool smaller than \
                     --connections) never serves the rest"
                } else {
                    ""
                };
                bail!(
                    "no reply from {} on connection {} of {count} for {} s \
                     ({} of the {} replies of its batch received, {} bytes of \
                     {} of its requests written, {} bytes of an incomplete reply held){hint}",
                    self.server,
                    i + 1,
                    NO_REPLY_LIMIT.as_secs(),
                    conn.answered,
                    conn.ops.len(),
                    conn.written,
                    conn.out.len(),
                    conn.inbox.pending()
                );
            }
        }
        Ok(())
    }
}

/// The error for a connection the server closed or reset.
fn closed(server: &str, i: usize, count: usize, error: Option<io::Error>) -> anyhow::Error {
    let how = match error {
        None => "closed".to_owned(),
        Some(e) if e.kind() == io::ErrorKind::ConnectionReset => "reset".to_owned(),
        Some(e) if e.kind() == io::ErrorKind::BrokenPipe => "closed".to_owned(),
        Some(e) => format!("broken ({e})"),
    };
    anyhow!(
        "connection {} of {count} was {how} by {server} mid-run",
        i + 1
    )
}
