//! Creating, attaching and removing the segment, and typed views into it.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use shared_memory::{Shmem, ShmemConf, ShmemError};

use crate::bakery::{sleep_mask_words, BakeryLock, Entry, SleepMask};
use crate::error::ShmError;
use crate::kv::{KeyValue, Table};
use crate::layout::{
    Geometry, Header, KvEntry, KvHeader, MailboxSlot, Offsets, LAYOUT_VERSION, MAGIC, PATH_BYTES,
};
use crate::lock::AcceptLock;
use crate::mailbox::Mailbox;
use crate::mailbox_lock::{MailboxLock, Participant};
use crate::waiters::{WaiterMask, Wakers};

/// The POSIX shared-memory name of a port's segment.
pub fn segment_name(port: u16) -> String {
    format!("/dipc.{port}")
}

/// Where that segment shows in the file system.
pub fn segment_path(port: u16) -> String {
    format!("/dev/shm/dipc.{port}")
}

/// Where a program serving `port` keeps its `ext` file (pid, log) unless
/// told otherwise: `/tmp/<program>-<port>.<ext>`.
pub fn default_file(program: &str, port: u16, ext: &str) -> std::path::PathBuf {
    format!("/tmp/{program}-{port}.{ext}").into()
}

/// Where a port's daemon writes its pid unless `--pid-file` says otherwise;
/// dipcrm looks there when the segment is gone.
pub fn default_pid_file(port: u16) -> std::path::PathBuf {
    default_file("dipc", port, "pid")
}

/// What a worker is doing, as kept in its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum WorkerState {
    Empty = 0,
    Starting = 1,
    Idle = 2,
    Busy = 3,
    /// Chosen by the supervisor to retire; it accepts no more clients.
    Retiring = 4,
}

/// One worker's row in the segment's worker table.
#[repr(C, align(64))]
pub struct WorkerSlot {
    pid: AtomicI32,
    state: AtomicU32,
    /// Connections this worker serves now (more than one in the event model).
    connections: AtomicU32,
    requests: AtomicU64,
    started_unix: AtomicU64,
    /// The client being served: `family << 32 | port` (family 0: none, 4 or
    /// 6), then the address's 16 bytes (an IPv4 address in the first 4).
    /// Written before the state turns busy; a reader racing a new client may
    /// see a mix of two peers, which only `stat workers` shows.
    peer: [AtomicU64; 3],
}

impl WorkerSlot {
    pub fn pid(&self) -> i32 {
        self.pid.load(Ordering::Acquire)
    }
    /// Makes the slot ready for a new process (or thread): counters reset,
    /// no peer, state `Starting`. Call before the fork (or spawn), so that
    /// nothing the new process writes to its slot is overwritten after.
    pub fn claim(&self) {
        self.started_unix.store(unix_now(), Ordering::Relaxed);
        self.requests.store(0, Ordering::Relaxed);
        self.connections.store(0, Ordering::Relaxed);
        self.set_peer(None);
        self.state
            .store(WorkerState::Starting as u32, Ordering::Relaxed);
    }
    /// Records the pid of the process that claimed the slot.
    pub fn set_pid(&self, pid: i32) {
        self.pid.store(pid, Ordering::Release);
    }
    /// Marks the slot empty: its process is gone (reaped). Connections it
    /// still counted are taken out of the daemon's open count.
    pub fn release(&self, stats: &Stats) {
        self.forget_connections(stats);
        self.pid.store(0, Ordering::Release);
        self.state
            .store(WorkerState::Empty as u32, Ordering::Relaxed);
        self.set_peer(None);
    }
    pub fn state(&self) -> WorkerState {
        match self.state.load(Ordering::Relaxed) {
            1 => WorkerState::Starting,
            2 => WorkerState::Idle,
            3 => WorkerState::Busy,
            4 => WorkerState::Retiring,
            _ => WorkerState::Empty,
        }
    }
    pub fn set_state(&self, state: WorkerState) {
        self.state.store(state as u32, Ordering::Relaxed);
    }
    /// Moves the state from `from` to `to` unless someone changed it first:
    /// the supervisor (idle to retiring) and the worker (idle to busy, when
    /// it is about to accept) race for an idle worker, and exactly one wins.
    pub fn transition(&self, from: WorkerState, to: WorkerState) -> bool {
        self.state
            .compare_exchange(from as u32, to as u32, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }
    pub fn count_requests(&self, n: u64) {
        self.requests.fetch_add(n, Ordering::Relaxed);
    }
    pub fn connections(&self) -> u32 {
        self.connections.load(Ordering::Relaxed)
    }
    /// Counts a connection opened (`true`) or closed here and in the
    /// daemon's count of open connections.
    pub fn count_connection(&self, stats: &Stats, opened: bool) {
        if opened {
            self.connections.fetch_add(1, Ordering::Relaxed);
            stats.open_connections.fetch_add(1, Ordering::Relaxed);
        } else {
            self.connections.fetch_sub(1, Ordering::Relaxed);
            stats.open_connections.fetch_sub(1, Ordering::Relaxed);
        }
    }
    fn forget_connections(&self, stats: &Stats) {
        let open = self.connections.swap(0, Ordering::Relaxed);
        stats
            .open_connections
            .fetch_sub(u64::from(open), Ordering::Relaxed);
    }
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
    /// When the slot's process started, seconds since 1970.
    pub fn started_unix(&self) -> u64 {
        self.started_unix.load(Ordering::Relaxed)
    }
    pub fn set_peer(&self, peer: Option<SocketAddr>) {
        let (family, port, octets) = match peer {
            None => (0u64, 0u16, [0u8; 16]),
            Some(SocketAddr::V4(a)) => {
                let mut octets = [0u8; 16];
                octets[..4].copy_from_slice(&a.ip().octets());
                (4, a.port(), octets)
            }
            Some(SocketAddr::V6(a)) => (6, a.port(), a.ip().octets()),
        };
        let (high, low) = octets.split_at(8);
        let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
        self.peer[1].store(word(high), Ordering::Relaxed);
        self.peer[2].store(word(low), Ordering::Relaxed);
        self.peer[0].store(family << 32 | u64::from(port), Ordering::Release);
    }
    pub fn peer(&self) -> Option<SocketAddr> {
        let head = self.peer[0].load(Ordering::Acquire);
        let mut octets = [0u8; 16];
        octets[..8].copy_from_slice(&self.peer[1].load(Ordering::Relaxed).to_le_bytes());
        octets[8..].copy_from_slice(&self.peer[2].load(Ordering::Relaxed).to_le_bytes());
        let port = head as u16;
        match head >> 32 {
            4 => {
                let v4 = [octets[0], octets[1], octets[2], octets[3]];
                Some(SocketAddr::from((v4, port)))
            }
            6 => Some(SocketAddr::from((octets, port))),
            _ => None,
        }
    }
}

/// The daemon's counters, shared by every worker, for `stat`. Relaxed
/// increments: each is a count on its own, read as a snapshot.
#[repr(C)]
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted since the start.
    pub connections: AtomicU64,
    /// Connections open now.
    pub open_connections: AtomicU64,
    pub reads: AtomicU64,
    pub writes: AtomicU64,
    pub stats: AtomicU64,
    /// help, q, and lines that are no request.
    pub other: AtomicU64,
    /// `ERR` replies of every kind.
    pub errors: AtomicU64,
    /// Lock acquisitions (mailboxes' and the store's) that had to wait for
    /// someone.
    pub lock_waits: AtomicU64,
    pub lock_timeouts: AtomicU64,
    /// Key-value requests.
    pub gets: AtomicU64,
    pub puts: AtomicU64,
    pub dels: AtomicU64,
}

impl Stats {
    pub fn count(counter: &AtomicU64) {
        Stats::add(counter, 1);
    }

    /// Counts `n` at once: one shared-cache-line write for a batch.
    pub fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// What the daemon records about itself in the header, for dipcrm.
#[derive(Debug, Clone, Copy)]
pub struct DaemonRecord<'a> {
    pub pid_file: &'a str,
    pub log_file: &'a str,
    /// The key-value store's lock file (empty: no store).
    pub db_lock_file: &'a str,
    /// How long an orderly shutdown may take.
    pub grace: Duration,
}

/// What the header says about the daemon that made the segment.
#[derive(Debug, Clone)]
pub struct SegmentInfo {
    pub port: u16,
    pub supervisor_pid: i32,
    pub grace: Duration,
    pub pid_file: String,
    pub log_file: String,
    pub db_lock_file: String,
    pub geometry: Geometry,
    pub size: usize,
    /// When the segment was created (the daemon started), seconds since 1970.
    pub created_unix: u64,
}

/// A mapping of a port's segment. The process that created it owns it (the
/// mapping unlinks the segment when dropped) until [`Segment::disown`].
pub struct Segment {
    shmem: Shmem,
    geometry: Geometry,
    offsets: Offsets,
    /// The worker slots' eventfds, for `wait`: made with the segment, so
    /// every process forked from its creator has them; None in a segment
    /// opened from outside (dipcrm), which has nobody to wake.
    wakers: Option<Wakers>,
}

// SAFETY: the segment is built to be shared by concurrent processes, and
// threads are no different: every `&self` method reaches the mapping only
// through atomics, the robust accept mutex, or a mailbox lock taken under a
// participant slot of its caller's own (two threads never share a slot, as
// two processes never do). The mapping handle itself has no interior
// mutability and changes only through `&mut self` (disown).
unsafe impl Sync for Segment {}
// SAFETY: as above; the mapping stays valid in whichever thread drops it.
unsafe impl Send for Segment {}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A hash seed that differs per daemon (std's per-process random keys).
fn random_seed() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(std::process::id())
}

fn copy_path(dst: &mut [u8; PATH_BYTES], src: &str) {
    let n = src.len().min(PATH_BYTES - 1);
    dst[..n].copy_from_slice(&src.as_bytes()[..n]);
}

fn read_path(src: &[u8; PATH_BYTES]) -> String {
    let end = src.iter().position(|&b| b == 0).unwrap_or(PATH_BYTES);
    String::from_utf8_lossy(&src[..end]).into_owned()
}

fn errno_error(name: String, errno: Errno) -> ShmError {
    match errno {
        Errno::ENOENT => ShmError::NotFound { name },
        Errno::EEXIST => ShmError::AlreadyExists { name },
        Errno::EACCES | Errno::EPERM => ShmError::PermissionDenied { name },
        e => io_error(name, e),
    }
}

/// A failure of the segment `name` with no kind of its own.
fn io_error(name: String, errno: Errno) -> ShmError {
    ShmError::Io {
        name,
        source: io::Error::from(errno),
    }
}

fn map_error(name: &str, err: ShmemError) -> ShmError {
    let name = name.to_string();
    match err {
        ShmemError::MappingIdExists => ShmError::AlreadyExists { name },
        ShmemError::MapCreateFailed(code) | ShmemError::MapOpenFailed(code) => {
            errno_error(name, Errno::from_raw(code as i32))
        }
        other => ShmError::Map {
            name,
            detail: other.to_string(),
        },
    }
}

impl Segment {
    /// Creates and initialises the segment of `port` (mode 0600). Fails if one
    /// already exists: reclaiming a stale one is the caller's decision.
    pub fn create(
        port: u16,
        geometry: Geometry,
        daemon: &DaemonRecord<'_>,
    ) -> Result<Segment, ShmError> {
        let name = segment_name(port);
        let offsets = geometry.offsets().ok_or_else(|| ShmError::Map {
            name: name.clone(),
            detail: "geometry does not fit in memory".into(),
        })?;
        let shmem = ShmemConf::new()
            .os_id(&name)
            .size(offsets.total)
            .create()
            .map_err(|e| map_error(&name, e))?;
        let wakers =
            Wakers::new(geometry.worker_slots as usize).map_err(|e| io_error(name.clone(), e))?;
        let segment = Segment {
            shmem,
            geometry,
            offsets,
            wakers: Some(wakers),
        };
        segment.initialise(port, daemon)?;
        Ok(segment)
    }

    fn initialise(&self, port: u16, daemon: &DaemonRecord<'_>) -> Result<(), ShmError> {
        let lock_init = |source| ShmError::LockInit {
            name: segment_name(port),
            source,
        };
        let header = self.shmem.as_ptr() as *mut Header;
        // SAFETY: the mapping is fresh (ftruncate zero-fills it), at least
        // `offsets.total` bytes long, page aligned, and no other process can
        // use it before `magic` is published at the end.
        unsafe {
            let h = &mut *header;
            h.layout_version = LAYOUT_VERSION;
            h.port = u32::from(port);
            h.mailboxes = self.geometry.mailboxes;
            h.worker_slots = self.geometry.worker_slots;
            h.keys = self.geometry.keys;
            h.mailbox_size = self.geometry.mailbox_size as u64;
            h.packet_size = self.geometry.packet_size as u64;
            h.total_size = self.offsets.total as u64;
            h.created_unix = unix_now();
            h.supervisor_pid = AtomicI32::new(std::process::id() as i32);
            h.grace_ms = daemon.grace.as_millis().min(u64::MAX as u128) as u64;
            copy_path(&mut h.pid_file, daemon.pid_file);
            copy_path(&mut h.log_file, daemon.log_file);
            // A cut path would name another file: none rather than that.
            if daemon.db_lock_file.len() < PATH_BYTES {
                copy_path(&mut h.db_lock_file, daemon.db_lock_file);
            }
            // The mailbox locks and contents start as the zero bytes they are,
            // and so does the key-value store, but for its hash seed.
            AcceptLock::init(std::ptr::addr_of_mut!(h.accept_lock)).map_err(lock_init)?;
            if self.geometry.keys > 0 {
                (*self.kv_header_ptr()).seed = random_seed();
            }
        }
        self.header().magic.store(MAGIC, Ordering::Release);
        Ok(())
    }

    /// Allocates every page of the segment now, so that a full /dev/shm is a
    /// start-up error instead of a SIGBUS in a worker later.
    pub fn reserve_memory(&self) -> Result<(), ShmError> {
        use nix::fcntl::OFlag;
        use nix::sys::stat::Mode;
        let name = self.shmem.get_os_id().to_string();
        let failed = |e: Errno| io_error(name.clone(), e);
        let fd = nix::sys::mman::shm_open(name.as_str(), OFlag::O_RDWR, Mode::empty())
            .map_err(failed)?;
        nix::fcntl::posix_fallocate(&fd, 0, self.offsets.total as libc::off_t).map_err(failed)
    }

    /// Attaches to an existing segment and checks that it is a dipc one.
    pub fn open(port: u16) -> Result<Segment, ShmError> {
        let name = segment_name(port);
        let shmem = ShmemConf::new()
            .os_id(&name)
            .open()
            .map_err(|e| map_error(&name, e))?;
        let not_dipc = || ShmError::NotDipc { name: name.clone() };
        if shmem.len() < std::mem::size_of::<Header>() {
            return Err(not_dipc());
        }
        // SAFETY: the mapping is at least a Header long (checked above) and
        // page aligned; every bit pattern is a valid Header.
        let header = unsafe { &*(shmem.as_ptr() as *const Header) };
        if header.magic.load(Ordering::Acquire) != MAGIC || header.layout_version != LAYOUT_VERSION
        {
            return Err(not_dipc());
        }
        let geometry = Geometry {
            mailboxes: header.mailboxes,
            mailbox_size: usize::try_from(header.mailbox_size).map_err(|_| not_dipc())?,
            packet_size: usize::try_from(header.packet_size).map_err(|_| not_dipc())?,
            worker_slots: header.worker_slots,
            keys: header.keys,
        };
        let offsets = geometry.offsets().ok_or_else(not_dipc)?;
        if offsets.total > shmem.len() || header.port != u32::from(port) {
            return Err(not_dipc());
        }
        Ok(Segment {
            shmem,
            geometry,
            offsets,
            wakers: None,
        })
    }

    /// A segment that no daemon runs, for tests, benchmarks and the fuzzer:
    /// no pid, log or database file recorded, and any segment left on
    /// `port`'s name by an interrupted run replaced. The returned mapping
    /// owns it and unlinks it when dropped, also when a test panics.
    pub fn create_scratch(port: u16, geometry: Geometry) -> Result<Segment, ShmError> {
        let _ = Segment::unlink(port);
        let record = DaemonRecord {
            pid_file: "",
            log_file: "",
            db_lock_file: "",
            grace: Duration::from_secs(1),
        };
        Segment::create(port, geometry, &record)
    }

    /// Removes a port's segment name; mappings stay valid until unmapped.
    pub fn unlink(port: u16) -> Result<(), ShmError> {
        let name = segment_name(port);
        nix::sys::mman::shm_unlink(name.as_str()).map_err(|e| errno_error(name, e))
    }

    /// After fork(), only the supervisor may own the segment: every other
    /// process calls this so that its exit never unlinks it.
    pub fn disown(&mut self) {
        self.shmem.set_owner(false);
    }

    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    pub fn info(&self) -> SegmentInfo {
        let h = self.header();
        SegmentInfo {
            port: h.port as u16,
            supervisor_pid: h.supervisor_pid.load(Ordering::Acquire),
            grace: Duration::from_millis(h.grace_ms),
            pid_file: read_path(&h.pid_file),
            log_file: read_path(&h.log_file),
            db_lock_file: read_path(&h.db_lock_file),
            geometry: self.geometry,
            size: self.offsets.total,
            created_unix: h.created_unix,
        }
    }

    /// Records the supervisor's pid (it changes when the daemon detaches).
    pub fn set_supervisor_pid(&self, pid: i32) {
        self.header().supervisor_pid.store(pid, Ordering::Release);
    }

    pub fn set_stopping(&self) {
        self.header().stopping.store(1, Ordering::Release);
    }

    pub fn stats(&self) -> &Stats {
        &self.header().stats
    }

    pub fn accept_lock(&self) -> &AcceptLock {
        &self.header().accept_lock
    }

    /// The worker table, one slot per pool position.
    pub fn worker_slots(&self) -> &[WorkerSlot] {
        // SAFETY: `offsets.workers` is within the mapping, 64-byte aligned,
        // followed by `worker_slots` slots (Geometry::offsets); all-zero bytes
        // are a valid WorkerSlot and the fields are atomics.
        unsafe {
            std::slice::from_raw_parts(
                self.shmem.as_ptr().add(self.offsets.workers) as *const WorkerSlot,
                self.geometry.worker_slots as usize,
            )
        }
    }

    /// The identity of the worker in slot `slot` in every mailbox lock, or
    /// None when there is no such slot.
    pub fn participant(&self, slot: usize) -> Option<Participant> {
        (slot < self.geometry.worker_slots as usize).then_some(Participant(slot))
    }

    /// Mailbox `index` (0-based) or None when out of range.
    pub fn mailbox(&self, index: usize) -> Option<Mailbox<'_>> {
        let lock = self.mailbox_lock(index)?;
        // SAFETY: index < mailboxes (mailbox_lock checked it), so the slot
        // and its two data halves lie within the mapping (Geometry::offsets).
        unsafe {
            let slot = &*self.mailbox_slot_ptr(index);
            let data = self
                .shmem
                .as_ptr()
                .add(self.offsets.data + index * 2 * self.geometry.mailbox_size);
            Some(Mailbox::new(
                lock,
                &slot.published,
                &slot.len,
                WaiterMask::new(&slot.waiters),
                self.wakers.as_ref(),
                data,
                self.geometry.mailbox_size,
            ))
        }
    }

    /// Mailbox `index`'s current version (0-based), or None when out of
    /// range: one atomic load and no view built, for a read that finds a
    /// reply kept for that version and needs nothing else.
    pub fn mailbox_version(&self, index: usize) -> Option<u64> {
        if index >= self.geometry.mailboxes as usize {
            return None;
        }
        // SAFETY: index < mailboxes keeps the slot inside the mailbox-slot
        // table (Geometry::offsets); its fields are atomics, valid at any
        // bytes.
        let slot = unsafe { &*self.mailbox_slot_ptr(index) };
        Some(crate::mailbox::version_in(&slot.published))
    }

    /// The worker slots' eventfds (None in a segment opened from outside).
    pub fn wakers(&self) -> Option<&Wakers> {
        self.wakers.as_ref()
    }

    /// The lock of mailbox `index` (0-based), or None when out of range.
    pub fn mailbox_lock(&self, index: usize) -> Option<MailboxLock<'_>> {
        if index >= self.geometry.mailboxes as usize {
            return None;
        }
        let slots = self.geometry.worker_slots as usize;
        // SAFETY: index < mailboxes keeps the slot inside the slot table and
        // the mailbox's row (`slots` entries, then the sleep mask, all 8-byte
        // words) inside the lock table (Geometry::offsets); all-zero bytes
        // are valid for all of them, and every field is atomic.
        unsafe {
            let slot = &*self.mailbox_slot_ptr(index);
            let row = self
                .shmem
                .as_ptr()
                .add(self.offsets.lock_entries + index * self.geometry.lock_row_bytes());
            let entries = std::slice::from_raw_parts(row as *const Entry, slots);
            let sleeping = std::slice::from_raw_parts(
                (row as *const Entry).add(slots) as *const SleepMask,
                sleep_mask_words(slots),
            );
            Some(MailboxLock::new(
                BakeryLock::new(&slot.wake, entries, sleeping),
                &self.header().stats.lock_waits,
            ))
        }
    }

    /// Clears every trace of a dead participant from every mailbox lock and
    /// the store's (see [`KeyValue::repair`] for the one exception), so
    /// that its slot can be reused and nobody waits for it. The caller must
    /// know the process is gone (reaped). Returns how many locks it held or
    /// was waiting for.
    pub fn repair_participant(&self, dead: Participant) -> usize {
        let store = self.key_value().is_some_and(|kv| kv.repair(dead));
        let mailboxes = (0..self.geometry.mailboxes as usize)
            .filter_map(|i| self.mailbox_lock(i))
            .filter(|lock| lock.repair(dead))
            .count();
        mailboxes + usize::from(store)
    }

    /// The key-value store, or None when the daemon has none (`--keys 0`).
    pub fn key_value(&self) -> Option<KeyValue<'_>> {
        if self.geometry.keys == 0 {
            return None;
        }
        let o = &self.offsets;
        let slots = self.geometry.worker_slots as usize;
        let keys = self.geometry.keys as usize;
        // SAFETY: the store's parts lie within the mapping at the offsets
        // Geometry::offsets computed for this geometry, each aligned for its
        // type; all-zero bytes are valid for every one of them and every
        // field is atomic (the seed is written once before `magic`). The
        // values area holds `keys` values of packet_size bytes.
        unsafe {
            let base = self.shmem.as_ptr();
            let header = &*self.kv_header_ptr();
            let entries = std::slice::from_raw_parts(base.add(o.kv_lock) as *const Entry, slots);
            let sleeping = std::slice::from_raw_parts(
                (base.add(o.kv_lock) as *const Entry).add(slots) as *const SleepMask,
                sleep_mask_words(slots),
            );
            let lock = MailboxLock::new(
                BakeryLock::new(&header.wake, entries, sleeping),
                &self.header().stats.lock_waits,
            );
            let buckets = std::slice::from_raw_parts(
                base.add(o.kv_buckets) as *const AtomicU32,
                self.geometry.kv_buckets(),
            );
            let kv_entries =
                std::slice::from_raw_parts(base.add(o.kv_entries) as *const KvEntry, keys);
            let table = Table::new(
                header,
                buckets,
                kv_entries,
                base.add(o.kv_values),
                self.geometry.packet_size,
            );
            Some(KeyValue::new(lock, table))
        }
    }

    fn kv_header_ptr(&self) -> *mut KvHeader {
        // SAFETY (of the arithmetic): the store's header lies within the
        // mapping (Geometry::offsets), whether or not the store has keys.
        unsafe { self.shmem.as_ptr().add(self.offsets.kv) as *mut KvHeader }
    }

    fn header(&self) -> &Header {
        // SAFETY: every Segment maps at least a Header (checked in open,
        // guaranteed by the geometry in create); the mapping is page aligned.
        unsafe { &*(self.shmem.as_ptr() as *const Header) }
    }

    fn mailbox_slot_ptr(&self, index: usize) -> *mut MailboxSlot {
        // SAFETY (of the arithmetic): callers pass index < mailboxes, which
        // keeps the pointer inside the mailbox-slot table.
        unsafe { (self.shmem.as_ptr().add(self.offsets.mailboxes) as *mut MailboxSlot).add(index) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty_slot() -> WorkerSlot {
        WorkerSlot {
            pid: AtomicI32::new(0),
            state: AtomicU32::new(0),
            connections: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            started_unix: AtomicU64::new(0),
            peer: Default::default(),
        }
    }

    #[test]
    fn peer_addresses_round_trip() {
        let slot = empty_slot();
        assert_eq!(slot.peer(), None);
        for peer in [
            "127.0.0.1:50007",
            "[::1]:65535",
            "[fe80::1:2:3]:1",
            "10.0.0.255:0",
        ] {
            let addr: SocketAddr = peer.parse().expect("test address");
            slot.set_peer(Some(addr));
            assert_eq!(slot.peer(), Some(addr));
        }
        slot.claim();
        assert_eq!(slot.peer(), None, "a new process starts with no peer");
        assert_eq!(slot.state(), WorkerState::Starting);
    }
}
