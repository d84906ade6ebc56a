//! Many clients at once, many connections in a row, and workers dying: the
//! contents stay right, nothing is left `<defunct>`, the pool heals.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::thread;
use std::time::Duration;

use common::*;

const CLIENTS: u32 = 32;
const ROUNDS: u32 = 25;
const SHARED: u32 = 8;
/// Mailboxes 1..=32 are private (one per client), 33..=40 shared.
const FIRST_SHARED: u32 = CLIENTS + 1;

/// The record client `i` writes in round `r` to a shared mailbox: a header
/// naming the writer, then bytes derived from it, so any reader can tell a
/// complete record from a torn or mixed one. Even rounds are binary (`wb`),
/// odd rounds text (`w`).
fn record(i: u32, r: u32) -> Vec<u8> {
    let len = 200 + ((i * 131 + r * 71) % 3800) as usize;
    let mut body = pseudo_random_bytes(u64::from(i) << 32 | u64::from(r), len);
    if r % 2 == 1 {
        for b in &mut body {
            *b = b'a' + *b % 26;
        }
    }
    let mut rec = format!("rec {i} {r} {len}|").into_bytes();
    rec.extend_from_slice(&body);
    rec
}

/// Checks a shared mailbox's content: empty or one complete record.
fn check_record(content: &[u8]) -> Result<(), String> {
    if content.is_empty() {
        return Ok(());
    }
    let bar = content
        .iter()
        .position(|&b| b == b'|')
        .ok_or_else(|| format!("no record header in {:?}", shorten(content)))?;
    let header = std::str::from_utf8(&content[..bar]).map_err(|e| e.to_string())?;
    let parts: Vec<&str> = header.split(' ').collect();
    let [rec, i, r, _len] = parts[..] else {
        return Err(format!("bad record header {header:?}"));
    };
    if rec != "rec" {
        return Err(format!("bad record header {header:?}"));
    }
    let (i, r) = (
        i.parse().map_err(|_| header)?,
        r.parse().map_err(|_| header)?,
    );
    if content != record(i, r).as_slice() {
        return Err(format!(
            "torn or mixed record: header {header:?}, {} bytes",
            content.len()
        ));
    }
    Ok(())
}

/// What one client saw of the shared mailboxes: (mailbox, version) of each write.
type Writes = Vec<(u32, u64)>;

fn client_run(port: u16, i: u32) -> Writes {
    let mut c = Client::connect(port);
    c.set_read_timeout(Duration::from_secs(20));
    let private = i + 1;
    let mut last_seen: HashMap<u32, u64> = HashMap::new();
    let mut writes = Vec::new();
    for r in 0..ROUNDS {
        // Private mailbox: nobody else writes it, so it reads back exactly,
        // and its version counts this client's writes.
        let text = format!(
            "private {i} round {r} {}",
            "p".repeat(((i * 7 + r * 13) % 900) as usize)
        );
        assert_eq!(c.write_mailbox(private, &text), u64::from(r) + 1);
        assert_eq!(
            c.read_mailbox(private),
            (u64::from(r) + 1, text.into_bytes()),
            "client {i} round {r}"
        );

        // A shared mailbox written by several clients.
        let m = FIRST_SHARED + (i + r) % SHARED;
        let rec = record(i, r);
        let reply = if r % 2 == 0 {
            c.send(format!("wb {m} {}\n", rec.len()).as_bytes());
            c.send(&rec);
            c.read_line()
        } else {
            c.request(&format!(
                "w {m} {}",
                String::from_utf8(rec.clone()).unwrap()
            ))
        };
        let (len, mm, version) = parse_write_reply(&reply)
            .unwrap_or_else(|| panic!("client {i} round {r}: bad write reply {reply:?}"));
        assert_eq!((len, mm), (rec.len(), m), "{reply:?}");
        let last = last_seen.entry(m).or_insert(0);
        assert!(
            version > *last,
            "mailbox {m}: version {version} after {last}"
        );
        *last = version;
        writes.push((m, version));

        // Read another shared mailbox: a complete record, never a torn one,
        // and versions never go back.
        let m2 = FIRST_SHARED + (i * 3 + r) % SHARED;
        let (version, content) = c.read_mailbox(m2);
        if let Err(e) = check_record(&content) {
            panic!("client {i} round {r} reading mailbox {m2} (version {version}): {e}");
        }
        assert_eq!(
            content.is_empty(),
            version == 0,
            "mailbox {m2} version {version}"
        );
        let last = last_seen.entry(m2).or_insert(0);
        assert!(
            version >= *last,
            "mailbox {m2}: version {version} after {last}"
        );
        *last = version;
    }
    c.send(b"q\n");
    assert_eq!(c.read_to_eof(), b"Goodbye");
    writes
}

#[test]
fn thirty_two_concurrent_clients_on_distinct_and_shared_mailboxes() {
    // A worker per client, so that all 32 are served at the same time.
    let d = Daemon::start(CLIENTS + SHARED, 4, 4, &["--workers", "32"]);
    let port = d.port;
    let all_writes: Vec<Writes> = thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|i| s.spawn(move || client_run(port, i)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    // Every shared mailbox got exactly its writes, numbered 1..=n with no
    // version given twice (no lost or merged update).
    let mut versions: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for (m, v) in all_writes.into_iter().flatten() {
        versions.entry(m).or_default().push(v);
    }
    let per_mailbox = CLIENTS * ROUNDS / SHARED;
    let mut c = d.client();
    for m in FIRST_SHARED..FIRST_SHARED + SHARED {
        let mut vs = versions.remove(&m).unwrap_or_default();
        vs.sort_unstable();
        let expected: Vec<u64> = (1..=u64::from(per_mailbox)).collect();
        assert_eq!(vs, expected, "versions handed out for mailbox {m}");
        let (version, content) = c.read_mailbox(m);
        assert_eq!(version, u64::from(per_mailbox));
        check_record(&content).unwrap_or_else(|e| panic!("mailbox {m}: {e}"));
        assert!(!content.is_empty());
    }
    for i in 0..CLIENTS {
        let (version, content) = c.read_mailbox(i + 1);
        assert_eq!(version, u64::from(ROUNDS), "private mailbox {}", i + 1);
        let prefix = format!("private {i} round {} ", ROUNDS - 1);
        assert!(
            content.starts_with(prefix.as_bytes()),
            "mailbox {}: {:?}",
            i + 1,
            shorten(&content)
        );
    }
    drop(c);
    d.stop();
}

#[test]
fn more_clients_than_workers_are_all_served() {
    // 24 clients at once on 2 workers: they queue, and every one is served.
    let d = Daemon::start(24, 1, 1, &["--workers", "2"]);
    let port = d.port;
    thread::scope(|s| {
        for i in 1..=24u32 {
            s.spawn(move || {
                let mut c = Client::connect(port);
                c.set_read_timeout(Duration::from_secs(20));
                let text = format!("queued client {i}");
                assert_eq!(c.write_mailbox(i, &text), 1);
                assert_eq!(c.read_mailbox(i), (1, text.into_bytes()));
                c.send(b"q\n");
                assert_eq!(c.read_to_eof(), b"Goodbye");
            });
        }
    });
    d.stop();
}

#[test]
fn no_defunct_children_after_200_connections() {
    let d = Daemon::start(2, 1, 1, &["--workers", "4"]);
    for n in 0..200u32 {
        let mut c = d.client();
        match n % 4 {
            0 => {
                c.send(b"q\n");
                assert_eq!(c.read_to_eof(), b"Goodbye");
            }
            1 => {
                assert_eq!(
                    c.request("stat 1"),
                    format!(
                        "OK mailbox 1: {} bytes, version {}",
                        if n == 1 { 0 } else { 5 },
                        n / 4
                    )
                );
                c.write_mailbox(1, &format!("{:05}", n));
            }
            2 => {
                // Connect and leave without a word.
            }
            _ => {
                // A partial binary write, then an abortive close.
                set_linger_zero(&c.stream);
                c.send(b"wb 2 10\nabc");
            }
        }
    }
    // Still serving, the pool intact, and nobody left unreaped.
    let mut c = d.client();
    assert_eq!(c.read_mailbox(1), (50, b"00197".to_vec()));
    assert_eq!(c.request("stat 2"), "OK mailbox 2: 0 bytes, version 0");
    drop(c);
    assert!(
        wait_until(Duration::from_secs(5), || zombie_children_of(d.pid)
            .is_empty()),
        "<defunct> children of the supervisor: {:?}",
        zombie_children_of(d.pid)
    );
    assert!(
        wait_until(Duration::from_secs(5), || d.workers().len() == 4),
        "workers: {:?}",
        d.workers()
    );
    d.stop();
}

/// Polls until `old` is no longer a child of the supervisor (reaped, not
/// `<defunct>`) and the pool is back to `n` running workers without it.
fn wait_for_replacement(d: &Daemon, old: ProcId, n: usize) {
    let ok = wait_until(Duration::from_secs(10), || {
        let workers = d.workers();
        old.is_reaped() && workers.len() == n && !workers.contains(&old.pid)
    });
    assert!(
        ok,
        "worker {} killed: reaped={} zombie={} workers now {:?} (zombies {:?})",
        old.pid,
        old.is_reaped(),
        old.is_zombie(),
        d.workers(),
        zombie_children_of(d.pid)
    );
}

#[test]
fn every_killed_worker_is_replaced_and_reaped() {
    let d = Daemon::start(3, 1, 1, &["--workers", "3"]);
    assert!(wait_until(Duration::from_secs(5), || d.workers().len() == 3));
    let originals: Vec<ProcId> = d.workers().into_iter().filter_map(ProcId::of).collect();
    assert_eq!(originals.len(), 3);
    // Kill them one by one (so the one that waits in accept, holding
    // whatever accept lock there is, is among them), checking the service
    // after each.
    for (k, old) in originals.iter().enumerate() {
        old.signal(libc::SIGKILL);
        wait_for_replacement(&d, *old, 3);
        assert!(d.supervisor.is_alive());
        d.assert_logged(&format!(
            "(pid {}) was killed by SIGKILL; replacing it",
            old.pid
        ));
        for j in 0..6u32 {
            let mut c = d.client();
            let text = format!("after kill {k} connection {j}");
            let m = j % 3 + 1;
            c.write_mailbox(m, &text);
            assert_eq!(c.read_mailbox(m).1, text.into_bytes());
        }
    }
    assert!(zombie_children_of(d.pid).is_empty());
    d.stop();
}

#[test]
fn killing_the_worker_serving_a_client_loses_no_data() {
    let d = Daemon::start(2, 1, 1, &["--workers", "1"]);
    assert!(wait_until(Duration::from_secs(5), || d.workers().len() == 1));
    let mut a = d.client();
    a.write_mailbox(1, "written before the crash");
    let worker = ProcId::of(d.workers()[0]).unwrap();
    worker.signal(libc::SIGKILL);
    // The client's connection is gone.
    let mut buf = [0u8; 64];
    use std::io::Read;
    match a.stream.read(&mut buf) {
        Ok(n) => assert_eq!(n, 0, "got {:?}", shorten(&buf[..n])),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    wait_for_replacement(&d, worker, 1);
    let mut b = d.client();
    assert_eq!(b.read_mailbox(1), (1, b"written before the crash".to_vec()));
    assert_eq!(b.write_mailbox(1, "after"), 2);
    drop((a, b));
    d.stop();
}
