//! The key-value store's journal: database.txt, a text file of changes, one
//! per line (`put <key> <value>` or `del <key>`; `#` starts a comment),
//! replayed in order at start.
//!
//! - A change is appended (and, with `--fsync always`, flushed) under the
//!   store's write lock before the table makes it and before the client's
//!   `OK`: SIGKILL of any process at any moment loses no acknowledged change.
//! - A last line without its newline is a torn append (a crash mid-write):
//!   reported, cut off, and the rest loads.
//! - When the file grows past twice what its pairs need (and 64 KiB), the
//!   writer that made it grow rewrites it: a new file, flushed, renamed over
//!   the old one, the directory flushed. Every process holding the old file
//!   open notices on its next append (no links left) and reopens the path.
//! - Every process of the daemon holds a shared `flock` on the file; a new
//!   daemon must get it exclusively first, so two daemons never share one
//!   database.

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
    /// After every change, before `OK`: a power cut loses nothing
    /// acknowledged.
    Always,
    /// Once a second, by the supervisor: a power cut loses at most the last
    /// second.
    EverySec,
    /// Never by dipc; the kernel writes back within about 30 s.
    No,
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
    #[error("{path} is in use by another dipc daemon; give this one its own with --db PATH")]
    InUse { path: String },
    #[error("{path}:{line}: {reason}")]
    Corrupt {
        path: String,
        line: usize,
        reason: String,
    },
    #[error("{path} holds more than {capacity} keys, this daemon's capacity; start it with a larger --keys")]
    TooMany { path: String, capacity: usize },
}

/// The journal of one daemon's store, opened by the supervisor and
/// inherited by every worker (and shared by a thread server's threads).
pub struct Database {
    path: PathBuf,
    /// Where a compaction writes the new file before renaming it.
    temp: PathBuf,
    policy: FsyncPolicy,
    /// The file appended to; replaced after a compaction.
    file: Mutex<File>,
}

/// Below this size the journal is never compacted.
const COMPACT_MIN_BYTES: u64 = 64 * 1024;
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

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}

/// The line that records a change.
fn record_line(change: &Change<'_>) -> Vec<u8> {
    let mut line = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = match *change {
        Change::Put { key, value } => write!(line, "put {key} ")
            .and_then(|()| line.write_all(value))
            .and_then(|()| line.write_all(b"\n")),
        Change::Del { key } => writeln!(line, "del {key}"),
    };
    line
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

fn lock_file(file: &Mutex<File>) -> MutexGuard<'_, File> {
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
        policy: FsyncPolicy,
        kv: &KeyValue<'_>,
    ) -> Result<(Database, LoadReport), DbError> {
        let io_error = |source| DbError::Io {
            path: path.display().to_string(),
            source,
        };
        let file = open_append(path).map_err(io_error)?;
        match flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => {
                return Err(DbError::InUse {
                    path: path.display().to_string(),
                })
            }
            Err(e) => return Err(io_error(e)),
        }
        // Shared from now on: the daemon's processes all hold it.
        flock(&file, libc::LOCK_SH).map_err(io_error)?;
        let mut temp = path.as_os_str().to_owned();
        temp.push(".compacting");
        let db = Database {
            path: path.to_path_buf(),
            temp: PathBuf::from(temp),
            policy,
            file: Mutex::new(file),
        };
        // A compaction that died before its rename left this behind.
        let _ = std::fs::remove_file(&db.temp);
        // SAFETY: forwarded from the caller.
        let table = unsafe { kv.exclusive() };
        let mut report = {
            let mut file = lock_file(&db.file);
            db.load_into(&mut file, table)?
        };
        if table.journal_bytes() == 0 {
            db.append(table, HEADER_LINE).map_err(io_error)?;
        } else if db.needs_compaction(table) {
            db.compact(table).map_err(io_error)?;
            report.compacted = true;
        }
        Ok((db, report))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn policy(&self) -> FsyncPolicy {
        self.policy
    }

    fn io_error(&self, source: io::Error) -> DbError {
        DbError::Io {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// Replays the whole file into the emptied table and cuts off a torn
    /// last line.
    fn load_into(&self, file: &mut File, table: &Table<'_>) -> Result<LoadReport, DbError> {
        let mut bytes = Vec::new();
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.read_to_end(&mut bytes))
            .map_err(|e| self.io_error(e))?;
        table.clear();
        let mut report = LoadReport::default();
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
            let corrupt = |reason: String| DbError::Corrupt {
                path: self.path.display().to_string(),
                line: number,
                reason,
            };
            match parse_record(line).map_err(corrupt)? {
                None => {}
                Some(Change::Put { key, value }) => {
                    if value.len() > table.value_limit() {
                        return Err(corrupt(format!(
                            "a value of {} bytes, over this daemon's {}-byte packet size",
                            value.len(),
                            table.value_limit()
                        )));
                    }
                    if !table.contains(key) && table.len() >= table.capacity() {
                        return Err(DbError::TooMany {
                            path: self.path.display().to_string(),
                            capacity: table.capacity(),
                        });
                    }
                    table.set(key, value);
                    report.records += 1;
                }
                Some(Change::Del { key }) => {
                    table.remove(key);
                    report.records += 1;
                }
            }
        }
        if report.torn.is_some() {
            file.set_len(good as u64).map_err(|e| self.io_error(e))?;
        }
        table.set_journal_bytes(good as u64);
        report.pairs = table.len();
        Ok(report)
    }

    /// After a writer died inside a change (the store's `changing` names
    /// it), rebuilds the table from the journal: the table then holds
    /// exactly what the file holds, the dead writer's change included if its
    /// line was complete. Returns None when `dead` was not inside a change.
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
            let mut file = lock_file(&self.file);
            self.follow_renames(&mut file)
                .map_err(|e| self.io_error(e))?;
            self.load_into(&mut file, table)?
        };
        kv.clear_changing();
        Ok(Some(report))
    }

    /// Reopens the path when the file held was replaced by a compaction (or
    /// removed by hand); true when it did.
    fn follow_renames(&self, file: &mut File) -> io::Result<bool> {
        if file.metadata()?.nlink() > 0 {
            return Ok(false);
        }
        let current = open_append(&self.path)?;
        flock(&current, libc::LOCK_SH)?;
        *file = current;
        Ok(true)
    }

    /// Appends one line, flushed as the policy says. A failed append is
    /// undone, so the next one does not land after half a line.
    fn append(&self, table: &Table<'_>, line: &[u8]) -> io::Result<()> {
        let mut file = lock_file(&self.file);
        if self.follow_renames(&mut file)? && file.metadata()?.len() == 0 && !table.is_empty() {
            // Someone removed the file under us: write it whole again.
            drop(file);
            self.compact(table)?;
            file = lock_file(&self.file);
        }
        let before = file.metadata()?.len();
        let written = file.write_all(line).and_then(|()| match self.policy {
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
        table.set_journal_bytes(before + line.len() as u64);
        Ok(())
    }

    /// Whether the file holds more than twice what its pairs need.
    fn needs_compaction(&self, table: &Table<'_>) -> bool {
        let live = table.len() as u64 * PAIR_LINE_OVERHEAD + table.value_bytes();
        let size = table.journal_bytes();
        size > COMPACT_MIN_BYTES && size > 2 * live
    }

    /// Rewrites the journal as one `put` per pair: a new file, flushed,
    /// renamed over the old one, the directory flushed. The table must not
    /// change meanwhile (the caller holds the write lock, or is alone).
    fn compact(&self, table: &Table<'_>) -> io::Result<()> {
        let mut file = lock_file(&self.file);
        let _ = std::fs::remove_file(&self.temp);
        let fresh = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .mode(0o600)
            .open(&self.temp)?;
        // Locked before it has the name: never a moment without the lock.
        flock(&fresh, libc::LOCK_SH)?;
        let mut out = BufWriter::new(&fresh);
        out.write_all(HEADER_LINE)?;
        for (key, value) in table.pairs() {
            out.write_all(&record_line(&Change::Put { key, value }))?;
        }
        out.flush()?;
        drop(out);
        fresh.sync_all()?;
        std::fs::rename(&self.temp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            File::open(dir)?.sync_all()?;
        }
        table.set_journal_bytes(fresh.metadata()?.len());
        *file = fresh;
        Ok(())
    }

    /// `--fsync everysec`: flushes the journal if anything was appended
    /// since the last flush. The supervisor calls it once a second.
    pub fn flush_if_written(&self, kv: &KeyValue<'_>) -> Result<(), DbError> {
        if kv.table().unsynced().swap(0, Ordering::AcqRel) == 0 {
            return Ok(());
        }
        let mut file = lock_file(&self.file);
        self.follow_renames(&mut file)
            .and_then(|_| file.sync_data())
            .map_err(|e| self.io_error(e))
    }
}

/// The daemon's journal for one session's changes.
impl Journal for &Database {
    fn record(&mut self, table: &Table<'_>, change: &Change<'_>) -> io::Result<()> {
        self.append(table, &record_line(change))
    }

    fn after(&mut self, table: &Table<'_>) {
        if self.needs_compaction(table) {
            match self.compact(table) {
                Ok(()) => log::info!(
                    "{}: compacted to {} bytes ({} keys)",
                    self.path.display(),
                    table.journal_bytes(),
                    table.len()
                ),
                // The old file is intact; the next change tries again.
                Err(e) => log::error!("{}: compaction failed: {e}", self.path.display()),
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
            let line = record_line(&change);
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
