//! The locks that live in the segment.
//!
//! [`FairRwLock`] guards one mailbox: many readers or one writer, FIFO-fair
//! through a turnstile semaphore, every wait bounded by a [`Deadline`].
//! [`AcceptLock`] serialises the workers' accept(): a robust process-shared
//! mutex, so a worker that dies holding it cannot wedge the pool.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use nix::time::{clock_gettime, ClockId};

use crate::error::LockError;

/// An absolute point on CLOCK_REALTIME, the clock `sem_timedwait` and
/// `pthread_mutex_timedlock` measure against, and optionally a flag that
/// cancels the wait when a signal raises it (a worker told to stop).
#[derive(Debug, Clone, Copy)]
pub struct Deadline<'a> {
    at: libc::timespec,
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
    pub fn after(timeout: Duration) -> Deadline<'static> {
        let now = clock_gettime(ClockId::CLOCK_REALTIME)
            .map(|t| (t.tv_sec(), t.tv_nsec()))
            .unwrap_or((0, 0));
        let total_nsec = now.1 as u64 + u64::from(timeout.subsec_nanos());
        let secs = now
            .0
            .saturating_add(timeout.as_secs().min(i64::MAX as u64 / 2) as i64)
            .saturating_add((total_nsec / 1_000_000_000) as i64);
        Deadline {
            at: libc::timespec {
                tv_sec: secs,
                tv_nsec: (total_nsec % 1_000_000_000) as _,
            },
            cancel: None,
        }
    }
}

impl Deadline<'_> {
    fn as_ptr(&self) -> *const libc::timespec {
        &self.at
    }

    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn as_timespec(&self) -> *const libc::timespec {
        self.as_ptr()
    }
}

/// A process-shared POSIX semaphore stored in the segment.
#[repr(transparent)]
struct Semaphore(UnsafeCell<libc::sem_t>);

impl Semaphore {
    /// # Safety
    /// `this` points into a mapping shared by every process that will use the
    /// semaphore, and no process uses it before this returns.
    unsafe fn init(this: *mut Semaphore, value: u32) -> Result<(), Errno> {
        // SAFETY: per the contract, `this` is valid, writable and not yet in use;
        // pshared = 1 makes the semaphore usable from every process mapping it.
        let rc = unsafe { libc::sem_init((*this).0.get(), 1, value) };
        Errno::result(rc).map(drop)
    }

    fn wait_until(&self, deadline: &Deadline<'_>) -> Result<(), LockError> {
        loop {
            // SAFETY: the semaphore was initialised by `init` before the segment
            // was published, and lives as long as the mapping `self` borrows.
            let rc = unsafe { libc::sem_timedwait(self.0.get(), deadline.as_ptr()) };
            if rc == 0 {
                return Ok(());
            }
            match Errno::last() {
                // A signal woke us: give up only if it asked us to stop. A
                // free lock is still granted to a process that is stopping,
                // so the request in hand can finish.
                Errno::EINTR if deadline.cancelled() => return Err(LockError::Cancelled),
                Errno::EINTR => continue,
                Errno::ETIMEDOUT => return Err(LockError::TimedOut),
                e => return Err(LockError::Os(e)),
            }
        }
    }

    /// Waits without a deadline: only for the few-instruction critical
    /// sections of the lock's own bookkeeping.
    fn wait(&self) {
        loop {
            // SAFETY: as in `wait_until`.
            if unsafe { libc::sem_wait(self.0.get()) } == 0 {
                return;
            }
            let errno = Errno::last();
            // Only EINTR can happen to an initialised semaphore; anything else
            // means the segment is corrupt, and going on would corrupt more.
            assert_eq!(errno, Errno::EINTR, "sem_wait failed on a mailbox lock");
        }
    }

    fn post(&self) {
        // SAFETY: as in `wait_until`. sem_post can only fail on overflow, which
        // a binary semaphore used in matched pairs never reaches.
        unsafe { libc::sem_post(self.0.get()) };
    }
}

/// A FIFO-fair reader-writer lock of three process-shared semaphores (the
/// "third readers-writers problem" solution):
///
/// - `turnstile`: everyone, reader or writer, passes through it in arrival
///   order; a waiting writer holds it, so readers arriving after the writer
///   queue behind it, and the other way round.
/// - `resource`: held by the writer, or by the group of readers as a whole.
/// - `count_mutex`: guards `readers`, the size of that group.
#[repr(C)]
pub struct FairRwLock {
    turnstile: Semaphore,
    resource: Semaphore,
    count_mutex: Semaphore,
    readers: AtomicU32,
}

impl FairRwLock {
    /// # Safety
    /// As [`Semaphore::init`]: `this` points into the shared mapping and nobody
    /// uses the lock before this returns.
    pub(crate) unsafe fn init(this: *mut FairRwLock) -> Result<(), Errno> {
        // SAFETY: forwarded from the caller's contract; the fields are disjoint.
        unsafe {
            Semaphore::init(std::ptr::addr_of_mut!((*this).turnstile), 1)?;
            Semaphore::init(std::ptr::addr_of_mut!((*this).resource), 1)?;
            Semaphore::init(std::ptr::addr_of_mut!((*this).count_mutex), 1)?;
            std::ptr::addr_of_mut!((*this).readers).write(AtomicU32::new(0));
        }
        Ok(())
    }

    /// Joins the readers. On error nothing is held and nothing changed.
    pub fn read(&self, deadline: &Deadline<'_>) -> Result<ReadGuard<'_>, LockError> {
        self.turnstile.wait_until(deadline)?;
        if let Err(e) = self.count_mutex.wait_until(deadline) {
            self.turnstile.post();
            return Err(e);
        }
        if self.readers.fetch_add(1, Ordering::Relaxed) == 0 {
            // First reader in: take the resource for the whole group.
            if let Err(e) = self.resource.wait_until(deadline) {
                self.readers.fetch_sub(1, Ordering::Relaxed);
                self.count_mutex.post();
                self.turnstile.post();
                return Err(e);
            }
        }
        self.count_mutex.post();
        self.turnstile.post();
        Ok(ReadGuard { lock: self })
    }

    /// Takes the lock alone. On error nothing is held and nothing changed.
    pub fn write(&self, deadline: &Deadline<'_>) -> Result<WriteGuard<'_>, LockError> {
        self.turnstile.wait_until(deadline)?;
        if let Err(e) = self.resource.wait_until(deadline) {
            self.turnstile.post();
            return Err(e);
        }
        // Holding the resource, the writer lets the next arrival queue on it.
        self.turnstile.post();
        Ok(WriteGuard { lock: self })
    }

    fn read_unlock(&self) {
        self.count_mutex.wait();
        if self.readers.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.resource.post();
        }
        self.count_mutex.post();
    }
}

/// Held by one reader of the group; the last one out frees the resource.
pub struct ReadGuard<'a> {
    lock: &'a FairRwLock,
}

impl Drop for ReadGuard<'_> {
    fn drop(&mut self) {
        self.lock.read_unlock();
    }
}

/// Held by the one writer.
pub struct WriteGuard<'a> {
    lock: &'a FairRwLock,
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        self.lock.resource.post();
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

    /// Takes the accept lock, waiting until `deadline` at most.
    pub fn lock(&self, deadline: &Deadline<'_>) -> Result<AcceptGuard<'_>, LockError> {
        // SAFETY: the mutex was initialised by `init` before the segment was
        // published and lives as long as the mapping `self` borrows.
        let rc = unsafe { libc::pthread_mutex_timedlock(self.0.get(), deadline.as_ptr()) };
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
