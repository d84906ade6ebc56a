//! The bytes a connection has received but not yet framed into replies.

/// Holds the incomplete tail of what a connection received, between reads.
/// Bytes are framed straight from the read buffer when nothing is pending,
/// which is the usual case: a copy is made only of a reply split across
/// reads.
#[derive(Debug, Default)]
pub struct Inbox {
    pending: Vec<u8>,
}

impl Inbox {
    pub fn new() -> Self {
        Inbox::default()
    }

    /// How many bytes wait for the rest of their reply.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Frames replies out of the pending bytes followed by `fresh`: `next`
    /// gets the unframed bytes and returns the length of the first reply in
    /// them (never 0), or None while it is incomplete. What is left is kept
    /// for the next call.
    pub fn frame<E>(
        &mut self,
        fresh: &[u8],
        mut next: impl FnMut(&[u8]) -> Result<Option<usize>, E>,
    ) -> Result<(), E> {
        if self.pending.is_empty() {
            let used = frame_all(fresh, &mut next)?;
            self.pending.extend_from_slice(&fresh[used..]);
        } else {
            self.pending.extend_from_slice(fresh);
            let used = frame_all(&self.pending, &mut next)?;
            self.pending.drain(..used);
        }
        Ok(())
    }
}

fn frame_all<E>(
    buf: &[u8],
    next: &mut impl FnMut(&[u8]) -> Result<Option<usize>, E>,
) -> Result<usize, E> {
    let mut used = 0;
    while used < buf.len() {
        match next(&buf[used..])? {
            Some(len) => {
                debug_assert!(len > 0, "an empty reply would frame forever");
                used += len.max(1);
            }
            None => break,
        }
    }
    Ok(used)
}
