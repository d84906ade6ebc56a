//! RESP2, the redis protocol: requests are arrays of bulk strings; a reply
//! says its own type and length, so framing needs no knowledge of the
//! request.

use super::lines::{newline, parse_i64, put_int};
use super::{Op, ProtocolError, Reply};

/// Arrays nest; a server that nests deeper than this is not answering GET,
/// SET or DEL.
const MAX_DEPTH: usize = 8;

pub fn encode(op: Op, index: u64, value: &[u8], out: &mut Vec<u8>) {
    let (header, command): (&[u8], &[u8]) = match op {
        Op::Read | Op::Get => (b"*2\r\n", b"$3\r\nGET\r\n"),
        Op::Write | Op::Put | Op::Churn => (b"*3\r\n", b"$3\r\nSET\r\n"),
        Op::Del => (b"*2\r\n", b"$3\r\nDEL\r\n"),
    };
    out.extend_from_slice(header);
    out.extend_from_slice(command);
    // The key `key:<index>` as a bulk string, whose length comes first.
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(index).as_bytes();
    out.push(b'$');
    put_int(out, b"key:".len() + digits.len());
    out.extend_from_slice(b"\r\nkey:");
    out.extend_from_slice(digits);
    out.extend_from_slice(b"\r\n");
    if op.writes() {
        out.push(b'$');
        put_int(out, value.len());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
}

pub fn parse(buf: &[u8]) -> Result<Option<Reply>, ProtocolError> {
    value(buf, 0, 0)
}

/// Frames one RESP value starting at `buf[at]`; the reply's length counts
/// from 0 so that an array's elements can be framed in turn.
fn value(buf: &[u8], at: usize, depth: usize) -> Result<Option<Reply>, ProtocolError> {
    let rest = &buf[at..];
    let Some(end) = newline(rest) else {
        return Ok(None);
    };
    if end == 0 || rest[end - 1] != b'\r' {
        return Err(ProtocolError::new(
            "a RESP line does not end with CRLF",
            rest,
        ));
    }
    let line = &rest[..end - 1];
    let after_line = at + end + 1;
    let number = || {
        parse_i64(&line[1..])
            .ok_or_else(|| ProtocolError::new("a RESP length is not a number", rest))
    };
    let Some(&kind) = line.first() else {
        return Err(ProtocolError::new("an empty RESP line", rest));
    };
    match kind {
        b'+' | b':' => Ok(Some(Reply::ok(after_line))),
        b'-' => Ok(Some(Reply::error(after_line))),
        b'$' => match number()? {
            -1 => Ok(Some(Reply::ok(after_line))),
            n if n < 0 => Err(ProtocolError::new("a negative bulk string length", rest)),
            n => {
                let total = usize::try_from(n)
                    .ok()
                    .and_then(|n| after_line.checked_add(n)?.checked_add(2))
                    .ok_or_else(|| ProtocolError::new("a bulk string length too large", rest))?;
                if buf.len() < total {
                    return Ok(None);
                }
                if &buf[total - 2..total] != b"\r\n" {
                    return Err(ProtocolError::new(
                        "a bulk string is not followed by CRLF",
                        rest,
                    ));
                }
                Ok(Some(Reply::ok(total)))
            }
        },
        b'*' => {
            if depth >= MAX_DEPTH {
                return Err(ProtocolError::new("arrays nested too deep", rest));
            }
            let count = number()?;
            let mut end = after_line;
            let mut error = false;
            for _ in 0..count.max(0) {
                match value(buf, end, depth + 1)? {
                    Some(element) => {
                        end = element.len;
                        error |= element.error;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some(Reply { len: end, error }))
        }
        _ => Err(ProtocolError::new("not a RESP2 reply", rest)),
    }
}
