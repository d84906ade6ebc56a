//! dipc's text protocol (docs/prog3.md, "Wire protocol"), as far as the
//! bench uses it: `r <m>`, `w <m> <text>`, and the key-value requests
//! `get`/`put`/`del`, which answer one line each.

use super::lines::{newline, parse_usize, put_int};
use super::{Op, ProtocolError, Reply};

/// The longest `OK <len> bytes from mailbox <m>, version <v>` line we wait
/// for: a read's header that goes on longer is no header.
const MAX_READ_HEADER: usize = 256;

pub fn encode(op: Op, index: u64, value: &[u8], out: &mut Vec<u8>) {
    let (command, number): (&[u8], u64) = match op {
        Op::Read => (b"r ", index + 1),
        Op::Write => (b"w ", index + 1),
        Op::Get => (b"get ", index),
        Op::Put | Op::Churn => (b"put ", index),
        Op::Del => (b"del ", index),
    };
    out.extend_from_slice(command);
    put_int(out, number);
    if op.writes() {
        out.push(b' ');
        out.extend_from_slice(value);
    }
    out.push(b'\n');
}

pub fn parse(op: Op, buf: &[u8]) -> Result<Option<Reply>, ProtocolError> {
    let Some(end) = newline(buf) else {
        if op == Op::Read && buf.len() > MAX_READ_HEADER {
            return Err(ProtocolError::new(
                format!("a read's reply line runs over {MAX_READ_HEADER} bytes"),
                buf,
            ));
        }
        return Ok(None);
    };
    let line = &buf[..end];
    let line_len = end + 1;
    // Every refusal is one line, whatever the request.
    if line.starts_with(b"ERR") {
        return Ok(Some(Reply::error(line_len)));
    }
    if op != Op::Read {
        return Ok(Some(Reply::ok(line_len)));
    }
    let Some(header) = line.strip_prefix(b"OK ") else {
        return Err(ProtocolError::new(
            "a read's reply is neither OK nor ERR",
            buf,
        ));
    };
    let len = header
        .split(|&b| b == b' ')
        .next()
        .and_then(parse_usize)
        .ok_or_else(|| ProtocolError::new("cannot parse the length in a read's OK line", buf))?;
    // The header, the content, and the newline after it.
    let total = line_len
        .checked_add(len)
        .and_then(|n| n.checked_add(1))
        .ok_or_else(|| ProtocolError::new("a read's length is too large", buf))?;
    if buf.len() < total {
        return Ok(None);
    }
    if buf[total - 1] != b'\n' {
        return Err(ProtocolError::new(
            format!("a read's {len} bytes of content are not followed by a newline"),
            buf,
        ));
    }
    Ok(Some(Reply::ok(total)))
}
