//! Which lines of a chat mailbox are new. Every `append` adds one line and
//! one version, and drops the oldest whole lines when the mailbox is full,
//! so after appends only the new content is the old one less some whole
//! lines at its front, then exactly (new version - old version) lines. A
//! write (`w`, `wb`) replaces the content: when the new content is not of
//! that shape, it is shown whole, after a marker line.

use crate::session::escape;

/// The line shown before a mailbox's whole content when it was rewritten.
pub const REWRITTEN: &str = "-- mailbox rewritten --";

/// The mailbox's lines, without their newlines, escaped for the terminal.
pub fn lines(content: &[u8]) -> Vec<String> {
    let content = content.strip_suffix(b"\n").unwrap_or(content);
    if content.is_empty() {
        return Vec::new();
    }
    content.split(|&b| b == b'\n').map(escape).collect()
}

/// What to show when the content shown, `old`, became `new`, `added`
/// versions later: the appended lines, or (a rewrite) the marker line and
/// all of `new`'s lines.
pub fn update(old: &[u8], new: &[u8], added: u64) -> Vec<String> {
    match appended(old, new, added) {
        Some(tail) => lines(tail),
        None => {
            let mut shown = vec![REWRITTEN.to_string()];
            shown.extend(lines(new));
            shown
        }
    }
}

/// The part of `new` that `added` appends put after what is left of `old`
/// (old less whole lines at its front); None when `new` cannot be that.
fn appended<'a>(old: &[u8], new: &'a [u8], added: u64) -> Option<&'a [u8]> {
    // Where a line of `old` starts (the end too: every line dropped).
    let starts = std::iter::once(0)
        .chain(memchr::memchr_iter(b'\n', old).map(|at| at + 1))
        .chain(std::iter::once(old.len()));
    let mut tried = usize::MAX;
    for start in starts {
        if start == tried {
            continue;
        }
        tried = start;
        let kept = &old[start..];
        let Some(mut tail) = new.strip_prefix(kept) else {
            continue;
        };
        // After content that does not end with a LF (a plain write), an
        // append puts a LF before its line.
        if !kept.is_empty() && !kept.ends_with(b"\n") {
            let Some(rest) = tail.strip_prefix(b"\n") else {
                continue;
            };
            tail = rest;
        }
        let count = memchr::memchr_iter(b'\n', tail).count();
        if tail.ends_with(b"\n") && u64::try_from(count).ok() == Some(added)
            || tail.is_empty() && added == 0
        {
            return Some(tail);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines() {
        assert!(lines(b"").is_empty());
        assert_eq!(lines(b"a\n"), ["a"]);
        assert_eq!(lines(b"a\n\nb\x01\n"), ["a", "", "b\\x01"]);
    }

    #[test]
    fn appends_are_what_follows_the_old_lines() {
        assert_eq!(update(b"", b"a\n", 1), ["a"]);
        assert_eq!(update(b"a\nb\n", b"a\nb\nc\nd\n", 2), ["c", "d"]);
        // The oldest lines dropped to make room.
        assert_eq!(update(b"a\nb\nc\n", b"c\nd\n", 1), ["d"]);
        // A line equal to an old one is still new.
        assert_eq!(update(b"a\n", b"a\na\n", 1), ["a"]);
        // Every old line dropped, and some new ones too.
        assert_eq!(update(b"x\ny\n", b"x\ny\n", 2), ["x", "y"]);
        // No old line left and as many lines as versions: taken for
        // appends, though a write of one line and an append give that too
        // (the same lines are shown, without the marker).
        assert_eq!(update(b"a\nb\n", b"b\nc\n", 2), ["b", "c"]);
        // After a plain write with no LF at its end.
        assert_eq!(update(b"hello", b"hello\nx\n", 1), ["x"]);
        assert!(update(b"a\n", b"a\n", 0).is_empty());
    }

    #[test]
    fn rewrites_show_everything_after_a_marker() {
        // The old lines' take would be ["y"]: a write of two lines.
        assert_eq!(update(b"a\nb\n", b"x\ny\n", 1), [REWRITTEN, "x", "y"]);
        // A write of three lines, then an append: four lines in two
        // versions.
        assert_eq!(
            update(b"a\nb\n", b"b\nx\ny\nc\n", 2),
            [REWRITTEN, "b", "x", "y", "c"]
        );
        // A write of the same two lines.
        assert_eq!(update(b"a\nb\n", b"a\nb\n", 1), [REWRITTEN, "a", "b"]);
        // A write that does not end with a LF.
        assert_eq!(update(b"a\n", b"a\nb", 1), [REWRITTEN, "a", "b"]);
        assert_eq!(update(b"a\n", b"", 1), [REWRITTEN]);
    }
}
