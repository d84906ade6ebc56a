//! The key-value store end to end: the lab's session (line client and the
//! lab's C client, one recv() of at most 31 bytes per reply), every error
//! reply, many clients on different workers, database.txt across restarts
//! (torn last line, corrupt line, compaction, a second daemon, no store),
//! and acknowledged changes surviving SIGKILL of workers and of the
//! supervisor.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;

/// The lab's client reads each reply with one recv() of at most this many bytes.
const LAB_READ: usize = 31;

/// The spec's geometry: 4 mailboxes of 8 KiB, 2 KiB packets, so values of
/// at most 2048 bytes.
const GEOMETRY: [&str; 3] = ["4", "8", "2"];

fn db_of(d: &Daemon) -> PathBuf {
    d.dir.path().join("database.txt")
}

/// The daemon's lock beside its database: held while it runs, removed
/// when it stops.
fn lock_of(db: &Path) -> PathBuf {
    PathBuf::from(format!("{}.lock", db.display()))
}

fn read_text(path: &Path) -> String {
    String::from_utf8_lossy(
        &fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display())),
    )
    .into_owned()
}

/// A compaction minimum (KiB) that tests reach within a second of churn.
const COMPACT_MIN_KIB: &str = "64";

/// Starts dipc again with `d`'s command line in `d`'s directory (after
/// dipcrm, or after its supervisor died) and returns the new supervisor's
/// pid. d's guard covers the new daemon too: its command line names d's
/// directory, and it serves d's port.
fn restart(d: &Daemon) -> i32 {
    let out = run(&dipc_bin(), &d.args, d.dir.path());
    assert!(
        out.status.success(),
        "dipc did not start again with the same command:\n{}",
        out.describe()
    );
    parse_serving_line(&out.stdout, d.port)
        .unwrap_or_else(|| panic!("no serving line after the restart:\n{}", out.describe()))
}

/// Stops the daemon serving d's port with dipcrm, and checks it succeeded.
fn dipcrm_ok(d: &mut Daemon) {
    let out = d.dipcrm();
    assert!(
        out.status.success(),
        "dipcrm {} failed:\n{}",
        d.port,
        out.describe()
    );
}

/// Stops the daemon with dipcrm, starts it again with the same command (it
/// loads its database), and connects.
fn reload(d: &mut Daemon) -> Client {
    dipcrm_ok(d);
    restart(d);
    d.client()
}

/// Stops the daemon with dipcrm and checks that nothing of it is left: no
/// process, segment, pid file, nor the lock file beside `db`.
fn stop_leaving_nothing(d: &mut Daemon, db: &Path) {
    dipcrm_ok(d);
    assert!(
        !lock_of(db).exists(),
        "the stopped daemon left its lock file"
    );
    let left = leftovers_of(d);
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Sends every line in one write, then reads one reply line per line.
fn pipeline(c: &mut Client, lines: &[String]) -> Vec<String> {
    let mut bytes = Vec::new();
    for line in lines {
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
    }
    c.send(&bytes);
    lines.iter().map(|_| c.read_line()).collect()
}

/// The `keys=`, `puts=`, ... field of a `stat` reply, as a number.
fn stat_number(c: &mut Client, field: &str) -> u64 {
    let reply = c.request("stat");
    stat_fields(&reply)
        .get(field)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no numeric {field}= in the stat reply {reply:?}"))
}

/// Connects like the lab's C client: a plain socket with a read timeout.
fn lab_socket(port: u16) -> TcpStream {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect like the lab's client");
    s.set_read_timeout(Some(IO_TIMEOUT))
        .expect("set the read timeout");
    s.set_write_timeout(Some(IO_TIMEOUT))
        .expect("set the write timeout");
    s.set_nodelay(true).expect("set TCP_NODELAY");
    s
}

/// One recv() of at most 31 bytes, as the lab's client does.
fn lab_recv(s: &mut TcpStream, after: &str) -> Vec<u8> {
    let mut buf = [0u8; LAB_READ];
    let n = s
        .read(&mut buf)
        .unwrap_or_else(|e| panic!("the one read of the reply to {after:?}: {e}"));
    buf[..n].to_vec()
}

/// The lab's session: (request, the whole reply).
const SEED_SESSION: [(&str, &str); 6] = [
    ("put 1 hello world", "OK\n"),
    ("put 1 hello world", "ERR key exists\n"),
    ("get 1", "hello world\n"),
    ("get 2", "ERR no such key\n"),
    ("del 1", "OK\n"),
    ("del 1", "ERR no such key\n"),
];

#[test]
fn the_seed_session_verbatim() {
    let d = Daemon::start(4, 8, 2, &[]);

    // As a line client (CRLF lines).
    let mut c = d.client();
    for (request, reply) in SEED_SESSION {
        assert_eq!(
            format!("{}\n", c.request(request)),
            reply,
            "line client, request {request:?}"
        );
    }
    c.send_line("Bye");
    assert_eq!(
        c.read_to_eof(),
        b"Goodbye",
        "line client: Bye gets exactly Goodbye (no newline), then EOF"
    );

    // As the lab's C client: no newline (the pause completes the line), and
    // each reply whole in one read of at most 31 bytes. The first run left
    // the store as it found it, so the same replies are due.
    let mut s = lab_socket(d.port);
    for (request, reply) in SEED_SESSION.iter().chain(&[("Bye", "Goodbye")]) {
        s.write_all(request.as_bytes())
            .unwrap_or_else(|e| panic!("send {request:?}: {e}"));
        let got = lab_recv(&mut s, request);
        assert_eq!(
            String::from_utf8_lossy(&got),
            *reply,
            "C client, request {request:?} without a newline: the whole reply in one read of at most {LAB_READ} bytes"
        );
    }
    let mut rest = Vec::new();
    let end = s.read_to_end(&mut rest);
    assert!(
        matches!(end, Ok(0)),
        "after Goodbye the server closes the connection: got {end:?}, bytes {:?}",
        shorten(&rest)
    );
    d.stop();
}

#[test]
fn error_replies_fit_the_labs_31_byte_reads() {
    let d = Daemon::start(4, 8, 2, &["--keys", "3"]);
    let mut c = d.client();
    let long_value = "v".repeat(2049);
    let huge_value = "w".repeat(10_000);
    let cases: Vec<(String, &str)> = vec![
        ("get abc".into(), "ERR key is not an integer"),
        ("get 1.5".into(), "ERR key is not an integer"),
        ("del -".into(), "ERR key is not an integer"),
        ("put x1 value".into(), "ERR key is not an integer"),
        ("get 9223372036854775808".into(), "ERR key out of range"),
        ("put -9223372036854775809 v".into(), "ERR key out of range"),
        ("del 99999999999999999999999".into(), "ERR key out of range"),
        ("get".into(), "ERR get needs a key"),
        ("del".into(), "ERR del needs a key"),
        ("put".into(), "ERR put needs a key"),
        ("put 5".into(), "ERR put needs a value"),
        ("put 5 ".into(), "ERR put needs a value"),
        ("get 1 2".into(), "ERR get takes one key"),
        ("del 1 x".into(), "ERR del takes one key"),
        (format!("put 1 {long_value}"), "ERR value over 2048 bytes"),
        // Over the line limit too: still a value too long, one reply.
        (format!("put 1 {huge_value}"), "ERR value over 2048 bytes"),
        // get/del lines over the line limit: short too.
        (format!("get {}1", "0".repeat(3000)), "ERR line too long"),
        (format!("del 1 {huge_value}"), "ERR line too long"),
        ("delete 5".into(), "ERR unknown command 'delete'"),
        ("frobnicate 1".into(), "ERR unknown command 'frobnica'"),
        ("getter 1".into(), "ERR unknown command 'getter'"),
    ];
    let mut mismatches = Vec::new();
    for (request, reply) in &cases {
        let got = c.request(request);
        if got != *reply {
            mismatches.push(format!(
                "request {:?}: expected {reply:?}, got {got:?}",
                shorten(request.as_bytes())
            ));
        }
        if got.len() + 1 > LAB_READ {
            mismatches.push(format!(
                "request {:?}: the reply {got:?} and its newline are {} bytes, over {LAB_READ}",
                shorten(request.as_bytes()),
                got.len() + 1
            ));
        }
    }
    // None of them stored anything.
    assert_eq!(
        stat_number(&mut c, "keys"),
        0,
        "refused requests stored keys"
    );

    // A value of exactly the packet size is taken; the store takes 3 keys.
    let full_value = "f".repeat(2048);
    assert_eq!(c.request(&format!("put 1 {full_value}")), "OK");
    assert_eq!(c.request("get 1"), full_value, "a 2048-byte value");
    assert_eq!(c.request("put -2 two"), "OK");
    assert_eq!(c.request("put +3 three"), "OK");
    let full = c.request("put 4 four");
    assert_eq!(full, "ERR store full: 3 keys");
    assert!(full.len() < LAB_READ, "{full:?} is over {LAB_READ} bytes");
    assert_eq!(c.request("get 4"), "ERR no such key");
    // A key is a number: 3 and +3 and 003 are one key.
    assert_eq!(c.request("get 003"), "three");
    assert_eq!(c.request("put 3 again"), "ERR key exists");

    // The stream is still in step: each request gets its own reply.
    assert_eq!(c.request("del 3"), "OK");
    assert_eq!(c.request("get -2"), "two");
    assert_eq!(
        c.request("w 1 mailboxes still work"),
        "OK wrote 20 bytes to mailbox 1, version 1"
    );
    assert_eq!(stat_number(&mut c, "keys"), 2);
    drop(c);
    d.stop();
    assert!(mismatches.is_empty(), "\n{}", mismatches.join("\n"));
}

#[test]
fn sixteen_clients_see_each_others_keys() {
    const CLIENTS: i64 = 16;
    const PER_CLIENT: i64 = 500;
    let d = Daemon::start(
        4,
        8,
        2,
        &["--model", "prefork", "--workers", "4", "--keys", "8192"],
    );
    let value = |key: i64| format!("v{key}");
    // A prefork worker serves one client at a time, so each client closes
    // its connection before the barrier (16 clients holding connections
    // while they wait would leave 12 of them unserved in the backlog
    // forever) and opens another to read.
    let barrier = Barrier::new(CLIENTS as usize);
    thread::scope(|s| {
        for i in 0..CLIENTS {
            let (d, barrier) = (&d, &barrier);
            s.spawn(move || {
                // A failure before the barrier is raised after it: the
                // other clients must not wait for this one forever.
                let put_phase = panic::catch_unwind(AssertUnwindSafe(|| {
                    let mut c = d.client();
                    let puts: Vec<String> = (i * 1000..i * 1000 + PER_CLIENT)
                        .map(|k| format!("put {k} {}", value(k)))
                        .collect();
                    for (reply, put) in pipeline(&mut c, &puts).iter().zip(&puts) {
                        assert_eq!(reply, "OK", "client {i}: {put:?}");
                    }
                }));
                barrier.wait();
                if let Err(failure) = put_phase {
                    panic::resume_unwind(failure);
                }
                // Every other client's keys, 500 of them, spread over all 15.
                let theirs: Vec<i64> = (0..PER_CLIENT)
                    .map(|n| {
                        let owner = (i + 1 + n % (CLIENTS - 1)) % CLIENTS;
                        owner * 1000 + (n * 7 + i) % PER_CLIENT
                    })
                    .collect();
                let mut c = d.client();
                let gets: Vec<String> = theirs.iter().map(|k| format!("get {k}")).collect();
                for (reply, key) in pipeline(&mut c, &gets).iter().zip(&theirs) {
                    assert_eq!(*reply, value(*key), "client {i}: get {key}");
                }
            });
        }
    });
    let mut c = d.client();
    let stat = c.request("stat");
    let fields = stat_fields(&stat);
    let total = (CLIENTS * PER_CLIENT).to_string();
    assert_eq!(fields.get("keys"), Some(&total), "stat: {stat}");
    assert_eq!(fields.get("puts"), Some(&total), "stat: {stat}");
    assert_eq!(fields.get("gets"), Some(&total), "stat: {stat}");
    assert_eq!(fields.get("key_capacity").map(String::as_str), Some("8192"));
    drop(c);
    d.stop();
}

#[test]
fn pairs_survive_a_restart() {
    let mut d = Daemon::start(4, 8, 2, &["--fsync", "always"]);
    let pairs: [(&str, &str); 4] = [
        ("1", "hello world"),
        ("-42", "  spaces inside  and around "),
        ("9223372036854775807", "the largest key"),
        ("-9223372036854775808", "the smallest key"),
    ];
    let mut c = d.client();
    for (k, v) in pairs {
        assert_eq!(c.request(&format!("put {k} {v}")), "OK", "put {k}");
    }
    assert_eq!(c.request("put 7 short-lived"), "OK");
    assert_eq!(c.request("del 7"), "OK");
    drop(c);

    let db = db_of(&d);
    assert!(lock_of(&db).exists(), "no lock file beside the database");
    dipcrm_ok(&mut d);
    assert!(db.exists(), "dipcrm removed {}", db.display());
    assert!(!d.shm().exists(), "{} is still there", d.shm().display());
    assert!(
        !lock_of(&db).exists(),
        "the stopped daemon left its lock file"
    );
    let text = read_text(&db);
    assert!(
        text.starts_with('#') && text.ends_with("del 7\n"),
        "database.txt: a comment line first, the last change last:\n{text}"
    );

    let pid = restart(&d);
    assert_ne!(pid, d.pid, "a new supervisor");
    let mut c = d.client();
    for (k, v) in pairs {
        assert_eq!(
            c.request(&format!("get {k}")),
            v,
            "get {k} after the restart"
        );
    }
    assert_eq!(
        c.request("get 7"),
        "ERR no such key",
        "a deleted key came back after the restart"
    );
    assert_eq!(stat_number(&mut c, "keys"), pairs.len() as u64);
    // The reloaded store goes on as before.
    assert_eq!(c.request("put 1 again"), "ERR key exists");
    assert_eq!(c.request("put 7 back"), "OK");
    drop(c);
    stop_leaving_nothing(&mut d, &db);
    assert!(
        read_text(&db).ends_with("put 7 back\n"),
        "{}",
        read_text(&db)
    );
}

#[test]
fn a_torn_last_line_loads() {
    // Kept alive until d is gone (dropped after it).
    let db_dir = temp_dir();
    let db = db_dir.path().join("database.txt");
    let complete = "# dipc key-value store\nput 1 one\nput 2 two words\n";
    fs::write(&db, format!("{complete}put 3 tor")).expect("write database.txt");
    let db_arg = db.to_string_lossy().into_owned();
    let mut d = Daemon::start(4, 8, 2, &["--db", &db_arg]);
    let mut c = d.client();
    assert_eq!(c.request("get 1"), "one");
    assert_eq!(c.request("get 2"), "two words");
    assert_eq!(
        c.request("get 3"),
        "ERR no such key",
        "the torn line was loaded"
    );
    assert_eq!(stat_number(&mut c, "keys"), 2);
    d.assert_logged("torn");
    assert_eq!(
        read_text(&db),
        complete,
        "the torn line is cut off, the rest kept"
    );
    assert_eq!(c.request("put 4 four"), "OK");
    assert_eq!(
        read_text(&db),
        format!("{complete}put 4 four\n"),
        "the new put is a complete line of its own"
    );
    drop(c);
    assert!(
        !d.dir.path().join("database.txt").exists(),
        "--db was given, yet a database.txt appeared in the start directory"
    );
    let mut c = reload(&mut d);
    assert_eq!(c.request("get 4"), "four");
    assert_eq!(c.request("get 3"), "ERR no such key");
    assert_eq!(stat_number(&mut c, "keys"), 3);
    drop(c);
    stop_leaving_nothing(&mut d, &db);
}

#[test]
fn a_corrupt_database_is_refused_with_its_line() {
    let dir = temp_dir();
    let port = free_port();
    let _sweeper = PortSweeper {
        port,
        dir: dir.path().to_path_buf(),
    };
    let db = dir.path().join("database.txt");
    let content = "put 1 one\nset 2 two\nput 3 three\n";
    fs::write(&db, content).expect("write database.txt");
    let args = dipc_args(GEOMETRY, &port.to_string(), dir.path(), &[]);
    // Non-zero exit, one `dipc: error:` line, nothing on stdout, no process.
    let out = dipc_expect_refusal(&args, dir.path(), Some(port));
    assert!(
        out.stderr.contains("/database.txt:2: "),
        "the error names the file and its bad line 2:\n{}",
        out.describe()
    );
    assert!(
        !shm_path(port.into()).exists(),
        "{} left behind",
        shm_path(port.into()).display()
    );
    assert!(
        !dir.path().join("dipc.pid").exists(),
        "pid file left behind"
    );
    assert!(port_is_free(port), "port {port} still taken");
    assert_eq!(read_text(&db), content, "the refused database was changed");
}

/// A start refused because the database cannot be loaded leaves no lock
/// file behind (it had created and locked `database.txt.lock` already, and
/// dipcrm could not remove it: no segment names it).
#[test]
fn a_refused_start_leaves_no_lock_file() {
    let dir = temp_dir();
    let port = free_port();
    let _sweeper = PortSweeper {
        port,
        dir: dir.path().to_path_buf(),
    };
    let db = dir.path().join("database.txt");
    fs::write(&db, "put 1 one\nset 2 two\n").expect("write database.txt");
    let args = dipc_args(GEOMETRY, &port.to_string(), dir.path(), &[]);
    dipc_expect_refusal(&args, dir.path(), Some(port));
    assert!(
        !lock_of(&db).exists(),
        "the refused start left {}",
        lock_of(&db).display()
    );
}

#[test]
fn compaction_keeps_the_file_bounded() {
    const ROUNDS: usize = 5000;
    const PER_BATCH: usize = 250;
    // Compaction is checked after each group of pipelined changes (at most
    // 256 lines, here of 71 bytes): the file may pass the minimum by one.
    const BOUND: u64 = 48 * 1024 + 256 * 71;
    let mut d = Daemon::start(4, 8, 2, &["--db-compact-min", "48"]);
    let db = db_of(&d);
    let mut c = d.client();
    assert_eq!(c.request("put -1 kept across every compaction"), "OK");
    let churn_value = |round: usize| format!("{round:05}-{}", "x".repeat(58));
    let mut sizes = Vec::new();
    for batch in 0..ROUNDS / PER_BATCH {
        let mut lines = Vec::new();
        for round in batch * PER_BATCH..(batch + 1) * PER_BATCH {
            lines.push(format!("put 5 {}", churn_value(round)));
            lines.push("del 5".to_string());
        }
        for (reply, line) in pipeline(&mut c, &lines).iter().zip(&lines) {
            assert_eq!(reply, "OK", "batch {batch}: {line:?}");
        }
        let size = fs::metadata(&db).expect("database.txt").len();
        sizes.push(size);
        assert!(
            size <= BOUND,
            "database.txt is {size} bytes after {} put/del rounds (sizes so far {sizes:?})",
            (batch + 1) * PER_BATCH
        );
    }
    assert_eq!(c.request("put 5 final"), "OK");
    assert_eq!(c.request("get -1"), "kept across every compaction");
    assert_eq!(c.request("get 5"), "final");
    assert_eq!(stat_number(&mut c, "keys"), 2);
    drop(c);
    // Without compaction the file would hold 10,000 changes of ~70 bytes.
    d.assert_logged("compacted");
    assert!(
        sizes.windows(2).any(|w| w[1] < w[0]),
        "the file never shrank: {sizes:?}"
    );
    let compacting = db.with_file_name("database.txt.compacting");
    assert!(!compacting.exists(), "{} left", compacting.display());

    // The file, replayed here, holds exactly the two pairs.
    let text = read_text(&db);
    let mut replayed = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        if let Some(rest) = line.strip_prefix("put ") {
            let (k, v) = rest.split_once(' ').expect("put <key> <value>");
            replayed.insert(k.to_string(), v.to_string());
        } else if let Some(k) = line.strip_prefix("del ") {
            replayed.remove(k);
        } else {
            panic!("bad line {line:?} in database.txt:\n{text}");
        }
    }
    let expected: BTreeMap<String, String> = [
        ("-1".to_string(), "kept across every compaction".to_string()),
        ("5".to_string(), "final".to_string()),
    ]
    .into();
    assert_eq!(replayed, expected, "database.txt replayed");

    let mut c = reload(&mut d);
    assert_eq!(c.request("get -1"), "kept across every compaction");
    assert_eq!(c.request("get 5"), "final");
    assert_eq!(stat_number(&mut c, "keys"), 2);
    drop(c);
    let db = db_of(&d);
    stop_leaving_nothing(&mut d, &db);
}

/// Starts a second dipc, on a port and in a directory of its own, with
/// `--db db`: it must refuse, saying the database is in use, and leave
/// nothing behind.
fn assert_second_daemon_refused(db: &Path) {
    let dir2 = temp_dir();
    let port2 = free_port();
    let _sweeper = PortSweeper {
        port: port2,
        dir: dir2.path().to_path_buf(),
    };
    let db_arg = db.to_string_lossy().into_owned();
    let args = dipc_args(
        GEOMETRY,
        &port2.to_string(),
        dir2.path(),
        &["--db", &db_arg],
    );
    let out = dipc_expect_refusal(&args, dir2.path(), Some(port2));
    assert!(
        out.stderr.contains("is in use by another dipc daemon"),
        "{}",
        out.describe()
    );
    assert!(
        !shm_path(port2.into()).exists(),
        "the refused daemon left its segment"
    );
    assert!(port_is_free(port2), "port {port2} still taken");
}

#[test]
fn a_second_daemon_cannot_share_the_database() {
    let d = Daemon::start(4, 8, 2, &[]);
    let db = db_of(&d);
    let mut c = d.client();
    assert_eq!(c.request("put 1 first daemon's"), "OK");
    let before = read_text(&db);

    assert_second_daemon_refused(&db);
    assert_eq!(
        read_text(&db),
        before,
        "the refused daemon changed the first one's database"
    );
    assert!(
        lock_of(&db).exists(),
        "the refused daemon removed the running one's lock file"
    );

    // The first daemon and its store are untouched.
    assert_eq!(c.request("get 1"), "first daemon's");
    assert_eq!(c.request("put 2 second"), "OK");
    drop(c);
    assert!(
        read_text(&db).ends_with("put 2 second\n"),
        "{}",
        read_text(&db)
    );
    d.stop();
}

#[test]
fn no_store_with_keys_zero() {
    let d = Daemon::start(4, 8, 2, &["--keys", "0"]);
    let mut c = d.client();
    for request in ["get 1", "put 1 x", "del 1"] {
        assert_eq!(
            c.request(request),
            "ERR key-value store is off",
            "{request:?} with --keys 0"
        );
    }
    let stat = c.request("stat");
    let fields = stat_fields(&stat);
    assert_eq!(fields.get("keys").map(String::as_str), Some("0"), "{stat}");
    assert_eq!(
        fields.get("key_capacity").map(String::as_str),
        Some("0"),
        "{stat}"
    );
    assert_eq!(
        c.request("w 2 mailboxes work"),
        "OK wrote 14 bytes to mailbox 2, version 1"
    );
    drop(c);
    let db = db_of(&d);
    assert!(
        !db.exists(),
        "--keys 0 created {}:\n{}",
        db.display(),
        read_text(&db)
    );
    assert!(
        !lock_of(&db).exists(),
        "--keys 0 created {}",
        lock_of(&db).display()
    );
    assert!(
        !d.started.stdout.contains("database"),
        "the serving line names a database: {}",
        d.started.stdout
    );
    d.stop();
}

/// A compaction renames a new file over database.txt; the daemon's lock
/// must not go with the old file. (It used to be a flock on database.txt
/// itself, which after a compaction only the compacting worker held: once
/// that worker died, a second daemon could start on the same database.)
#[test]
fn the_database_stays_locked_after_a_compaction_and_its_workers_death() {
    let d = Daemon::start(
        4,
        8,
        2,
        &[
            "--workers",
            "1",
            "--fsync",
            "always",
            "--db-compact-min",
            COMPACT_MIN_KIB,
        ],
    );
    let mut c = d.client();
    let lines: Vec<String> = (0..1500)
        .flat_map(|round| [format!("put 5 {round:060}"), "del 5".to_string()])
        .collect();
    for (reply, line) in pipeline(&mut c, &lines).iter().zip(&lines) {
        assert_eq!(reply, "OK", "{line:?}");
    }
    drop(c);
    d.assert_logged("compacted");
    let compacting = d.workers();
    assert_eq!(compacting.len(), 1, "workers: {compacting:?}");
    let worker = ProcId::of(compacting[0]).expect("the worker");
    worker.signal(libc::SIGKILL);
    assert!(
        wait_until(Duration::from_secs(5), || !worker.is_alive()
            && d.workers().len() == 1),
        "the worker was not replaced: {:?}",
        d.workers()
    );

    assert_second_daemon_refused(&db_of(&d));
    d.stop();
}

// ---------------------------------------------------------------------------
// Storms: random put/del/get on owned keys while processes are SIGKILLed

/// Keys per client, and clients.
const KEYS_PER_CLIENT: i64 = 50;
const STORM_CLIENTS: i64 = 4;
/// Makes the storm's values about 100 bytes.
const PADDING: &str =
    "padding-padding-padding-padding-padding-padding-padding-padding-padding-padding";
/// When a storm client gives up on a reply: far beyond any healthy wait, so
/// that running into it means a wedged store.
const STORM_TIMEOUT: Duration = Duration::from_secs(10);

/// What a client knows of one of its keys (None: absent).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Known {
    /// Every change was acknowledged: the key holds exactly this.
    Is(Option<String>),
    /// A change from the first state to the second got no reply: either.
    Either(Option<String>, Option<String>),
}

impl Known {
    fn allows(&self, got: &Option<String>) -> bool {
        match self {
            Known::Is(v) => v == got,
            Known::Either(a, b) => a == got || b == got,
        }
    }
}

/// The reply of `get` as a state.
fn as_state(reply: &str) -> Option<Option<String>> {
    match reply {
        "ERR no such key" => Some(None),
        r if r.starts_with("ERR") => None,
        r => Some(Some(r.to_string())),
    }
}

fn client_keys(client: i64) -> impl Iterator<Item = i64> {
    // Negative keys too: clients 0 and 1 own negative ranges.
    let first = client * 1000 - 1500;
    first..first + KEYS_PER_CLIENT
}

#[derive(Default)]
struct Storm {
    seed: u64,
    /// The workers may be told to stop (their supervisor died): a refusal
    /// `ERR server stopping` is then a proper reply, and changes nothing.
    stopping: bool,
    refused_stopping: AtomicU64,
    stop: AtomicBool,
    acked: AtomicU64,
    unanswered: AtomicU64,
    resolved: AtomicU64,
    kills: AtomicU64,
    failures: Mutex<Vec<String>>,
}

impl Storm {
    fn fail(&self, what: String) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() < 20 {
            failures.push(what);
        }
    }

    fn failures(&self) -> Vec<String> {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn report(&self) -> String {
        let n = |c: &AtomicU64| c.load(SeqCst);
        format!(
            "seed={} acked={} unanswered={} resolved_by_get={} kills={} refused_stopping={}",
            self.seed,
            n(&self.acked),
            n(&self.unanswered),
            n(&self.resolved),
            n(&self.kills),
            n(&self.refused_stopping)
        )
    }
}

/// One client: random changes on its own keys, each chosen to succeed given
/// what the client knows (put if absent, del if present), now and then a
/// get that must match; a key whose change got no reply is resolved by a
/// get. Connections are replaced every few requests (a prefork worker
/// serves one connection at a time). Returns what it knows of its keys.
fn storm_client(storm: &Storm, port: u16, client: i64) -> BTreeMap<i64, Known> {
    let keys: Vec<i64> = client_keys(client).collect();
    let mut known: BTreeMap<i64, Known> = keys.iter().map(|&k| (k, Known::Is(None))).collect();
    let mut frozen: Vec<i64> = Vec::new();
    let mut rng = Rng::new(storm.seed, client as u64 + 1);
    let mut conn: Option<TryConn> = None;
    let mut left = 0;
    let mut seq = 0u64;
    while !storm.stop.load(SeqCst) {
        let key = keys[rng.below(keys.len() as u64) as usize];
        if frozen.contains(&key) {
            continue;
        }
        seq += 1;
        let state = known[&key].clone();
        // Long enough that the journal is compacted several times a storm.
        let value = format!("c{client}-k{key}-n{seq}-{PADDING}");
        // (request, the state it leads to when acknowledged)
        let (request, next) = match &state {
            Known::Is(None) => (format!("put {key} {value}"), Some(Some(value))),
            Known::Is(Some(_)) if rng.below(4) == 0 => (format!("get {key}"), None),
            Known::Is(Some(_)) => (format!("del {key}"), Some(None)),
            Known::Either(..) => (format!("get {key}"), None),
        };
        if left == 0 {
            conn = None;
            left = 1 + rng.below(16);
        }
        left -= 1;
        let mut c = match conn.take() {
            Some(c) => c,
            None => match TryConn::connect(port, STORM_TIMEOUT) {
                Ok(c) => c,
                // Nothing was sent: nothing changed.
                Err(_) => {
                    thread::sleep(Duration::from_millis(2));
                    continue;
                }
            },
        };
        let reply = c.request(&request);
        match (reply, next) {
            (Ok(reply), _) if storm.stopping && reply == "ERR server stopping" => {
                // Refused before it took the lock: the key is as it was.
                storm.refused_stopping.fetch_add(1, SeqCst);
            }
            (Ok(reply), Some(next)) => {
                if reply == "OK" {
                    storm.acked.fetch_add(1, SeqCst);
                    known.insert(key, Known::Is(next));
                    conn = Some(c);
                } else {
                    storm.fail(format!(
                        "client {client}: {request:?} with the key {state:?}: got {reply:?}"
                    ));
                    frozen.push(key);
                    known.insert(key, Known::Either(state_of(&state), next));
                }
            }
            (Ok(reply), None) => match as_state(&reply) {
                Some(got) if state.allows(&got) => {
                    if matches!(state, Known::Either(..)) {
                        storm.resolved.fetch_add(1, SeqCst);
                    }
                    known.insert(key, Known::Is(got));
                    conn = Some(c);
                }
                _ => {
                    storm.fail(format!(
                        "client {client}: {request:?} with the key {state:?}: got {reply:?}"
                    ));
                    frozen.push(key);
                }
            },
            (Err(NoReply::Broken), next) => {
                // Its worker died: the change happened or not, and cannot
                // happen later.
                storm.unanswered.fetch_add(1, SeqCst);
                if let Some(next) = next {
                    known.insert(key, Known::Either(state_of(&state), next));
                }
                thread::sleep(Duration::from_millis(2));
            }
            (Err(NoReply::TimedOut), next) => {
                // The request may still run at any time: never touched again.
                storm.fail(format!(
                    "client {client}: no reply to {request:?} within {STORM_TIMEOUT:?}"
                ));
                frozen.push(key);
                if let Some(next) = next {
                    known.insert(key, Known::Either(state_of(&state), next));
                }
            }
        }
    }
    known
}

/// The state a client was sure of before a change (a change is only sent
/// from a certain state).
fn state_of(known: &Known) -> Option<String> {
    match known {
        Known::Is(v) => v.clone(),
        Known::Either(a, _) => a.clone(),
    }
}

/// Gets every client key from the daemon on `port` and checks it against
/// what the clients know; returns what it found. Also checks that the
/// store holds no other key.
fn check_store(
    port: u16,
    known: &BTreeMap<i64, Known>,
    when: &str,
    report: &str,
) -> BTreeMap<i64, Option<String>> {
    let mut c = Client::connect(port);
    let keys: Vec<i64> = known.keys().copied().collect();
    let gets: Vec<String> = keys.iter().map(|k| format!("get {k}")).collect();
    let mut found = BTreeMap::new();
    let mut wrong = Vec::new();
    for (reply, key) in pipeline(&mut c, &gets).iter().zip(&keys) {
        let Some(got) = as_state(reply) else {
            wrong.push(format!("get {key}: {reply:?}"));
            continue;
        };
        if !known[key].allows(&got) {
            wrong.push(format!(
                "key {key}: the clients know {:?}, the store has {got:?}",
                known[key]
            ));
        }
        found.insert(*key, got);
    }
    let present = found.values().filter(|v| v.is_some()).count() as u64;
    let stat_keys = stat_number(&mut c, "keys");
    if stat_keys != present {
        wrong.push(format!(
            "stat says keys={stat_keys}, but {present} of the clients' keys are present"
        ));
    }
    assert!(
        wrong.is_empty(),
        "{when}: {} wrong ({report}):\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    found
}

/// After a storm: the live store is checked, then dipcrm, the same command
/// again, and the reloaded store must hold exactly what the live one held.
fn check_live_then_after_restart(d: &mut Daemon, known: &BTreeMap<i64, Known>, storm: &Storm) {
    let report = storm.report();
    let failures = storm.failures();
    assert!(
        failures.is_empty(),
        "during the storm ({report}):\n{}",
        failures.join("\n")
    );
    let live = check_store(d.port, known, "the live daemon after the storm", &report);
    dipcrm_ok(d);
    restart(d);
    let reloaded = check_store(d.port, known, "after dipcrm and a restart", &report);
    let differ: Vec<String> = live
        .iter()
        .filter(|(k, v)| reloaded.get(k) != Some(v))
        .map(|(k, v)| format!("key {k}: live {v:?}, reloaded {:?}", reloaded[k]))
        .collect();
    assert!(
        differ.is_empty(),
        "the reloaded store differs from the live one, which must equal the file ({report}):\n{}",
        differ.join("\n")
    );
    let db = db_of(d);
    stop_leaving_nothing(d, &db);
}

fn storm_seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |t| t.as_nanos() as u64)
}

/// Runs the storm clients on `d` for `secs` while a killer thread SIGKILLs
/// a random worker every 50..150 ms (half the time one on the CPU, likely
/// inside a request); returns what the clients know.
fn worker_kill_storm(d: &Daemon, storm: &Storm, duration: Duration) -> BTreeMap<i64, Known> {
    thread::scope(|s| {
        let clients: Vec<_> = (0..STORM_CLIENTS)
            .map(|client| s.spawn(move || storm_client(storm, d.port, client)))
            .collect();
        s.spawn(move || {
            let mut rng = Rng::new(storm.seed, 99);
            while !storm.stop.load(SeqCst) {
                thread::sleep(Duration::from_millis(50 + rng.below(101)));
                if sigkill_a_worker(d, &d.workers(), &['R', 'D'], &mut rng) {
                    storm.kills.fetch_add(1, SeqCst);
                }
            }
        });
        thread::sleep(duration);
        storm.stop.store(true, SeqCst);
        let mut known = BTreeMap::new();
        for c in clients {
            known.extend(c.join().expect("a storm client panicked"));
        }
        known
    })
}

fn sigkill_of_workers(model: &str, fsync: &str) {
    let mut d = Daemon::start(
        4,
        8,
        2,
        &[
            "--model",
            model,
            "--workers",
            "3",
            "--fsync",
            fsync,
            "--db-compact-min",
            COMPACT_MIN_KIB,
        ],
    );
    assert!(
        wait_until(Duration::from_secs(5), || d.workers().len() == 3),
        "workers: {:?}",
        d.workers()
    );
    let storm = Storm {
        seed: storm_seed(),
        ..Storm::default()
    };
    let known = worker_kill_storm(&d, &storm, Duration::from_secs(2));
    let report = storm.report();
    println!("{model} storm: {report}");
    assert!(
        storm.kills.load(SeqCst) > 0,
        "no worker was killed: {report}"
    );
    assert!(
        storm.acked.load(SeqCst) >= 100,
        "too few acknowledged changes: {report}"
    );
    d.assert_logged("killed by SIGKILL");
    let log = d.log_text();
    let rebuilt = log.matches("in the middle of a key-value change").count();
    let compacted = log.matches("compacted to").count();
    println!(
        "{model} storm: the store was rebuilt after {rebuilt} of the kills; {compacted} compactions"
    );
    check_live_then_after_restart(&mut d, &known, &storm);
}

#[test]
fn acknowledged_changes_survive_sigkill_of_workers() {
    sigkill_of_workers("prefork", "always");
}

#[test]
fn acknowledged_changes_survive_sigkill_of_event_workers() {
    sigkill_of_workers("event", "always");
}

#[test]
fn acknowledged_changes_survive_sigkill_of_the_supervisor() {
    let mut d = Daemon::start(4, 8, 2, &["--workers", "3"]);
    assert!(
        wait_until(Duration::from_secs(5), || d.workers().len() == 3),
        "workers: {:?}",
        d.workers()
    );
    let storm = Storm {
        seed: storm_seed(),
        stopping: true,
        ..Storm::default()
    };
    let (known, loaded, workers_gone) = thread::scope(|s| {
        let storm = &storm;
        let clients: Vec<_> = (0..STORM_CLIENTS)
            .map(|client| s.spawn(move || storm_client(storm, d.port, client)))
            .collect();
        let loaded = wait_until(Duration::from_secs(10), || storm.acked.load(SeqCst) >= 300);
        let workers: Vec<ProcId> = d.workers().into_iter().filter_map(ProcId::of).collect();
        d.supervisor.signal(libc::SIGKILL);
        // A zombie counts as dead: whoever reaps orphans may be late.
        let started = Instant::now();
        let gone = wait_until(Duration::from_secs(5), || {
            workers.iter().all(|w| !w.is_alive())
        });
        let gone = (gone, started.elapsed(), workers);
        storm.stop.store(true, SeqCst);
        let mut known = BTreeMap::new();
        for c in clients {
            known.extend(c.join().expect("a storm client panicked"));
        }
        (known, loaded, gone)
    });
    let report = storm.report();
    println!("supervisor kill storm: {report}");
    assert!(loaded, "fewer than 300 changes before the kill: {report}");
    let (gone, after, workers) = workers_gone;
    assert!(
        gone,
        "workers still running 5 s after the supervisor's SIGKILL: {:?}",
        workers.iter().filter(|w| w.is_alive()).collect::<Vec<_>>()
    );
    assert!(
        wait_until(Duration::from_secs(1), || !d.supervisor.is_alive()),
        "the supervisor survived SIGKILL"
    );
    println!("its workers were gone {after:?} after the supervisor's kill");
    // The same command again reclaims the dead daemon's segment and loads
    // the file; then the store must hold every acknowledged change.
    assert!(d.shm().exists(), "the dead daemon's segment is expected");
    restart(&d);
    let failures = storm.failures();
    assert!(
        failures.is_empty(),
        "during the storm ({report}):\n{}",
        failures.join("\n")
    );
    check_store(
        d.port,
        &known,
        "after the supervisor's SIGKILL and a restart",
        &report,
    );
    // And once more through a clean stop and start: the file says the same.
    check_live_then_after_restart(&mut d, &known, &storm);
}

/// database.txt removed by hand while dipc runs: the supervisor notices
/// within a second, and the next change writes the file anew, whole.
#[test]
fn a_database_removed_by_hand_is_written_whole_again() {
    let mut d = Daemon::start(4, 8, 2, &["--workers", "2"]);
    let db = db_of(&d);
    let mut c = d.client();
    assert_eq!(c.request("put 1 before the removal"), "OK");
    assert_eq!(c.request("put 2 removed later"), "OK");
    fs::remove_file(&db).expect("remove database.txt");
    assert!(
        wait_until(Duration::from_secs(5), || d
            .log_text()
            .contains("was removed while the daemon ran")),
        "the supervisor did not notice:\n{}",
        d.log_text()
    );
    assert_eq!(c.request("del 2"), "OK");
    assert_eq!(c.request("put 3 after it"), "OK");
    drop(c);
    let text = read_text(&db);
    let records: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        records,
        ["put 1 before the removal", "put 3 after it"],
        "database.txt:\n{text}"
    );
    let mut c = reload(&mut d);
    assert_eq!(c.request("get 1"), "before the removal");
    assert_eq!(c.request("get 2"), "ERR no such key");
    assert_eq!(c.request("get 3"), "after it");
    drop(c);
    let db = db_of(&d);
    stop_leaving_nothing(&mut d, &db);
}
