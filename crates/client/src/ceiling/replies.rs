//! The ceiling's replies: `n` bytes per request line, `n-1` 'x's and a
//! newline. Since every reply is the same, what a connection still owes is
//! a byte count and a phase, and any run of replies is a slice of one
//! buffer of repeated replies.

/// A buffer of whole replies, repeated; about 64 KiB.
#[derive(Debug, Clone)]
pub struct Replies {
    pattern: Vec<u8>,
    reply_len: usize,
}

const TARGET_LEN: usize = 64 * 1024;

impl Replies {
    pub fn new(reply_len: usize) -> Self {
        let reply_len = reply_len.max(1);
        let mut one = vec![b'x'; reply_len];
        one[reply_len - 1] = b'\n';
        let copies = TARGET_LEN.div_ceil(reply_len).max(1);
        Replies {
            pattern: one.repeat(copies),
            reply_len,
        }
    }

    pub fn reply_len(&self) -> usize {
        self.reply_len
    }

    /// The next bytes to send of `owed` bytes of replies, `phase` bytes
    /// into the current reply: at most one buffer's worth.
    pub fn next_chunk(&self, phase: usize, owed: usize) -> &[u8] {
        let end = self.pattern.len().min(phase + owed);
        &self.pattern[phase..end]
    }
}

/// The request lines that `bytes` ends: its newlines (a line cut by a read
/// is counted by the read that brings its newline).
pub fn count_lines(bytes: &[u8]) -> usize {
    memchr::memchr_iter(b'\n', bytes).count()
}
