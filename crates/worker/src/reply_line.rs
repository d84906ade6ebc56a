//! The first line of a mailbox reply, `OK <len> bytes from mailbox <m>,
//! version <v>` and its kin, and a worker's memory of the read lines it has
//! built.
//!
//! A read's first line depends only on the mailbox, its length and its
//! version, which change only when the mailbox is written. Between writes
//! every read of a mailbox sends the same line, so a worker keeps the last
//! one it built for each mailbox and copies it instead of formatting three
//! numbers again: formatting was a third of a pipelined read's own cost
//! (bench/changes.md). memcached keeps an item's reply header for the same
//! reason. The memory is per worker, not in the segment: a worker's copy is
//! checked against the length and version it has just read, so it can be
//! stale but never wrong, and no other process ever sees it.

use shmlib::{MailboxRead, Segment};

/// `<lead><len><middle><mailbox>, version <version>` and a newline.
pub struct MailboxReply {
    pub lead: &'static [u8],
    pub len: usize,
    pub middle: &'static [u8],
    pub mailbox: usize,
    pub version: u64,
}

impl MailboxReply {
    /// A read's first line: `OK <len> bytes from mailbox <m>, version <v>`.
    /// `mailbox` is 0-based; the line shows it from 1.
    pub fn read(mailbox: usize, read: MailboxRead) -> MailboxReply {
        MailboxReply {
            lead: b"OK ",
            len: read.len,
            middle: b" bytes from mailbox ",
            mailbox: mailbox + 1,
            version: read.version,
        }
    }

    /// Appends the line to `out`. Inlined where the line is built, so that
    /// the literal parts are copied with their lengths known (no call to
    /// memmove for each).
    #[inline(always)]
    pub fn put(&self, out: &mut Vec<u8>) {
        let mut number = itoa::Buffer::new();
        // Leads and middles are short literals and the numbers at most 20
        // digits each: one reservation covers the line.
        out.reserve(128);
        out.extend_from_slice(self.lead);
        put_digits(out, number.format(self.len));
        out.extend_from_slice(self.middle);
        put_digits(out, number.format(self.mailbox));
        out.extend_from_slice(b", version ");
        put_digits(out, number.format(self.version));
        out.push(b'\n');
    }
}

/// Appends a number's few digits one by one: a call to memcpy for a copy of
/// unknown length costs more than the bytes themselves.
#[inline(always)]
fn put_digits(out: &mut Vec<u8>, digits: &str) {
    for &digit in digits.as_bytes() {
        out.push(digit);
    }
}

/// The longest line kept: `OK ` + 20 digits + ` bytes from mailbox ` + 20
/// digits + `, version ` + 20 digits + LF is 94 bytes; real lengths and
/// mailbox numbers have far fewer digits. A longer line is built each time.
const KEPT_LINE: usize = 88;
const _: () = assert!(KEPT_LINE <= u8::MAX as usize, "line_len is a u8");

/// The most mailboxes remembered at once: a worker's memory stays within
/// about 120 KiB (1,024 entries of 120 bytes) however many mailboxes the
/// daemon has. Mailboxes past it
/// share entries (mailbox number modulo the entry count).
const MAX_ENTRIES: usize = 1024;

/// The last read line a worker built for each mailbox.
pub struct ReadLines {
    /// Indexed by mailbox number modulo the length, a power of two.
    entries: Box<[Entry]>,
}

#[derive(Clone, Copy)]
struct Entry {
    /// 0-based; `usize::MAX` in an entry that holds no line yet.
    mailbox: usize,
    len: usize,
    version: u64,
    line_len: u8,
    line: [u8; KEPT_LINE],
}

const EMPTY: Entry = Entry {
    mailbox: usize::MAX,
    len: 0,
    version: 0,
    line_len: 0,
    line: [0; KEPT_LINE],
};

impl ReadLines {
    /// Room for every mailbox of `segment`, up to [`MAX_ENTRIES`].
    pub fn for_segment(segment: &Segment) -> ReadLines {
        ReadLines::new(segment.geometry().mailboxes as usize)
    }

    /// Room for `mailboxes` mailboxes, up to [`MAX_ENTRIES`].
    pub fn new(mailboxes: usize) -> ReadLines {
        let count = mailboxes.clamp(1, MAX_ENTRIES).next_power_of_two();
        ReadLines {
            entries: vec![EMPTY; count].into_boxed_slice(),
        }
    }

    /// Appends the first line of a read of `mailbox` (0-based) that found
    /// `read`: a copy of the line kept for it when its length and version
    /// are the same, else a new line, which is then kept.
    pub fn put(&mut self, mailbox: usize, read: MailboxRead, out: &mut Vec<u8>) {
        let slot = mailbox & (self.entries.len() - 1);
        let entry = &mut self.entries[slot];
        if entry.mailbox == mailbox && entry.len == read.len && entry.version == read.version {
            out.extend_from_slice(&entry.line[..usize::from(entry.line_len)]);
            return;
        }
        let start = out.len();
        MailboxReply::read(mailbox, read).put(out);
        let line = &out[start..];
        if line.len() <= KEPT_LINE {
            entry.line[..line.len()].copy_from_slice(line);
            entry.line_len = line.len() as u8;
            entry.mailbox = mailbox;
            entry.len = read.len;
            entry.version = read.version;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_of(lines: &mut ReadLines, mailbox: usize, len: usize, version: u64) -> String {
        let mut out = b"before ".to_vec();
        lines.put(mailbox, MailboxRead { len, version }, &mut out);
        String::from_utf8(out).expect("ASCII")
    }

    #[test]
    fn a_kept_line_is_used_only_for_the_same_mailbox_length_and_version() {
        let mut lines = ReadLines::new(4);
        let first = "before OK 100 bytes from mailbox 3, version 7\n";
        assert_eq!(line_of(&mut lines, 2, 100, 7), first);
        assert_eq!(lines.entries[2].mailbox, 2, "the line is kept");
        assert_eq!(line_of(&mut lines, 2, 100, 7), first);
        assert_eq!(
            line_of(&mut lines, 2, 100, 8),
            "before OK 100 bytes from mailbox 3, version 8\n"
        );
        assert_eq!(
            line_of(&mut lines, 2, 12, 8),
            "before OK 12 bytes from mailbox 3, version 8\n"
        );
        // Back to the first version: built again, not taken from memory,
        // and kept in place of the newer line.
        assert_eq!(line_of(&mut lines, 2, 100, 7), first);
        assert_eq!((lines.entries[2].len, lines.entries[2].version), (100, 7));
    }

    #[test]
    fn mailboxes_sharing_an_entry_never_get_each_others_line() {
        // 3 mailboxes get 4 entries, a power of two: indexes 1 and 5 share
        // one.
        let mut lines = ReadLines::new(3);
        assert_eq!(lines.entries.len(), 4);
        for _ in 0..2 {
            assert_eq!(
                line_of(&mut lines, 1, 5, 1),
                "before OK 5 bytes from mailbox 2, version 1\n"
            );
            assert_eq!(
                line_of(&mut lines, 5, 5, 1),
                "before OK 5 bytes from mailbox 6, version 1\n"
            );
        }
    }

    #[test]
    fn the_longest_lines_are_built_every_time() {
        let mut lines = ReadLines::new(MAX_ENTRIES * 4);
        assert_eq!(lines.entries.len(), MAX_ENTRIES);
        let huge = usize::MAX - 1;
        let expected = format!(
            "before OK {huge} bytes from mailbox {huge}, version {}\n",
            u64::MAX
        );
        assert!(expected.len() - "before ".len() > KEPT_LINE);
        for _ in 0..2 {
            assert_eq!(line_of(&mut lines, huge - 1, huge, u64::MAX), expected);
        }
        // The entry it maps to still holds nothing.
        assert!(lines.entries.iter().all(|e| e.mailbox == usize::MAX));
    }
}
