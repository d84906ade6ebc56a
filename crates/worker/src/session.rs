//! One connection's protocol state machine: it frames the byte stream into
//! requests, executes them against the segment and appends the replies to an
//! output buffer. It does no I/O, so every model of server can drive it and
//! tests can feed it arbitrary splits of a stream.
//!
//! Framing: a line ends at LF or NUL (a trailing CR is dropped); the caller
//! reports a pause in the input with [`Session::on_pause`], which completes a
//! line that has no terminator. Blank lines get no reply; every other line
//! gets exactly one.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shmlib::kv::{ChangeGroup, InMemory, Journal};
use shmlib::{
    Database, DatabaseJournal, Deadline, KeyValue, KvError, LockError, Mailbox, MailboxRead,
    Participant, Segment, Stats, UndoLog, WorkerSlot, WorkerState,
};

use crate::auth::Secret;
use crate::line_end;
use crate::reply_line::{MailboxReply, ReplyLines};
use crate::request::{self, Bounds, Plain, Request};

/// The daemon's settings a session needs.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub lock_timeout: Duration,
    pub port: u16,
    pub supervisor_pid: i32,
    /// This worker's slot: its identity in every mailbox lock. No two live
    /// processes may share one.
    pub worker_slot: usize,
    /// With a secret, a connection must send `auth <secret>` first.
    pub secret: Option<Secret>,
}

/// Whether the connection goes on after the bytes just fed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Send what is in the output buffer, then close.
    Close,
    /// A `wait` is pending ([`Session::pending_wait`]): send what is in the
    /// output buffer, feed nothing more, and sleep until the mailbox
    /// changes or the deadline comes; then [`Session::resume_wait`].
    Wait,
}

/// A `wait` under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingWait {
    /// 0-based.
    pub mailbox: usize,
    /// Answered once the version is past this one.
    pub after: u64,
    pub deadline: Instant,
}

/// Bytes of an overlong line kept to report what it was.
const HEAD_KEPT: usize = 64;

/// The most changes made under one hold of the store's write lock, and the
/// bytes of lines after which a group takes no more (so it ends within one
/// line past it): bounds the hold and the group's buffers.
const MAX_GROUP: usize = 256;
const MAX_GROUP_BYTES: usize = 64 * 1024;

const CANNOT_WRITE: &str = "cannot write database";
/// Why a mailbox index that reaches a request's execution is in range.
const INDEX_CHECKED: &str =
    "request::parse and request::plain check the index against the geometry";

/// Replies buffered before [`Session::feed_some`] stops to let them be sent.
pub const OUT_HIGH_WATER: usize = 64 * 1024;

#[derive(Debug)]
enum Mode {
    /// Collecting a request line.
    Command,
    /// After `w <m>`: the next non-blank line is that mailbox's data.
    AwaitData { mailbox: usize },
    /// Discarding an overlong line up to its terminator; `line` keeps its head.
    Skipping {
        total: usize,
        data_for: Option<usize>,
        /// The last byte skipped was a CR (of a CRLF terminator).
        ends_with_cr: bool,
    },
    /// Collecting (or, with no mailbox, discarding) `remaining` raw bytes.
    Bytes {
        mailbox: Option<usize>,
        remaining: usize,
    },
}

pub struct Session<'s> {
    segment: &'s Segment,
    /// The key-value store, when the daemon has one.
    store: Option<KeyValue<'s>>,
    /// Where the store's changes are recorded; without it they live in the
    /// segment only (tests).
    journal: Option<DatabaseJournal<'s>>,
    /// A change group's undo log and its outcomes, kept for their memory.
    undo: UndoLog,
    outcomes: Vec<Result<(), KvError>>,
    me: Participant,
    /// This worker's row in the worker table.
    row: &'s WorkerSlot,
    /// Raised when the worker must stop: cancels lock waits.
    stop: &'s AtomicBool,
    config: SessionConfig,
    bounds: Bounds,
    line_limit: usize,
    line: Vec<u8>,
    mode: Mode,
    requests: u64,
    waiting: Option<PendingWait>,
    /// False until the secret is presented (true when there is none).
    authenticated: bool,
    /// Requests counted but not yet added to the segment's counters.
    tally: Tally,
    /// The worker's last read reply and write line per mailbox, shared by
    /// its sessions.
    reply_lines: Option<&'s RefCell<ReplyLines>>,
    /// The worker's views of the mailboxes, built once, shared by its
    /// sessions; empty where the session builds a view per request.
    mailbox_views: &'s [Mailbox<'s>],
}

/// A view of every mailbox, for a worker's sessions to share
/// ([`Session::with_mailbox_views`]): about 100 bytes each, at most 400 KiB
/// for the largest geometry.
pub fn mailbox_views(segment: &Segment) -> Vec<Mailbox<'_>> {
    let mailboxes = segment.geometry().mailboxes as usize;
    (0..mailboxes)
        .map(|i| {
            segment
                .mailbox(i)
                .expect("every index below the mailbox count has a view")
        })
        .collect()
}

/// A mailbox's view: the worker's, built once, or one built for this
/// request.
enum MailboxView<'s> {
    Kept(&'s Mailbox<'s>),
    Built(Mailbox<'s>),
}

impl<'s> std::ops::Deref for MailboxView<'s> {
    type Target = Mailbox<'s>;

    fn deref(&self) -> &Mailbox<'s> {
        match self {
            MailboxView::Kept(view) => view,
            MailboxView::Built(view) => view,
        }
    }
}

/// The daemon-wide counters a session bumps per request, kept here and
/// added to the segment's once per batch of input ([`Session::feed_some`],
/// [`Session::on_pause`]) and before a `stat` reads them: an atomic add on a
/// cache line every worker writes costs more than the request's own work
/// when requests are pipelined.
#[derive(Debug, Default)]
struct Tally {
    requests: u64,
    /// Indexed by [`Counter`].
    counts: [u64; Counter::ALL.len()],
}

/// Which counter a request goes to.
#[derive(Clone, Copy)]
enum Counter {
    Reads,
    Writes,
    Stats,
    Other,
    Gets,
    Puts,
    Dels,
}

impl Counter {
    const ALL: [Counter; 7] = [
        Counter::Reads,
        Counter::Writes,
        Counter::Stats,
        Counter::Other,
        Counter::Gets,
        Counter::Puts,
        Counter::Dels,
    ];

    /// The segment's counter this one is added to.
    fn in_stats(self, stats: &Stats) -> &AtomicU64 {
        match self {
            Counter::Reads => &stats.reads,
            Counter::Writes => &stats.writes,
            Counter::Stats => &stats.stats,
            Counter::Other => &stats.other,
            Counter::Gets => &stats.gets,
            Counter::Puts => &stats.puts,
            Counter::Dels => &stats.dels,
        }
    }
}

impl Tally {
    fn count(&mut self, counter: Counter, n: u64) {
        self.counts[counter as usize] += n;
    }

    fn flush(&mut self, stats: &Stats, row: &WorkerSlot) {
        if self.requests > 0 {
            row.count_requests(self.requests);
        }
        for (counter, n) in Counter::ALL.into_iter().zip(self.counts) {
            Stats::add(counter.in_stats(stats), n);
        }
        *self = Tally::default();
    }
}

const HELP: &str = "\
r <m>            read mailbox m (1..k): OK <len> ..., then len bytes, then a newline
w <m> <text>     write the rest of the line to mailbox m
w <m>            two-step write: the next line is the data
wb <m> <len>     write exactly len bytes (any bytes) that follow this line
append <m> <text> add the text as a line to mailbox m; the oldest lines make room
wait <m> <v> [<ms>] mailbox m's content (as r) once its version is past v; TIMEOUT after ms (30000)
stat [<m>]       the daemon's geometry and figures, or mailbox m's length and version
stat workers     the worker table: one line per worker
put <key> <value> store value (the rest of the line) under an integer key, if new: OK
get <key>        the value stored under key, as one line
del <key>        remove key and its value: OK
auth <secret>    with --auth-file: the first request of a connection
q, Bye           Goodbye: close this connection (the server goes on)
help             this text
Lines end with LF, CRLF or NUL; a pause also ends a line. Errors: ERR <reason>.";

impl<'s> Session<'s> {
    pub fn new(segment: &'s Segment, config: SessionConfig, stop: &'s AtomicBool) -> Session<'s> {
        let geometry = segment.geometry();
        let bounds = Bounds {
            mailboxes: geometry.mailboxes as usize,
            data_limit: geometry.data_limit(),
            data_limit_name: if geometry.packet_size <= geometry.mailbox_size {
                "packet"
            } else {
                "mailbox"
            },
            value_limit: geometry.packet_size,
        };
        // The supervisor hands out slots from the segment's own table.
        let me = segment
            .participant(config.worker_slot)
            .expect("worker slot outside the segment's worker table");
        let authenticated = config.secret.is_none();
        Session {
            segment,
            store: segment.key_value(),
            journal: None,
            undo: UndoLog::default(),
            outcomes: Vec::new(),
            me,
            row: &segment.worker_slots()[config.worker_slot],
            stop,
            config,
            bounds,
            // A put line carries a packet-sized value: the packet size
            // bounds every line, whatever the mailbox size.
            line_limit: geometry.packet_size.max(bounds.data_limit) + HEAD_KEPT,
            line: Vec::new(),
            mode: Mode::Command,
            requests: 0,
            waiting: None,
            authenticated,
            tally: Tally::default(),
            reply_lines: None,
            mailbox_views: &[],
        }
    }

    /// Records the store's changes in `database` (the daemon's journal).
    pub fn with_database(mut self, database: Option<&'s Database>) -> Session<'s> {
        self.journal = database.map(Database::journal);
        self
    }

    /// Copies a read's reply from `lines` when it holds the reply for the
    /// mailbox's version, and a write's line when it holds the one for the
    /// mailbox, length and the version before, instead of building them:
    /// every session of a worker shares the worker's `lines`.
    pub fn with_reply_lines(mut self, lines: &'s RefCell<ReplyLines>) -> Session<'s> {
        self.reply_lines = Some(lines);
        self
    }

    /// Uses `views` ([`mailbox_views`] of this session's segment: mailbox
    /// `i` at index `i`, built once by the worker) instead of building a
    /// view of the mailbox for every request: a view is a dozen words of
    /// addresses, and building one cost a write about 45 instructions.
    pub fn with_mailbox_views(mut self, views: &'s [Mailbox<'s>]) -> Session<'s> {
        self.mailbox_views = views;
        self
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// Counts a request in this session and in the worker's row of the
    /// worker table (its own cache line: no sharing between workers).
    fn count_request(&mut self) {
        self.count_requests(1);
    }

    fn count_requests(&mut self, n: u64) {
        self.requests += n;
        self.tally.requests += n;
    }

    /// Adds the tally to the segment's counters.
    fn flush_tally(&mut self) {
        self.tally.flush(self.segment.stats(), self.row);
    }

    /// True in the middle of a request: part of a line, a two-step write's
    /// data line still to come, or a binary write's bytes still arriving. A
    /// stopping worker lets such a request finish (within the grace period).
    pub fn in_request(&self) -> bool {
        !matches!(self.mode, Mode::Command) || !self.line.is_empty() || self.waiting.is_some()
    }

    /// Bytes held for a line not complete yet: at most the line limit and
    /// one byte (an overlong line is skipped, not kept).
    pub fn buffered(&self) -> usize {
        self.line.len()
    }

    /// The longest line accepted.
    pub fn line_limit(&self) -> usize {
        self.line_limit
    }

    /// The `wait` this session sleeps on, if any.
    pub fn pending_wait(&self) -> Option<PendingWait> {
        self.waiting
    }

    /// Answers the pending `wait` if it is due: the mailbox is past the
    /// version (the reply is a read's), the deadline has come (`TIMEOUT`),
    /// or the worker is stopping (`ERR`). True when answered, or when no
    /// wait was pending. The caller has registered in the mailbox's waiter
    /// mask before the first call, so a write after this look wakes it.
    pub fn resume_wait(&mut self, out: &mut Vec<u8>) -> bool {
        let Some(wait) = self.waiting else {
            return true;
        };
        let version = self.mailbox(wait.mailbox).version();
        if version > wait.after {
            self.waiting = None;
            self.read(wait.mailbox, out);
        } else if self.stop.load(Ordering::Relaxed) {
            self.waiting = None;
            self.lock_error(wait.mailbox, LockError::Cancelled, out);
        } else if Instant::now() >= wait.deadline {
            self.waiting = None;
            put(
                out,
                format_args!(
                    "TIMEOUT mailbox {} is at version {version}\n",
                    wait.mailbox + 1
                ),
            );
        }
        self.waiting.is_none()
    }

    /// True when bytes wait for a terminator, so a pause would complete them.
    pub fn has_partial_line(&self) -> bool {
        match self.mode {
            Mode::Command | Mode::AwaitData { .. } => !self.line.is_empty(),
            Mode::Skipping { .. } => true,
            Mode::Bytes { .. } => false,
        }
    }

    /// Feeds `input`, replies appended to `out`, until it is used up or the
    /// flow is no longer `Continue`: after `Close` or `Wait` the rest is not
    /// fed. For tests and benchmarks; the socket loops use
    /// [`Session::feed_some`], which says how much it took.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Flow {
        loop {
            let (used, flow) = self.feed_some(input, out);
            input = &input[used..];
            if flow != Flow::Continue || input.is_empty() {
                return flow;
            }
        }
    }

    /// Feeds `input` until it is used up or `out` holds [`OUT_HIGH_WATER`]
    /// bytes of replies, whichever comes first, and says how many bytes it
    /// used. The caller sends `out` before feeding the rest, so a client
    /// that pipelines many reads without reading replies costs at most that
    /// much memory plus one reply.
    pub fn feed_some(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, Flow) {
        let fed = self.feed_some_uncounted(input, out);
        self.flush_tally();
        fed
    }

    fn feed_some_uncounted(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, Flow) {
        let given = input.len();
        let mut input = input;
        while !input.is_empty() {
            let flow = match self.mode {
                Mode::Bytes { mailbox, remaining } => {
                    let n = remaining.min(input.len());
                    if mailbox.is_some() {
                        self.line.extend_from_slice(&input[..n]);
                    }
                    input = &input[n..];
                    self.mode = Mode::Bytes {
                        mailbox,
                        remaining: remaining - n,
                    };
                    if remaining == n {
                        self.mode = Mode::Command;
                        if let Some(m) = mailbox {
                            let data = std::mem::take(&mut self.line);
                            self.write(m, &data, out);
                            self.line = data;
                            self.line.clear();
                        }
                    }
                    Flow::Continue
                }
                Mode::Skipping {
                    total,
                    data_for,
                    ends_with_cr,
                } => match line_end::find(input) {
                    Some(pos) => {
                        let cr = if pos > 0 {
                            input[pos - 1] == b'\r'
                        } else {
                            ends_with_cr
                        };
                        input = &input[pos + 1..];
                        self.finish_skip(total + pos, data_for, cr, out);
                        Flow::Continue
                    }
                    None => {
                        self.mode = Mode::Skipping {
                            total: total + input.len(),
                            data_for,
                            ends_with_cr: input.last() == Some(&b'\r'),
                        };
                        input = &[];
                        Flow::Continue
                    }
                },
                Mode::Command | Mode::AwaitData { .. } => {
                    if self.takes_plain() {
                        if self.serve_plain_run(&mut input, out) {
                            break;
                        }
                        if input.is_empty() {
                            break;
                        }
                    }
                    let end = line_end::find(input);
                    let piece = &input[..end.unwrap_or(input.len())];
                    // A whole line in the input (the usual case): executed
                    // where it lies, not copied into the line buffer first.
                    if let (true, Some(pos)) = (self.line.is_empty(), end) {
                        if piece.len() <= self.line_limit + 1 {
                            input = &input[pos + 1..];
                            let flow = self.handle_line(piece, &mut input, out);
                            if flow != Flow::Continue {
                                return (given - input.len(), flow);
                            }
                            if out.len() >= OUT_HIGH_WATER {
                                break;
                            }
                            continue;
                        }
                    }
                    // One byte of room past the limit for the CR of a CRLF.
                    if self.line.len() + piece.len() > self.line_limit + 1 {
                        self.start_skip(piece);
                        match end {
                            Some(pos) => {
                                input = &input[pos..];
                                Flow::Continue
                            }
                            None => {
                                input = &[];
                                Flow::Continue
                            }
                        }
                    } else {
                        self.line.extend_from_slice(piece);
                        match end {
                            Some(pos) => {
                                input = &input[pos + 1..];
                                self.complete_line(out)
                            }
                            None => {
                                input = &[];
                                Flow::Continue
                            }
                        }
                    }
                }
            };
            if flow != Flow::Continue {
                return (given - input.len(), flow);
            }
            if out.len() >= OUT_HIGH_WATER {
                break;
            }
        }
        (given - input.len(), Flow::Continue)
    }

    /// The client paused with bytes but no terminator: they are a line.
    pub fn on_pause(&mut self, out: &mut Vec<u8>) -> Flow {
        let flow = self.on_pause_uncounted(out);
        self.flush_tally();
        flow
    }

    fn on_pause_uncounted(&mut self, out: &mut Vec<u8>) -> Flow {
        match self.mode {
            Mode::Skipping {
                total,
                data_for,
                ends_with_cr,
            } => {
                self.finish_skip(total, data_for, ends_with_cr, out);
                Flow::Continue
            }
            Mode::Command | Mode::AwaitData { .. } if !self.line.is_empty() => {
                self.complete_line(out)
            }
            _ => Flow::Continue,
        }
    }

    /// The client closed its sending side: a final unterminated line counts.
    /// A `wait` that line starts is dropped: the client closed its side,
    /// so nobody is left to wait for (as when it closes while waiting).
    pub fn on_eof(&mut self, out: &mut Vec<u8>) {
        let _ = self.on_pause(out);
        self.waiting = None;
    }

    fn start_skip(&mut self, piece: &[u8]) {
        let data_for = match self.mode {
            Mode::AwaitData { mailbox } => Some(mailbox),
            _ => None,
        };
        let total = self.line.len() + piece.len();
        if self.line.len() < HEAD_KEPT {
            let more = (HEAD_KEPT - self.line.len()).min(piece.len());
            self.line.extend_from_slice(&piece[..more]);
        }
        self.line.truncate(HEAD_KEPT);
        self.mode = Mode::Skipping {
            total,
            data_for,
            ends_with_cr: piece.last() == Some(&b'\r'),
        };
    }

    fn finish_skip(
        &mut self,
        total: usize,
        data_for: Option<usize>,
        ends_with_cr: bool,
        out: &mut Vec<u8>,
    ) {
        let total = total.saturating_sub(usize::from(ends_with_cr));
        let message = self.overlong(&self.line, total, data_for);
        self.line.clear();
        self.mode = Mode::Command;
        self.count_request();
        self.error(out, &message);
    }

    /// The refusal of a line of `total` bytes that starts with `head`.
    fn overlong(&self, head: &[u8], total: usize, data_for: Option<usize>) -> String {
        if data_for.is_some() {
            self.bounds.too_much_data(total)
        } else if request::is_put(head) {
            self.bounds.value_too_long()
        } else if request::is_get_or_del(head) {
            "line too long".to_string()
        } else if let Some(prefix) = request::write_prefix_len(head) {
            self.bounds.too_much_data(total.saturating_sub(prefix))
        } else {
            format!(
                "line of {total} bytes is over the {}-byte line limit",
                self.line_limit
            )
        }
    }

    /// The buffered line is complete.
    fn complete_line(&mut self, out: &mut Vec<u8>) -> Flow {
        let mut line = std::mem::take(&mut self.line);
        let flow = self.handle_line(&line, &mut &[][..], out);
        line.clear();
        self.line = line;
        flow
    }

    /// Whether a plain request may start here: a new request, with the
    /// secret presented. Serving plain requests changes neither.
    fn takes_plain(&self) -> bool {
        matches!(self.mode, Mode::Command) && self.line.is_empty() && self.authenticated
    }

    /// Serves the plain reads, writes and gets at the start of `input`, one
    /// after another, and takes them off it; true when the replies reached
    /// [`OUT_HIGH_WATER`]. Such a line is served at once, without the
    /// general path's framing and parsing, which took half of a pipelined
    /// read's time in the worker (bench/changes.md); every other line,
    /// however it is spelt, goes the general way to the same reply. Call
    /// only where [`Session::takes_plain`].
    #[inline(always)]
    fn serve_plain_run(&mut self, input: &mut &[u8], out: &mut Vec<u8>) -> bool {
        while let Some((request, len)) = request::plain(input, &self.bounds, self.line_limit) {
            *input = &input[len..];
            self.count_request();
            match request {
                Plain::Read { mailbox } => {
                    self.tally.count(Counter::Reads, 1);
                    self.read(mailbox, out);
                }
                Plain::Write { mailbox, text } => {
                    self.tally.count(Counter::Writes, 1);
                    self.write(mailbox, text, out);
                }
                Plain::Get { key } => {
                    self.tally.count(Counter::Gets, 1);
                    self.get(key, out);
                }
            }
            if out.len() >= OUT_HIGH_WATER {
                return true;
            }
        }
        false
    }

    /// Executes one complete line (its terminator removed). `rest` is the
    /// input after it, from which a put or del takes the changes that
    /// follow it (see [`Session::changes`]).
    fn handle_line(&mut self, line: &[u8], rest: &mut &[u8], out: &mut Vec<u8>) -> Flow {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let data_for = match self.mode {
            Mode::AwaitData { mailbox } => Some(mailbox),
            _ => None,
        };
        if request::is_blank(line) {
            Flow::Continue
        } else if line.len() > self.line_limit {
            // Within the buffer's one byte of room for a CR, but no CR came.
            self.count_request();
            self.mode = Mode::Command;
            self.error(out, &self.overlong(line, line.len(), data_for));
            Flow::Continue
        } else {
            self.count_request();
            match self.mode {
                Mode::AwaitData { mailbox } => {
                    self.mode = Mode::Command;
                    self.write(mailbox, line, out);
                    Flow::Continue
                }
                _ => self.execute_line(line, rest, out),
            }
        }
    }

    fn execute_line(&mut self, line: &[u8], rest: &mut &[u8], out: &mut Vec<u8>) -> Flow {
        if !self.authenticated {
            return self.authenticate(line, out);
        }
        let request = match request::parse(line, &self.bounds) {
            Ok(r) => r,
            Err(message) => {
                self.tally.count(Counter::Other, 1);
                self.error(out, &message);
                return Flow::Continue;
            }
        };
        let counter = match request {
            Request::Read { .. } | Request::Wait { .. } => Counter::Reads,
            Request::Append { .. }
            | Request::Write { .. }
            | Request::WriteNextLine { .. }
            | Request::WriteBytes { .. }
            | Request::SkipBytes { .. }
            | Request::Abandon { .. } => Counter::Writes,
            Request::Stat { .. } | Request::StatWorkers => Counter::Stats,
            Request::Quit | Request::Help => Counter::Other,
            Request::Get { .. } => Counter::Gets,
            Request::Put { .. } => Counter::Puts,
            Request::Del { .. } => Counter::Dels,
        };
        self.tally.count(counter, 1);
        match request {
            Request::Read { mailbox } => self.read(mailbox, out),
            Request::Write { mailbox, text } => self.write(mailbox, text, out),
            Request::Append { mailbox, text } => self.append(mailbox, text, out),
            Request::Wait {
                mailbox,
                after,
                timeout_ms,
            } => {
                if self.mailbox(mailbox).version() > after {
                    self.read(mailbox, out);
                } else {
                    self.waiting = Some(PendingWait {
                        mailbox,
                        after,
                        deadline: Instant::now() + Duration::from_millis(timeout_ms),
                    });
                    return Flow::Wait;
                }
            }
            Request::WriteNextLine { mailbox } => {
                self.mode = Mode::AwaitData { mailbox };
                put(
                    out,
                    format_args!(
                        "DATA send mailbox {}'s content as one line of at most {} bytes\n",
                        mailbox + 1,
                        self.bounds.data_limit
                    ),
                );
            }
            Request::WriteBytes { mailbox, len } => {
                if len == 0 {
                    self.write(mailbox, &[], out);
                } else {
                    self.mode = Mode::Bytes {
                        mailbox: Some(mailbox),
                        remaining: len,
                    };
                }
            }
            Request::SkipBytes {
                len,
                error: message,
            } => {
                self.error(out, &message);
                self.mode = Mode::Bytes {
                    mailbox: None,
                    remaining: len,
                };
            }
            Request::Abandon { error: message } => {
                self.error(out, &message);
                return Flow::Close;
            }
            Request::Quit => {
                out.extend_from_slice(b"Goodbye");
                return Flow::Close;
            }
            Request::Help => {
                put(out, format_args!("OK {} bytes of help\n", HELP.len()));
                out.extend_from_slice(HELP.as_bytes());
                out.push(b'\n');
            }
            Request::Stat { mailbox: None } => {
                // The figures include this request and the batch before it.
                self.flush_tally();
                self.stat_all(out)
            }
            Request::Stat {
                mailbox: Some(mailbox),
            } => self.stat(mailbox, out),
            Request::StatWorkers => {
                self.flush_tally();
                self.stat_workers(out)
            }
            Request::Get { key } => self.get(key, out),
            Request::Put { .. } | Request::Del { .. } => self.changes(request, rest, out),
        }
        Flow::Continue
    }

    /// Before the secret: `auth <secret>` lets the connection in (`OK`); a
    /// wrong one closes it, so that each guess costs a connection; `q`
    /// leaves; anything else is refused.
    fn authenticate(&mut self, line: &[u8], out: &mut Vec<u8>) -> Flow {
        self.tally.count(Counter::Other, 1);
        let (command, rest) = request::split_command(line);
        if command.eq_ignore_ascii_case(b"auth") {
            // One separator, then the secret exactly as sent.
            let given = rest.get(1..).unwrap_or_default();
            let secret = self.config.secret.as_ref();
            if secret.is_some_and(|s| s.matches(given)) {
                self.authenticated = true;
                out.extend_from_slice(b"OK\n");
                return Flow::Continue;
            }
            log::warn!("a client sent a wrong secret; closing its connection");
            self.error(out, "wrong secret; closing the connection");
            return Flow::Close;
        }
        if request::is_quit(line) {
            out.extend_from_slice(b"Goodbye");
            return Flow::Close;
        }
        self.error(out, "authentication required: send auth <secret> first");
        Flow::Continue
    }

    /// `get`: the value itself and a newline.
    fn get(&mut self, key: i64, out: &mut Vec<u8>) {
        let Some(store) = &self.store else {
            return self.store_off(out);
        };
        let got = store.get_with(self.me, &self.deadline(), key, |value| {
            out.extend_from_slice(value);
            out.push(b'\n');
        });
        if let Err(e) = got {
            self.store_error(e, out);
        }
    }

    /// A put or del, and the put and del lines right behind it in the input
    /// (a pipelined run, at most [`MAX_GROUP`] lines, and none taken once
    /// [`MAX_GROUP_BYTES`] are):
    /// made as one group under one hold of the store's write lock and recorded in the daemon's journal
    /// (or, without one, in the segment only) in one append; then each gets
    /// its reply, `OK` or its refusal, in order.
    fn changes(&mut self, first: Request<'_>, rest: &mut &[u8], out: &mut Vec<u8>) {
        let Some(store) = &self.store else {
            return self.store_off(out);
        };
        let deadline = self.deadline();
        let mut outcomes = std::mem::take(&mut self.outcomes);
        outcomes.clear();
        let mut in_memory = InMemory;
        // The lines after the first (which the caller counted).
        let (mut puts, mut dels) = (0, 0);
        let made = {
            let journal: &mut dyn Journal = match &mut self.journal {
                Some(journal) => journal,
                None => &mut in_memory,
            };
            match store.begin(self.me, &deadline, journal, &mut self.undo) {
                Err(e) => Err(e),
                Ok(mut group) => {
                    outcomes.push(make_change(&mut group, first));
                    let mut bytes = 0;
                    while outcomes.len() < MAX_GROUP && bytes < MAX_GROUP_BYTES {
                        let Some((next, after)) = next_change(rest, &self.bounds, self.line_limit)
                        else {
                            break;
                        };
                        bytes += rest.len() - after.len();
                        match next {
                            Request::Put { .. } => puts += 1,
                            _ => dels += 1,
                        }
                        outcomes.push(make_change(&mut group, next));
                        *rest = after;
                    }
                    group.commit()
                }
            }
        };
        self.tally.count(Counter::Puts, puts);
        self.tally.count(Counter::Dels, dels);
        self.count_requests(puts + dels);
        let ok_reply = match made {
            Ok(()) => None,
            // The lock was not granted: nothing was tried.
            Err(e) if outcomes.is_empty() => {
                self.store_error(e, out);
                None
            }
            // The journal failed and every change of the group was undone:
            // the refusals stand, and the changes fail.
            Err(e) => {
                let changes = outcomes.iter().filter(|o| o.is_ok()).count();
                log::error!("key-value store: cannot record {changes} change(s): {e}");
                Some(CANNOT_WRITE)
            }
        };
        for outcome in outcomes.drain(..) {
            match (outcome, ok_reply) {
                (Ok(()), None) => out.extend_from_slice(b"OK\n"),
                (Ok(()), Some(failure)) => self.error(out, failure),
                (Err(e), _) => self.store_error(e, out),
            }
        }
        self.outcomes = outcomes;
    }

    fn store_off(&self, out: &mut Vec<u8>) {
        self.error(out, "key-value store is off");
    }

    /// The store's refusals: each within the lab's 31 bytes (see
    /// `request::key`); the details of a failure go to the log.
    fn store_error(&self, e: KvError, out: &mut Vec<u8>) {
        let message = match e {
            KvError::Exists => "key exists".to_string(),
            KvError::NotFound => "no such key".to_string(),
            KvError::Full { capacity } => format!("store full: {capacity} keys"),
            KvError::TooLong { .. } => self.bounds.value_too_long(),
            KvError::Lock(LockError::TimedOut) => {
                Stats::count(&self.segment.stats().lock_timeouts);
                log::warn!(
                    "key-value store busy: lock not granted within {} s",
                    self.config.lock_timeout.as_secs_f64()
                );
                "store busy, try again".to_string()
            }
            KvError::Lock(LockError::Cancelled) => "server stopping".to_string(),
            KvError::Lock(e) => {
                log::error!("key-value store lock: {e}");
                "store lock failed".to_string()
            }
            KvError::Journal(e) => {
                log::error!("key-value store: cannot record a change: {e}");
                CANNOT_WRITE.to_string()
            }
        };
        self.error(out, &message);
    }

    fn mailbox(&self, index: usize) -> MailboxView<'s> {
        match self.mailbox_views.get(index) {
            Some(view) => MailboxView::Kept(view),
            None => MailboxView::Built(self.segment.mailbox(index).expect(INDEX_CHECKED)),
        }
    }

    fn mailbox_version(&self, index: usize) -> u64 {
        self.segment.mailbox_version(index).expect(INDEX_CHECKED)
    }

    fn deadline(&self) -> Deadline<'s> {
        Deadline::after(self.config.lock_timeout).or_when(self.stop)
    }

    /// Inlined: a read of an unchanged mailbox is a few dozen instructions,
    /// and the call's own cost was a sixth of them.
    #[inline(always)]
    fn read(&mut self, index: usize, out: &mut Vec<u8>) {
        let mut lines = self.lines();
        // The reply last sent for this version, if the worker kept it: the
        // version is all a read of it needs to look at.
        if let Some(lines) = &lines {
            if lines.put_read(index, self.mailbox_version(index), out) {
                return;
            }
        }
        let mailbox = self.mailbox(index);
        // Header, content and newline straight into the output: one copy of
        // the content and no allocation.
        let start = out.len();
        let head = |read: MailboxRead, out: &mut Vec<u8>| MailboxReply::read(index, read).put(out);
        match mailbox.read_reply(self.me, &self.deadline(), out, head, b"\n") {
            Ok(read) => {
                if let Some(lines) = &mut lines {
                    lines.keep_read(index, read, &out[start..]);
                }
            }
            Err(e) => {
                drop(lines);
                self.lock_error(index, e, out);
            }
        }
    }

    fn write(&mut self, index: usize, data: &[u8], out: &mut Vec<u8>) {
        let mailbox = self.mailbox(index);
        // Every way in (w, two-step, wb) ends here: one size check.
        if data.len() > self.bounds.data_limit {
            return self.error(out, &self.bounds.too_much_data(data.len()));
        }
        match mailbox.write(self.me, &self.deadline(), data) {
            Ok(version) => match self.lines() {
                Some(mut lines) => lines.put_write(index, data.len(), version, out),
                None => MailboxReply::wrote(index, data.len(), version).put(out),
            },
            Err(e) => self.lock_error(index, e, out),
        }
    }

    /// The worker's memory of reply lines, when it has one and no other
    /// session of the worker is using it (none ever is: sessions take
    /// turns).
    fn lines(&self) -> Option<std::cell::RefMut<'s, ReplyLines>> {
        self.reply_lines
            .and_then(|lines| lines.try_borrow_mut().ok())
    }

    /// `append`: the text and a LF after the content, the oldest whole
    /// lines making room.
    fn append(&mut self, index: usize, text: &[u8], out: &mut Vec<u8>) {
        let mailbox = self.mailbox(index);
        let entry = text.len() + 1;
        if entry > mailbox.capacity() {
            let capacity = mailbox.capacity();
            return self.error(
                out,
                &format!(
                    "a line of {entry} bytes with its LF is over the {capacity}-byte mailbox size"
                ),
            );
        }
        match mailbox.append(self.me, &self.deadline(), text) {
            Ok(version) => MailboxReply {
                lead: b"OK appended ",
                len: entry,
                middle: b" bytes to mailbox ",
                mailbox: index + 1,
                version,
            }
            .put(out),
            Err(e) => self.lock_error(index, e, out),
        }
    }

    fn stat(&mut self, index: usize, out: &mut Vec<u8>) {
        let mailbox = self.mailbox(index);
        match mailbox.stat(self.me, &self.deadline()) {
            Ok(s) => put(
                out,
                format_args!(
                    "OK mailbox {}: {} bytes, version {}\n",
                    index + 1,
                    s.len,
                    s.version
                ),
            ),
            Err(e) => self.lock_error(index, e, out),
        }
    }

    /// `stat`: the geometry, then live figures, as `key=value` pairs on one
    /// line (docs/prog3.md lists them).
    fn stat_all(&self, out: &mut Vec<u8>) {
        let g = self.segment.geometry();
        let info = self.segment.info();
        let slots = self.segment.worker_slots();
        let in_state = |s: WorkerState| slots.iter().filter(|w| w.state() == s).count();
        let live = slots.iter().filter(|w| w.pid() != 0).count();
        let uptime = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs().saturating_sub(info.created_unix))
            .unwrap_or(0);
        let c = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let st = self.segment.stats();
        let (mut lengths, mut versions) = (Vec::new(), Vec::new());
        for index in 0..g.mailboxes as usize {
            let read = self
                .segment
                .mailbox(index)
                .map(|m| m.stat(self.me, &self.deadline()));
            match read {
                Some(Ok(r)) => {
                    lengths.push(r.len.to_string());
                    versions.push(r.version.to_string());
                }
                _ => {
                    lengths.push("?".into());
                    versions.push("?".into());
                }
            }
        }
        put(
            out,
            format_args!(
                "OK mailboxes={} mailbox_bytes={} packet_bytes={} workers={} port={} pid={} \
                 uptime_s={uptime} idle={} busy={} connections={} reads={} writes={} stats={} \
                 other={} errors={} lock_waits={} lock_timeouts={} lengths={} versions={} \
                 max_workers={} clients={} keys={} key_capacity={} gets={} puts={} dels={}\n",
                g.mailboxes,
                g.mailbox_size,
                g.packet_size,
                live,
                self.config.port,
                self.config.supervisor_pid,
                in_state(WorkerState::Idle),
                in_state(WorkerState::Busy),
                c(&st.connections),
                c(&st.reads),
                c(&st.writes),
                c(&st.stats),
                c(&st.other),
                c(&st.errors),
                c(&st.lock_waits),
                c(&st.lock_timeouts),
                lengths.join(","),
                versions.join(","),
                g.worker_slots,
                c(&st.open_connections),
                self.store.as_ref().map_or(0, |kv| kv.table().len()),
                g.keys,
                c(&st.gets),
                c(&st.puts),
                c(&st.dels),
            ),
        );
    }

    /// `stat workers`: one `key=value` line per live worker (docs/prog3.md),
    /// framed like `help`: `OK <n> bytes of worker table`, the lines, a
    /// newline.
    fn stat_workers(&self, out: &mut Vec<u8>) {
        use std::fmt::Write;
        let mut table = String::new();
        for (slot, w) in self.segment.worker_slots().iter().enumerate() {
            let pid = w.pid();
            if pid == 0 {
                continue;
            }
            let state = match w.state() {
                WorkerState::Empty => "empty",
                WorkerState::Starting => "starting",
                WorkerState::Idle => "idle",
                WorkerState::Busy => "busy",
                WorkerState::Retiring => "retiring",
            };
            let peer = w.peer().map_or_else(|| "-".to_string(), |p| p.to_string());
            let _ = writeln!(
                table,
                "slot={slot} pid={pid} state={state} peer={peer} connections={} requests={} \
                 started_unix={}",
                w.connections(),
                w.requests(),
                w.started_unix()
            );
        }
        let table = table.trim_end_matches('\n');
        put(
            out,
            format_args!("OK {} bytes of worker table\n", table.len()),
        );
        out.extend_from_slice(table.as_bytes());
        out.push(b'\n');
    }

    /// An `ERR` reply, counted in the daemon's statistics.
    fn error(&self, out: &mut Vec<u8>, message: &str) {
        Stats::count(&self.segment.stats().errors);
        put(out, format_args!("ERR {message}\n"));
    }

    fn lock_error(&mut self, index: usize, e: LockError, out: &mut Vec<u8>) {
        let message = match e {
            LockError::TimedOut => {
                Stats::count(&self.segment.stats().lock_timeouts);
                format!(
                    "mailbox {} is busy: lock not granted within {} s",
                    index + 1,
                    self.config.lock_timeout.as_secs_f64()
                )
            }
            LockError::Cancelled => {
                format!("mailbox {}: not served, the server is stopping", index + 1)
            }
            LockError::Os(errno) => format!("mailbox {}: lock failed: {errno}", index + 1),
            LockError::Corrupt => format!("mailbox {}: lock state corrupt", index + 1),
        };
        log::warn!("{message}");
        self.error(out, &message);
    }
}

impl crate::connection::Protocol for Session<'_> {
    fn feed_some(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, Flow) {
        Session::feed_some(self, input, out)
    }
    fn on_pause(&mut self, out: &mut Vec<u8>) -> Flow {
        Session::on_pause(self, out)
    }
    fn on_eof(&mut self, out: &mut Vec<u8>) {
        Session::on_eof(self, out)
    }
    fn in_request(&self) -> bool {
        Session::in_request(self)
    }
    fn has_partial_line(&self) -> bool {
        Session::has_partial_line(self)
    }
    fn requests(&self) -> u64 {
        Session::requests(self)
    }
    fn pending_wait(&self) -> Option<PendingWait> {
        Session::pending_wait(self)
    }
    fn resume_wait(&mut self, out: &mut Vec<u8>) -> bool {
        Session::resume_wait(self, out)
    }
}

/// Appends one reply.
fn put(out: &mut Vec<u8>, args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    // Writing into a Vec cannot fail.
    let _ = out.write_fmt(args);
}

fn make_change(group: &mut ChangeGroup<'_, '_>, request: Request<'_>) -> Result<(), KvError> {
    match request {
        Request::Put { key, value } => group.put(key, value),
        Request::Del { key } => group.del(key),
        _ => unreachable!("only put and del join a change group"),
    }
}

/// The next line of `input` if it is a whole put or del line within the
/// line limit, and the input after it.
fn next_change<'a>(
    input: &'a [u8],
    bounds: &Bounds,
    line_limit: usize,
) -> Option<(Request<'a>, &'a [u8])> {
    let end = line_end::find(input)?;
    let line = &input[..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() > line_limit || !request::is_change(line) {
        return None;
    }
    match request::parse(line, bounds) {
        Ok(change @ (Request::Put { .. } | Request::Del { .. })) => {
            Some((change, &input[end + 1..]))
        }
        _ => None,
    }
}
