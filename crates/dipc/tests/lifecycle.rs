//! Starting and stopping: the success line, what the daemon creates, dipcrm in
//! every situation (normal, twice, no daemon, after SIGKILL), refusals of a
//! taken port, detaching, foreground mode.

mod common;

use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn start_reports_its_serving_line_and_dipcrm_removes_everything() {
    // Default options: the event model, one worker per CPU.
    let d = Daemon::start(4, 8, 2, &[]);
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(
        d.started.stdout,
        format!(
            "dipc: serving port {} (pid {}): 4 mailboxes of 8 KiB, 2 KiB packets, event pool of {cpus} workers; log {}; database {}\n",
            d.port,
            d.pid,
            d.log.display(),
            d.dir.path().join("database.txt").display()
        ),
        "\n{}",
        d.started.describe()
    );
    assert!(d.started.stderr.is_empty(), "{}", d.started.describe());

    // Detached: a running process that is not our child.
    assert!(d.supervisor.is_alive());
    assert_ne!(d.supervisor.parent(), Some(std::process::id() as i32));

    // Pid file, segment (mode 0600, big enough for the mailboxes), log.
    let pid_text = fs::read_to_string(&d.pid_file).expect("pid file");
    assert_eq!(pid_text.trim(), d.pid.to_string());
    assert_eq!(file_mode(&d.shm()), Some(0o600), "{}", d.shm().display());
    let size = fs::metadata(d.shm()).unwrap().len();
    assert!(size >= 4 * 8192, "segment of {size} bytes for 4 x 8 KiB");
    assert!(d.log.exists(), "log {} not created", d.log.display());

    // The pool: one running worker per CPU.
    assert!(
        wait_until(Duration::from_secs(5), || d.workers().len() == cpus),
        "expected {cpus} workers, found {:?}",
        d.workers()
    );

    let mut c = d.client();
    assert_stat_geometry(
        c.request("stat"),
        format!(
            "OK mailboxes=4 mailbox_bytes=8192 packet_bytes=2048 workers={cpus} port={} pid={}",
            d.port, d.pid
        ),
    );
    c.write_mailbox(2, "before stop");
    drop(c);
    d.stop();
}

#[test]
fn default_log_and_pid_file_paths() {
    let port = free_port();
    let dir = temp_dir();
    let log = format!("/tmp/dipc-{port}.log");
    let pid_file = format!("/tmp/dipc-{port}.pid");
    let _sweeper = PortSweeper {
        port,
        dir: dir.path().to_path_buf(),
    };
    let _remove = RemoveOnDrop(vec![log.clone().into(), pid_file.clone().into()]);

    let out = run(&dipc_bin(), &["2", "1", &port.to_string(), "1"], dir.path());
    assert!(out.status.success(), "{}", out.describe());
    let pid = parse_serving_line(&out.stdout, port)
        .unwrap_or_else(|| panic!("no serving line:\n{}", out.describe()));
    assert!(
        out.stdout.trim_end().ends_with(&format!(
            "; log {log}; database {}",
            dir.path().join("database.txt").display()
        )),
        "{}",
        out.describe()
    );
    assert_eq!(
        fs::read_to_string(&pid_file)
            .map(|s| s.trim().to_string())
            .ok(),
        Some(pid.to_string())
    );
    assert!(fs::metadata(&log).is_ok(), "{log} not created");
    let supervisor = ProcId::of(pid).expect("supervisor");
    let workers: Vec<ProcId> = live_children_of(pid)
        .into_iter()
        .filter_map(ProcId::of)
        .collect();

    let rm = run_dipcrm(port.into(), dir.path());
    assert!(rm.status.success(), "{}", rm.describe());
    assert!(!supervisor.is_alive());
    assert!(workers.iter().all(|w| !w.is_alive()));
    assert!(!shm_path(port.into()).exists());
    assert!(
        !std::path::Path::new(&pid_file).exists(),
        "{pid_file} left behind"
    );
}

#[test]
fn dipcrm_without_a_daemon_exits_1() {
    let dir = temp_dir();
    let port = free_port();
    let out = run_dipcrm(port.into(), dir.path());
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert_eq!(
        out.stderr,
        format!("dipcrm: no dipc daemon on port {port}\n"),
        "{}",
        out.describe()
    );
    assert!(!shm_path(port.into()).exists());
}

#[test]
fn dipcrm_twice_is_harmless() {
    let other = Daemon::start(2, 1, 1, &["--workers", "2"]);
    let mut oc = other.client();
    oc.write_mailbox(1, "other daemon");

    let d = Daemon::start(2, 1, 1, &["--workers", "2"]);
    let port = d.port;
    let dir = temp_dir();
    d.stop();
    let again = run_dipcrm(port.into(), dir.path());
    assert_eq!(again.code(), Some(1), "{}", again.describe());
    assert_eq!(
        again.stderr,
        format!("dipcrm: no dipc daemon on port {port}\n"),
        "{}",
        again.describe()
    );
    assert!(!shm_path(port.into()).exists());

    // The other daemon was not touched.
    assert!(other.supervisor.is_alive());
    assert!(other.shm().exists());
    assert_eq!(oc.read_mailbox(1), (1, b"other daemon".to_vec()));
    drop(oc);
    other.stop();
}

#[test]
fn dipcrm_after_sigkill_of_the_supervisor_cleans_up() {
    let d = Daemon::start(4, 8, 2, &["--workers", "2"]);
    d.client().write_mailbox(1, "doomed");
    let workers = d.workers();
    assert!(!workers.is_empty(), "no workers found");
    d.supervisor.signal(libc::SIGKILL);
    assert!(
        wait_until(Duration::from_secs(5), || !d.supervisor.is_alive()),
        "the supervisor survived SIGKILL"
    );
    // dipcrm succeeds and leaves no segment, pid file, worker or port.
    d.stop();
}

#[test]
fn dipcrm_after_sigkill_of_every_daemon_process_cleans_up() {
    let d = Daemon::start(4, 8, 2, &["--workers", "3"]);
    d.client().write_mailbox(1, "doomed");
    d.sigkill_everything();
    assert!(
        d.shm().exists(),
        "a SIGKILLed daemon cannot remove its segment"
    );
    d.stop();
}

#[test]
fn a_new_daemon_reclaims_the_segment_of_a_killed_one() {
    let mut dead = Daemon::start(4, 8, 2, &["--workers", "2"]);
    let port = dead.port;
    dead.client().write_mailbox(3, "old content");
    dead.sigkill_everything();
    assert!(
        dead.shm().exists(),
        "a SIGKILLed daemon cannot remove its segment"
    );
    assert!(
        dead.pid_file.exists(),
        "a SIGKILLed daemon leaves its pid file"
    );
    // From here the port belongs to the new daemon.
    dead.mark_stopped();

    // The new daemon has a pid file of its own elsewhere; it removes the
    // dead one's too, which still names the dead pid.
    let d = Daemon::start_on(port, 4, 8, 2, &["--workers", "2"]);
    assert_ne!(d.pid, dead.pid);
    let log = d.log_text();
    assert!(
        log.to_lowercase().contains("reclaim"),
        "the log should say the stale segment was reclaimed:\n{log}"
    );
    assert!(
        !dead.pid_file.exists(),
        "the dead daemon's pid file is left behind:\n{log}"
    );
    // A fresh segment: every mailbox empty at version 0.
    let mut c = d.client();
    assert_eq!(c.read_mailbox(3), (0, Vec::new()));
    assert_stat_geometry(
        c.request("stat"),
        format!(
            "OK mailboxes=4 mailbox_bytes=8192 packet_bytes=2048 workers=2 port={port} pid={}",
            d.pid
        ),
    );
    drop(c);
    d.stop();
}

#[test]
fn dipc_refuses_a_port_in_use() {
    let port = free_port();
    let listener = TcpListener::bind(("0.0.0.0", port)).expect("bind");
    let dir = temp_dir();
    let args = dipc_args(["4", "8", "2"], &port.to_string(), dir.path(), &[]);
    dipc_expect_refusal(&args, dir.path(), None);
    assert!(!shm_path(port.into()).exists(), "segment left behind");
    assert!(
        !dir.path().join("dipc.pid").exists(),
        "pid file left behind"
    );
    // The listener is untouched.
    let _c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    listener.set_nonblocking(false).unwrap();
    let (_s, _) = listener.accept().expect("our listener still accepts");
}

#[test]
fn dipc_refuses_the_port_of_a_live_daemon() {
    let d = Daemon::start(4, 8, 2, &["--workers", "2"]);
    let mut c = d.client();
    c.write_mailbox(1, "precious");
    let port = d.port.to_string();
    for geometry in [["4", "8", "2"], ["2", "4", "1"]] {
        let dir = temp_dir();
        let args = dipc_args(geometry, &port, dir.path(), &["--workers", "2"]);
        dipc_expect_refusal(&args, dir.path(), None);
        assert!(!dir.path().join("dipc.pid").exists(), "pid file written");
    }
    // The live daemon, its segment, its pid file and its data are intact.
    assert!(d.supervisor.is_alive());
    assert!(d.shm().exists());
    assert_eq!(
        fs::read_to_string(&d.pid_file).unwrap().trim(),
        d.pid.to_string()
    );
    assert_eq!(c.read_mailbox(1), (1, b"precious".to_vec()));
    let mut c2 = d.client();
    assert_stat_geometry(
        c2.request("stat"),
        format!(
            "OK mailboxes=4 mailbox_bytes=8192 packet_bytes=2048 workers=2 port={} pid={}",
            d.port, d.pid
        ),
    );
    drop((c, c2));
    d.stop();
}

/// Kills and reaps a child on drop.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads a pipe to EOF in a thread; the receiver gets the bytes at EOF.
fn drain<R: Read + Send + 'static>(mut r: R) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        let _ = tx.send(v);
    });
    rx
}

#[test]
fn dipc_returns_and_lets_go_of_its_stdout_and_stderr() {
    // With pipes (as in `dipc ... | cat` or a shell's $(...)), the daemon must
    // not keep them open, or the caller would wait for EOF forever.
    let port = free_port();
    let dir = temp_dir();
    let _sweeper = PortSweeper {
        port,
        dir: dir.path().to_path_buf(),
    };
    let args = dipc_args(
        ["2", "1", "1"],
        &port.to_string(),
        dir.path(),
        &["--workers", "2"],
    );
    let mut child = ChildGuard(
        Command::new(dipc_bin())
            .args(&args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn dipc"),
    );
    let out_rx = drain(child.0.stdout.take().unwrap());
    let err_rx = drain(child.0.stderr.take().unwrap());
    let deadline = Instant::now() + CMD_TIMEOUT;
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "dipc did not return");
        thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "dipc failed: {status}");
    let stdout = out_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("stdout still open 5 s after dipc returned: the daemon holds it");
    let stderr = err_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("stderr still open 5 s after dipc returned: the daemon holds it");
    let stdout = String::from_utf8_lossy(&stdout);
    assert!(stderr.is_empty(), "{}", String::from_utf8_lossy(&stderr));
    assert!(parse_serving_line(&stdout, port).is_some(), "{stdout}");
    let mut c = Client::connect(port);
    c.write_mailbox(1, "detached");
    drop(c);
    let rm = run_dipcrm(port.into(), dir.path());
    assert!(rm.status.success(), "{}", rm.describe());
    assert!(!shm_path(port.into()).exists());
}

#[test]
fn dipcrm_stops_a_daemon_with_clients_connected() {
    let mut d = Daemon::start(2, 1, 1, &["--workers", "3", "--grace", "1"]);
    // One idle client, one in the middle of a binary write.
    let mut idle = d.client();
    idle.write_mailbox(1, "idle");
    let mut busy = d.client();
    busy.write_mailbox(2, "busy");
    busy.send(b"wb 2 100\n0123456789");
    let started = Instant::now();
    let out = d.dipcrm();
    assert!(out.status.success(), "{}", out.describe());
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "dipcrm took {:?}",
        started.elapsed()
    );
    d.assert_gone();
    // Both connections were closed (EOF or reset), with no reply sent.
    for (name, c) in [("idle", &mut idle), ("busy", &mut busy)] {
        let mut buf = [0u8; 256];
        match c.stream.read(&mut buf) {
            Ok(n) => assert_eq!(n, 0, "{name} client got {:?}", shorten(&buf[..n])),
            Err(e) => assert!(
                matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
                ),
                "{name} client: {e}"
            ),
        }
    }
}

#[test]
fn foreground_mode_serves_and_stops_on_dipcrm() {
    let port = free_port();
    let dir = temp_dir();
    let pid_file = dir.path().join("dipc.pid");
    let _sweeper = PortSweeper {
        port,
        dir: dir.path().to_path_buf(),
    };
    // In the foreground the log goes to stderr; remove a default log if one
    // was written all the same.
    let _remove = RemoveOnDrop(vec![format!("/tmp/dipc-{port}.log").into()]);
    let stderr_path = dir.path().join("foreground.stderr");
    let mut child = ChildGuard(
        Command::new(dipc_bin())
            .args([
                "2",
                "1",
                &port.to_string(),
                "1",
                "--foreground",
                "--workers",
                "2",
                "--pid-file",
                &pid_file.to_string_lossy(),
            ])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(fs::File::create(dir.path().join("foreground.stdout")).unwrap())
            .stderr(fs::File::create(&stderr_path).unwrap())
            .spawn()
            .expect("spawn dipc --foreground"),
    );
    let up = wait_until(Duration::from_secs(10), || {
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!(
                "dipc --foreground exited with {status}: {}",
                fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(up, "dipc --foreground never accepted connections");
    // It stays attached: still our child, still running.
    assert!(child.0.try_wait().unwrap().is_none());
    let mut c = Client::connect(port);
    c.write_mailbox(2, "foreground");
    assert_eq!(c.read_mailbox(2), (1, b"foreground".to_vec()));
    drop(c);

    let rm = run_dipcrm(port.into(), dir.path());
    assert!(rm.status.success(), "{}", rm.describe());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "dipc --foreground still running after dipcrm"
        );
        thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "dipc --foreground ended with {status}");
    assert!(!shm_path(port.into()).exists());
    assert!(!pid_file.exists());
    assert!(processes_mentioning(&dir.path().to_string_lossy()).is_empty());
    // The log went to the terminal.
    let log = fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(
        !log.trim().is_empty(),
        "no log on stderr in foreground mode"
    );
}

#[test]
fn sighup_reopens_the_log_in_the_supervisor_and_every_worker() {
    let d = Daemon::start(2, 4, 2, &["--workers", "3"]);
    // A client in mid-session holds one worker through the rotation.
    let mut held = d.client();
    assert!(held.request("w 1 before rotation").starts_with("OK"));
    // In the daemon's temp dir, removed with it whatever happens.
    let rotated = d.log.with_extension("log.1");
    fs::rename(&d.log, &rotated).expect("rotate the log");
    d.supervisor.signal(libc::SIGHUP);
    // The supervisor and the three workers each say so in the new file.
    let reopened = |text: &str| text.matches("SIGHUP: log file").count();
    assert!(
        wait_until(Duration::from_secs(3), || reopened(&d.log_text()) >= 4),
        "not every process reopened the log:\n{}",
        d.log_text()
    );
    // New events go to the new file, from a new client and from the one
    // that was in mid-session; none to the rotated one.
    let before = fs::read_to_string(&rotated).expect("rotated log");
    let mut fresh = d.client();
    assert!(fresh.request("r 1").starts_with("OK"));
    drop(fresh);
    held.send_line("q");
    drop(held);
    assert!(
        wait_until(Duration::from_secs(3), || d
            .log_text()
            .matches(" said goodbye after ")
            .count()
            + d.log_text().matches(" left after ").count()
            >= 2),
        "the clients' ends are not in the new log:\n{}",
        d.log_text()
    );
    let after = fs::read_to_string(&rotated).expect("rotated log");
    assert_eq!(before, after, "something still writes to the rotated log");
}

#[test]
fn process_titles_say_each_process_role() {
    let d = Daemon::start(4, 8, 2, &["--model", "prefork", "--workers", "2"]);
    let mut c = d.client();
    assert!(c.request("stat 1").starts_with("OK"));
    // What `ps x` shows is /proc/<pid>/cmdline.
    let supervisor = cmdline(d.pid).unwrap_or_default();
    assert!(
        supervisor.starts_with(&format!(
            "dipc: supervisor, port {}, 4 mailboxes of 8 KiB, 2 KiB packets, prefork pool of 2 workers (",
            d.port
        )),
        "supervisor title: {supervisor:?}"
    );
    // The original command line stays visible, in parentheses.
    assert!(supervisor.contains(&d.marker()), "{supervisor:?}");
    let titles = || -> Vec<String> {
        d.workers()
            .into_iter()
            .filter_map(cmdline)
            .collect::<Vec<_>>()
    };
    let serving = format!("serving {}", c.stream.local_addr().expect("local address"));
    assert!(
        wait_until(Duration::from_secs(2), || {
            let t = titles();
            t.len() == 2
                && t.iter().any(|t| t.contains(&serving))
                && t.iter().any(|t| t.contains(": idle ("))
        }),
        "worker titles: {:?} (wanted one {serving:?} and one idle)",
        titles()
    );
    drop(c);
    assert!(
        wait_until(Duration::from_secs(2), || titles()
            .iter()
            .all(|t| t.contains(": idle ("))),
        "after the client left: {:?}",
        titles()
    );
    d.stop();
}

#[test]
fn event_workers_titles_count_their_clients() {
    let d = Daemon::start(4, 8, 2, &["--workers", "2"]);
    let titles = || -> Vec<String> { d.workers().into_iter().filter_map(cmdline).collect() };
    let mut clients: Vec<Client> = (0..3).map(|_| d.client()).collect();
    for c in &mut clients {
        assert!(c.request("stat 1").starts_with("OK"));
    }
    // Three clients over two workers: one serves two, the other one.
    let shown = |t: &[String], n: &str| t.iter().filter(|t| t.contains(n)).count();
    assert!(
        wait_until(Duration::from_secs(2), || {
            let t = titles();
            t.len() == 2
                && shown(&t, ": event loop, 2 clients (") == 1
                && shown(&t, ": event loop, 1 client (") == 1
        }),
        "worker titles: {:?}",
        titles()
    );
    drop(clients);
    assert!(
        wait_until(Duration::from_secs(2), || shown(
            &titles(),
            ": event loop, 0 clients ("
        ) == 2),
        "after the clients left: {:?}",
        titles()
    );
    d.stop();
}
