//! Shared helpers of the end-to-end tests: running the real binaries with a
//! time limit, a [`Daemon`] guard that starts dipc on a free port and always
//! cleans up after it, a line-oriented [`Client`] whose every read has a
//! timeout, and /proc inspection.
//!
//! Nothing here mocks anything: real daemon, real sockets, real /dev/shm.

#![allow(dead_code)]

use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// Every server model, for the tests that run in each.
pub const MODELS: [&str; 4] = ["event", "prefork", "fork", "thread"];

/// Longest wait for any one socket read or write.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest run of dipc or dipcrm (dipcrm may wait out a grace period).
pub const CMD_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Binaries and paths

pub fn dipc_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_dipc"))
}

/// dipcrm is built next to dipc (the Makefile builds the whole workspace).
pub fn dipcrm_bin() -> PathBuf {
    let path = dipc_bin().with_file_name("dipcrm");
    assert!(
        path.exists(),
        "{} is missing: build the whole workspace first (cargo build --workspace)",
        path.display()
    );
    path
}

pub fn seed_client_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/seed_client.py")
}

/// The daemon's segment for a port (a u32 so out-of-range ports can be named).
pub fn shm_path(port: u32) -> PathBuf {
    PathBuf::from(format!("/dev/shm/dipc.{port}"))
}

// ---------------------------------------------------------------------------
// Running commands with a time limit

/// What a finished command did.
#[derive(Debug)]
pub struct RunOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub command: String,
}

impl RunOutput {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn describe(&self) -> String {
        format!(
            "`{}` -> {}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.command, self.status, self.stdout, self.stderr
        )
    }
}

static RUN_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Runs a program with stdout and stderr sent to files in `dir` (files, not
/// pipes: a daemon that kept a pipe open would otherwise hang the test), and
/// kills it when it outlives `timeout`.
pub fn try_run<S: AsRef<str>>(
    program: &Path,
    args: &[S],
    dir: &Path,
    timeout: Duration,
) -> Result<RunOutput, String> {
    try_run_with_stdin(program, args, dir, timeout, None)
}

/// [`try_run`] with stdin read from a file.
pub fn try_run_with_stdin<S: AsRef<str>>(
    program: &Path,
    args: &[S],
    dir: &Path,
    timeout: Duration,
    stdin: Option<&Path>,
) -> Result<RunOutput, String> {
    let n = RUN_COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = program
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let out_path = dir.join(format!("run{n}-{name}.stdout"));
    let err_path = dir.join(format!("run{n}-{name}.stderr"));
    let command = std::iter::once(name.clone())
        .chain(args.iter().map(|a| a.as_ref().to_string()))
        .collect::<Vec<_>>()
        .join(" ");
    let out_file = fs::File::create(&out_path).map_err(|e| format!("{command}: {e}"))?;
    let err_file = fs::File::create(&err_path).map_err(|e| format!("{command}: {e}"))?;
    let mut child = Command::new(program)
        .args(args.iter().map(|a| a.as_ref()))
        // dipc's database.txt (and anything else relative) lands in `dir`.
        .current_dir(dir)
        .stdin(match stdin {
            Some(path) => Stdio::from(fs::File::open(path).map_err(|e| format!("{command}: {e}"))?),
            None => Stdio::null(),
        })
        .stdout(out_file)
        .stderr(err_file)
        .spawn()
        .map_err(|e| format!("cannot start {command}: {e}"))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "`{command}` still running after {timeout:?}: killed"
                ));
            }
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("waiting for {command}: {e}")),
        }
    };
    let read = |p: &Path| String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned();
    Ok(RunOutput {
        status,
        stdout: read(&out_path),
        stderr: read(&err_path),
        command,
    })
}

pub fn run<S: AsRef<str>>(program: &Path, args: &[S], dir: &Path) -> RunOutput {
    try_run(program, args, dir, CMD_TIMEOUT).unwrap_or_else(|e| panic!("{e}"))
}

pub fn run_dipcrm(port: u32, dir: &Path) -> RunOutput {
    run(&dipcrm_bin(), &[port.to_string()], dir)
}

// ---------------------------------------------------------------------------
// /proc

/// One line of /proc/<pid>/stat, the fields we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: i32,
    pub state: char,
    pub ppid: i32,
    /// CPU used so far, user plus system, in clock ticks.
    pub cpu_ticks: u64,
    pub starttime: u64,
}

pub fn proc_stat(pid: i32) -> Option<ProcStat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain anything: split
    // after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(ProcStat {
        pid,
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        // utime and stime: stat(5)'s fields 14 and 15, counted from 1 with
        // the pid and the name as 1 and 2.
        cpu_ticks: fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?,
        starttime: fields.get(19)?.parse().ok()?,
    })
}

pub fn all_processes() -> Vec<ProcStat> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(proc_stat)
        .collect()
}

/// Every child of `pid`, zombies included.
pub fn children_of(pid: i32) -> Vec<ProcStat> {
    all_processes()
        .into_iter()
        .filter(|p| p.ppid == pid)
        .collect()
}

pub fn is_dead_state(state: char) -> bool {
    matches!(state, 'Z' | 'X' | 'x')
}

/// Children of `pid` that are running (not zombies).
pub fn live_children_of(pid: i32) -> Vec<i32> {
    children_of(pid)
        .into_iter()
        .filter(|p| !is_dead_state(p.state))
        .map(|p| p.pid)
        .collect()
}

/// `<defunct>` children of `pid`.
pub fn zombie_children_of(pid: i32) -> Vec<i32> {
    children_of(pid)
        .into_iter()
        .filter(|p| is_dead_state(p.state))
        .map(|p| p.pid)
        .collect()
}

/// Lines of /proc/sysvipc/shm whose creator is one of `pids`.
pub fn sysv_shm_created_by(pids: &[i32]) -> Vec<String> {
    let text = fs::read_to_string("/proc/sysvipc/shm").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter(|l| {
            l.split_whitespace()
                .nth(4)
                .and_then(|c| c.parse::<i32>().ok())
                .is_some_and(|c| pids.contains(&c))
        })
        .map(str::to_string)
        .collect()
}

pub fn cmdline(pid: i32) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        String::from_utf8_lossy(&raw)
            .trim_end_matches('\0')
            .replace('\0', " "),
    )
}

/// Running processes whose command line contains `needle` (a unique temp dir
/// path: only processes these tests started can match).
pub fn processes_mentioning(needle: &str) -> Vec<ProcId> {
    let me = std::process::id() as i32;
    all_processes()
        .into_iter()
        .filter(|p| p.pid != me && !is_dead_state(p.state))
        .filter(|p| cmdline(p.pid).is_some_and(|c| c.contains(needle)))
        .map(|p| ProcId {
            pid: p.pid,
            starttime: p.starttime,
        })
        .collect()
}

/// A process, told from a later one that reuses its pid by its start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcId {
    pub pid: i32,
    pub starttime: u64,
}

impl ProcId {
    pub fn of(pid: i32) -> Option<ProcId> {
        proc_stat(pid).map(|s| ProcId {
            pid,
            starttime: s.starttime,
        })
    }

    fn stat(&self) -> Option<ProcStat> {
        proc_stat(self.pid).filter(|s| s.starttime == self.starttime)
    }

    /// Still running (a zombie counts as dead: nobody may reap it here).
    pub fn is_alive(&self) -> bool {
        self.stat().is_some_and(|s| !is_dead_state(s.state))
    }

    /// Exited but not reaped by its parent.
    pub fn is_zombie(&self) -> bool {
        self.stat().is_some_and(|s| is_dead_state(s.state))
    }

    /// Gone from the process table altogether (reaped).
    pub fn is_reaped(&self) -> bool {
        self.stat().is_none()
    }

    pub fn parent(&self) -> Option<i32> {
        self.stat().map(|s| s.ppid)
    }

    pub fn signal(&self, signal: i32) {
        if self.is_alive() {
            // SAFETY: kill(2) with a pid we checked is the process we mean.
            unsafe {
                libc::kill(self.pid, signal);
            }
        }
    }
}

/// The slot of a worker that serves no client, in the segment of a daemon
/// with more than one worker (within 2 s of asking, so that the workers
/// have reached their accept loop).
pub fn idle_worker_slot(segment: &shmlib::Segment) -> usize {
    let mut idle = None;
    assert!(
        wait_until(Duration::from_secs(2), || {
            idle = segment
                .worker_slots()
                .iter()
                .position(|w| w.state() == shmlib::WorkerState::Idle);
            idle.is_some()
        }),
        "no idle worker"
    );
    idle.expect("idle slot")
}

/// Waits until `cond` holds, for at most `limit`.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------
// Ports

static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());

/// A port nobody listens on and that this test process has not handed out
/// before, with no segment of an earlier run.
pub fn free_port() -> u16 {
    loop {
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
            listener.local_addr().expect("local_addr").port()
        };
        let mut handed = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if handed.contains(&port) || shm_path(port.into()).exists() {
            continue;
        }
        if TcpListener::bind(("0.0.0.0", port)).is_err() {
            continue;
        }
        handed.push(port);
        return port;
    }
}

/// True when a listener could bind the port on every address.
pub fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("0.0.0.0", port)).is_ok()
}

// ---------------------------------------------------------------------------
// Cleaning up after a daemon

/// Last-resort cleanup for a port: dipcrm, then SIGKILL of every process
/// recorded or whose command line names `marker`, then the segment.
/// Nothing here may panic: it runs in Drop, also while a test unwinds.
pub fn sweep(port: u16, marker: &str, recorded: &[ProcId], dir: &Path, run_dipcrm_first: bool) {
    let dipcrm = dipc_bin().with_file_name("dipcrm");
    if run_dipcrm_first && dipcrm.exists() {
        let _ = try_run(&dipcrm, &[port.to_string()], dir, CMD_TIMEOUT);
    }
    for _ in 0..3 {
        let mut targets: Vec<ProcId> = recorded.to_vec();
        for p in recorded {
            if p.is_alive() {
                targets.extend(live_children_of(p.pid).into_iter().filter_map(ProcId::of));
            }
        }
        targets.extend(processes_mentioning(marker));
        let alive: Vec<ProcId> = targets.into_iter().filter(|p| p.is_alive()).collect();
        if alive.is_empty() {
            break;
        }
        for p in &alive {
            p.signal(libc::SIGKILL);
        }
        wait_until(Duration::from_secs(2), || {
            alive.iter().all(|p| !p.is_alive())
        });
    }
    let _ = fs::remove_file(shm_path(port.into()));
}

/// SIGKILLs the running processes whose command line names `marker`.
pub fn sweep_marker(marker: &str) {
    for _ in 0..3 {
        let alive = processes_mentioning(marker);
        if alive.is_empty() {
            return;
        }
        for p in &alive {
            p.signal(libc::SIGKILL);
        }
        wait_until(Duration::from_secs(2), || {
            alive.iter().all(|p| !p.is_alive())
        });
    }
}

/// Cleans a port up on drop (see [`sweep`]): for tests that start dipc
/// without a [`Daemon`].
pub struct PortSweeper {
    pub port: u16,
    pub dir: PathBuf,
}

impl Drop for PortSweeper {
    fn drop(&mut self) {
        let marker = self.dir.to_string_lossy().into_owned();
        sweep(self.port, &marker, &[], &self.dir, true);
    }
}

/// Runs dipc with `args` (which should name `dir` in --log/--pid-file) and
/// checks that it refused: non-zero exit, nothing on stdout, exactly one line
/// on stderr starting `dipc: error:`, and no process left. When it started
/// something after all, that is killed (and with `cleanup_port`, the port
/// swept) before the test fails.
pub fn dipc_expect_refusal<S: AsRef<str>>(
    args: &[S],
    dir: &Path,
    cleanup_port: Option<u16>,
) -> RunOutput {
    let out = try_run(&dipc_bin(), args, dir, CMD_TIMEOUT).unwrap_or_else(|e| {
        sweep_marker(&dir.to_string_lossy());
        panic!("{e}")
    });
    let marker = dir.to_string_lossy().into_owned();
    if out.status.success() {
        match cleanup_port {
            Some(port) => sweep(port, &marker, &[], dir, true),
            None => sweep_marker(&marker),
        }
        panic!("dipc should have refused:\n{}", out.describe());
    }
    assert!(
        out.stderr.starts_with("dipc: error:")
            && out.stderr.ends_with('\n')
            && out.stderr.matches('\n').count() == 1,
        "stderr must be exactly one line `dipc: error: <reason>`:\n{}",
        out.describe()
    );
    assert!(
        out.stdout.is_empty(),
        "nothing expected on stdout:\n{}",
        out.describe()
    );
    let left = processes_mentioning(&marker);
    if !left.is_empty() {
        sweep_marker(&marker);
        panic!(
            "refused, but processes were left running: {:?}\n{}",
            left.iter()
                .map(|p| (p.pid, cmdline(p.pid)))
                .collect::<Vec<_>>(),
            out.describe()
        );
    }
    out
}

/// dipc's arguments for one start: geometry, port, then --log and
/// --pid-file in `dir`, then `extra`.
pub fn dipc_args(geometry: [&str; 3], port: &str, dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        geometry[0].into(),
        geometry[1].into(),
        port.into(),
        geometry[2].into(),
    ];
    args.extend([
        "--log".to_string(),
        dir.join("dipc.log").to_string_lossy().into_owned(),
        "--pid-file".to_string(),
        dir.join("dipc.pid").to_string_lossy().into_owned(),
    ]);
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Removes files on drop (files a test makes outside its temp dir).
pub struct RemoveOnDrop(pub Vec<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        for f in &self.0 {
            let _ = fs::remove_file(f);
        }
    }
}

pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("dipc-test-")
        .tempdir()
        .expect("temp dir")
}

// ---------------------------------------------------------------------------
// The daemon guard

/// A dipc daemon started for one test. Dropping it stops it with dipcrm and
/// then, whatever happened, kills what is left of it and removes its segment.
pub struct Daemon {
    pub port: u16,
    /// The supervisor's pid, from the success line.
    pub pid: i32,
    pub supervisor: ProcId,
    pub mailboxes: u32,
    pub mailbox_kib: u32,
    pub packet_kib: u32,
    pub log: PathBuf,
    pub pid_file: PathBuf,
    /// dipc's output when it started the daemon.
    pub started: RunOutput,
    /// The arguments dipc was started with (port included).
    pub args: Vec<String>,
    seen: Mutex<Vec<ProcId>>,
    stopped: bool,
    // Last: removed after Drop::drop has cleaned up.
    pub dir: tempfile::TempDir,
}

impl Daemon {
    /// `dipc <mailboxes> <mailbox_kib> <port> <packet_kib> <extra> --log .. --pid-file ..`
    /// on a free port, retried on another port when that one turns out taken.
    pub fn start(mailboxes: u32, mailbox_kib: u32, packet_kib: u32, extra: &[&str]) -> Daemon {
        Daemon::launch(None, mailboxes, mailbox_kib, packet_kib, extra)
    }

    /// Like [`Daemon::start`] on a given port, with no retry.
    pub fn start_on(
        port: u16,
        mailboxes: u32,
        mailbox_kib: u32,
        packet_kib: u32,
        extra: &[&str],
    ) -> Daemon {
        Daemon::launch(Some(port), mailboxes, mailbox_kib, packet_kib, extra)
    }

    fn launch(
        fixed_port: Option<u16>,
        mailboxes: u32,
        mailbox_kib: u32,
        packet_kib: u32,
        extra: &[&str],
    ) -> Daemon {
        let geometry = [mailboxes, mailbox_kib, packet_kib].map(|n| n.to_string());
        let args = |port: u16| {
            let mut args = vec![geometry[0].clone(), geometry[1].clone(), port.to_string()];
            args.push(geometry[2].clone());
            args.extend(extra.iter().map(|s| s.to_string()));
            args
        };
        let mut daemon = Daemon::launch_program(&dipc_bin(), fixed_port, args);
        (daemon.mailboxes, daemon.mailbox_kib, daemon.packet_kib) =
            (mailboxes, mailbox_kib, packet_kib);
        daemon
    }

    /// `echo-server <port> <extra> --log .. --pid-file ..` on a free port:
    /// the seed's upper-case echo server on dipc's engine, in the same guard.
    pub fn start_echo_server(extra: &[&str]) -> Daemon {
        let bin = dipc_bin().with_file_name("echo-server");
        Daemon::launch_program(&bin, None, |port| {
            let mut args = vec![port.to_string()];
            args.extend(extra.iter().map(|s| s.to_string()));
            args
        })
    }

    /// Starts `program` with `args(port)`, then its log and pid file
    /// options, and takes the pid from its serving line.
    fn launch_program(
        program: &Path,
        fixed_port: Option<u16>,
        args: impl Fn(u16) -> Vec<String>,
    ) -> Daemon {
        // Stopping it needs dipcrm: missing, nothing is started.
        dipcrm_bin();
        let dir = temp_dir();
        let log = dir.path().join("dipc.log");
        let pid_file = dir.path().join("dipc.pid");
        let marker = dir.path().to_string_lossy().into_owned();
        let mut failures = Vec::new();
        for _attempt in 0..5 {
            let port = fixed_port.unwrap_or_else(free_port);
            let mut args = args(port);
            args.extend([
                "--log".to_string(),
                log.to_string_lossy().into_owned(),
                "--pid-file".to_string(),
                pid_file.to_string_lossy().into_owned(),
            ]);
            let out = match try_run(program, &args, dir.path(), CMD_TIMEOUT) {
                Ok(out) => out,
                Err(e) => {
                    sweep(port, &marker, &[], dir.path(), true);
                    panic!("{e}");
                }
            };
            if !out.status.success() {
                let lower = out.stderr.to_lowercase();
                if fixed_port.is_none() && (lower.contains("in use") || lower.contains("already")) {
                    failures.push(out.describe());
                    continue;
                }
                // Only this attempt's processes: the port may be someone else's.
                sweep_marker(&marker);
                panic!("{} did not start:\n{}", program.display(), out.describe());
            }
            let pid = match parse_serving_line(&out.stdout, port) {
                Some(pid) => pid,
                None => {
                    sweep(port, &marker, &[], dir.path(), true);
                    panic!(
                        "no `...: serving port {port} (pid N): ...` line:\n{}",
                        out.describe()
                    );
                }
            };
            let Some(supervisor) = ProcId::of(pid) else {
                sweep(port, &marker, &[], dir.path(), true);
                panic!(
                    "dipc reported pid {pid}, which does not exist:\n{}",
                    out.describe()
                );
            };
            let daemon = Daemon {
                port,
                pid,
                supervisor,
                mailboxes: 1,
                mailbox_kib: 1,
                packet_kib: 1,
                log,
                pid_file,
                started: out,
                args,
                seen: Mutex::new(vec![supervisor]),
                stopped: false,
                dir,
            };
            daemon.workers();
            return daemon;
        }
        panic!(
            "{} kept finding its port in use:\n{}",
            program.display(),
            failures.join("\n")
        );
    }

    pub fn shm(&self) -> PathBuf {
        shm_path(self.port.into())
    }

    pub fn client(&self) -> Client {
        Client::connect(self.port)
    }

    /// The supervisor's running children (its workers), remembered for cleanup.
    pub fn workers(&self) -> Vec<i32> {
        let pids = live_children_of(self.pid);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        for pid in &pids {
            if let Some(p) = ProcId::of(*pid) {
                if !seen.contains(&p) {
                    seen.push(p);
                }
            }
        }
        pids
    }

    /// SIGKILLs the supervisor and every worker at once, as a crash or an
    /// operator would, and waits until none is running.
    pub fn sigkill_everything(&self) {
        self.workers();
        let all = self.seen();
        for p in &all {
            p.signal(libc::SIGKILL);
        }
        assert!(
            wait_until(Duration::from_secs(5), || all.iter().all(|p| !p.is_alive())),
            "daemon processes survived SIGKILL"
        );
    }

    /// Every process of this daemon seen so far (supervisor first).
    pub fn seen(&self) -> Vec<ProcId> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A unique string in the command line of the daemon's processes.
    pub fn marker(&self) -> String {
        self.dir.path().to_string_lossy().into_owned()
    }

    /// Runs dipcrm on this daemon's port; the caller checks the outcome.
    /// After this the guard's Drop only sweeps.
    pub fn dipcrm(&mut self) -> RunOutput {
        self.workers();
        self.stopped = true;
        run_dipcrm(self.port.into(), self.dir.path())
    }

    /// From now on, Drop does not run dipcrm on the port (another daemon may
    /// serve it); it still kills this daemon's own processes.
    pub fn mark_stopped(&mut self) {
        self.stopped = true;
    }

    /// Stops the daemon with dipcrm and checks that it left nothing behind:
    /// exit 0, something printed, no process, no segment, no pid file, port free.
    pub fn stop(mut self) -> RunOutput {
        let out = self.dipcrm();
        assert!(
            out.status.success(),
            "dipcrm {} failed:\n{}",
            self.port,
            out.describe()
        );
        assert!(
            !out.stdout.trim().is_empty(),
            "dipcrm printed nothing about what it did:\n{}",
            out.describe()
        );
        self.assert_gone();
        out
    }

    /// Nothing of the daemon is left: processes, segment, pid file, port.
    pub fn assert_gone(&self) {
        for p in self.seen() {
            assert!(
                !p.is_alive(),
                "process {} of the daemon on port {} is still running ({:?})",
                p.pid,
                self.port,
                cmdline(p.pid)
            );
        }
        let left = processes_mentioning(&self.marker());
        assert!(
            left.is_empty(),
            "daemon processes left running: {:?}",
            left.iter()
                .map(|p| (p.pid, cmdline(p.pid)))
                .collect::<Vec<_>>()
        );
        assert!(
            !self.shm().exists(),
            "{} is still there",
            self.shm().display()
        );
        let port = self.port.to_string();
        let left: Vec<String> = fs::read_dir("/dev/shm")
            .map(|dir| {
                dir.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.contains("dipc") && n.contains(&port))
                    .collect()
            })
            .unwrap_or_default();
        assert!(left.is_empty(), "left in /dev/shm: {left:?}");
        let pids: Vec<i32> = self.seen().iter().map(|p| p.pid).collect();
        let sysv = sysv_shm_created_by(&pids);
        assert!(sysv.is_empty(), "System V segments left: {sysv:?}");
        assert!(
            !self.pid_file.exists(),
            "pid file {} is still there",
            self.pid_file.display()
        );
        assert!(
            port_is_free(self.port),
            "port {} is still taken after the daemon stopped",
            self.port
        );
    }

    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// Waits (up to 5 s: the daemon logs after it acts) until the log holds
    /// `text`; fails showing the log otherwise.
    pub fn assert_logged(&self, text: &str) {
        assert!(
            wait_until(Duration::from_secs(5), || self.log_text().contains(text)),
            "no {text:?} in the log:\n{}",
            self.log_text()
        );
    }

    /// The data limit of the protocol: the smaller of packet and mailbox size.
    pub fn data_limit(&self) -> usize {
        1024 * self.packet_kib.min(self.mailbox_kib) as usize
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let seen = self.seen();
        let marker = self.marker();
        sweep(self.port, &marker, &seen, self.dir.path(), !self.stopped);
    }
}

/// Parses `<program>: serving port <port> (pid <pid>): ...` from the
/// daemon's stdout (dipc or echo-server).
pub fn parse_serving_line(stdout: &str, port: u16) -> Option<i32> {
    let wanted = format!(": serving port {port} (pid ");
    let line = stdout.lines().find(|l| l.contains(&wanted))?;
    let rest = &line[line.find(&wanted)? + wanted.len()..];
    let end = rest.find(')')?;
    rest[..end].parse().ok()
}

pub fn file_mode(path: &Path) -> Option<u32> {
    fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o7777)
}

// ---------------------------------------------------------------------------
// The client

/// A TCP client of the daemon. Every read times out (IO_TIMEOUT by default),
/// so a missing reply fails the test instead of hanging it.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
    pub port: u16,
}

impl Client {
    pub fn connect(port: u16) -> Client {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect to port {port}: {e}"));
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
            port,
        }
    }

    pub fn set_read_timeout(&self, timeout: Duration) {
        self.stream.set_read_timeout(Some(timeout)).unwrap();
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("send {:?}: {e}", shorten(bytes)));
    }

    /// Sends a telnet-style line (CRLF).
    pub fn send_line(&mut self, line: &str) {
        self.send(format!("{line}\r\n").as_bytes());
    }

    /// Reads more bytes into the buffer; false at EOF.
    fn fill(&mut self, waiting_for: &str) -> bool {
        let mut chunk = [0u8; 65536];
        match self.stream.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                panic!(
                    "timed out waiting for {waiting_for}; received so far: {:?}",
                    shorten(&self.buf)
                )
            }
            Err(e) => panic!(
                "reading {waiting_for}: {e}; received so far: {:?}",
                shorten(&self.buf)
            ),
        }
    }

    /// One reply line, without its LF.
    pub fn read_line(&mut self) -> String {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let line = &line[..line.len() - 1];
                return String::from_utf8(line.to_vec())
                    .unwrap_or_else(|_| panic!("reply line is not UTF-8: {:?}", shorten(line)));
            }
            if !self.fill("a reply line") {
                panic!(
                    "connection closed before a complete reply line; got {:?}",
                    shorten(&self.buf)
                );
            }
        }
    }

    /// Exactly `n` bytes.
    pub fn read_bytes(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            if !self.fill(&format!("{n} bytes of content")) {
                panic!(
                    "connection closed after {} of {n} bytes: {:?}",
                    self.buf.len(),
                    shorten(&self.buf)
                );
            }
        }
        self.buf.drain(..n).collect()
    }

    /// Sends a line, returns the one reply line.
    pub fn request(&mut self, line: &str) -> String {
        self.send_line(line);
        self.read_line()
    }

    /// After an `OK <len> ...` header: the len bytes of content and the LF.
    pub fn read_body(&mut self, header: &str) -> Vec<u8> {
        let len: usize = header
            .strip_prefix("OK ")
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not an `OK <len> ...` header: {header:?}"));
        let body = self.read_bytes(len);
        let lf = self.read_bytes(1);
        assert_eq!(lf, b"\n", "content of {header:?} not followed by LF");
        body
    }

    /// `r <m>`: returns (version, content), checking the header's form.
    pub fn read_mailbox(&mut self, mailbox: u32) -> (u64, Vec<u8>) {
        self.send_line(&format!("r {mailbox}"));
        self.read_reply_of(mailbox)
    }

    /// The reply of an `r <mailbox>` already sent.
    pub fn read_reply_of(&mut self, mailbox: u32) -> (u64, Vec<u8>) {
        let header = self.read_line();
        let (len, m, version) = parse_read_header(&header)
            .unwrap_or_else(|| panic!("bad reply to `r {mailbox}`: {header:?}"));
        assert_eq!(m, mailbox, "reply names another mailbox: {header:?}");
        let body = self.read_body(&header);
        assert_eq!(body.len(), len);
        (version, body)
    }

    /// `w <m> <text>`: returns the version, checking the reply's form.
    pub fn write_mailbox(&mut self, mailbox: u32, text: &str) -> u64 {
        let reply = self.request(&format!("w {mailbox} {text}"));
        let (len, m, version) = parse_write_reply(&reply)
            .unwrap_or_else(|| panic!("bad reply to `w {mailbox} ...`: {reply:?}"));
        assert_eq!((len, m), (text.len(), mailbox), "reply: {reply:?}");
        version
    }

    /// Everything until the server closes the connection.
    pub fn read_to_eof(&mut self) -> Vec<u8> {
        while self.fill("the server to close the connection") {}
        std::mem::take(&mut self.buf)
    }

    /// Bytes received but not yet consumed.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// Asserts that nothing arrives within `quiet`.
    pub fn assert_silent(&mut self, quiet: Duration) {
        self.stream.set_read_timeout(Some(quiet)).unwrap();
        let mut chunk = [0u8; 4096];
        let got = self.stream.read(&mut chunk);
        self.stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        match got {
            Ok(0) => panic!("the server closed the connection"),
            Ok(n) => panic!(
                "unexpected bytes from the server: {:?}",
                shorten(&chunk[..n])
            ),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("socket error while expecting silence: {e}"),
        }
        assert!(
            self.buf.is_empty(),
            "unexpected bytes: {:?}",
            shorten(&self.buf)
        );
    }
}

/// `OK <len> bytes from mailbox <m>, version <v>` -> (len, m, v).
pub fn parse_read_header(line: &str) -> Option<(usize, u32, u64)> {
    let rest = line.strip_prefix("OK ")?;
    let (len, rest) = rest.split_once(" bytes from mailbox ")?;
    let (m, v) = rest.split_once(", version ")?;
    Some((len.parse().ok()?, m.parse().ok()?, v.parse().ok()?))
}

/// `OK wrote <len> bytes to mailbox <m>, version <v>` -> (len, m, v).
pub fn parse_write_reply(line: &str) -> Option<(usize, u32, u64)> {
    let rest = line.strip_prefix("OK wrote ")?;
    let (len, rest) = rest.split_once(" bytes to mailbox ")?;
    let (m, v) = rest.split_once(", version ")?;
    Some((len.parse().ok()?, m.parse().ok()?, v.parse().ok()?))
}

/// A byte string for messages: at most 200 bytes shown, lossy.
pub fn shorten(bytes: &[u8]) -> String {
    if bytes.len() <= 200 {
        String::from_utf8_lossy(bytes).into_owned()
    } else {
        format!(
            "{}... ({} bytes)",
            String::from_utf8_lossy(&bytes[..200]),
            bytes.len()
        )
    }
}

/// Deterministic pseudo-random bytes (xorshift), for content that checks itself.
pub fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Sets SO_LINGER to zero so that closing the socket sends a RST.
pub fn set_linger_zero(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we own, with a valid linger struct.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt SO_LINGER");
}

/// What a stopped daemon left behind, one description per leftover: its
/// processes still running, its segment or any other /dev/shm entry naming
/// dipc and its port (named semaphores included), System V segments it
/// created, its pid file. Empty when it cleaned up completely; unlike
/// [`Daemon::assert_gone`] it counts instead of failing at the first one.
pub fn leftovers_of(d: &Daemon) -> Vec<String> {
    let mut left = Vec::new();
    let seen = d.seen();
    for p in seen.iter().filter(|p| p.is_alive()) {
        left.push(format!(
            "process {} still running: {:?}",
            p.pid,
            cmdline(p.pid)
        ));
    }
    for p in processes_mentioning(&d.marker()) {
        if !seen.iter().any(|s| s.pid == p.pid) {
            left.push(format!(
                "process {} still running: {:?}",
                p.pid,
                cmdline(p.pid)
            ));
        }
    }
    let port = d.port.to_string();
    if let Ok(dir) = fs::read_dir("/dev/shm") {
        for name in dir.filter_map(|e| e.ok()) {
            let name = name.file_name().to_string_lossy().into_owned();
            if name.contains("dipc") && name.contains(&port) {
                left.push(format!("/dev/shm/{name}"));
            }
        }
    }
    let pids: Vec<i32> = seen.iter().map(|p| p.pid).collect();
    left.extend(
        sysv_shm_created_by(&pids)
            .into_iter()
            .map(|l| format!("System V segment: {l}")),
    );
    if d.pid_file.exists() {
        left.push(format!("pid file {}", d.pid_file.display()));
    }
    left
}

// ---------------------------------------------------------------------------
// A client whose failures are values

/// A reply to [`TryConn::read`] or [`TryConn::write`].
#[derive(Debug)]
pub enum Reply {
    /// `r`: version and content.
    Read(u64, Vec<u8>),
    /// `w`/`wb`: the version written.
    Wrote(u64),
    /// An `ERR` line, or any reply of the wrong form.
    Err(String),
}

/// Why a request got no reply: the connection broke (EOF, reset, refused:
/// what a killed worker does to its client), or the client gave up waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoReply {
    Broken,
    TimedOut,
}

fn no_reply(e: io::Error) -> NoReply {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => NoReply::TimedOut,
        _ => NoReply::Broken,
    }
}

/// A connection for tests where connections are expected to break (workers
/// killed under load): unlike [`Client`] it never panics, every failure is a
/// [`NoReply`], and every connect, read and write gives up after `timeout`.
pub struct TryConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl TryConn {
    pub fn connect(port: u16, timeout: Duration) -> Result<TryConn, NoReply> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stream = TcpStream::connect_timeout(&addr, timeout).map_err(no_reply)?;
        stream
            .set_read_timeout(Some(timeout))
            .and_then(|()| stream.set_write_timeout(Some(timeout)))
            .and_then(|()| stream.set_nodelay(true))
            .map_err(no_reply)?;
        Ok(TryConn {
            stream,
            buf: Vec::new(),
        })
    }

    /// At least `n` bytes buffered.
    fn want(&mut self, n: usize) -> Result<(), NoReply> {
        let mut chunk = [0u8; 16384];
        while self.buf.len() < n {
            match self.stream.read(&mut chunk).map_err(no_reply)? {
                0 => return Err(NoReply::Broken),
                got => self.buf.extend_from_slice(&chunk[..got]),
            }
        }
        Ok(())
    }

    /// One reply line, without its LF.
    pub fn line(&mut self) -> Result<String, NoReply> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                return Ok(String::from_utf8_lossy(&line[..pos]).into_owned());
            }
            let have = self.buf.len();
            self.want(have + 1)?;
        }
    }

    /// Sends one line and returns the one reply line (key-value requests,
    /// `stat`: every reply that is one line).
    pub fn request(&mut self, line: &str) -> Result<String, NoReply> {
        self.stream
            .write_all(format!("{line}\n").as_bytes())
            .map_err(no_reply)?;
        self.line()
    }

    /// `r <m>`; a header naming another mailbox, or content not followed by
    /// LF, is a [`Reply::Err`].
    pub fn read(&mut self, m: u32) -> Result<Reply, NoReply> {
        self.stream
            .write_all(format!("r {m}\n").as_bytes())
            .map_err(no_reply)?;
        let header = self.line()?;
        let Some((len, _, version)) = parse_read_header(&header).filter(|h| h.1 == m) else {
            return Ok(Reply::Err(header));
        };
        self.want(len + 1)?;
        let body: Vec<u8> = self.buf.drain(..=len).collect();
        if body[len] != b'\n' {
            return Ok(Reply::Err(format!(
                "{header:?}: content not followed by LF"
            )));
        }
        Ok(Reply::Read(version, body[..len].to_vec()))
    }

    /// `w <m> <text>` or, with `binary`, `wb <m> <len>` and the bytes; an
    /// `OK wrote` naming another length or mailbox is a [`Reply::Err`].
    pub fn write(&mut self, m: u32, text: &str, binary: bool) -> Result<Reply, NoReply> {
        let request = if binary {
            format!("wb {m} {}\n{text}", text.len())
        } else {
            format!("w {m} {text}\n")
        };
        self.stream
            .write_all(request.as_bytes())
            .map_err(no_reply)?;
        let line = self.line()?;
        Ok(match parse_write_reply(&line) {
            Some((len, mm, version)) if (len, mm) == (text.len(), m) => Reply::Wrote(version),
            _ => Reply::Err(line),
        })
    }
}

/// `stat` starts with the geometry (`expected`), then live figures.
pub fn assert_stat_geometry(reply: String, expected: String) {
    assert!(
        reply.starts_with(&format!("{expected} uptime_s=")),
        "stat: expected {expected:?} then the live figures, got {reply:?}"
    );
}

/// The `key=value` fields of a `stat` reply.
pub fn stat_fields(reply: &str) -> std::collections::HashMap<String, String> {
    reply
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// xorshift64 for the tests that make random choices: no dependency, and
/// the seed in a failure message replays a run's choices.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64, salt: u64) -> Rng {
        Rng((seed ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// SIGKILLs one of the daemon's `workers` picked by `rng`: half the time
/// among those in one of the `busy` process states (likelier to be in the
/// middle of something), else among all. False when there was none to kill.
pub fn sigkill_a_worker(d: &Daemon, workers: &[i32], busy: &[char], rng: &mut Rng) -> bool {
    let running: Vec<i32> = workers
        .iter()
        .copied()
        .filter(|&p| proc_stat(p).is_some_and(|s| busy.contains(&s.state)))
        .collect();
    let pool = if running.is_empty() || rng.below(2) == 0 {
        workers
    } else {
        &running
    };
    if pool.is_empty() {
        return false;
    }
    let pid = pool[rng.below(pool.len() as u64) as usize];
    match ProcId::of(pid).filter(|p| p.parent() == Some(d.pid)) {
        Some(worker) => {
            worker.signal(libc::SIGKILL);
            true
        }
        None => false,
    }
}
