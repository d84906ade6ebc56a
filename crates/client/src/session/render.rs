//! Replies shown readably: a read's header said in words and its content
//! with non-printable bytes escaped, a help text or worker table without
//! its length line, `stat`'s figures wrapped; anything else (a server that
//! is not dipc) as its text, escaped the same way.

use crate::dipc_client::reply;

/// The width `stat`'s figures are wrapped to.
const WIDTH: usize = 78;

/// Text with every byte visible: valid UTF-8 as it is, except control
/// characters (other than LF and TAB) as `\r`, `\0` or `\xNN`; bytes that
/// are not UTF-8 as `\xNN`.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' | '\t' => out.push(c),
                '\r' => out.push_str("\\r"),
                '\0' => out.push_str("\\0"),
                c if c.is_control() => {
                    let code = u32::from(c);
                    if code < 0x100 {
                        out.push_str(&format!("\\x{code:02x}"));
                    } else {
                        out.push_str(&format!("\\u{{{code:x}}}"));
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

fn with_newline(mut text: String) -> String {
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// What to print for `reply`, ending with a newline.
pub fn render(reply: &[u8]) -> String {
    let line_end = memchr::memchr(b'\n', reply);
    let line = line_end.and_then(|end| std::str::from_utf8(&reply[..end]).ok());
    if let (Some(line), Some(end)) = (line, line_end) {
        let body = &reply[end + 1..];
        // A length-bearing reply is shown as such only when it is whole
        // (a length no reply could have, 2^64 - 1 say, never is).
        let whole =
            |len: usize| len.checked_add(1) == Some(body.len()) && body.last() == Some(&b'\n');
        if let Some(h) = reply::read_header(line).filter(|h| whole(h.len)) {
            let what = format!("mailbox {}, version {}", h.mailbox, h.version);
            if h.len == 0 {
                return format!("{what}: empty\n");
            }
            let content = escape(&body[..h.len]);
            return with_newline(format!("{what}, {} bytes:\n{content}", h.len));
        }
        if let Some((len, _)) = reply::body_header(line).filter(|(len, _)| whole(*len)) {
            return with_newline(escape(&body[..len]));
        }
        if line.starts_with("OK mailboxes=") && body.is_empty() {
            return figures(line);
        }
    }
    // Fixed-size frames of seed servers are padded with NULs.
    let end = reply.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    with_newline(escape(&reply[..end]))
}

/// `OK key=value key=value ...`, the pairs wrapped under the `OK`.
fn figures(line: &str) -> String {
    let mut out = String::from("OK\n");
    let mut row = String::new();
    for pair in line.split(' ').skip(1) {
        if !row.is_empty() && row.len() + 1 + pair.len() > WIDTH {
            out.push_str(&row);
            out.push('\n');
            row.clear();
        }
        row.push_str(if row.is_empty() { "  " } else { " " });
        row.push_str(pair);
    }
    if !row.is_empty() {
        out.push_str(&row);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_a_terminal_would_not_show() {
        assert_eq!(escape(b"a\tb\nc"), "a\tb\nc");
        assert_eq!(escape(b"\x00\x01\r\x7f\xff"), "\\0\\x01\\r\\x7f\\xff");
        assert_eq!(escape("caf\u{e9} \u{85}".as_bytes()), "caf\u{e9} \\x85");
    }

    #[test]
    fn reads_in_words() {
        assert_eq!(
            render(b"OK 5 bytes from mailbox 1, version 3\nhe\x01lo\n"),
            "mailbox 1, version 3, 5 bytes:\nhe\\x01lo\n"
        );
        assert_eq!(
            render(b"OK 0 bytes from mailbox 2, version 0\n\n"),
            "mailbox 2, version 0: empty\n"
        );
        assert_eq!(
            render(b"OK 3 bytes from mailbox 2, version 9\nab\n\n"),
            "mailbox 2, version 9, 3 bytes:\nab\n"
        );
        // Cut short: shown as it came.
        assert_eq!(
            render(b"OK 9 bytes from mailbox 1, version 3\nab\n"),
            "OK 9 bytes from mailbox 1, version 3\nab\n"
        );
    }

    #[test]
    fn other_replies() {
        assert_eq!(render(b"OK 4 bytes of help\nr 1\n\n"), "r 1\n");
        assert_eq!(render(b"ERR no such key\n"), "ERR no such key\n");
        assert_eq!(render(b"Goodbye"), "Goodbye\n");
        assert_eq!(render(b"HELLO\0\0\0"), "HELLO\n");
        assert_eq!(render(b"HI\0THERE\0"), "HI\\0THERE\n");
        // A hostile length: shown as it came, no overflow.
        assert_eq!(
            render(b"OK 18446744073709551615 bytes from mailbox 1, version 1\nab\n"),
            "OK 18446744073709551615 bytes from mailbox 1, version 1\nab\n"
        );
        assert_eq!(
            render(b"OK 18446744073709551615 bytes of help\n"),
            "OK 18446744073709551615 bytes of help\n"
        );
        let stat = render(b"OK mailboxes=4 mailbox_bytes=8192\n");
        assert_eq!(stat, "OK\n  mailboxes=4 mailbox_bytes=8192\n");
    }
}
