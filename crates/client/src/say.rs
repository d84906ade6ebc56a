//! Printing that cannot panic: the session's and the chat's output goes
//! through a locked stdout (or stderr) with `write_all`, its errors
//! ignored, so that a closed stdout (`client | head -1`) never panics a
//! thread the way `println!` does. Each call is flushed: a prompt or a
//! reply shows at once.

use std::io::{self, Write};

/// `text` on stdout, as it is.
pub fn out(text: &str) {
    let mut stdout = io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// `text` and a newline on stdout, in one write of the lock.
pub fn line(text: &str) {
    let mut stdout = io::stdout().lock();
    let _ = writeln!(stdout, "{text}");
    let _ = stdout.flush();
}

/// `text` and a newline on stderr.
pub fn err_line(text: &str) {
    let _ = writeln!(io::stderr().lock(), "{text}");
}
