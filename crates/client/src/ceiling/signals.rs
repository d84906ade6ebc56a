//! SIGTERM and SIGINT, blocked and taken synchronously: from a signalfd in
//! the epoll loop, or by waiting in the prefork parent. No handler runs, so
//! there is nothing to be async-signal-safe about.

use nix::sys::signal::{SigSet, Signal};

/// Blocks SIGTERM and SIGINT (and SIGCHLD, which the prefork parent waits
/// for) in this thread, and returns the set.
pub fn block_stop_signals() -> nix::Result<SigSet> {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGTERM);
    mask.add(Signal::SIGINT);
    mask.add(Signal::SIGCHLD);
    mask.thread_block()?;
    Ok(mask)
}
