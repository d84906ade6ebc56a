//! Signal handling, nginx style: the handlers (registered through
//! signal-hook) only raise flags; the supervisor keeps the signals blocked and
//! acts on the flags in its main loop, unblocking them only inside ppoll().
//!
//! Workers inherit the handlers and the flags across fork(): a worker's
//! SIGTERM raises its own copy of `terminate`, which is its stop flag.

use std::io;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};

/// Raised by the handlers; cleared by whoever acts on them.
#[derive(Clone)]
pub struct SignalFlags {
    /// SIGTERM or SIGINT: orderly shutdown.
    pub terminate: Arc<AtomicBool>,
    /// SIGQUIT: immediate shutdown.
    pub quit: Arc<AtomicBool>,
    /// SIGHUP: reopen the log file.
    pub reopen_log: Arc<AtomicBool>,
    /// SIGCHLD: a worker changed state.
    pub child: Arc<AtomicBool>,
    /// SIGUSR1, to a pool worker: retire between clients. The supervisor
    /// sends it and ignores its own.
    pub retire: Arc<AtomicBool>,
}

/// The signals the supervisor acts on.
pub fn handled() -> SigSet {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGHUP,
        Signal::SIGCHLD,
        Signal::SIGUSR1,
    ] {
        set.add(s);
    }
    set
}

impl SignalFlags {
    /// Registers the flag handlers and ignores SIGPIPE (a vanished client is
    /// an EPIPE error, never a death). Call before the first fork().
    pub fn install() -> io::Result<SignalFlags> {
        let flags = SignalFlags {
            terminate: Arc::new(AtomicBool::new(false)),
            quit: Arc::new(AtomicBool::new(false)),
            reopen_log: Arc::new(AtomicBool::new(false)),
            child: Arc::new(AtomicBool::new(false)),
            retire: Arc::new(AtomicBool::new(false)),
        };
        use signal_hook::consts::*;
        signal_hook::flag::register(SIGTERM, Arc::clone(&flags.terminate))?;
        signal_hook::flag::register(SIGINT, Arc::clone(&flags.terminate))?;
        signal_hook::flag::register(SIGQUIT, Arc::clone(&flags.quit))?;
        signal_hook::flag::register(SIGHUP, Arc::clone(&flags.reopen_log))?;
        signal_hook::flag::register(SIGCHLD, Arc::clone(&flags.child))?;
        signal_hook::flag::register(SIGUSR1, Arc::clone(&flags.retire))?;
        let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
        // SAFETY: installing SIG_IGN runs no code of ours in signal context.
        unsafe { sigaction(Signal::SIGPIPE, &ignore) }.map_err(io::Error::from)?;
        Ok(flags)
    }
}

/// Blocks (or unblocks) the handled signals in this process.
pub fn set_blocked(blocked: bool) -> io::Result<()> {
    let how = if blocked {
        SigmaskHow::SIG_BLOCK
    } else {
        SigmaskHow::SIG_UNBLOCK
    };
    nix::sys::signal::sigprocmask(how, Some(&handled()), None).map_err(io::Error::from)
}
