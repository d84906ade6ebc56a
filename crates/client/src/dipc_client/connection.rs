//! One blocking connection to a dipc server: a typed method per request,
//! and raw sending and receiving for the interactive session, which also
//! talks to servers that are not dipc.

use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::error::ClientError;
use super::reply;

/// How long connecting may take.
pub const CONNECT_WAIT: Duration = Duration::from_secs(5);
/// How long a reply may take: longer than dipc's default lock timeout
/// (5 s), after which a request queued behind a lock gets its `ERR`.
pub const REPLY_WAIT: Duration = Duration::from_secs(10);
/// The server's wait when a `wait` request names none.
pub const DEFAULT_WAIT_MS: u32 = 30_000;
/// The longest wait the server takes.
pub const MAX_WAIT_MS: u32 = 3_600_000;
/// The longest reply line taken: dipc's longest is a `get` value of at most
/// one packet (1 MiB at most).
const MAX_LINE: u64 = 4 << 20;
/// The longest body taken (a read's data is at most one packet).
const MAX_BODY: usize = 64 << 20;

/// A mailbox's content, as a read or a successful wait returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Content {
    pub mailbox: u32,
    pub version: u64,
    pub data: Vec<u8>,
    /// The reply's header line, without its LF.
    pub header: String,
}

/// What a write or an append did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub len: usize,
    pub mailbox: u32,
    pub version: u64,
    /// The server's `OK` line, without its LF.
    pub line: String,
}

/// How a wait ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Waited {
    /// The mailbox passed the version: its content now.
    Changed(Content),
    /// The server's timeout passed first; the mailbox is at `version`.
    TimedOut { mailbox: u32, version: u64 },
}

pub struct Connection {
    reader: BufReader<TcpStream>,
    addr: SocketAddr,
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Refuses bytes that cannot travel inside one request line.
fn one_line(what: &str, bytes: &[u8]) -> Result<(), ClientError> {
    if bytes.iter().any(|b| matches!(b, b'\n' | b'\r' | 0)) {
        return Err(ClientError::Argument(format!(
            "{what} cannot hold a newline, a carriage return or a NUL byte: it travels as one request line"
        )));
    }
    Ok(())
}

/// How long a `wait`'s reply may take: the server's timeout (its default
/// when none is given), then the usual reply wait.
pub fn wait_reply_deadline(timeout_ms: Option<u32>) -> Duration {
    Duration::from_millis(u64::from(timeout_ms.unwrap_or(DEFAULT_WAIT_MS))) + REPLY_WAIT
}

/// `HOST:PORT` with an IPv4 address: a server's or a gateway's.
pub fn resolve(target: &str) -> Result<SocketAddr, ClientError> {
    gateway::resolve_v4(target).map_err(|cause| ClientError::Address {
        target: target.to_string(),
        cause,
    })
}

impl Connection {
    /// Resolves `HOST:PORT` (IPv4) and connects.
    pub fn open(target: &str) -> Result<Connection, ClientError> {
        Connection::connect(resolve(target)?)
    }

    pub fn connect(addr: SocketAddr) -> Result<Connection, ClientError> {
        let stream = TcpStream::connect_timeout(&addr, CONNECT_WAIT).map_err(|cause| {
            if cause.kind() == io::ErrorKind::ConnectionRefused {
                ClientError::Refused { addr }
            } else {
                ClientError::Connect { addr, cause }
            }
        })?;
        // A server that stops reading (its buffers and ours full) fails a
        // send after this long instead of hanging it.
        stream
            .set_write_timeout(Some(REPLY_WAIT))
            .map_err(|cause| ClientError::Io { addr, cause })?;
        Ok(Connection {
            reader: BufReader::new(stream),
            addr,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `r <m>`.
    pub fn read(&mut self, mailbox: u32) -> Result<Content, ClientError> {
        self.send(format!("r {mailbox}\n").as_bytes())?;
        let header = self.reply_line(REPLY_WAIT)?;
        self.content(header)
    }

    /// `wb <m> <len>` and the bytes: any content, binary included.
    pub fn write(&mut self, mailbox: u32, data: &[u8]) -> Result<Stored, ClientError> {
        let mut request = format!("wb {mailbox} {}\n", data.len()).into_bytes();
        request.extend_from_slice(data);
        self.send(&request)?;
        self.stored("wrote")
    }

    /// `append <m> <text>`: the server adds the text and a LF.
    pub fn append(&mut self, mailbox: u32, text: &[u8]) -> Result<Stored, ClientError> {
        self.send_line("appended text", &format!("append {mailbox} "), text)?;
        self.stored("appended")
    }

    /// Sends `head`, then `text` (`what`, which must be one line) and a LF.
    fn send_line(&mut self, what: &str, head: &str, text: &[u8]) -> Result<(), ClientError> {
        one_line(what, text)?;
        let mut request = head.as_bytes().to_vec();
        request.extend_from_slice(text);
        request.push(b'\n');
        self.send(&request)
    }

    /// `wait <m> <version> [<timeout ms>]`.
    pub fn wait(
        &mut self,
        mailbox: u32,
        version: u64,
        timeout_ms: Option<u32>,
    ) -> Result<Waited, ClientError> {
        let mut request = format!("wait {mailbox} {version}");
        if let Some(ms) = timeout_ms {
            let _ = write!(request, " {ms}");
        }
        request.push('\n');
        self.send(request.as_bytes())?;
        let line = self.reply_line(wait_reply_deadline(timeout_ms))?;
        if let Some((mailbox, version)) = reply::timeout(&line) {
            return Ok(Waited::TimedOut { mailbox, version });
        }
        self.content(line).map(Waited::Changed)
    }

    /// `put <key> <value>`: the server's `OK` line.
    pub fn put(&mut self, key: i64, value: &[u8]) -> Result<String, ClientError> {
        self.send_line("a value", &format!("put {key} "), value)?;
        self.reply_line(REPLY_WAIT)
    }

    /// `get <key>`: the value. (dipc's protocol cannot tell a value that
    /// begins with `ERR ` from a refusal: such a value is taken for one.)
    pub fn get(&mut self, key: i64) -> Result<Vec<u8>, ClientError> {
        self.send(format!("get {key}\n").as_bytes())?;
        let line = self.line(REPLY_WAIT)?;
        if let Some(reason) = std::str::from_utf8(&line).ok().and_then(reply::refusal) {
            return Err(ClientError::Refusal(reason.to_string()));
        }
        Ok(line)
    }

    /// `del <key>`: the server's `OK` line.
    pub fn del(&mut self, key: i64) -> Result<String, ClientError> {
        self.send(format!("del {key}\n").as_bytes())?;
        self.reply_line(REPLY_WAIT)
    }

    /// `stat` or `stat <m>`: the server's `OK` line.
    pub fn stat(&mut self, mailbox: Option<u32>) -> Result<String, ClientError> {
        let request = match mailbox {
            Some(m) => format!("stat {m}\n"),
            None => "stat\n".to_string(),
        };
        self.send(request.as_bytes())?;
        self.reply_line(REPLY_WAIT)
    }

    /// `help`: the server's help text.
    pub fn help(&mut self) -> Result<Vec<u8>, ClientError> {
        self.send(b"help\n")?;
        let line = self.reply_line(REPLY_WAIT)?;
        let (len, _) = reply::body_header(&line)
            .ok_or_else(|| self.unexpected("not a help header", line.as_bytes()))?;
        self.body(len)
    }

    /// `q`: what the server said before closing (dipc: `Goodbye`).
    pub fn quit(&mut self) -> Result<Vec<u8>, ClientError> {
        self.send(b"q\n")?;
        self.set_timeout(REPLY_WAIT)?;
        let mut said = Vec::new();
        match (&mut self.reader).take(MAX_LINE).read_to_end(&mut said) {
            Ok(_) => Ok(said),
            Err(e) if is_timeout(&e) && !said.is_empty() => Ok(said),
            Err(e) => Err(self.io_error(e, REPLY_WAIT)),
        }
    }

    /// Sends bytes as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.send(bytes)
    }

    /// Whatever the server sends until `complete` says the bytes so far are
    /// a whole reply, the server is quiet for `quiet` after its first byte,
    /// or it closes the connection. Empty when it closed before sending
    /// anything; NoReply when it sent nothing within `first_wait`.
    pub fn read_raw(
        &mut self,
        first_wait: Duration,
        quiet: Duration,
        complete: impl Fn(&[u8]) -> bool,
    ) -> Result<Vec<u8>, ClientError> {
        let mut reply = Vec::new();
        self.set_timeout(first_wait)?;
        loop {
            let chunk = match self.reader.fill_buf() {
                Ok(chunk) => chunk,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_timeout(&e) && !reply.is_empty() => return Ok(reply),
                Err(e) => return Err(self.io_error(e, first_wait)),
            };
            if chunk.is_empty() {
                return Ok(reply);
            }
            let n = chunk.len();
            reply.extend_from_slice(chunk);
            self.reader.consume(n);
            if complete(&reply) {
                return Ok(reply);
            }
            self.set_timeout(quiet)?;
        }
    }

    /// Sends `bytes`; a server that takes none of them for REPLY_WAIT (it
    /// does not read) is one that does not answer.
    fn send(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        let stream = self.reader.get_mut();
        let sent = stream.write_all(bytes).and_then(|()| stream.flush());
        sent.map_err(|cause| self.io_error(cause, REPLY_WAIT))
    }

    fn set_timeout(&mut self, wait: Duration) -> Result<(), ClientError> {
        let addr = self.addr;
        self.reader
            .get_ref()
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .map_err(|cause| ClientError::Io { addr, cause })
    }

    fn io_error(&self, cause: io::Error, waited: Duration) -> ClientError {
        if is_timeout(&cause) {
            ClientError::NoReply {
                addr: self.addr,
                secs: waited.as_secs(),
            }
        } else {
            ClientError::Io {
                addr: self.addr,
                cause,
            }
        }
    }

    fn unexpected(&self, reason: &str, bytes: &[u8]) -> ClientError {
        let shown = &bytes[..bytes.len().min(80)];
        ClientError::Protocol {
            addr: self.addr,
            reason: reason.to_string(),
            excerpt: String::from_utf8_lossy(shown).into_owned(),
        }
    }

    /// One reply line, without its LF.
    fn line(&mut self, wait: Duration) -> Result<Vec<u8>, ClientError> {
        self.set_timeout(wait)?;
        let mut line = Vec::new();
        let read = (&mut self.reader)
            .take(MAX_LINE)
            .read_until(b'\n', &mut line);
        match read {
            Ok(_) if line.last() == Some(&b'\n') => {
                line.pop();
                Ok(line)
            }
            Ok(_) if line.len() as u64 >= MAX_LINE => {
                Err(self.unexpected("a reply line of over 4 MiB", &line))
            }
            Ok(_) => Err(ClientError::Closed { addr: self.addr }),
            Err(e) => Err(self.io_error(e, wait)),
        }
    }

    /// One reply line as text, a refusal turned into its error.
    fn reply_line(&mut self, wait: Duration) -> Result<String, ClientError> {
        let line = self.line(wait)?;
        let text = String::from_utf8(line).map_err(|e| {
            let bytes = e.into_bytes();
            self.unexpected("a reply line that is not UTF-8", &bytes)
        })?;
        match reply::refusal(&text) {
            Some(reason) => Err(ClientError::Refusal(reason.to_string())),
            None => Ok(text),
        }
    }

    /// A read's header and its body.
    fn content(&mut self, header: String) -> Result<Content, ClientError> {
        let parsed = reply::read_header(&header)
            .ok_or_else(|| self.unexpected("not a read's header", header.as_bytes()))?;
        let data = self.body(parsed.len)?;
        Ok(Content {
            mailbox: parsed.mailbox,
            version: parsed.version,
            data,
            header,
        })
    }

    /// Exactly `len` bytes, then the LF that ends them.
    fn body(&mut self, len: usize) -> Result<Vec<u8>, ClientError> {
        if len > MAX_BODY {
            return Err(self.unexpected("a body over 64 MiB", format!("{len} bytes").as_bytes()));
        }
        let mut body = Vec::with_capacity(len + 1);
        let read = (&mut self.reader)
            .take(len as u64 + 1)
            .read_to_end(&mut body);
        match read {
            Ok(_) if body.len() < len + 1 => Err(ClientError::Closed { addr: self.addr }),
            Ok(_) if body.last() != Some(&b'\n') => Err(self.unexpected(
                &format!("{len} bytes of content not followed by a newline"),
                &body,
            )),
            Ok(_) => {
                body.pop();
                Ok(body)
            }
            Err(e) => Err(self.io_error(e, REPLY_WAIT)),
        }
    }

    /// The `OK wrote` or `OK appended` line of a write or an append.
    fn stored(&mut self, verb: &str) -> Result<Stored, ClientError> {
        let line = self.reply_line(REPLY_WAIT)?;
        let parsed = reply::stored(&line, verb)
            .ok_or_else(|| self.unexpected(&format!("not an `OK {verb}` line"), line.as_bytes()))?;
        Ok(Stored {
            len: parsed.len,
            mailbox: parsed.mailbox,
            version: parsed.version,
            line,
        })
    }
}
