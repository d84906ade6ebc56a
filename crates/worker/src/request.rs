//! Parsing one request line into a [`Request`]. Pure: no I/O, no segment.

/// A parsed request. Mailbox numbers are 0-based here; the wire is 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<'a> {
    Read {
        mailbox: usize,
    },
    /// `w <m> <text>`: the text is the rest of the line.
    Write {
        mailbox: usize,
        text: &'a [u8],
    },
    /// `w <m>` alone: the next line is the data.
    WriteNextLine {
        mailbox: usize,
    },
    /// `append <m> <text>`: the text and a LF go after the content, the
    /// oldest whole lines making room.
    Append {
        mailbox: usize,
        text: &'a [u8],
    },
    /// `wait <m> <version> [<ms>]`: the content once the version is past
    /// `after`, or a timeout.
    Wait {
        mailbox: usize,
        after: u64,
        timeout_ms: u64,
    },
    /// `wb <m> <len>`: exactly len bytes follow.
    WriteBytes {
        mailbox: usize,
        len: usize,
    },
    /// A refused `wb` whose length was given: that many bytes follow and are
    /// skipped, so they never run as requests.
    SkipBytes {
        len: usize,
        error: String,
    },
    /// A `wb` length too large to skip: the stream cannot be kept in step,
    /// so the connection is closed after the error.
    Abandon {
        error: String,
    },
    Quit,
    Help,
    Stat {
        mailbox: Option<usize>,
    },
    /// `stat workers`: the worker table.
    StatWorkers,
    /// `get <key>`
    Get {
        key: i64,
    },
    /// `put <key> <value>`: the value is the rest of the line.
    Put {
        key: i64,
        value: &'a [u8],
    },
    /// `del <key>`
    Del {
        key: i64,
    },
}

/// What a request line is checked against.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub mailboxes: usize,
    pub data_limit: usize,
    /// Which limit `data_limit` is, for error messages ("packet" or "mailbox").
    pub data_limit_name: &'static str,
    /// The longest key-value value: the packet size.
    pub value_limit: usize,
}

impl Bounds {
    /// The key-value store's refusal of a long value: short, like all its
    /// replies (see [`key`]).
    pub fn value_too_long(&self) -> String {
        format!("value over {} bytes", self.value_limit)
    }

    pub fn too_much_data(&self, len: usize) -> String {
        format!(
            "data is {len} bytes, over the {}-byte {} size",
            self.data_limit, self.data_limit_name
        )
    }
}

fn is_space(b: u8) -> bool {
    b == b' ' || b == b'\t' || b == b'\r'
}

fn trim_start(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| is_space(b)).count();
    &s[n..]
}

fn trim(s: &[u8]) -> &[u8] {
    let s = trim_start(s);
    let n = s.iter().rev().take_while(|&&b| is_space(b)).count();
    &s[..s.len() - n]
}

/// Splits the first whitespace-delimited token off `s` (leading space skipped).
fn token(s: &[u8]) -> (&[u8], &[u8]) {
    let s = trim_start(s);
    let n = s.iter().take_while(|&&b| !is_space(b)).count();
    (&s[..n], &s[n..])
}

/// Shows user bytes in an error message: printable, and short.
pub fn shown(bytes: &[u8]) -> String {
    let mut s: String = String::from_utf8_lossy(&bytes[..bytes.len().min(24)])
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if bytes.len() > 24 {
        s.push_str("...");
    }
    s
}

/// True when the line holds nothing but spaces, tabs and CRs.
pub fn is_blank(line: &[u8]) -> bool {
    trim(line).is_empty()
}

/// A token of ASCII digits as a number; None when it is empty, holds
/// anything else, or does not fit a u64.
fn decimal(tok: &[u8]) -> Option<u64> {
    if tok.is_empty() {
        return None;
    }
    tok.iter().try_fold(0u64, |n, &b| {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// One of the commonest requests in its plainest spelling, which the
/// session serves without framing the line and parsing it in general.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plain<'a> {
    /// `r <m>` LF.
    Read { mailbox: usize },
    /// `w <m> <text>` LF.
    Write { mailbox: usize, text: &'a [u8] },
    /// `get <key>` LF.
    Get { key: i64 },
}

/// A plain request at the start of `input` and the length of its line with
/// the LF, or None, and then [`parse`] takes the line as usual and answers
/// it the same way. Plain is `r <m>` or `w <m> <text>` with one space after
/// the command and after the mailbox, at most 20 digits (as many as a u64
/// has) and a mailbox in range, ended by a LF; a write's text holds no NUL
/// (which ends a line), does not end with the CR of a CRLF (which the
/// general path drops), is within the data limit, and its line within
/// `line_limit`. Or `get <key>` with one space, a key of at most 20 digits
/// and no sign that fits an i64, ended by a LF. Whatever is refused or
/// spelt otherwise goes the general way.
#[inline]
pub fn plain<'a>(
    input: &'a [u8],
    bounds: &Bounds,
    line_limit: usize,
) -> Option<(Plain<'a>, usize)> {
    if let Some(rest) = input.strip_prefix(b"get ") {
        let end = rest.iter().take(21).position(|&b| b == b'\n')?;
        let key = i64::try_from(decimal(&rest[..end])?).ok()?;
        let line = "get ".len() + end;
        return (line <= line_limit).then_some((Plain::Get { key }, line + 1));
    }
    let (&command, rest) = input.split_first()?;
    let rest = rest.strip_prefix(b" ")?;
    const COMMAND_AND_SPACE: usize = "r ".len();
    match command {
        b'r' => {
            let end = rest.iter().take(21).position(|&b| b == b'\n')?;
            let mailbox = mailbox_index(decimal(&rest[..end])?, bounds.mailboxes)?;
            let line = COMMAND_AND_SPACE + end;
            (line <= line_limit).then_some((Plain::Read { mailbox }, line + 1))
        }
        b'w' => {
            let digits = rest.iter().take(21).position(|&b| b == b' ')?;
            let mailbox = mailbox_index(decimal(&rest[..digits])?, bounds.mailboxes)?;
            let after = &rest[digits + 1..];
            let end = crate::line_end::find(after)?;
            let text = &after[..end];
            let line = COMMAND_AND_SPACE + digits + 1 + end;
            let plain = after[end] == b'\n'
                && text.last() != Some(&b'\r')
                && text.len() <= bounds.data_limit
                && line <= line_limit;
            plain.then_some((Plain::Write { mailbox, text }, line + 1))
        }
        _ => None,
    }
}

/// Parses a mailbox number, 1-based on the wire, into a 0-based index.
fn mailbox(tok: &[u8], command: &str, bounds: &Bounds) -> Result<usize, String> {
    decimal(tok)
        .and_then(|n| mailbox_index(n, bounds.mailboxes))
        .ok_or_else(|| bad_mailbox(tok, command, bounds.mailboxes))
}

/// Mailbox `n` (1-based) of `k` as a 0-based index, when it is one.
fn mailbox_index(n: u64, k: usize) -> Option<usize> {
    (1..=k as u64).contains(&n).then(|| n as usize - 1)
}

/// Why `tok` is no mailbox number: kept out of line, off the path of every
/// good request.
#[cold]
fn bad_mailbox(tok: &[u8], command: &str, k: usize) -> String {
    if tok.is_empty() {
        return format!("{command} needs a mailbox number 1..{k}");
    }
    if !tok.iter().all(u8::is_ascii_digit) {
        return format!("mailbox '{}' is not a number in 1..{k}", shown(tok));
    }
    let shown_n = match decimal(tok) {
        Some(n) => n.to_string(),
        None => shown(tok),
    };
    format!("mailbox {shown_n} is out of range 1..{k}")
}

/// The length of the `w <m> ` prefix of a write line, when the line starts
/// like one (used to report the data size of an overlong write).
pub fn write_prefix_len(head: &[u8]) -> Option<usize> {
    let (cmd, rest) = split_command(head);
    if !matches!(command_word(cmd), Some(W | WRITE)) {
        return None;
    }
    let (num, after) = token(rest);
    if num.is_empty() || !num.iter().all(u8::is_ascii_digit) || after.is_empty() {
        return None;
    }
    Some(head.len() - after.len() + 1)
}

/// The known command a line starts with, as its packed word (0 when none).
fn command_of(head: &[u8]) -> u64 {
    command_word(split_command(head).0).unwrap_or(0)
}

/// Whether a line starts like `put <key> `: an overlong one is then a value
/// too long, not a line too long.
pub fn is_put(head: &[u8]) -> bool {
    command_of(head) == PUT
}

/// Whether a line starts with `put` or `del`: a change to the store.
pub fn is_change(head: &[u8]) -> bool {
    matches!(command_of(head), PUT | DEL)
}

/// Whether a line starts with `get` or `del`: an overlong one gets a short
/// refusal, like every reply of the store (see [`key`]).
pub fn is_get_or_del(head: &[u8]) -> bool {
    matches!(command_of(head), GET | DEL)
}

/// Whether a line is a request to leave (`q`, `quit`, `exit` or `bye`,
/// whatever follows).
pub fn is_quit(line: &[u8]) -> bool {
    matches!(command_of(line), Q | QUIT | EXIT | BYE)
}

/// A key-value request's key. Every error of the store's requests fits, with
/// `ERR ` and the newline, in 31 bytes: the lab's clients read each reply
/// with one recv() of at most 31 bytes and would otherwise fall out of step.
fn key(tok: &[u8], command: &str) -> Result<i64, String> {
    shmlib::kv::parse_key(tok).map_err(|e| match e {
        shmlib::kv::KeyError::Missing => format!("{command} needs a key"),
        other => other.to_string(),
    })
}

/// The command word: the leading ASCII letters, so `r1` reads as `r 1`.
pub fn split_command(line: &[u8]) -> (&[u8], &[u8]) {
    let line = trim_start(line);
    let n = line.iter().take_while(|b| b.is_ascii_alphabetic()).count();
    if n == 0 {
        token(line)
    } else {
        (&line[..n], &line[n..])
    }
}

/// A command word of up to 8 ASCII letters, lower-cased and packed into an
/// integer, so that finding the command is a few integer compares rather
/// than a copy and a string compare per request.
const fn command_word(name: &[u8]) -> Option<u64> {
    if name.is_empty() || name.len() > 8 {
        return None;
    }
    let mut word = 0u64;
    let mut i = 0;
    while i < name.len() {
        if !name[i].is_ascii_alphabetic() {
            return None;
        }
        word = word << 8 | name[i].to_ascii_lowercase() as u64;
        i += 1;
    }
    Some(word)
}

/// The packed word of a command name written in this file.
const fn known(name: &[u8]) -> u64 {
    match command_word(name) {
        Some(word) => word,
        None => panic!("a command name is 1 to 8 ASCII letters"),
    }
}

const R: u64 = known(b"r");
const READ: u64 = known(b"read");
const W: u64 = known(b"w");
const WRITE: u64 = known(b"write");
const WB: u64 = known(b"wb");
const APPEND: u64 = known(b"append");
const WAIT: u64 = known(b"wait");
const Q: u64 = known(b"q");
const QUIT: u64 = known(b"quit");
const EXIT: u64 = known(b"exit");
const BYE: u64 = known(b"bye");
const GET: u64 = known(b"get");
const DEL: u64 = known(b"del");
const PUT: u64 = known(b"put");
const HELP: u64 = known(b"help");
const STAT: u64 = known(b"stat");

/// The largest refused `wb` payload that is skipped to keep the stream in
/// step; beyond it the connection is closed instead.
pub const MAX_SKIP: u64 = 1 << 30;

/// `wb <m> <len>`. Once a length is given, the client will send that many
/// bytes whatever the reply: every refusal then skips them.
fn parse_write_bytes<'a>(rest: &'a [u8], bounds: &Bounds) -> Result<Request<'a>, String> {
    let (tok, after) = token(rest);
    let (len_tok, extra) = token(after);
    let limit = bounds.data_limit;
    if len_tok.is_empty() || !len_tok.iter().all(u8::is_ascii_digit) {
        mailbox(tok, "wb", bounds)?;
        return Err(format!("wb needs a byte length 0..{limit}"));
    }
    let len = decimal(len_tok).filter(|&l| l <= MAX_SKIP);
    let Some(len) = len else {
        return Ok(Request::Abandon {
            error: format!(
                "wb length {} is over {MAX_SKIP}; closing the connection",
                shown(len_tok)
            ),
        });
    };
    let len = len as usize;
    let checked = mailbox(tok, "wb", bounds).and_then(|m| {
        if !trim(extra).is_empty() {
            Err("wb takes a mailbox number and a byte length".to_string())
        } else if len > limit {
            Err(bounds.too_much_data(len))
        } else {
            Ok(m)
        }
    });
    match checked {
        Ok(mailbox) => Ok(Request::WriteBytes { mailbox, len }),
        Err(error) if len == 0 => Err(error),
        Err(error) => Ok(Request::SkipBytes {
            len,
            error: format!("{error}; the {len} bytes that follow are skipped"),
        }),
    }
}

/// How long a `wait` waits when it does not say, and at most.
pub const WAIT_DEFAULT_MS: u64 = 30_000;
pub const WAIT_MAX_MS: u64 = 3_600_000;

/// `wait <m> <version> [<timeout ms>]`.
fn parse_wait<'a>(rest: &'a [u8], bounds: &Bounds) -> Result<Request<'a>, String> {
    let (tok, after) = token(rest);
    let mailbox = mailbox(tok, "wait", bounds)?;
    let (version_tok, after) = token(after);
    let after_version = decimal(version_tok)
        .ok_or_else(|| "wait needs a version number after the mailbox".to_string())?;
    let (timeout_tok, extra) = token(after);
    let timeout_ms = if timeout_tok.is_empty() {
        WAIT_DEFAULT_MS
    } else {
        decimal(timeout_tok)
            .filter(|ms| (1..=WAIT_MAX_MS).contains(ms))
            .ok_or_else(|| format!("wait timeout must be 1..{WAIT_MAX_MS} ms"))?
    };
    if !trim(extra).is_empty() {
        return Err("wait takes a mailbox, a version and a timeout in ms".into());
    }
    Ok(Request::Wait {
        mailbox,
        after: after_version,
        timeout_ms,
    })
}

/// Parses one complete, non-blank request line (terminator already removed).
pub fn parse<'a>(line: &'a [u8], bounds: &Bounds) -> Result<Request<'a>, String> {
    let (cmd, rest) = split_command(line);
    // A word that is no command name (too long, or not letters) is unknown.
    match command_word(cmd).unwrap_or(0) {
        R | READ => {
            let (tok, extra) = token(rest);
            let mailbox = mailbox(tok, "r", bounds)?;
            if !trim(extra).is_empty() {
                return Err("r takes one mailbox number".into());
            }
            Ok(Request::Read { mailbox })
        }
        W | WRITE => {
            let (tok, after) = token(rest);
            let mailbox = mailbox(tok, "w", bounds)?;
            if after.is_empty() {
                return Ok(Request::WriteNextLine { mailbox });
            }
            // One separator, then the text exactly as sent, spaces included (a
            // trailing CR of CRLF was removed with the terminator).
            let text = &after[1..];
            if text.len() > bounds.data_limit {
                return Err(bounds.too_much_data(text.len()));
            }
            Ok(Request::Write { mailbox, text })
        }
        WB => parse_write_bytes(rest, bounds),
        APPEND => {
            let (tok, after) = token(rest);
            let mailbox = mailbox(tok, "append", bounds)?;
            // One separator, then the text as sent, as for `w`.
            let text = after.get(1..).unwrap_or_default();
            if text.len() > bounds.data_limit {
                return Err(bounds.too_much_data(text.len()));
            }
            Ok(Request::Append { mailbox, text })
        }
        WAIT => parse_wait(rest, bounds),
        Q | QUIT | EXIT | BYE => Ok(Request::Quit),
        word @ (GET | DEL) => {
            let (tok, extra) = token(rest);
            let command = if word == GET { "get" } else { "del" };
            let key = key(tok, command)?;
            if !trim(extra).is_empty() {
                return Err(format!("{command} takes one key"));
            }
            Ok(if command == "get" {
                Request::Get { key }
            } else {
                Request::Del { key }
            })
        }
        PUT => {
            let (tok, after) = token(rest);
            let key = key(tok, "put")?;
            // One separator, then the value exactly as sent, as for `w`.
            let value = after.get(1..).unwrap_or_default();
            if value.is_empty() {
                return Err("put needs a value".into());
            }
            if value.len() > bounds.value_limit {
                return Err(bounds.value_too_long());
            }
            Ok(Request::Put { key, value })
        }
        HELP => Ok(Request::Help),
        STAT => {
            let (tok, extra) = token(rest);
            if tok.is_empty() {
                return Ok(Request::Stat { mailbox: None });
            }
            if tok == b"workers" && trim(extra).is_empty() {
                return Ok(Request::StatWorkers);
            }
            let mailbox = mailbox(tok, "stat", bounds)?;
            if !trim(extra).is_empty() {
                return Err("stat takes at most one mailbox number".into());
            }
            Ok(Request::Stat {
                mailbox: Some(mailbox),
            })
        }
        // Short enough for the lab's 31-byte reads (see `key`).
        _ => Err(format!(
            "unknown command '{}'",
            shown(&cmd[..cmd.len().min(8)])
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Bounds = Bounds {
        mailboxes: 4,
        data_limit: 2048,
        data_limit_name: "packet",
        value_limit: 2048,
    };

    /// A line limit that leaves room for every good write in `B`.
    const LINE_LIMIT: usize = 2048 + 64;

    /// What `plain` takes at the start of `input` under `B`'s bounds.
    fn plain_at(input: &[u8]) -> Option<(Plain<'_>, usize)> {
        plain(input, &B, LINE_LIMIT)
    }

    #[test]
    fn a_plain_get_is_taken_only_as_parse_would_take_it() {
        let taken: [(&[u8], i64); 5] = [
            (b"get 1\n", 1),
            (b"get 0\n", 0),
            (b"get 007\n", 7),
            (b"get 9223372036854775807\n", i64::MAX),
            (b"get 00000000000000000042\n", 42),
        ];
        for (input, key) in taken {
            assert_eq!(plain_at(input), Some((Plain::Get { key }, input.len())));
            let line = &input[..input.len() - 1];
            assert_eq!(parse(line, &B), Ok(Request::Get { key }));
        }
        // What follows the line is left alone.
        assert_eq!(
            plain_at(b"get 2\nget 3\n"),
            Some((Plain::Get { key: 2 }, 6))
        );
        // Every other spelling, and every refusal, goes the general way.
        let left: [&[u8]; 14] = [
            b"get 1",
            b"get 1\r\n",
            b"get \n",
            b"get  1\n",
            b"get 1 \n",
            b"get -1\n",
            b"get +1\n",
            b"get 1x\n",
            b"get 9223372036854775808\n",
            b"get 000000000000000000001\n",
            b"GET 1\n",
            b"g 1\n",
            b"get\t1\n",
            b" get 1\n",
        ];
        for input in left {
            assert_eq!(plain_at(input), None, "{:?}", shown(input));
        }
        // Past the line limit: the general way.
        assert_eq!(plain(b"get 0001\n", &B, 7), None);
        assert!(plain(b"get 001\n", &B, 7).is_some());
    }

    #[test]
    fn a_plain_read_is_taken_only_as_parse_would_take_it() {
        let taken: [(&[u8], usize); 4] = [
            (b"r 1\n", 0),
            (b"r 4\n", 3),
            (b"r 03\n", 2),
            (b"r 00000000000000000002\n", 1),
        ];
        for (input, mailbox) in taken {
            assert_eq!(
                plain_at(input),
                Some((Plain::Read { mailbox }, input.len()))
            );
            let line = &input[..input.len() - 1];
            assert_eq!(parse(line, &B), Ok(Request::Read { mailbox }));
        }
        // What follows the line is left alone.
        assert_eq!(
            plain_at(b"r 2\nr 3\n"),
            Some((Plain::Read { mailbox: 1 }, 4))
        );
        // Every other spelling goes the general way.
        let left: [&[u8]; 15] = [
            b"r 0\n",
            b"r 5\n",
            b"r \n",
            b"r 1",
            b"r 1\r\n",
            b"r  1\n",
            b"r 1 \n",
            b"R 1\n",
            b"read 1\n",
            b"r1\n",
            b"r -1\n",
            b"r 18446744073709551617\n",
            b"r 99999999999999999999\n",
            b"r 000000000000000000001\n",
            b" r 1\n",
        ];
        for input in left {
            assert_eq!(plain_at(input), None, "{:?}", shown(input));
        }
        // Past the line limit: the general way.
        assert_eq!(plain(b"r 0001\n", &B, 5), None);
        assert!(plain(b"r 001\n", &B, 5).is_some());
    }

    #[test]
    fn a_plain_write_is_taken_only_as_parse_would_take_it() {
        let full = [b"w 2 ".as_slice(), &[b'a'; 2048], b"\n"].concat();
        let taken: [(&[u8], usize, &[u8]); 7] = [
            (b"w 1 hello\n", 0, b"hello"),
            (b"w 4 two  spaces \n", 3, b"two  spaces "),
            (b"w 3  lead\tand\rinside\n", 2, b" lead\tand\rinside"),
            (b"w 3 \n", 2, b""),
            (b"w 03 r 1\n", 2, b"r 1"),
            (b"w 00000000000000000001 x\n", 0, b"x"),
            (&full, 1, &full[4..full.len() - 1]),
        ];
        for (input, mailbox, text) in taken {
            assert_eq!(
                plain_at(input),
                Some((Plain::Write { mailbox, text }, input.len())),
                "{}",
                shown(input)
            );
            let line = &input[..input.len() - 1];
            assert_eq!(parse(line, &B), Ok(Request::Write { mailbox, text }));
        }
        // What follows the line is left alone.
        assert_eq!(
            plain_at(b"w 2 a\nw 3 b\n"),
            Some((
                Plain::Write {
                    mailbox: 1,
                    text: b"a"
                },
                6
            ))
        );
        let over = [b"w 2 ".as_slice(), &[b'a'; 2049], b"\n"].concat();
        // Every other spelling, and every refusal, goes the general way.
        let left: [&[u8]; 18] = [
            b"w 1\n",
            b"w 1 text",
            b"w 1 text\r\n",
            b"w 1 te\0xt\n",
            b"w 1 text\0",
            b"w 0 text\n",
            b"w 5 text\n",
            b"w  1 text\n",
            b"w 1\ttext\n",
            b"w 1x text\n",
            b"W 1 text\n",
            b"write 1 text\n",
            b"w1 text\n",
            b" w 1 text\n",
            b"w 18446744073709551617 text\n",
            b"w 000000000000000000001 text\n",
            b"w 1\nw 2 text\n",
            &over,
        ];
        for input in left {
            assert_eq!(plain_at(input), None, "{}", shown(input));
        }
        // Within the data limit but past the line limit: the general way.
        assert_eq!(plain(b"w 1 abcdef\n", &B, 9), None);
        assert!(plain(b"w 1 abcde\n", &B, 9).is_some());
    }

    #[test]
    fn key_value_requests() {
        assert_eq!(parse(b"get 5", &B), Ok(Request::Get { key: 5 }));
        assert_eq!(parse(b"GET -5", &B), Ok(Request::Get { key: -5 }));
        assert_eq!(parse(b"del 7", &B), Ok(Request::Del { key: 7 }));
        assert_eq!(
            parse(b"put 5 hello  world ", &B),
            Ok(Request::Put {
                key: 5,
                value: b"hello  world "
            })
        );
        assert_eq!(parse(b"Bye", &B), Ok(Request::Quit));
        let long = [b"put 1 ".as_slice(), &[b'a'; 2049]].concat();
        let refusals: [(&[u8], &str); 9] = [
            (b"get", "get needs a key"),
            (b"del", "del needs a key"),
            (b"put", "put needs a key"),
            (b"get x", "key is not an integer"),
            (b"get 1.5", "key is not an integer"),
            (b"get 99999999999999999999", "key out of range"),
            (b"put 5", "put needs a value"),
            (b"get 1 2", "get takes one key"),
            (&long, "value over 2048 bytes"),
        ];
        for (line, error) in refusals {
            assert_eq!(parse(line, &B), Err(error.to_string()));
            assert!(error.len() + "ERR \n".len() <= 31, "{error}");
        }
        assert!(parse(b"put 5 ", &B).is_err(), "an empty value is missing");
        let unknown = parse(b"frobnicate 1", &B).expect_err("unknown");
        assert_eq!(unknown, "unknown command 'frobnica'");
        assert!(unknown.len() + "ERR \n".len() <= 31);
    }

    #[test]
    fn reads_and_writes() {
        assert_eq!(parse(b"r 1", &B), Ok(Request::Read { mailbox: 0 }));
        assert_eq!(parse(b"R4", &B), Ok(Request::Read { mailbox: 3 }));
        assert_eq!(parse(b"  read   2  ", &B), Ok(Request::Read { mailbox: 1 }));
        assert_eq!(
            parse(b"w 2 hello  world ", &B),
            Ok(Request::Write {
                mailbox: 1,
                text: b"hello  world "
            })
        );
        assert_eq!(parse(b"w 2", &B), Ok(Request::WriteNextLine { mailbox: 1 }));
        assert_eq!(
            parse(b"w 2  ", &B),
            Ok(Request::Write {
                mailbox: 1,
                text: b" "
            })
        );
        assert_eq!(
            parse(b"wb 3 10", &B),
            Ok(Request::WriteBytes {
                mailbox: 2,
                len: 10
            })
        );
        assert_eq!(parse(b"q", &B), Ok(Request::Quit));
        assert_eq!(parse(b"q 3", &B), Ok(Request::Quit));
        assert_eq!(parse(b"stat", &B), Ok(Request::Stat { mailbox: None }));
        assert_eq!(parse(b"stat 1", &B), Ok(Request::Stat { mailbox: Some(0) }));
        assert_eq!(parse(b"stat workers", &B), Ok(Request::StatWorkers));
        assert!(parse(b"stat workers 2", &B).is_err());
    }

    #[test]
    fn appends_and_waits() {
        assert_eq!(
            parse(b"append 2 alice: hi there", &B),
            Ok(Request::Append {
                mailbox: 1,
                text: b"alice: hi there"
            })
        );
        assert_eq!(
            parse(b"wait 1 7", &B),
            Ok(Request::Wait {
                mailbox: 0,
                after: 7,
                timeout_ms: WAIT_DEFAULT_MS
            })
        );
        assert_eq!(
            parse(b"WAIT 4 0 250", &B),
            Ok(Request::Wait {
                mailbox: 3,
                after: 0,
                timeout_ms: 250
            })
        );
        let long = [b"append 1 ".as_slice(), &[b'a'; 2049]].concat();
        let refusals: [(&[u8], &str); 7] = [
            (b"append", "append needs a mailbox number 1..4"),
            (&long, "data is 2049 bytes, over the 2048-byte packet size"),
            (b"wait 1", "wait needs a version number after the mailbox"),
            (
                b"wait 1 -1",
                "wait needs a version number after the mailbox",
            ),
            (b"wait 1 2 0", "wait timeout must be 1..3600000 ms"),
            (b"wait 1 2 3600001", "wait timeout must be 1..3600000 ms"),
            (
                b"wait 1 2 3 4",
                "wait takes a mailbox, a version and a timeout in ms",
            ),
        ];
        for (line, error) in refusals {
            assert_eq!(parse(line, &B), Err(error.to_string()), "{}", shown(line));
        }
    }

    #[test]
    fn errors_name_the_range() {
        assert_eq!(
            parse(b"r 7", &B),
            Err("mailbox 7 is out of range 1..4".into())
        );
        assert_eq!(
            parse(b"r 0", &B),
            Err("mailbox 0 is out of range 1..4".into())
        );
        assert_eq!(
            parse(b"r abc", &B),
            Err("mailbox 'abc' is not a number in 1..4".into())
        );
        assert_eq!(parse(b"r", &B), Err("r needs a mailbox number 1..4".into()));
        assert_eq!(
            parse(b"r 1 2", &B),
            Err("r takes one mailbox number".into())
        );
        assert_eq!(
            parse(b"r 99999999999999999999999", &B),
            Err("mailbox 99999999999999999999999 is out of range 1..4".into())
        );
        assert_eq!(parse(b"x 1", &B), Err("unknown command 'x'".into()));
        assert_eq!(
            parse(b"wb 1 x", &B),
            Err("wb needs a byte length 0..2048".into())
        );
        assert!(matches!(
            parse(b"wb 1 3000", &B),
            Ok(Request::SkipBytes { len: 3000, .. })
        ));
        // Any refusal of a wb with a length skips the payload.
        assert!(matches!(
            parse(b"wb 9 12", &B),
            Ok(Request::SkipBytes { len: 12, .. })
        ));
        assert!(matches!(
            parse(b"wb 1 5 x", &B),
            Ok(Request::SkipBytes { len: 5, .. })
        ));
        assert!(matches!(
            parse(b"wb 1 9223372036854775808", &B),
            Ok(Request::Abandon { .. })
        ));
        assert!(matches!(
            parse(b"wb 1 99999999999999999999999", &B),
            Ok(Request::Abandon { .. })
        ));
        let long = [b"w 1 ".as_slice(), &[b'a'; 3000]].concat();
        assert_eq!(
            parse(&long, &B),
            Err("data is 3000 bytes, over the 2048-byte packet size".into())
        );
    }

    #[test]
    fn commands_match_whole_words_in_any_case() {
        assert_eq!(parse(b"ReAd 2", &B), Ok(Request::Read { mailbox: 1 }));
        assert_eq!(parse(b"EXIT", &B), Ok(Request::Quit));
        let unknown: [(&[u8], &str); 5] = [
            (b"reads 1", "unknown command 'reads'"),
            (b"rea 1", "unknown command 'rea'"),
            (b"appendix 1", "unknown command 'appendix'"),
            (b"appendage 1", "unknown command 'appendag'"),
            (b"\0r 1", "unknown command '?r'"),
        ];
        for (line, error) in unknown {
            assert_eq!(parse(line, &B), Err(error.to_string()), "{}", shown(line));
        }
        assert_eq!(command_word(b"quit"), Some(QUIT));
        assert_eq!(command_word(b"QUIT"), Some(QUIT));
        assert_eq!(command_word(b"q1"), None);
        assert_eq!(command_word(b""), None);
    }

    #[test]
    fn write_prefix() {
        assert_eq!(write_prefix_len(b"w 1 abc"), Some(4));
        assert_eq!(write_prefix_len(b"write 12 abc"), Some(9));
        assert_eq!(write_prefix_len(b"r 1 abc"), None);
    }
}
