//! Deadlines for every lock wait, and the accept lock.
//!
//! [`AcceptLock`] serialises the workers' accept(): a robust process-shared
//! mutex, so a worker that dies holding it cannot wedge the pool. The mailbox
//! locks are in `mailbox_lock.rs`.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use nix::errno::Errno;
use nix::time::{clock_gettime, ClockId};

use crate::error::LockError;

/// An absolute point on CLOCK_REALTIME, the clock FUTEX_CLOCK_REALTIME and
/// `pthread_mutex_timedlock` measure against, and optionally a flag that
/// cancels the wait when a signal raises it (a worker told to stop).
///
/// The point is fixed the first time a wait needs it: a lock granted
/// without waiting, which is nearly every one, never reads the clock.
#[derive(Debug, Clone)]
pub struct Deadline<'a> {
    timeout: Duration,
    at: OnceLock<libc::timespec>,
    cancel: Option<&'a AtomicBool>,
}

impl<'a> Deadline<'a> {
    /// Also give up, with [`LockError::Cancelled`], once a signal has raised
    /// `flag`.
    pub fn or_when(self, flag: &'a AtomicBool) -> Deadline<'a> {
        Deadline {
            cancel: Some(flag),
            ..self
        }
    }

    pub(crate) fn cancelled(&self) -> bool {
        self.cancel.is_some_and(|f| f.load(Ordering::Relaxed))
    }
}

impl Deadline<'static> {
    /// `timeout` from the first time a wait needs the deadline.
    pub fn after(timeout: Duration) -> Deadline<'static> {
        Deadline {
            timeout,
            at: OnceLock::new(),
            cancel: None,
        }
    }
}

impl Deadline<'_> {
    fn at(&self) -> &libc::timespec {
        self.at.get_or_init(|| {
            let now = clock_gettime(ClockId::CLOCK_REALTIME)
                .map(|t| (t.tv_sec(), t.tv_nsec()))
                .unwrap_or((0, 0));
            let total_nsec = now.1 as u64 + u64::from(self.timeout.subsec_nanos());
            let secs = now
                .0
                .saturating_add(self.timeout.as_secs().min(i64::MAX as u64 / 2) as i64)
                .saturating_add((total_nsec / 1_000_000_000) as i64);
            libc::timespec {
                tv_sec: secs,
                tv_nsec: (total_nsec % 1_000_000_000) as _,
            }
        })
    }

    /// Whether the deadline is behind us.
    pub(crate) fn passed(&self) -> bool {
        let at = self.at();
        clock_gettime(ClockId::CLOCK_REALTIME)
            .map(|now| (now.tv_sec(), now.tv_nsec()) >= (at.tv_sec, at.tv_nsec))
            .unwrap_or(false)
    }

    pub(crate) fn as_ptr(&self) -> *const libc::timespec {
        self.at()
    }
}

/// The accept lock: a robust, process-shared pthread mutex. When its holder
/// dies, the next locker is told (EOWNERDEAD), marks it consistent and goes
/// on: the accept lock protects no data, only the turn to call accept().
#[repr(C)]
pub struct AcceptLock(UnsafeCell<libc::pthread_mutex_t>);

impl AcceptLock {
    /// # Safety
    /// `this` points into the shared mapping and nobody uses the lock before
    /// this returns.
    pub(crate) unsafe fn init(this: *mut AcceptLock) -> Result<(), Errno> {
        // SAFETY: `attr` is a local initialised by pthread_mutexattr_init before
        // use and destroyed after; `this` is valid per the contract.
        unsafe {
            let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
            Errno::result(libc::pthread_mutexattr_init(attr.as_mut_ptr()))?;
            let attr = attr.as_mut_ptr();
            let rc = (|| {
                Errno::result(libc::pthread_mutexattr_setpshared(
                    attr,
                    libc::PTHREAD_PROCESS_SHARED,
                ))?;
                Errno::result(libc::pthread_mutexattr_setrobust(
                    attr,
                    libc::PTHREAD_MUTEX_ROBUST,
                ))?;
                Errno::result(libc::pthread_mutex_init((*this).0.get(), attr))
            })();
            libc::pthread_mutexattr_destroy(attr);
            rc.map(drop)
        }
    }

    /// Takes the accept lock if it is free, without waiting: the event
    /// model's workers try for it between turns of their loops.
    pub fn try_lock(&self) -> Result<Option<AcceptGuard<'_>>, LockError> {
        // SAFETY: as in `lock`.
        let rc = unsafe { libc::pthread_mutex_trylock(self.0.get()) };
        if rc == libc::EBUSY {
            return Ok(None);
        }
        self.granted(rc).map(Some)
    }

    /// Takes the accept lock, waiting until `deadline` at most.
    pub fn lock(&self, deadline: &Deadline<'_>) -> Result<AcceptGuard<'_>, LockError> {
        // SAFETY: the mutex was initialised by `init` before the segment was
        // published and lives as long as the mapping `self` borrows.
        let rc = unsafe { libc::pthread_mutex_timedlock(self.0.get(), deadline.as_ptr()) };
        self.granted(rc)
    }

    /// What a pthread lock call's result means.
    fn granted(&self, rc: i32) -> Result<AcceptGuard<'_>, LockError> {
        match rc {
            0 => Ok(AcceptGuard {
                lock: self,
                recovered: false,
            }),
            libc::EOWNERDEAD => {
                // SAFETY: we hold the mutex (EOWNERDEAD grants it).
                unsafe { libc::pthread_mutex_consistent(self.0.get()) };
                Ok(AcceptGuard {
                    lock: self,
                    recovered: true,
                })
            }
            libc::ETIMEDOUT => Err(LockError::TimedOut),
            e => Err(LockError::Os(Errno::from_raw(e))),
        }
    }
}

/// Holding the accept lock.
pub struct AcceptGuard<'a> {
    lock: &'a AcceptLock,
    /// The previous holder died holding the lock.
    pub recovered: bool,
}

impl Drop for AcceptGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: this guard exists only while this thread holds the mutex.
        unsafe { libc::pthread_mutex_unlock(self.lock.0.get()) };
    }
}
