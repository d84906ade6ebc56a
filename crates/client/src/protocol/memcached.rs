//! memcached's text protocol: get/set/delete. A get's reply is any number
//! of `VALUE` blocks then `END`; everything else is one line.

use super::lines::{newline, parse_usize, put_int};
use super::{Op, ProtocolError, Reply};

pub fn encode(op: Op, index: u64, value: &[u8], out: &mut Vec<u8>) {
    let command: &[u8] = match op {
        Op::Read | Op::Get => b"get key:",
        Op::Write | Op::Put | Op::Churn => b"set key:",
        Op::Del => b"delete key:",
    };
    out.extend_from_slice(command);
    put_int(out, index);
    if op.writes() {
        // flags 0, no expiry, then the data's length and the data.
        out.extend_from_slice(b" 0 0 ");
        put_int(out, value.len());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(value);
    }
    out.extend_from_slice(b"\r\n");
}

/// The replies by which memcached refuses a request.
fn is_error_line(line: &[u8]) -> bool {
    line == b"ERROR" || line.starts_with(b"CLIENT_ERROR") || line.starts_with(b"SERVER_ERROR")
}

/// The line at `buf[at..]` without its CRLF, and where the next one starts.
fn line_at(buf: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, ProtocolError> {
    let rest = &buf[at..];
    let Some(end) = newline(rest) else {
        return Ok(None);
    };
    if end == 0 || rest[end - 1] != b'\r' {
        return Err(ProtocolError::new(
            "a memcached line does not end with CRLF",
            rest,
        ));
    }
    Ok(Some((&rest[..end - 1], at + end + 1)))
}

pub fn parse(op: Op, buf: &[u8]) -> Result<Option<Reply>, ProtocolError> {
    let Some((line, next)) = line_at(buf, 0)? else {
        return Ok(None);
    };
    if is_error_line(line) {
        return Ok(Some(Reply::error(next)));
    }
    if !matches!(op, Op::Read | Op::Get) {
        // STORED, NOT_STORED, DELETED, NOT_FOUND...: all answers.
        return Ok(Some(Reply::ok(next)));
    }
    // Where the current line starts, for the message if it is no reply.
    let (mut line, mut start, mut next) = (line, 0, next);
    loop {
        if line == b"END" {
            return Ok(Some(Reply::ok(next)));
        }
        let Some(header) = line.strip_prefix(b"VALUE ") else {
            return Err(ProtocolError::new(
                "a get's reply is neither VALUE nor END",
                &buf[start..],
            ));
        };
        // VALUE <key> <flags> <bytes> [<cas unique>]
        let bytes = header
            .split(|&b| b == b' ')
            .nth(2)
            .and_then(parse_usize)
            .ok_or_else(|| {
                ProtocolError::new("cannot parse the length in a VALUE line", &buf[start..])
            })?;
        let data_end = next
            .checked_add(bytes)
            .and_then(|n| n.checked_add(2))
            .ok_or_else(|| ProtocolError::new("a VALUE length too large", &buf[start..]))?;
        if buf.len() < data_end {
            return Ok(None);
        }
        if &buf[data_end - 2..data_end] != b"\r\n" {
            return Err(ProtocolError::new(
                "a VALUE's data is not followed by CRLF",
                &buf[start..],
            ));
        }
        match line_at(buf, data_end)? {
            Some((following, after)) => (line, start, next) = (following, data_end, after),
            None => return Ok(None),
        }
    }
}
