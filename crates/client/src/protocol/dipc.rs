//! dipc's text protocol (docs/prog3.md, "Wire protocol"), as far as the
//! bench uses it: `r <m>`, `w <m> <text>`, and the key-value requests
//! `get`/`put`/`del`, which answer one line each.

use super::lines::{newline, put_int};
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
    let len = leading_length(header)
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

/// The most digits a read's length may have: any 19-digit number fits in a
/// u64 without overflow, and no mailbox comes near it.
const MAX_LENGTH_DIGITS: usize = 19;

/// The number that a read's header starts with (`<len> bytes from ...`),
/// up to the first space or the end: None when it is empty, longer than
/// [`MAX_LENGTH_DIGITS`] or not all digits. One pass, digit by digit: this
/// runs for every read reply of a benchmark, on the generator's CPU.
fn leading_length(header: &[u8]) -> Option<usize> {
    let mut len: u64 = 0;
    let mut digits = 0;
    for &b in header {
        if b == b' ' {
            break;
        }
        let digit = b.wrapping_sub(b'0');
        if digit > 9 || digits == MAX_LENGTH_DIGITS {
            return None;
        }
        len = len * 10 + u64::from(digit);
        digits += 1;
    }
    if digits == 0 {
        return None;
    }
    usize::try_from(len).ok()
}
