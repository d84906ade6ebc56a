//! A scratch segment for the lock tests and benchmarks: on a port below 1024
//! (no daemon uses those), with no daemon record, removing a stale one left
//! by an earlier run first. The returned mapping owns the segment and
//! unlinks it when dropped, also when a test panics; forked children leave
//! with `_exit`, so their copy never unlinks it.

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use shmlib::{Geometry, Segment};

pub fn scratch_segment(port: u16, mailboxes: u64, kib: u64, workers: u64) -> Segment {
    let geometry = Geometry::from_kib(mailboxes, kib, kib.min(1024), workers).expect("geometry");
    Segment::create_scratch(port, geometry).expect("create a scratch segment")
}

/// A forked child process, SIGKILLed and reaped when dropped (so also when
/// the test panics), unless already reaped.
#[allow(dead_code)] // the benchmarks include this module and never fork
pub struct Child(Option<Pid>);

#[allow(dead_code)]
impl Child {
    pub fn wait(&mut self) -> (Pid, WaitStatus) {
        let pid = self.0.take().expect("a child not reaped yet");
        (pid, waitpid(pid, None).expect("reap the child"))
    }

    pub fn kill(&mut self) {
        if let Some(pid) = self.0 {
            kill(pid, Signal::SIGKILL).expect("SIGKILL the child");
        }
        self.wait();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take() {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
    }
}

/// Runs `child` in a forked process that ends with `_exit(0)` unless killed
/// (`_exit(1)` if it panics: it must never unwind into the copy of the test
/// harness).
#[allow(dead_code)]
pub fn forked(child: impl FnOnce()) -> Child {
    // SAFETY: the child runs `child` (no locks the parent's threads might
    // hold: it only touches the shared segment) and _exit()s without
    // returning into the test harness.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).is_ok();
            // SAFETY: ends the child at once, skipping the harness's exit.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
        ForkResult::Parent { child } => Child(Some(child)),
    }
}
