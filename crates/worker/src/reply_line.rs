//! The first line of a mailbox reply, `OK <len> bytes from mailbox <m>,
//! version <v>` and its kin, and a worker's memory of the lines it has
//! built.
//!
//! A read's reply, its first line and the content, depends only on the
//! mailbox and its version: a version is never made twice, and its content
//! never changes once published. Between writes every read of a mailbox
//! sends the same reply, so a worker keeps the last short reply it sent for
//! each mailbox and copies it whenever the mailbox's version is still the
//! one it was made for: no numbers to format, and no look at the content,
//! so no second look at the version either. Formatting was a third of a
//! pipelined read's own cost, and the copy and its check most of the rest
//! (bench/changes.md). memcached keeps an item's reply header for a like
//! reason. A write's line, `OK wrote <len> bytes to mailbox <m>, version
//! <v>`, has a new version every time, but a client that writes to a
//! mailbox usually writes the same length again, and a worker that is the
//! only one writing a mailbox (the event model with one worker) makes every
//! version: the worker keeps each mailbox's last write line, and when the
//! next write has the same length and the next version it counts the kept
//! version up in place, a digit or two.
//!
//! The memory is per worker, not in the segment: a kept read reply is
//! checked against the version just loaded, a kept write line against the
//! length and version just written, so it can be stale but never wrong,
//! and no other process ever sees it. (Versions are 63 bits: at a billion
//! writes a second they would wrap after about 290 years.)

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

    /// A write's first line: `OK wrote <len> bytes to mailbox <m>, version
    /// <v>`. `mailbox` is 0-based; the line shows it from 1.
    pub fn wrote(mailbox: usize, len: usize, version: u64) -> MailboxReply {
        MailboxReply {
            lead: b"OK wrote ",
            len,
            middle: b" bytes to mailbox ",
            mailbox: mailbox + 1,
            version,
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

/// Appends the first `len` bytes of a kept line. The whole array is
/// copied, its size known to the compiler, and the rest cut off again: a
/// few vector moves where a copy of unknown length is a call to memcpy.
#[inline(always)]
fn put_kept<const N: usize>(out: &mut Vec<u8>, kept: &[u8; N], len: u8) {
    let end = out.len() + usize::from(len);
    out.extend_from_slice(kept);
    out.truncate(end);
}

/// Appends a number's few digits one by one: a call to memcpy for a copy of
/// unknown length costs more than the bytes themselves.
#[inline(always)]
fn put_digits(out: &mut Vec<u8>, digits: &str) {
    for &digit in digits.as_bytes() {
        out.push(digit);
    }
}

/// The longest read reply kept, first line, content and LF: a line of a
/// 100-byte read is 43 bytes with a one-digit mailbox and a five-digit
/// version, so contents up to about 190 bytes are kept. A longer reply is
/// built each time: its copy costs more than the line's formatting.
const KEPT_READ: usize = 248;
const _: () = assert!(KEPT_READ <= u8::MAX as usize, "Kept::len is a u8");

/// The longest write line kept: `OK wrote 100 bytes to mailbox 3, version
/// 12345` and a LF make 47 bytes, and the longest lines, with 20 digits
/// for each number, 98. A longer one is built each time.
const KEPT_WRITE: usize = 64;
const _: () = assert!(KEPT_WRITE <= u8::MAX as usize, "Kept::len is a u8");

/// The most mailboxes remembered at once, for reads and for writes: a
/// worker's memory stays within about 166 KiB (256 read entries of 280
/// bytes, 1,024 write entries of 96) however many mailboxes the daemon
/// has. Mailboxes past them share entries (mailbox number modulo the entry
/// count).
const MAX_READ_ENTRIES: usize = 256;
const MAX_WRITE_ENTRIES: usize = 1024;

/// The last read reply and write line a worker built for each mailbox.
pub struct ReplyLines {
    /// Both indexed by mailbox number modulo their length, a power of two.
    reads: Box<[Kept<KEPT_READ>]>,
    writes: Box<[Kept<KEPT_WRITE>]>,
}

/// The bytes last built for a mailbox, and what they were built for.
#[derive(Clone, Copy)]
struct Kept<const N: usize> {
    /// (0-based mailbox, length, version) that the bytes were built for; a
    /// read's reply keeps 0 for the length, which its version fixes. The
    /// mailbox is `usize::MAX` in an entry that holds nothing yet.
    key: (usize, usize, u64),
    len: u8,
    bytes: [u8; N],
}

impl<const N: usize> Kept<N> {
    const EMPTY: Kept<N> = Kept {
        key: (usize::MAX, 0, 0),
        len: 0,
        bytes: [0; N],
    };

    /// Appends the bytes kept for `key`; for any other key, what `build`
    /// appends, which is then kept if it fits.
    #[inline(always)]
    fn put(
        &mut self,
        key: (usize, usize, u64),
        out: &mut Vec<u8>,
        build: impl FnOnce(&mut Vec<u8>),
    ) {
        if self.put_if_kept(key, out) {
            return;
        }
        let start = out.len();
        build(out);
        self.keep(key, &out[start..]);
    }

    /// Appends the bytes kept for `key` and says so; for any other key,
    /// appends nothing.
    #[inline(always)]
    fn put_if_kept(&self, key: (usize, usize, u64), out: &mut Vec<u8>) -> bool {
        if self.key != key {
            return false;
        }
        put_kept(out, &self.bytes, self.len);
        true
    }

    /// Turns the kept line, which ends in a version and a LF, into the line
    /// for the next version, in place. False when the version gains a
    /// digit (9, 99, ...): the entry is then emptied, to be built again.
    fn count_up_version(&mut self) -> bool {
        let mut at = usize::from(self.len).saturating_sub(1);
        while at > 0 {
            at -= 1;
            match self.bytes[at] {
                b'9' => self.bytes[at] = b'0',
                b'0'..=b'8' => {
                    self.bytes[at] += 1;
                    return true;
                }
                _ => break,
            }
        }
        *self = Self::EMPTY;
        false
    }

    /// Keeps `bytes` for `key` if they fit; else leaves the entry as it is.
    fn keep(&mut self, key: (usize, usize, u64), bytes: &[u8]) {
        if bytes.len() <= N {
            self.bytes[..bytes.len()].copy_from_slice(bytes);
            self.len = bytes.len() as u8;
            self.key = key;
        }
    }
}

impl ReplyLines {
    /// Room for every mailbox of `segment`, up to [`MAX_READ_ENTRIES`] and
    /// [`MAX_WRITE_ENTRIES`].
    pub fn for_segment(segment: &Segment) -> ReplyLines {
        ReplyLines::new(segment.geometry().mailboxes as usize)
    }

    /// Room for `mailboxes` mailboxes, up to [`MAX_READ_ENTRIES`] and
    /// [`MAX_WRITE_ENTRIES`].
    pub fn new(mailboxes: usize) -> ReplyLines {
        let entries = |most: usize| mailboxes.clamp(1, most).next_power_of_two();
        ReplyLines {
            reads: vec![Kept::EMPTY; entries(MAX_READ_ENTRIES)].into_boxed_slice(),
            writes: vec![Kept::EMPTY; entries(MAX_WRITE_ENTRIES)].into_boxed_slice(),
        }
    }

    /// Appends the whole reply to a read of `mailbox` (0-based) at
    /// `version`, if one is kept, and says whether it did.
    #[inline(always)]
    pub fn put_read(&self, mailbox: usize, version: u64, out: &mut Vec<u8>) -> bool {
        self.reads[mailbox & (self.reads.len() - 1)].put_if_kept((mailbox, 0, version), out)
    }

    /// Keeps `reply`, the whole reply to a read of `mailbox` (0-based) that
    /// found `read`, if it is short enough: only a reply that the read's
    /// check of the version let through, never one from a discarded try.
    pub fn keep_read(&mut self, mailbox: usize, read: MailboxRead, reply: &[u8]) {
        let slot = mailbox & (self.reads.len() - 1);
        self.reads[slot].keep((mailbox, 0, read.version), reply);
    }

    /// Appends the line of a write of `len` bytes to `mailbox` (0-based)
    /// that made `version`. When the line kept for the mailbox is the one
    /// for the same length and the version before, its version is counted
    /// up in place (a digit or two, where formatting the version and
    /// appending the line's parts cost about 70 instructions) and the line
    /// copied whole; else a new line is built, which is then kept.
    pub fn put_write(&mut self, mailbox: usize, len: usize, version: u64, out: &mut Vec<u8>) {
        let kept = &mut self.writes[mailbox & (self.writes.len() - 1)];
        let key = (mailbox, len, version);
        if kept.key == (mailbox, len, version.wrapping_sub(1)) && kept.count_up_version() {
            kept.key = key;
        }
        kept.put(key, out, |out| {
            MailboxReply::wrote(mailbox, len, version).put(out)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A read as a session makes it: the kept reply if there is one for
    /// the version, else `built` (what the mailbox holds), which is then
    /// kept.
    fn read_of(lines: &mut ReplyLines, mailbox: usize, version: u64, built: &str) -> String {
        let mut out = b"before ".to_vec();
        if !lines.put_read(mailbox, version, &mut out) {
            let start = out.len();
            out.extend_from_slice(built.as_bytes());
            let read = MailboxRead { len: 0, version };
            lines.keep_read(mailbox, read, &out[start..]);
        }
        String::from_utf8(out).expect("ASCII")
    }

    fn wrote(lines: &mut ReplyLines, mailbox: usize, len: usize, version: u64) -> String {
        let mut out = b"before ".to_vec();
        lines.put_write(mailbox, len, version, &mut out);
        String::from_utf8(out).expect("ASCII")
    }

    #[test]
    fn a_kept_read_reply_is_used_only_for_the_same_mailbox_and_version() {
        let mut lines = ReplyLines::new(4);
        let first = "OK 5 bytes from mailbox 3, version 7\nhello\n";
        assert_eq!(read_of(&mut lines, 2, 7, first), format!("before {first}"));
        assert_eq!(lines.reads[2].key, (2, 0, 7), "the reply is kept");
        // The same version: the kept reply, whatever the mailbox would give.
        assert_eq!(
            read_of(&mut lines, 2, 7, "unused"),
            format!("before {first}")
        );
        let second = "OK 3 bytes from mailbox 3, version 8\nbye\n";
        assert_eq!(
            read_of(&mut lines, 2, 8, second),
            format!("before {second}")
        );
        // Back to the first version: built again, not taken from memory,
        // and kept in place of the newer reply.
        assert_eq!(read_of(&mut lines, 2, 7, first), format!("before {first}"));
        assert_eq!(lines.reads[2].key, (2, 0, 7));
    }

    #[test]
    fn mailboxes_sharing_an_entry_never_get_each_others_reply() {
        // 3 mailboxes get 4 entries, a power of two: indexes 1 and 5 share
        // one.
        let mut lines = ReplyLines::new(3);
        assert_eq!(lines.reads.len(), 4);
        let of_2 = "OK 1 bytes from mailbox 2, version 1\na\n";
        let of_6 = "OK 1 bytes from mailbox 6, version 1\nb\n";
        for _ in 0..2 {
            assert_eq!(read_of(&mut lines, 1, 1, of_2), format!("before {of_2}"));
            assert_eq!(read_of(&mut lines, 5, 1, of_6), format!("before {of_6}"));
        }
    }

    #[test]
    fn replies_too_long_to_keep_are_built_every_time() {
        let mut lines = ReplyLines::new(MAX_READ_ENTRIES * 4);
        assert_eq!(lines.reads.len(), MAX_READ_ENTRIES);
        let content = "x".repeat(KEPT_READ);
        let long = format!("OK {KEPT_READ} bytes from mailbox 1, version 1\n{content}\n");
        for _ in 0..2 {
            assert_eq!(read_of(&mut lines, 0, 1, &long), format!("before {long}"));
        }
        assert!(lines.reads.iter().all(|e| e.key.0 == usize::MAX));
        // One byte shorter than the limit is kept.
        let fits = &long[..KEPT_READ];
        assert_eq!(read_of(&mut lines, 0, 1, fits), format!("before {fits}"));
        assert_eq!(
            read_of(&mut lines, 0, 1, "unused"),
            format!("before {fits}")
        );
    }

    #[test]
    fn a_kept_write_line_is_used_only_for_the_same_mailbox_and_length() {
        let mut lines = ReplyLines::new(4);
        // (mailbox, length, version) in turn: a new line, the next version,
        // a new length, mailbox 7 in mailbox 3's entry, and back.
        let writes = [
            (2, 100, 7),
            (2, 100, 8),
            (2, 12, 9),
            (6, 12, 10),
            (2, 12, 11),
            (2, 12, 12),
        ];
        for (mailbox, len, version) in writes {
            let shown = mailbox + 1;
            assert_eq!(
                wrote(&mut lines, mailbox, len, version),
                format!("before OK wrote {len} bytes to mailbox {shown}, version {version}\n")
            );
            assert_eq!(
                lines.writes[mailbox % 4].key,
                (mailbox, len, version),
                "kept"
            );
            // A read of the mailbox neither uses the line nor disturbs it.
            let reply = format!("OK {len} bytes from mailbox {shown}, version {version}\n");
            assert_eq!(
                read_of(&mut lines, mailbox, version, &reply),
                format!("before {reply}")
            );
        }
    }

    #[test]
    fn a_kept_write_line_counts_its_version_up_through_every_carry() {
        let mut lines = ReplyLines::new(1);
        // Next versions (counted up in place, carries and all), a version
        // that gains a digit (built again), jumps back and forth (another
        // writer's versions in between) and the same version twice.
        let versions = (1..=12).chain(97..=101).chain([
            109,
            110,
            1999,
            2000,
            2001,
            5,
            6,
            6,
            u64::MAX - 1,
            u64::MAX,
        ]);
        for version in versions {
            assert_eq!(
                wrote(&mut lines, 0, 5, version),
                format!("before OK wrote 5 bytes to mailbox 1, version {version}\n"),
            );
        }
        // A line of 64 bytes, kept, whose next version's line is too long to
        // keep: the entry is emptied, never left half counted up.
        let (mailbox, len) = (99_999_999_999, 100_000_000_000);
        let line = |version| {
            format!(
                "before OK wrote {len} bytes to mailbox {}, version {version}\n",
                mailbox + 1
            )
        };
        assert_eq!(line(99).len() - "before ".len(), KEPT_WRITE);
        for version in [99, 100, 99] {
            assert_eq!(wrote(&mut lines, mailbox, len, version), line(version));
        }
    }

    #[test]
    fn the_longest_write_lines_are_built_every_time() {
        let mut lines = ReplyLines::new(4);
        let huge = usize::MAX - 1;
        let expected = format!(
            "before OK wrote {huge} bytes to mailbox {huge}, version {}\n",
            u64::MAX
        );
        for _ in 0..2 {
            assert_eq!(wrote(&mut lines, huge - 1, huge, u64::MAX), expected);
        }
        assert!(lines.writes.iter().all(|e| e.key.0 == usize::MAX));
    }
}
