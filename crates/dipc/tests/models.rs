//! The lecture's server designs side by side (`--model prefork`, `event`,
//! `fork`, `thread`) and the dynamic prefork pool: every model serves the protocol
//! from the same segment, leaves no `<defunct>` process and comes back to its
//! idle size; the pool grows under load and shrinks after; SIGTERM lets a
//! request under way finish.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Threads of a process (1 for a single-threaded one).
fn threads_of(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The daemon's children and their threads, once they hold still.
fn idle_level(d: &Daemon) -> (usize, usize) {
    let level = || {
        let children = d.workers();
        let threads = children.iter().map(|&p| threads_of(p)).sum::<usize>();
        (children.len(), threads)
    };
    let mut last = level();
    // Workers start within moments; wait for two equal readings in a row.
    let steady = wait_until(Duration::from_secs(5), || {
        thread::sleep(Duration::from_millis(200));
        let now = level();
        std::mem::replace(&mut last, now) == now
    });
    assert!(steady, "children and threads never held still: {last:?}");
    last
}

fn no_defunct_process_after_500_connections(model: &str) {
    let d = Daemon::start(4, 1, 1, &["--model", model, "--max-workers", "8"]);
    let idle = idle_level(&d);
    let port = d.port;
    thread::scope(|s| {
        for m in 1..=4u32 {
            s.spawn(move || {
                let mut writes = 0u64;
                for n in 0..125u32 {
                    let mut c = Client::connect(port);
                    match n % 3 {
                        0 => {
                            let text = format!("client {m} connection {n}");
                            writes += 1;
                            assert_eq!(c.write_mailbox(m, &text), writes);
                            assert_eq!(c.read_mailbox(m), (writes, text.into_bytes()));
                            c.send(b"q\n");
                            assert_eq!(c.read_to_eof(), b"Goodbye");
                        }
                        1 => assert!(c.request(&format!("stat {m}")).starts_with("OK mailbox")),
                        // Connect and leave without a word.
                        _ => {}
                    }
                }
            });
        }
    });
    let mut c = d.client();
    let f = stat_fields(&c.request("stat"));
    assert_eq!(f["connections"], "501", "{model}: {f:?}");
    assert_eq!(f["versions"], "42,42,42,42", "{model}: {f:?}");
    drop(c);
    let settled = wait_until(Duration::from_secs(10), || {
        zombie_children_of(d.pid).is_empty() && idle_level(&d) == idle
    });
    assert!(
        settled,
        "{model}: children and threads {:?}, idle level {idle:?}, <defunct> {:?}",
        idle_level(&d),
        zombie_children_of(d.pid)
    );
    d.stop();
}

#[test]
fn prefork_leaves_no_defunct_process_after_500_connections() {
    no_defunct_process_after_500_connections("prefork");
}

#[test]
fn event_leaves_no_defunct_process_after_500_connections() {
    no_defunct_process_after_500_connections("event");
}

#[test]
fn fork_leaves_no_defunct_process_after_500_connections() {
    no_defunct_process_after_500_connections("fork");
}

#[test]
fn thread_leaves_no_defunct_process_after_500_connections() {
    no_defunct_process_after_500_connections("thread");
}

#[test]
fn pool_grows_under_64_clients_and_shrinks_after() {
    let d = Daemon::start(
        64,
        1,
        1,
        &[
            "--model",
            "prefork",
            "--start-workers",
            "2",
            "--min-spare",
            "1",
            "--max-spare",
            "4",
            "--max-workers",
            "64",
        ],
    );
    assert_eq!(idle_level(&d).0, 2);
    // 64 clients that each hold a worker: all are served only if the pool
    // grows to 64.
    let mut clients: Vec<Client> = (1..=64u32)
        .map(|m| {
            let mut c = d.client();
            c.set_read_timeout(Duration::from_secs(30));
            c.send(format!("w {m} client {m}\n").as_bytes());
            c
        })
        .collect();
    for c in &mut clients {
        assert!(c.read_line().starts_with("OK wrote"));
    }
    let f = stat_fields(&clients[0].request("stat"));
    assert_eq!(
        (f["workers"].as_str(), f["busy"].as_str()),
        ("64", "64"),
        "{f:?}"
    );
    assert_eq!(d.workers().len(), 64);
    d.assert_logged("fewer than --min-spare: forking");
    drop(clients);
    // Idle now: retired down to --max-spare. A retired worker is logged when
    // it is reaped, which may come after it stopped counting as live.
    let retired = |what: &str| d.log_text().matches(what).count();
    assert!(
        wait_until(Duration::from_secs(30), || d.workers().len() == 4
            && retired("retired: more idle workers") >= 60),
        "workers after the clients left: {}, retirements logged: {}",
        d.workers().len(),
        retired("retired: more idle workers")
    );
    assert!(zombie_children_of(d.pid).is_empty());
    assert_eq!(retired("more than --max-spare: retiring"), 60);
    assert_eq!(retired("retired: more idle workers"), 60);
    let mut c = d.client();
    let f = stat_fields(&c.request("stat"));
    assert_eq!(
        (f["workers"].as_str(), f["idle"].as_str()),
        ("4", "3"),
        "{f:?}"
    );
    drop(c);
    d.stop();
}

#[test]
fn stat_workers_shows_each_worker_and_its_client() {
    let d = Daemon::start(2, 1, 1, &["--model", "prefork", "--workers", "2"]);
    idle_level(&d);
    let mut c = d.client();
    c.write_mailbox(1, "x");
    let header = c.request("stat workers");
    let table = String::from_utf8(c.read_body(&header)).expect("text");
    let me = c.stream.local_addr().expect("local address");
    let rows: Vec<_> = table.lines().map(stat_fields).collect();
    assert_eq!(rows.len(), 2, "{table}");
    let mine = rows
        .iter()
        .find(|r| r["state"] == "busy")
        .unwrap_or_else(|| panic!("no busy worker: {table}"));
    assert_eq!(mine["peer"], me.to_string(), "{table}");
    assert_eq!(mine["requests"], "2", "the write and this stat: {table}");
    assert_eq!(mine["connections"], "1", "{table}");
    let other = rows
        .iter()
        .find(|r| r["state"] == "idle")
        .unwrap_or_else(|| panic!("no idle worker: {table}"));
    assert_eq!(other["peer"], "-");
    let mut pids: Vec<i32> = rows
        .iter()
        .map(|r| r["pid"].parse().expect("pid"))
        .collect();
    let mut workers = d.workers();
    pids.sort_unstable();
    workers.sort_unstable();
    assert_eq!(pids, workers);
    drop(c);
    d.stop();
}

/// SIGTERM (dipcrm) closes an idle connection at once and lets one in the
/// middle of a binary write send the rest and get its reply.
fn sigterm_lets_a_request_under_way_finish(model: &str) {
    let mut d = Daemon::start(2, 1, 1, &["--model", model, "--grace", "20"]);
    let mut idle = d.client();
    idle.write_mailbox(1, "idle");
    let mut busy = d.client();
    assert_eq!(busy.write_mailbox(2, "before"), 1);
    busy.send(b"wb 2 20\n0123456789");
    assert!(
        wait_until(Duration::from_secs(5), || other_clients(&d) == 2),
        "{model}: the write never reached a worker"
    );
    d.workers();
    d.mark_stopped();
    let (port, dir) = (d.port, d.dir.path().to_path_buf());
    let started = Instant::now();
    let dipcrm = thread::spawn(move || run_dipcrm(port.into(), &dir));
    d.assert_logged("SIGTERM or SIGINT: stopping");
    // Between requests: closed without waiting for the grace period.
    assert_eq!(idle.read_to_eof(), b"", "{model}");
    busy.send(b"abcdefghij");
    assert_eq!(
        busy.read_line(),
        "OK wrote 20 bytes to mailbox 2, version 2",
        "{model}"
    );
    assert_eq!(busy.read_to_eof(), b"", "{model}: closed after its reply");
    let out = dipcrm.join().expect("dipcrm thread");
    assert!(out.status.success(), "{model}: {}", out.describe());
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{model}: waited for the whole grace period"
    );
    d.assert_gone();
}

/// Open connections according to `stat`, not counting the one that asks.
fn other_clients(d: &Daemon) -> usize {
    let mut c = d.client();
    let open: usize = stat_fields(&c.request("stat"))["clients"]
        .parse()
        .expect("clients count");
    open - 1
}

#[test]
fn sigterm_lets_a_request_under_way_finish_in_every_model() {
    for model in MODELS {
        sigterm_lets_a_request_under_way_finish(model);
    }
}

#[test]
fn killed_children_are_logged_with_their_signal_and_the_service_goes_on() {
    // Thread model: the one server process dies; it is replaced.
    let d = Daemon::start(2, 1, 1, &["--model", "thread"]);
    let (children, _) = idle_level(&d);
    assert_eq!(children, 1);
    let server = ProcId::of(d.workers()[0]).expect("thread server");
    let mut c = d.client();
    c.write_mailbox(1, "before");
    server.signal(libc::SIGKILL);
    assert!(wait_until(Duration::from_secs(5), || {
        let w = d.workers();
        w.len() == 1 && w[0] != server.pid
    }));
    let mut c = d.client();
    assert_eq!(c.read_mailbox(1), (1, b"before".to_vec()));
    drop(c);
    d.assert_logged(&format!(
        "thread server (pid {}) was killed by SIGKILL; replacing it",
        server.pid
    ));
    d.stop();

    // Fork model: a connection's child dies; its client is cut off, nobody
    // else notices.
    let d = Daemon::start(2, 1, 1, &["--model", "fork"]);
    let mut doomed = d.client();
    doomed.write_mailbox(1, "x");
    let child = ProcId::of(d.workers()[0]).expect("connection child");
    child.signal(libc::SIGKILL);
    assert_eq!(doomed.read_to_eof(), b"");
    let mut c = d.client();
    assert_eq!(c.read_mailbox(1), (1, b"x".to_vec()));
    drop(c);
    assert!(wait_until(Duration::from_secs(5), || zombie_children_of(
        d.pid
    )
    .is_empty()));
    d.assert_logged(&format!(
        "connection child 0 (pid {}) was killed by SIGKILL; its client is disconnected",
        child.pid
    ));
    d.stop();
}
