//! The ceiling's prefork model: the listening socket, then N forked
//! processes, each a blocking accept-serve loop serving one connection at a
//! time. The parent only waits: for a stop signal (it then stops and reaps
//! every child) or for a child's death (reported; it is not replaced, so a
//! crash shows instead of being hidden).

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::errno::Errno;
use nix::sys::prctl;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, getpid, getppid, ForkResult, Pid};

use super::replies::{count_lines, Replies};

const READ_BUFFER: usize = 64 * 1024;
/// How long children get to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(2);

pub fn serve(
    listener: TcpListener,
    replies: &Replies,
    processes: u32,
    mask: &SigSet,
) -> anyhow::Result<()> {
    let parent = getpid();
    let mut children = Vec::with_capacity(processes as usize);
    for _ in 0..processes {
        match fork_process() {
            Ok(ForkResult::Child) => child_main(&listener, replies, parent, mask),
            Ok(ForkResult::Parent { child }) => children.push(child),
            Err(e) => {
                stop_children(&mut children);
                return Err(e).context("fork");
            }
        }
    }
    // The children have their own copies; the parent never accepts.
    drop(listener);
    loop {
        let signal = match mask.wait() {
            Ok(signal) => signal,
            Err(Errno::EINTR) => continue,
            Err(e) => {
                stop_children(&mut children);
                return Err(e).context("sigwait");
            }
        };
        match signal {
            Signal::SIGCHLD => {
                reap_exited(&mut children);
                if children.is_empty() {
                    bail!("every serving process has died");
                }
            }
            _ => {
                stop_children(&mut children);
                return Ok(());
            }
        }
    }
}

fn fork_process() -> nix::Result<ForkResult> {
    // SAFETY: the ceiling starts no thread before it forks, so the process
    // is single-threaded and the child may run any code (allocate, lock)
    // without meeting a lock another thread held at fork time.
    unsafe { fork() }
}

/// A child's whole life: never returns.
fn child_main(listener: &TcpListener, replies: &Replies, parent: Pid, mask: &SigSet) -> ! {
    // Die with the parent: asked first, then checked, since the parent may
    // have died before the request was made.
    if prctl::set_pdeathsig(Signal::SIGTERM).is_err() || getppid() != parent {
        std::process::exit(0);
    }
    // The parent takes SIGTERM and SIGINT by waiting; a child just dies of
    // them (the default action), which is all the cleanup it needs.
    if mask.thread_unblock().is_err() {
        std::process::exit(1);
    }
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                // Nagle would hold back a reply while an earlier one is
                // unacknowledged.
                let _ = stream.set_nodelay(true);
                serve_one(stream, replies, &mut buf);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // Out of descriptors or a connection aborted before accept:
                // pause rather than spin.
                eprintln!("ceiling: process {}: accept: {e}", getpid());
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Serves one connection until it closes: each read's complete lines get
/// their replies in one write.
fn serve_one(mut stream: TcpStream, replies: &Replies, buf: &mut [u8]) {
    loop {
        let n = match stream.read(buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        let mut owed = count_lines(&buf[..n]) * replies.reply_len();
        let mut phase = 0;
        while owed > 0 {
            match stream.write(replies.next_chunk(phase, owed)) {
                Ok(0) => return,
                Ok(written) => {
                    owed -= written;
                    phase = (phase + written) % replies.reply_len();
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }
}

/// Reaps the children that have exited, saying how (none should).
fn reap_exited(children: &mut Vec<Pid>) {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(status) => {
                if let Some(pid) = status.pid() {
                    children.retain(|&child| child != pid);
                    eprintln!("ceiling: process {pid} ended: {status:?}");
                }
            }
        }
    }
}

/// SIGTERM to every child, a grace period, SIGKILL to the rest; every
/// child reaped.
fn stop_children(children: &mut Vec<Pid>) {
    for &child in children.iter() {
        let _ = kill(child, Signal::SIGTERM);
    }
    let deadline = Instant::now() + STOP_GRACE;
    while !children.is_empty() && Instant::now() < deadline {
        children.retain(|&child| {
            matches!(
                waitpid(child, Some(WaitPidFlag::WNOHANG)),
                Ok(WaitStatus::StillAlive)
            )
        });
        if !children.is_empty() {
            thread::sleep(Duration::from_millis(5));
        }
    }
    for &child in children.iter() {
        let _ = kill(child, Signal::SIGKILL);
        let _ = waitpid(child, None);
    }
    children.clear();
}
