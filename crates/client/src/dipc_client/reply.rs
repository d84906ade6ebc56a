//! dipc's reply lines, parsed with no I/O (docs/prog3.md, "Requests and
//! replies"). Each parser takes one line without its LF and says what it
//! holds, or None when the line is not of that shape.

/// A mailbox reply's line: a read's (and a successful wait's) header,
/// `OK <len> bytes from mailbox <m>, version <v>`, or what a write or an
/// append reports, `OK wrote <len> bytes to mailbox <m>, version <v>` (or
/// `appended`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MailboxLine {
    pub len: usize,
    pub mailbox: u32,
    pub version: u64,
}

/// A decimal number made of digits only (no sign, no spaces).
fn number<T: std::str::FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `<m><joint><v>`: two numbers around a fixed text.
fn mailbox_version(text: &str, joint: &str) -> Option<(u32, u64)> {
    let (mailbox, version) = text.split_once(joint)?;
    Some((number(mailbox)?, number(version)?))
}

/// `<len><joint><m>, version <v>`, the end every mailbox reply line shares.
fn mailbox_line(text: &str, joint: &str) -> Option<MailboxLine> {
    let (len, rest) = text.split_once(joint)?;
    let (mailbox, version) = mailbox_version(rest, ", version ")?;
    Some(MailboxLine {
        len: number(len)?,
        mailbox,
        version,
    })
}

pub fn read_header(line: &str) -> Option<MailboxLine> {
    mailbox_line(line.strip_prefix("OK ")?, " bytes from mailbox ")
}

/// `verb` is `wrote` or `appended`.
pub fn stored(line: &str, verb: &str) -> Option<MailboxLine> {
    let rest = line.strip_prefix("OK ")?.strip_prefix(verb)?;
    mailbox_line(rest.strip_prefix(' ')?, " bytes to mailbox ")
}

/// `OK <len> bytes of <what>` (`help`, `worker table`): the length and what.
pub fn body_header(line: &str) -> Option<(usize, &str)> {
    let rest = line.strip_prefix("OK ")?;
    let (len, what) = rest.split_once(" bytes of ")?;
    Some((number(len)?, what))
}

/// A wait that timed out: `TIMEOUT mailbox <m> is at version <v>`.
pub fn timeout(line: &str) -> Option<(u32, u64)> {
    mailbox_version(line.strip_prefix("TIMEOUT mailbox ")?, " is at version ")
}

/// A refusal's reason: `ERR <reason>`.
pub fn refusal(line: &str) -> Option<&str> {
    match line.strip_prefix("ERR") {
        Some("") => Some(""),
        Some(rest) => rest.strip_prefix(' '),
        None => None,
    }
}

/// How many bytes of a reply that begins with a length-bearing header
/// (`OK <n> bytes from mailbox ...`, `OK <n> bytes of ...`) follow its
/// line: the body and its LF.
fn body_len(line: &str) -> Option<usize> {
    let len = read_header(line)
        .map(|h| h.len)
        .or_else(|| body_header(line).map(|(len, _)| len))?;
    len.checked_add(1)
}

/// The length of the whole dipc reply at the start of `buf`, once it is all
/// there: one line, or a header line and its body. None while it is
/// incomplete (a reply without a newline, such as `Goodbye`, never is:
/// the server closes the connection after it).
pub fn complete_len(buf: &[u8]) -> Option<usize> {
    let end = memchr::memchr(b'\n', buf)?;
    let line = std::str::from_utf8(&buf[..end]).ok();
    let body = line.and_then(body_len).unwrap_or(0);
    let total = (end + 1).checked_add(body)?;
    (buf.len() >= total).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_headers() {
        assert_eq!(
            read_header("OK 5 bytes from mailbox 1, version 3"),
            Some(MailboxLine {
                len: 5,
                mailbox: 1,
                version: 3
            })
        );
        assert_eq!(
            read_header("OK 0 bytes from mailbox 12, version 0").map(|h| h.len),
            Some(0)
        );
        for bad in [
            "OK +5 bytes from mailbox 1, version 3",
            "OK 5 bytes from mailbox 1",
            "OK 5 bytes from mailbox x, version 3",
            "OK wrote 5 bytes to mailbox 1, version 3",
            "ERR mailbox 7 is out of range 1..4",
            "OK 5 bytes from mailbox 1, version 3 ",
        ] {
            assert_eq!(read_header(bad), None, "{bad}");
        }
    }

    #[test]
    fn stored_lines() {
        let line = "OK wrote 11 bytes to mailbox 2, version 7";
        assert_eq!(
            stored(line, "wrote"),
            Some(MailboxLine {
                len: 11,
                mailbox: 2,
                version: 7
            })
        );
        assert_eq!(stored(line, "appended"), None);
        let line = "OK appended 6 bytes to mailbox 1, version 1";
        assert_eq!(stored(line, "appended").map(|s| s.len), Some(6));
        assert_eq!(
            stored("OK wrotes 1 bytes to mailbox 1, version 1", "wrote"),
            None
        );
    }

    #[test]
    fn other_lines() {
        assert_eq!(body_header("OK 120 bytes of help"), Some((120, "help")));
        assert_eq!(
            body_header("OK 3 bytes of worker table"),
            Some((3, "worker table"))
        );
        assert_eq!(timeout("TIMEOUT mailbox 1 is at version 4"), Some((1, 4)));
        assert_eq!(timeout("TIMEOUT mailbox 1 is at version"), None);
        assert_eq!(refusal("ERR no such key"), Some("no such key"));
        assert_eq!(refusal("ERR"), Some(""));
        assert_eq!(refusal("ERRATIC"), None);
        assert_eq!(refusal("OK"), None);
    }

    #[test]
    fn complete_replies() {
        assert_eq!(
            complete_len(b"OK wrote 1 bytes to mailbox 1, version 1"),
            None
        );
        assert_eq!(complete_len(b"OK\nOK\n"), Some(3));
        let read = b"OK 3 bytes from mailbox 1, version 1\na\nb\n";
        for cut in 0..read.len() {
            assert_eq!(complete_len(&read[..cut]), None, "cut at {cut}");
        }
        assert_eq!(complete_len(read), Some(read.len()));
        assert_eq!(complete_len(b"OK 2 bytes of help\nhi\nmore"), Some(22));
        assert_eq!(complete_len(b"Goodbye"), None);
        assert_eq!(complete_len(b"HELLO\n"), Some(6));
    }
}
