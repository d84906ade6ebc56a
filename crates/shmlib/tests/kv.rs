//! The key-value store and its journal on a real segment and real files:
//! the seed's semantics, the hash table against a model, and every way the
//! journal can be found after a crash.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::wait::WaitStatus;
use shmlib::kv::{Change, InMemory, Journal, Table};
use shmlib::{
    Database, DatabaseJournal, DbError, Deadline, FsyncPolicy, JournalOptions, KvError,
    Participant, Segment, UndoLog,
};

mod support;
use support::{forked, scratch_segment};

fn soon() -> Deadline<'static> {
    Deadline::after(Duration::from_secs(2))
}

fn who(seg: &Segment, slot: usize) -> Participant {
    seg.participant(slot).expect("slot")
}

fn get(seg: &Segment, key: i64) -> Option<Vec<u8>> {
    let kv = seg.key_value().expect("store");
    match kv.get_with(who(seg, 0), &soon(), key, <[u8]>::to_vec) {
        Ok(v) => Some(v),
        Err(KvError::NotFound) => None,
        Err(e) => panic!("get {key}: {e}"),
    }
}

fn db_file(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("database.txt")
}

/// Compacted from 64 KiB on, so that a test reaches it quickly.
fn small_journal() -> JournalOptions {
    JournalOptions {
        fsync: FsyncPolicy::No,
        compact_min_bytes: 64 * 1024,
    }
}

fn open(seg: &Segment, path: &Path) -> (Database, shmlib::LoadReport) {
    let kv = seg.key_value().expect("store");
    // SAFETY: the test is the only user of the scratch segment's store.
    unsafe { Database::open(path, small_journal(), &kv) }.expect("open the database")
}

#[test]
fn the_seed_semantics_in_memory() {
    let seg = scratch_segment(820, 1, 4, 2);
    let kv = seg.key_value().expect("store");
    let me = who(&seg, 0);
    kv.put(me, &soon(), 5, b"hello world", &mut InMemory)
        .expect("put");
    assert!(matches!(
        kv.put(me, &soon(), 5, b"other", &mut InMemory),
        Err(KvError::Exists)
    ));
    assert_eq!(get(&seg, 5).as_deref(), Some(&b"hello world"[..]));
    assert_eq!(get(&seg, 6), None);
    kv.del(me, &soon(), 5, &mut InMemory).expect("del");
    assert!(matches!(
        kv.del(me, &soon(), 5, &mut InMemory),
        Err(KvError::NotFound)
    ));
    let limit = kv.table().value_limit();
    assert!(matches!(
        kv.put(me, &soon(), 1, &vec![b'x'; limit + 1], &mut InMemory),
        Err(KvError::TooLong { .. })
    ));
    kv.put(me, &soon(), 1, &vec![b'x'; limit], &mut InMemory)
        .expect("a value of exactly the limit");
}

#[test]
fn a_full_store_refuses_and_stays_whole() {
    let seg = scratch_segment(821, 1, 4, 1);
    let kv = seg.key_value().expect("store");
    let me = who(&seg, 0);
    let capacity = kv.table().capacity();
    for key in 0..capacity as i64 {
        kv.put(me, &soon(), key, key.to_string().as_bytes(), &mut InMemory)
            .expect("put below capacity");
    }
    assert!(matches!(
        kv.put(me, &soon(), -1, b"one too many", &mut InMemory),
        Err(KvError::Full { .. })
    ));
    for key in 0..capacity as i64 {
        assert_eq!(get(&seg, key), Some(key.to_string().into_bytes()));
    }
}

/// Random puts and dels against a HashMap, over a small key range so that
/// probe chains collide and deletions shift entries back.
#[test]
fn the_table_matches_a_model_under_random_changes() {
    let seg = scratch_segment(822, 1, 4, 1);
    let kv = seg.key_value().expect("store");
    let me = who(&seg, 0);
    let capacity = kv.table().capacity() as i64;
    let mut model: HashMap<i64, Vec<u8>> = HashMap::new();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for step in 0..50_000 {
        let key = (next() % (capacity as u64 * 3 / 2)) as i64 - capacity / 2;
        if next() % 2 == 0 {
            let value = format!("{key}@{step}").into_bytes();
            let result = kv.put(me, &soon(), key, &value, &mut InMemory);
            match (model.contains_key(&key), model.len() as i64 >= capacity) {
                (true, _) => assert!(matches!(result, Err(KvError::Exists))),
                (false, true) => assert!(matches!(result, Err(KvError::Full { .. }))),
                (false, false) => {
                    result.expect("put");
                    model.insert(key, value);
                }
            }
        } else {
            let result = kv.del(me, &soon(), key, &mut InMemory);
            if model.remove(&key).is_some() {
                result.expect("del");
            } else {
                assert!(matches!(result, Err(KvError::NotFound)));
            }
        }
        if step % 5_000 == 0 {
            for (key, value) in &model {
                assert_eq!(get(&seg, *key).as_ref(), Some(value), "key {key}");
            }
        }
    }
    assert_eq!(kv.table().len(), model.len());
    for (key, value) in &model {
        assert_eq!(get(&seg, *key).as_ref(), Some(value), "key {key}");
    }
}

#[test]
fn the_journal_is_text_and_loads_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = db_file(&dir);
    {
        let seg = scratch_segment(823, 1, 4, 1);
        let (db, report) = open(&seg, &path);
        assert_eq!(report.pairs, 0);
        let kv = seg.key_value().expect("store");
        let me = who(&seg, 0);
        kv.put(me, &soon(), 1, b"one", &mut db.journal())
            .expect("put");
        kv.put(me, &soon(), -2, b"minus two  ", &mut db.journal())
            .expect("put");
        kv.put(me, &soon(), 3, b"three", &mut db.journal())
            .expect("put");
        kv.del(me, &soon(), 1, &mut db.journal()).expect("del");
    }
    let text = fs::read_to_string(&path).expect("read database.txt");
    let records: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        records,
        ["put 1 one", "put -2 minus two  ", "put 3 three", "del 1"]
    );
    let seg = scratch_segment(823, 1, 4, 1);
    let (_db, report) = open(&seg, &path);
    assert_eq!(report.pairs, 2);
    assert_eq!(report.records, 4);
    assert_eq!(report.torn, None);
    assert_eq!(get(&seg, 1), None);
    assert_eq!(get(&seg, -2).as_deref(), Some(&b"minus two  "[..]));
    assert_eq!(get(&seg, 3).as_deref(), Some(&b"three"[..]));
}

#[test]
fn a_torn_last_line_is_cut_off_and_the_rest_loads() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = db_file(&dir);
    fs::write(&path, "put 1 one\nput 2 two\nput 3 thr").expect("write");
    let seg = scratch_segment(824, 1, 4, 1);
    let (db, report) = open(&seg, &path);
    assert_eq!(report.torn, Some((3, "put 3 thr".len())));
    assert_eq!(report.pairs, 2);
    assert_eq!(get(&seg, 3), None);
    assert_eq!(
        fs::read_to_string(&path).expect("read"),
        "put 1 one\nput 2 two\n"
    );
    // The next append starts on a line of its own.
    let kv = seg.key_value().expect("store");
    kv.put(who(&seg, 0), &soon(), 3, b"three", &mut db.journal())
        .expect("put");
    assert_eq!(
        fs::read_to_string(&path).expect("read"),
        "put 1 one\nput 2 two\nput 3 three\n"
    );
}

#[test]
fn a_corrupt_line_is_an_error_that_names_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = db_file(&dir);
    fs::write(&path, "put 1 one\nfrobnicate 2\nput 3 three\n").expect("write");
    let seg = scratch_segment(825, 1, 4, 1);
    let kv = seg.key_value().expect("store");
    // SAFETY: the test is the only user of the store.
    let err = unsafe { Database::open(&path, small_journal(), &kv) }
        .err()
        .expect("a corrupt line refuses the load");
    assert!(matches!(err, DbError::Corrupt { line: 2, .. }), "{err}");
}

#[test]
fn a_second_daemon_cannot_share_the_database() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = db_file(&dir);
    let first = scratch_segment(826, 1, 4, 1);
    let (_db, _) = open(&first, &path);
    let second = scratch_segment(827, 1, 4, 1);
    let kv = second.key_value().expect("store");
    // SAFETY: the test is the only user of the store.
    let err = unsafe { Database::open(&path, small_journal(), &kv) }
        .err()
        .expect("the file is locked");
    assert!(matches!(err, DbError::InUse { .. }), "{err}");
}

#[test]
fn compaction_keeps_the_journal_bounded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = db_file(&dir);
    let seg = scratch_segment(828, 1, 4, 1);
    let (db, _) = open(&seg, &path);
    let kv = seg.key_value().expect("store");
    let me = who(&seg, 0);
    kv.put(me, &soon(), 7, b"kept", &mut db.journal())
        .expect("put");
    let value = vec![b'v'; 100];
    let mut largest = 0;
    for _ in 0..5_000 {
        kv.put(me, &soon(), 1, &value, &mut db.journal())
            .expect("put");
        kv.del(me, &soon(), 1, &mut db.journal()).expect("del");
        largest = largest.max(fs::metadata(&path).expect("stat").len());
    }
    // 5,000 puts and dels would be about 570 KB uncompacted.
    assert!(largest < 80 * 1024, "the journal grew to {largest} bytes");
    assert!(!dir.path().join("database.txt.compacting").exists());
    drop(db);
    let again = scratch_segment(829, 1, 4, 1);
    let (_db, report) = open(&again, &path);
    assert_eq!(report.pairs, 1);
    assert_eq!(get(&again, 7).as_deref(), Some(&b"kept"[..]));
    assert_eq!(get(&again, 1), None);
}

/// A journal that dies in the middle of recording: once its line is written
/// whole (`whole_line`) or after half a line.
struct DieWhileRecording<'d> {
    inner: DatabaseJournal<'d>,
    path: PathBuf,
    whole_line: bool,
}

impl Journal for DieWhileRecording<'_> {
    fn stage(&mut self, change: &Change<'_>) {
        self.inner.stage(change);
    }

    fn commit(&mut self, table: &Table<'_>) -> std::io::Result<()> {
        if self.whole_line {
            self.inner.commit(table)?;
        } else {
            let mut file = fs::OpenOptions::new().append(true).open(&self.path)?;
            file.write_all(b"put 99 half a li")?;
        }
        // SAFETY: _exit ends the forked child at once, as SIGKILL would.
        unsafe { libc::_exit(9) }
    }

    fn discard(&mut self) {
        self.inner.discard();
    }
}

fn writer_dies_inside_a_put(
    port: u16,
    whole_line: bool,
) -> (Segment, Database, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = db_file(&dir);
    let seg = scratch_segment(port, 1, 4, 2);
    let (db, _) = open(&seg, &path);
    let kv = seg.key_value().expect("store");
    kv.put(who(&seg, 0), &soon(), 1, b"before", &mut db.journal())
        .expect("put");
    let mut child = forked(|| {
        let mut journal = DieWhileRecording {
            inner: db.journal(),
            path: path.clone(),
            whole_line,
        };
        let _ = kv.put(who(&seg, 1), &soon(), 99, b"half a line", &mut journal);
    });
    let (pid, status) = child.wait();
    assert_eq!(status, WaitStatus::Exited(pid, 9), "it died inside the put");
    (seg, db, path, dir)
}

#[test]
fn a_writer_that_dies_mid_line_is_rolled_back() {
    let (seg, db, path, _dir) = writer_dies_inside_a_put(830, false);
    let kv = seg.key_value().expect("store");
    let dead = who(&seg, 1);
    assert_eq!(kv.changing(), Some(dead));
    // SAFETY: the child is reaped and its lock entry not yet repaired.
    let report = unsafe { db.recover(&kv, dead) }
        .expect("recover")
        .expect("it died inside a change");
    assert!(report.torn.is_some());
    assert_eq!(seg.repair_participant(dead), 1, "it held the store's lock");
    assert_eq!(kv.changing(), None);
    assert_eq!(get(&seg, 99), None);
    assert_eq!(get(&seg, 1).as_deref(), Some(&b"before"[..]));
    let text = fs::read_to_string(&path).expect("read");
    assert!(text.ends_with("put 1 before\n"), "{text:?}");
}

#[test]
fn a_writer_that_dies_after_its_line_is_rolled_forward() {
    let (seg, db, path, _dir) = writer_dies_inside_a_put(831, true);
    let kv = seg.key_value().expect("store");
    let dead = who(&seg, 1);
    // SAFETY: the child is reaped and its lock entry not yet repaired.
    let report = unsafe { db.recover(&kv, dead) }
        .expect("recover")
        .expect("it died inside a change");
    assert_eq!(report.torn, None);
    seg.repair_participant(dead);
    assert_eq!(get(&seg, 99).as_deref(), Some(&b"half a line"[..]));
    let text = fs::read_to_string(&path).expect("read");
    assert!(text.ends_with("put 99 half a line\n"), "{text:?}");
    // A participant that was not inside a change needs nothing.
    // SAFETY: slot 0 is this test, not inside a change.
    assert_eq!(
        unsafe { db.recover(&kv, who(&seg, 0)) }.expect("recover"),
        None
    );
}

#[test]
fn the_database_stays_locked_after_a_compaction() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = db_file(&dir);
    let first = scratch_segment(832, 1, 4, 1);
    let (db, _) = open(&first, &path);
    let kv = first.key_value().expect("store");
    let me = who(&first, 0);
    let value = vec![b'v'; 200];
    // Enough churn for a compaction: the file is renamed over.
    for _ in 0..1_000 {
        kv.put(me, &soon(), 1, &value, &mut db.journal())
            .expect("put");
        kv.del(me, &soon(), 1, &mut db.journal()).expect("del");
    }
    assert!(fs::metadata(&path).expect("stat").len() < 80 * 1024);
    let second = scratch_segment(833, 1, 4, 1);
    let kv2 = second.key_value().expect("store");
    // SAFETY: the test is the only user of this store.
    let err = unsafe { Database::open(&path, small_journal(), &kv2) }
        .err()
        .expect("still locked after the rename");
    assert!(matches!(err, DbError::InUse { .. }), "{err}");
    // Stopped, it lets go: the lock file goes, and another daemon may open.
    db.remove_lock_file();
    drop(db);
    let (_db, report) = open(&second, &path);
    assert_eq!(report.pairs, 0);
}

#[test]
fn only_the_final_state_has_to_fit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = db_file(&dir);
    let seg = scratch_segment(834, 1, 4, 1);
    let capacity = seg.key_value().expect("store").table().capacity();
    // A history that once held more keys than fit, and a long value that
    // was replaced: only what remains counts.
    let mut text = String::new();
    for key in 0..=capacity {
        text.push_str(&format!("put {key} v\n"));
    }
    text.push_str("del 0\n");
    text.push_str(&format!("put 1 {}\nput 1 short\n", "x".repeat(5000)));
    fs::write(&path, &text).expect("write");
    let (_db, report) = open(&seg, &path);
    assert_eq!(report.pairs, capacity);
    assert_eq!(get(&seg, 1).as_deref(), Some(&b"short"[..]));
    assert_eq!(get(&seg, 0), None);
}

#[test]
fn a_failed_rebuild_leaves_the_table_and_the_change_marker() {
    let (seg, db, path, _dir) = writer_dies_inside_a_put(835, true);
    let kv = seg.key_value().expect("store");
    let dead = who(&seg, 1);
    // Someone edits the file badly while the daemon runs.
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(b"frobnicate\n"))
        .expect("append");
    // SAFETY: the child is reaped and its lock entry not yet repaired.
    let err = unsafe { db.recover(&kv, dead) }.expect_err("a corrupt line");
    assert!(matches!(err, DbError::Corrupt { .. }), "{err}");
    assert_eq!(kv.changing(), Some(dead), "still marked as inside a change");
    // The table is as the dead writer left it (a group changes the table
    // before its append, so its put is there): untouched by the failed
    // rebuild.
    assert_eq!(kv.table().len(), 2);
}

/// Counts what a group stages and commits; fails its commits when told.
#[derive(Default)]
struct CountingJournal {
    staged: Vec<String>,
    commits: Vec<Vec<String>>,
    fail: bool,
}

impl Journal for CountingJournal {
    fn stage(&mut self, change: &Change<'_>) {
        self.staged.push(match change {
            Change::Put { key, value } => format!("put {key} {}", String::from_utf8_lossy(value)),
            Change::Del { key } => format!("del {key}"),
        });
    }

    fn commit(&mut self, _table: &Table<'_>) -> std::io::Result<()> {
        let staged = std::mem::take(&mut self.staged);
        if self.fail {
            return Err(std::io::Error::other("disk full"));
        }
        self.commits.push(staged);
        Ok(())
    }

    fn discard(&mut self) {
        self.staged.clear();
    }
}

#[test]
fn a_group_is_one_commit_and_sees_its_own_changes() {
    let seg = scratch_segment(836, 1, 4, 1);
    let kv = seg.key_value().expect("store");
    let me = who(&seg, 0);
    let mut journal = CountingJournal::default();
    let mut undo = UndoLog::default();
    let mut group = kv
        .begin(me, &soon(), &mut journal, &mut undo)
        .expect("lock");
    group.put(1, b"one").expect("put 1");
    group
        .del(1)
        .expect("the group's own put is there to delete");
    group.put(2, b"two").expect("put 2");
    assert!(matches!(group.put(2, b"again"), Err(KvError::Exists)));
    assert!(matches!(group.del(3), Err(KvError::NotFound)));
    assert_eq!(group.len(), 3, "refusals are not changes");
    assert_eq!(kv.changing(), Some(me));
    group.commit().expect("commit");
    assert_eq!(kv.changing(), None);
    assert_eq!(
        journal.commits,
        vec![vec!["put 1 one", "del 1", "put 2 two"]],
        "one append for the group, in order"
    );
    assert_eq!(get(&seg, 1), None);
    assert_eq!(get(&seg, 2).as_deref(), Some(&b"two"[..]));
}

#[test]
fn a_group_that_cannot_be_written_is_undone() {
    let seg = scratch_segment(837, 1, 4, 1);
    let kv = seg.key_value().expect("store");
    let me = who(&seg, 0);
    kv.put(me, &soon(), 1, b"one", &mut InMemory).expect("put");
    kv.put(me, &soon(), 2, b"two", &mut InMemory).expect("put");
    let mut journal = CountingJournal {
        fail: true,
        ..CountingJournal::default()
    };
    let mut undo = UndoLog::default();
    let mut group = kv
        .begin(me, &soon(), &mut journal, &mut undo)
        .expect("lock");
    group.del(1).expect("del 1");
    group.put(1, b"new one").expect("put 1");
    group.put(3, b"three").expect("put 3");
    group.del(2).expect("del 2");
    let err = group.commit().expect_err("the journal fails");
    assert!(matches!(err, KvError::Journal(_)), "{err}");
    assert_eq!(kv.changing(), None);
    assert_eq!(get(&seg, 1).as_deref(), Some(&b"one"[..]));
    assert_eq!(get(&seg, 2).as_deref(), Some(&b"two"[..]));
    assert_eq!(get(&seg, 3), None);
    assert_eq!(kv.table().len(), 2);
    assert_eq!(kv.table().value_bytes(), 6);

    // Dropped without a commit, a group is undone too, and the lock is free.
    let mut group = kv
        .begin(me, &soon(), &mut journal, &mut undo)
        .expect("lock");
    group.del(2).expect("del 2");
    group.put(4, b"four").expect("put 4");
    drop(group);
    assert_eq!(get(&seg, 2).as_deref(), Some(&b"two"[..]));
    assert_eq!(get(&seg, 4), None);
    assert_eq!(kv.changing(), None);
    kv.put(me, &soon(), 5, b"five", &mut InMemory)
        .expect("the lock was released");
}
