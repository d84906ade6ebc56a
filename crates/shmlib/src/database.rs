//! The key-value store's journal: database.txt, a text file of changes, one
//! per line (`put <key> <value>` or `del <key>`; `#` starts a comment),
//! replayed in order at start.
//!
//! - A group of changes (one, or a run of pipelined ones) is appended in one
//!   write (and, with `--fsync always`, flushed) under the store's write
//!   lock, before anyone else can see it and before the clients' `OK`s:
//!   SIGKILL of any process at any moment loses no acknowledged change.
//! - A last line without its newline is a torn append (a crash mid-write):
//!   reported, cut off, and the rest loads.
//! - When the file grows past twice what its pairs need (and 16 MiB, or
//!   `--db-compact-min`), the
//!   writer that made it grow rewrites it: a new file, flushed, renamed over
//!   the old one, the directory flushed, and the store's `generation`
//!   counted up. Every process holding the old file open notices on its next
//!   append (an older generation) and reopens the path. A file removed by
//!   hand is noticed by the supervisor within a second (no name left), which
//!   counts the generation up too: the next change writes it whole again.
//! - The daemon holds an exclusive `flock` on `<database>.lock`, a file that
//!   is never renamed (the database itself is, by compaction), taken by the
//!   supervisor and inherited by its children: two daemons never share one
//!   database. The supervisor removes it when it stops; dipcrm after a
//!   daemon killed with SIGKILL.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Mutex, MutexGuard};

use thiserror::Error;

use crate::kv::{parse_key, Change, Journal, KeyValue, Table};
use crate::mailbox_lock::Participant;

/// When the journal is flushed to disk (Redis's appendfsync meanings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// After every group of changes (one, or a pipelined run), before its
    /// `OK`s: a power cut loses nothing acknowledged.
    Always,
    /// Once a second, by the supervisor: a power cut loses at most the last
    /// second.
    EverySec,
    /// Never by dipc; the kernel writes back within about 30 s.
    No,
}

/// How the journal is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalOptions {
    pub fsync: FsyncPolicy,
    /// Below this size the journal is never compacted; a failed compaction
    /// is tried again after the journal grew this much more.
    pub compact_min_bytes: u64,
}

impl JournalOptions {
    /// Redis's auto-aof-rewrite-min-size is 64 MB; dipc's store is at most
    /// a few MiB of live pairs, and a compaction holds the write lock.
    pub const DEFAULT_COMPACT_MIN_BYTES: u64 = 16 << 20;
}

/// What loading the journal found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Pairs in the table afterwards.
    pub pairs: usize,
    /// Change lines replayed.
    pub records: usize,
    /// A torn last line: its line number and the bytes cut off.
    pub torn: Option<(usize, usize)>,
    /// Whether the file was rewritten (compacted) afterwards.
    pub compacted: bool,
}

#[derive(Debug, Error)]
pub enum DbError {
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error(
        "{path} is in use by another dipc daemon (or by the workers of one that was killed, \
         which finish within its grace period); give this one its own with --db PATH"
    )]
    InUse { path: String },
    #[error("{path}:{line}: {reason}")]
    Corrupt {
        path: String,
        line: usize,
        reason: String,
    },
    #[error("{path} holds {keys} keys, over this daemon's capacity of {capacity}; start it with a larger --keys")]
    TooMany {
        path: String,
        keys: usize,
        capacity: usize,
    },
    #[error("{path} is gone: removed while the daemon ran")]
    Gone { path: String },
}

/// The journal of one daemon's store, opened by the supervisor and
/// inherited by every worker (and shared by a thread server's threads).
pub struct Database {
    path: PathBuf,
    /// Where a compaction writes the new file before renaming it.
    temp: PathBuf,
    /// `<path>.lock`, flocked exclusively for the daemon's life.
    lock_path: PathBuf,
    /// Holds the flock; every child shares it through fork().
    _lock: File,
    options: JournalOptions,
    /// The file appended to; replaced after a compaction.
    file: Mutex<Journalled>,
}

/// This process's journal file and the compaction generation it belongs to.
struct Journalled {
    file: File,
    generation: u64,
    /// The file was found removed by hand and that was reported.
    removal_noticed: bool,
}

/// A stored pair's line without its value: `put `, a key of at most 20
/// characters, a space, a newline.
const PAIR_LINE_OVERHEAD: u64 = 26;
const HEADER_LINE: &[u8] = b"# dipc key-value store: one change per line, `put <key> <value>` or `del <key>`, replayed in order\n";

fn flock(file: &File, operation: libc::c_int) -> io::Result<()> {
    // SAFETY: flock only reads the descriptor, which `file` keeps open.
    if unsafe { libc::flock(file.as_raw_fd(), operation) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn open_append(path: &Path, create: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(create)
        .mode(0o600)
        .open(path)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Flushes the directory that holds `path`: a created or renamed name is
/// then on disk too.
fn sync_parent(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// Takes the exclusive lock on `lock_path` (created if need be). A daemon
/// that stops removes its lock file while holding the lock: the one we
/// locked may have lost its name meanwhile, so check that the name still
/// leads to it, and start again if not.
fn lock_database(lock_path: &Path, path_shown: &str) -> Result<File, DbError> {
    let io_error = |source| DbError::Io {
        path: lock_path.display().to_string(),
        source,
    };
    loop {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(lock_path)
            .map_err(io_error)?;
        match flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => {
                return Err(DbError::InUse {
                    path: path_shown.to_string(),
                })
            }
            Err(e) => return Err(io_error(e)),
        }
        let held = file.metadata().map_err(io_error)?;
        match std::fs::metadata(lock_path) {
            Ok(named) if named.dev() == held.dev() && named.ino() == held.ino() => return Ok(file),
            _ => continue,
        }
    }
}

/// Removes a database's lock file left by a daemon that was killed, if no
/// daemon holds it; true when it did. For dipcrm.
pub fn remove_stale_lock(lock_path: &Path) -> bool {
    let Ok(file) = OpenOptions::new().read(true).write(true).open(lock_path) else {
        return false;
    };
    flock(&file, libc::LOCK_EX | libc::LOCK_NB).is_ok() && std::fs::remove_file(lock_path).is_ok()
}

/// Appends the line that records a change.
fn write_record(out: &mut Vec<u8>, change: &Change<'_>) {
    let mut key_text = itoa::Buffer::new();
    match *change {
        Change::Put { key, value } => {
            out.extend_from_slice(b"put ");
            out.extend_from_slice(key_text.format(key).as_bytes());
            out.push(b' ');
            out.extend_from_slice(value);
        }
        Change::Del { key } => {
            out.extend_from_slice(b"del ");
            out.extend_from_slice(key_text.format(key).as_bytes());
        }
    }
    out.push(b'\n');
}

/// One record of the journal, parsed.
fn parse_record(line: &[u8]) -> Result<Option<Change<'_>>, String> {
    if line.is_empty() || line.starts_with(b"#") {
        return Ok(None);
    }
    if let Some(rest) = line.strip_prefix(b"put ") {
        let space = rest
            .iter()
            .position(|&b| b == b' ')
            .ok_or("put without a value")?;
        let key = parse_key(&rest[..space]).map_err(|e| e.to_string())?;
        return Ok(Some(Change::Put {
            key,
            value: &rest[space + 1..],
        }));
    }
    if let Some(rest) = line.strip_prefix(b"del ") {
        let key = parse_key(rest).map_err(|e| e.to_string())?;
        return Ok(Some(Change::Del { key }));
    }
    Err("not a `put <key> <value>` or `del <key>` line".into())
}

fn lock_file(file: &Mutex<Journalled>) -> MutexGuard<'_, Journalled> {
    // A thread that panicked while appending left the file as a write
    // error would: usable.
    file.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Database {
    /// Opens (creating it if need be) and locks the journal at `path`, and
    /// loads it into the store's table, which it first empties.
    ///
    /// # Safety
    /// As [`KeyValue::exclusive`]: no process or thread uses the store yet.
    pub unsafe fn open(
        path: &Path,
        options: JournalOptions,
        kv: &KeyValue<'_>,
    ) -> Result<(Database, LoadReport), DbError> {
        let lock_path = Database::lock_path_for(path);
        let lock = lock_database(&lock_path, &path.display().to_string())?;
        // SAFETY: forwarded from the caller.
        let opened = unsafe { Database::open_locked(path, options, kv, lock_path.clone(), lock) };
        if opened.is_err() {
            // A refused start leaves nothing behind (we still hold the lock).
            let _ = std::fs::remove_file(&lock_path);
        }
        opened
    }

    /// The rest of [`Database::open`], with the lock held.
    ///
    /// # Safety
    /// As [`Database::open`].
    unsafe fn open_locked(
        path: &Path,
        options: JournalOptions,
        kv: &KeyValue<'_>,
        lock_path: PathBuf,
        lock: File,
    ) -> Result<(Database, LoadReport), DbError> {
        let io_error = |source| DbError::Io {
            path: path.display().to_string(),
            source,
        };
        let created = !path.exists();
        let file = open_append(path, true).map_err(io_error)?;
        if created {
            sync_parent(path).map_err(io_error)?;
        }
        let db = Database {
            path: path.to_path_buf(),
            temp: with_suffix(path, ".compacting"),
            lock_path,
            _lock: lock,
            options,
            file: Mutex::new(Journalled {
                file,
                generation: kv.table().generation(),
                removal_noticed: false,
            }),
        };
        // A compaction that died before its rename left this behind.
        let _ = std::fs::remove_file(&db.temp);
        // SAFETY: forwarded from the caller.
        let table = unsafe { kv.exclusive() };
        let mut report = {
            let mut journal = lock_file(&db.file);
            db.load_into(&mut journal.file, table)?
        };
        if table.journal_bytes() == 0 {
            db.append(table, HEADER_LINE).map_err(io_error)?;
        } else if db.needs_compaction(table) {
            db.compact(table).map_err(io_error)?;
            report.compacted = true;
        }
        Ok((db, report))
    }

    /// Removes the lock file: the supervisor's last act, once every child
    /// is gone. (A daemon starting meanwhile checks the name, see
    /// `lock_database`.)
    pub fn remove_lock_file(&self) {
        let _ = std::fs::remove_file(&self.lock_path);
    }

    /// Where the lock file of the database at `path` is (for the segment's
    /// header, which dipcrm reads).
    pub fn lock_path_for(path: &Path) -> PathBuf {
        with_suffix(path, ".lock")
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io_error(&self, source: io::Error) -> DbError {
        DbError::Io {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// Replays the whole file into the table, which it empties first, and
    /// cuts off a torn last line. The whole file is checked before the table
    /// or the file is touched: on error both are as they were.
    fn load_into(&self, file: &mut File, table: &Table<'_>) -> Result<LoadReport, DbError> {
        let mut bytes = Vec::new();
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.read_to_end(&mut bytes))
            .map_err(|e| self.io_error(e))?;
        let mut report = LoadReport::default();
        // Key -> (value, the line that put it): only the final state has to
        // fit the table, whatever the history went through.
        let mut pairs: HashMap<i64, (&[u8], usize)> = HashMap::new();
        let mut good = 0;
        let mut number = 0;
        while good < bytes.len() {
            number += 1;
            let Some(end) = bytes[good..].iter().position(|&b| b == b'\n') else {
                report.torn = Some((number, bytes.len() - good));
                break;
            };
            let line = &bytes[good..good + end];
            good += end + 1;
            let change = parse_record(line).map_err(|reason| self.corrupt(number, reason))?;
            match change {
                None => continue,
                Some(Change::Put { key, value }) => pairs.insert(key, (value, number)),
                Some(Change::Del { key }) => pairs.remove(&key),
            };
            report.records += 1;
        }
        if pairs.len() > table.capacity() {
            return Err(DbError::TooMany {
                path: self.path.display().to_string(),
                keys: pairs.len(),
                capacity: table.capacity(),
            });
        }
        if let Some((value, line)) = pairs.values().find(|(v, _)| v.len() > table.value_limit()) {
            return Err(self.corrupt(
                *line,
                format!(
                    "a value of {} bytes, over this daemon's {}-byte packet size",
                    value.len(),
                    table.value_limit()
                ),
            ));
        }
        if report.torn.is_some() {
            file.set_len(good as u64).map_err(|e| self.io_error(e))?;
        }
        table.clear();
        for (key, (value, _)) in pairs {
            table.insert(key, value);
        }
        table.set_journal_bytes(good as u64);
        report.pairs = table.len();
        Ok(report)
    }

    fn corrupt(&self, line: usize, reason: String) -> DbError {
        DbError::Corrupt {
            path: self.path.display().to_string(),
            line,
            reason,
        }
    }

    /// After a writer died inside a group of changes (the store's `changing`
    /// names it), rebuilds the table from the journal: the table then holds
    /// exactly what the file holds, the dead writer's group as far as its
    /// lines were complete. Returns None when `dead` was not inside one.
    ///
    /// # Safety
    /// `dead` is gone (reaped, or its thread ended) and its entry in the
    /// store's lock is not yet repaired: if it was inside a change it still
    /// holds the write lock, so no one else can be in the table.
    pub unsafe fn recover(
        &self,
        kv: &KeyValue<'_>,
        dead: Participant,
    ) -> Result<Option<LoadReport>, DbError> {
        if kv.changing() != Some(dead) {
            return Ok(None);
        }
        // SAFETY: forwarded from the caller; `changing` is set only under the
        // write lock, which the dead participant therefore still holds.
        let table = unsafe { kv.exclusive() };
        let report = {
            let mut journal = lock_file(&self.file);
            // A file removed by hand is no journal to rebuild from.
            match self.follow_renames(&mut journal, table, false) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(DbError::Gone {
                        path: self.path.display().to_string(),
                    })
                }
                Err(e) => return Err(self.io_error(e)),
            }
            self.load_into(&mut journal.file, table)?
        };
        kv.clear_changing();
        Ok(Some(report))
    }

    /// Reopens the path when the file held was replaced by a compaction or
    /// found removed by hand (an older generation: see
    /// [`Database::notice_removal`]); true when it did. `create`: a removed
    /// file is created anew.
    fn follow_renames(
        &self,
        journal: &mut Journalled,
        table: &Table<'_>,
        create: bool,
    ) -> io::Result<bool> {
        let generation = table.generation();
        if journal.generation == generation {
            return Ok(false);
        }
        journal.file = open_append(&self.path, create)?;
        journal.generation = generation;
        Ok(true)
    }

    /// Appends a group's records, flushed as the policy says. A failed
    /// append is undone, so the next one does not land after half a line.
    fn append(&self, table: &Table<'_>, records: &[u8]) -> io::Result<()> {
        let mut journal = lock_file(&self.file);
        if self.follow_renames(&mut journal, table, true)? {
            let len = journal.file.metadata()?.len();
            if len == 0 && !table.is_empty() {
                // Someone removed the file under us: write it whole again,
                // from the table, which already holds this group's changes.
                drop(journal);
                return self.compact(table);
            }
            table.set_journal_bytes(len);
        }
        let file = &mut journal.file;
        // Every append, load and compaction keeps this exact, under the
        // store's write lock: no fstat per change.
        let before = table.journal_bytes();
        let written = file
            .write_all(records)
            .and_then(|()| match self.options.fsync {
                FsyncPolicy::Always => file.sync_data(),
                FsyncPolicy::EverySec => {
                    table.unsynced().store(1, Ordering::Release);
                    Ok(())
                }
                FsyncPolicy::No => Ok(()),
            });
        if let Err(e) = written {
            let _ = file.set_len(before);
            return Err(e);
        }
        table.set_journal_bytes(before + records.len() as u64);
        Ok(())
    }

    /// Whether the file holds more than twice what its pairs need.
    fn needs_compaction(&self, table: &Table<'_>) -> bool {
        let live = table.len() as u64 * PAIR_LINE_OVERHEAD + table.value_bytes();
        let size = table.journal_bytes();
        size > self.options.compact_min_bytes && size > 2 * live && size >= table.compact_after()
    }

    /// Rewrites the journal as one `put` per pair: a new file, flushed,
    /// renamed over the old one, the directory flushed. The table must not
    /// change meanwhile (the caller holds the write lock, or is alone).
    fn compact(&self, table: &Table<'_>) -> io::Result<()> {
        let mut journal = lock_file(&self.file);
        let mode = journal.file.metadata()?.mode() & 0o7777;
        let _ = std::fs::remove_file(&self.temp);
        let fresh = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .mode(mode)
            .open(&self.temp)?;
        let mut out = BufWriter::new(&fresh);
        out.write_all(HEADER_LINE)?;
        let mut line = Vec::new();
        for (key, value) in table.pairs() {
            line.clear();
            write_record(&mut line, &Change::Put { key, value });
            out.write_all(&line)?;
        }
        out.flush()?;
        drop(out);
        // The new content on disk before its name, the name after.
        fresh.sync_all()?;
        let bytes = fresh.metadata()?.len();
        std::fs::rename(&self.temp, &self.path)?;
        // From the rename on, the new file is the journal: switch to it
        // before anything else can fail, so no change is appended to the
        // old one, which has no name any more.
        table.set_journal_bytes(bytes);
        journal.file = fresh;
        journal.generation = table.next_generation();
        table.set_compact_after(0);
        if let Err(e) = sync_parent(&self.path) {
            // The rename stands; only its survival of a power cut waits for
            // the kernel's writeback.
            log::warn!(
                "{}: compacted, but flushing its directory failed: {e}",
                self.path.display()
            );
        }
        Ok(())
    }

    /// `--fsync everysec`: flushes the journal if anything was appended
    /// since the last flush. The supervisor calls it once a second.
    pub fn flush_if_written(&self, kv: &KeyValue<'_>) -> Result<(), DbError> {
        let table = kv.table();
        if table.unsynced().swap(0, Ordering::AcqRel) == 0 {
            return Ok(());
        }
        let mut journal = lock_file(&self.file);
        let flushed = self
            .follow_renames(&mut journal, table, false)
            .and_then(|_| journal.file.sync_data());
        if let Err(e) = flushed {
            // Tried again at the next tick.
            table.unsynced().store(1, Ordering::Release);
            return Err(self.io_error(e));
        }
        Ok(())
    }
}

/// One session's way into the journal: the records of the group being
/// made, written in one append when it commits.
pub struct DatabaseJournal<'d> {
    db: &'d Database,
    staged: Vec<u8>,
}

impl Database {
    /// A journal for one session (one per connection or per worker; it
    /// keeps its buffer from group to group).
    pub fn journal(&self) -> DatabaseJournal<'_> {
        DatabaseJournal {
            db: self,
            staged: Vec::new(),
        }
    }

    /// The supervisor, once a second: a journal whose file was removed by
    /// hand (no name left) is written whole again by the next change, which
    /// finds a new generation. True when it found it removed.
    pub fn notice_removal(&self, kv: &KeyValue<'_>) -> Result<bool, DbError> {
        let table = kv.table();
        let mut journal = lock_file(&self.file);
        let removed = match self.follow_renames(&mut journal, table, false) {
            Ok(true) => {
                journal.removal_noticed = false;
                false
            }
            Ok(false) => {
                journal
                    .file
                    .metadata()
                    .map_err(|e| self.io_error(e))?
                    .nlink()
                    == 0
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => true,
            Err(e) => return Err(self.io_error(e)),
        };
        if !removed || journal.removal_noticed {
            return Ok(false);
        }
        // Told once; the change that writes it again counts the generation
        // up, and this process follows.
        journal.removal_noticed = true;
        journal.generation = table.next_generation();
        Ok(true)
    }
}

impl Journal for DatabaseJournal<'_> {
    fn stage(&mut self, change: &Change<'_>) {
        write_record(&mut self.staged, change);
    }

    fn commit(&mut self, table: &Table<'_>) -> io::Result<()> {
        let written = self.db.append(table, &self.staged);
        self.staged.clear();
        self.staged.shrink_to(crate::kv::KEPT_BUFFER);
        written
    }

    fn discard(&mut self) {
        self.staged.clear();
    }

    fn after(&mut self, table: &Table<'_>) {
        let db = self.db;
        if db.needs_compaction(table) {
            match db.compact(table) {
                Ok(()) => log::info!(
                    "{}: compacted to {} bytes ({} keys)",
                    db.path.display(),
                    table.journal_bytes(),
                    table.len()
                ),
                // The old file is intact; tried again when the journal has
                // grown by another step.
                Err(e) => {
                    table.set_compact_after(table.journal_bytes() + db.options.compact_min_bytes);
                    log::error!("{}: compaction failed: {e}", db.path.display());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        for change in [
            Change::Put {
                key: -5,
                value: b"hello  world ",
            },
            Change::Put {
                key: i64::MAX,
                value: b"",
            },
            Change::Del { key: 42 },
        ] {
            let mut line = Vec::new();
            write_record(&mut line, &change);
            assert_eq!(line.last(), Some(&b'\n'));
            assert_eq!(parse_record(&line[..line.len() - 1]), Ok(Some(change)));
        }
        assert_eq!(parse_record(b"# a comment"), Ok(None));
        assert_eq!(parse_record(b""), Ok(None));
        assert!(parse_record(b"put 5").is_err());
        assert!(parse_record(b"put x y").is_err());
        assert!(parse_record(b"set 5 y").is_err());
        assert!(parse_record(b"del 5 6").is_err());
    }
}
