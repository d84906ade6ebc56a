//! Which lines of a chat mailbox are new: every line is one `append`, which
//! adds one to the version, so the last (new version - old version) lines
//! are the ones not shown yet (all of them, when the mailbox dropped some
//! of those too).

use crate::session::escape;

/// The mailbox's lines, without their newlines, escaped for the terminal.
pub fn lines(content: &[u8]) -> Vec<String> {
    let content = content.strip_suffix(b"\n").unwrap_or(content);
    if content.is_empty() {
        return Vec::new();
    }
    content.split(|&b| b == b'\n').map(escape).collect()
}

/// The last `added` lines of `content`.
pub fn new_lines(content: &[u8], added: u64) -> Vec<String> {
    let mut all = lines(content);
    let keep = usize::try_from(added).unwrap_or(usize::MAX).min(all.len());
    all.split_off(all.len() - keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_takes_the_last() {
        assert!(lines(b"").is_empty());
        assert_eq!(lines(b"a\n"), ["a"]);
        assert_eq!(lines(b"a\n\nb\x01\n"), ["a", "", "b\\x01"]);
        assert_eq!(new_lines(b"a\nb\nc\n", 2), ["b", "c"]);
        assert_eq!(new_lines(b"a\nb\nc\n", 0), Vec::<String>::new());
        assert_eq!(new_lines(b"b\nc\n", 5), ["b", "c"]);
    }
}
