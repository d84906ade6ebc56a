//! Helpers of the client's end-to-end tests: finding the binaries, running
//! a command with a time limit, and guards that stop what a test started
//! even when the test fails.

#![allow(dead_code)]

pub mod fake_dipc;
pub mod gateway;
pub mod pty;

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The longest any command of a test may run.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

pub fn client_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_client"))
}

/// Where `program` is on the PATH, if it is installed.
pub fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    })
}

/// Another binary of the workspace (dipc, dipcrm). Cargo builds only this
/// package's binaries for its tests; the Makefile builds the workspace
/// first. They sit next to the client binary; failing that, in
/// CARGO_TARGET_DIR or the workspace's target directory.
pub fn workspace_bin(name: &str) -> PathBuf {
    let mut candidates = vec![client_bin().with_file_name(name)];
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        candidates.push(Path::new(&dir).join("debug").join(name));
    }
    candidates.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/debug")
            .join(name),
    );
    candidates
        .iter()
        .find(|path| path.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "{name} is not built (looked at {candidates:?}): run `cargo build --workspace` first"
            )
        })
}

/// A port that was free a moment ago (the kernel picks it; the small race
/// with another process taking it is the price of a fixed-port server).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding port 0");
    listener.local_addr().expect("local_addr").port()
}

/// What a finished command did.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    /// stdout as text (bytes that are not UTF-8 replaced).
    pub stdout: String,
    /// stdout exactly.
    pub stdout_bytes: Vec<u8>,
    pub stderr: String,
    pub command: String,
}

impl Output {
    pub fn describe(&self) -> String {
        format!(
            "`{}` -> {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command, self.status, self.stdout, self.stderr
        )
    }

    /// The JSON object a `--json` run printed.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("no JSON on stdout ({e}): {}", self.describe()))
    }
}

/// The first line a child writes on `stdout`, read by a thread so that a
/// child that never writes it fails the test after `timeout` instead of
/// hanging it.
pub fn first_line(stdout: ChildStdout, timeout: Duration, what: &str) -> String {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    rx.recv_timeout(timeout)
        .unwrap_or_else(|_| panic!("no {what} within {timeout:?}"))
}

/// Runs `program` with its output in files of `dir` (not pipes: a daemon
/// that kept a pipe open would hang the read), killing it after `timeout`.
pub fn run_in(dir: &Path, program: &Path, args: &[&str], timeout: Duration) -> Output {
    run_with_input(dir, program, args, None, timeout)
}

/// run_in with `input` as stdin (None: /dev/null), from a file of `dir`.
pub fn run_with_input(
    dir: &Path,
    program: &Path,
    args: &[&str],
    input: Option<&[u8]>,
    timeout: Duration,
) -> Output {
    run_with_env(dir, program, args, &[], input, timeout)
}

/// run_with_input with `env` added to the environment.
pub fn run_with_env(
    dir: &Path,
    program: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    input: Option<&[u8]>,
    timeout: Duration,
) -> Output {
    let command = format!("{} {}", program.display(), args.join(" "));
    let name = program
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("cmd");
    let unique = format!("{name}-{}", fastish_id());
    let out_path = dir.join(format!("{unique}.stdout"));
    let err_path = dir.join(format!("{unique}.stderr"));
    let stdin = match input {
        Some(bytes) => {
            let in_path = dir.join(format!("{unique}.stdin"));
            fs::write(&in_path, bytes).expect("writing a stdin file");
            Stdio::from(fs::File::open(&in_path).expect("opening the stdin file"))
        }
        None => Stdio::null(),
    };
    let mut child = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        // dipc's database.txt (and anything else relative) lands in `dir`.
        .current_dir(dir)
        .stdin(stdin)
        .stdout(fs::File::create(&out_path).expect("creating a stdout file"))
        .stderr(fs::File::create(&err_path).expect("creating a stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command}: {e}"));
    let status = wait_for(&mut child, timeout)
        .unwrap_or_else(|| panic!("`{command}` still running after {timeout:?}: killed"));
    let stdout_bytes = fs::read(&out_path).unwrap_or_default();
    Output {
        status,
        stdout: String::from_utf8_lossy(&stdout_bytes).into_owned(),
        stdout_bytes,
        stderr: fs::read_to_string(&err_path).unwrap_or_default(),
        command,
    }
}

/// Runs `client <args>` with the usual time limit.
pub fn client(dir: &Path, args: &[&str]) -> Output {
    run_in(dir, &client_bin(), args, COMMAND_TIMEOUT)
}

/// Runs `client <args>` with `input` on its stdin.
pub fn client_with_input(dir: &Path, args: &[&str], input: &[u8]) -> Output {
    run_with_input(dir, &client_bin(), args, Some(input), COMMAND_TIMEOUT)
}

/// A name part no other call of this process has given.
fn fastish_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Waits for `child` until `timeout`; kills and reaps it past that (None).
pub fn wait_for(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// Whether `pid` names a process, zombies included.
pub fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The pids whose parent is `pid`.
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            let Ok(stat) = fs::read_to_string(format!("/proc/{child}/stat")) else {
                return false;
            };
            // The command name is in parentheses and may hold anything.
            let Some(rest) = stat.rfind(')').map(|at| &stat[at + 1..]) else {
                return false;
            };
            rest.split_whitespace().nth(1) == Some(&pid.to_string())
        })
        .collect()
}

/// Polls `done` until it holds or `timeout` passes.
pub fn eventually(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// A `client ceiling` running in the foreground; stopped with SIGTERM (then
/// SIGKILL) when dropped.
pub struct Ceiling {
    child: Option<Child>,
    pub port: u16,
    pub pid: u32,
}

impl Ceiling {
    /// Starts `client ceiling --port 0 <args>` and waits for its "serving
    /// port P" line, which names the port the kernel chose.
    pub fn start(args: &[&str]) -> Ceiling {
        let mut child = Command::new(client_bin())
            .args(["ceiling", "--port", "0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting client ceiling");
        let pid = child.id();
        let stdout = child.stdout.take().expect("piped stdout");
        // The guard exists before the wait, so that a ceiling that never
        // says it serves is still stopped.
        let mut guard = Ceiling {
            child: Some(child),
            port: 0,
            pid,
        };
        let line = first_line(
            stdout,
            Duration::from_secs(10),
            "client ceiling's serving line",
        );
        guard.port = line
            .strip_prefix("ceiling: serving port ")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from client ceiling: {line:?}"));
        guard
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGTERM, then its exit status (None: it had to be killed).
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        // The pid is this guard's unreaped child, so it cannot have been
        // recycled for another process.
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        wait_for(&mut child, Duration::from_secs(10))
    }
}

impl Drop for Ceiling {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// A dipc daemon on a free port, in a temporary directory; `dipcrm` stops
/// it when dropped.
pub struct Daemon {
    pub port: u16,
    pub dir: tempfile::TempDir,
    dipcrm: PathBuf,
}

impl Daemon {
    /// `dipc <mailboxes> 8 <port> 2 --log ... --pid-file ...`: it detaches
    /// and returns once it serves.
    pub fn start(mailboxes: u32) -> Daemon {
        Daemon::start_with(mailboxes, &[])
    }

    /// Daemon::start with more options (`--gateway HOST:PORT`...).
    pub fn start_with(mailboxes: u32, extra: &[&str]) -> Daemon {
        let dir = tempfile::tempdir().expect("temporary directory");
        let dipc = workspace_bin("dipc");
        // Stopping it needs dipcrm: missing, nothing is started.
        let dipcrm = workspace_bin("dipcrm");
        // A port taken between free_port() and dipc's bind makes dipc
        // refuse; another try gets another port.
        for _ in 0..5 {
            let port = free_port();
            let log = dir.path().join("dipc.log");
            let pid_file = dir.path().join("dipc.pid");
            let mailboxes = mailboxes.to_string();
            let port_arg = port.to_string();
            let mut args = vec![
                mailboxes.as_str(),
                "8",
                &port_arg,
                "2",
                "--log",
                log.to_str().expect("utf-8 path"),
                "--pid-file",
                pid_file.to_str().expect("utf-8 path"),
            ];
            args.extend_from_slice(extra);
            let out = run_in(dir.path(), &dipc, &args, Duration::from_secs(30));
            if out.status.success() {
                return Daemon { port, dir, dipcrm };
            }
            eprintln!(
                "dipc did not start, trying another port: {}",
                out.describe()
            );
        }
        panic!("dipc would not start on any of 5 ports");
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Daemon {
    /// dipcrm; if it fails, the supervisor (from its pid file) and its
    /// workers SIGKILLed and the segment removed. Nothing before that may
    /// panic, since this also runs while a failing test unwinds.
    fn drop(&mut self) {
        let stopped = Command::new(&self.dipcrm)
            .arg(self.port.to_string())
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()
            .and_then(|mut child| wait_for(&mut child, Duration::from_secs(30)))
            .is_some_and(|status| status.success());
        if stopped {
            return;
        }
        // Only a process that still says it is this port's supervisor (its
        // title): a pid file can outlive its process, and pids are reused.
        let title = format!("dipc: supervisor, port {},", self.port);
        let supervisor = fs::read_to_string(self.dir.path().join("dipc.pid"))
            .ok()
            .and_then(|pid| pid.trim().parse::<u32>().ok())
            .filter(|pid| {
                fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).starts_with(&title))
            });
        if let Some(pid) = supervisor {
            for process in children_of(pid).into_iter().chain([pid]) {
                let _ = kill(Pid::from_raw(process as i32), Signal::SIGKILL);
            }
        }
        let _ = fs::remove_file(format!("/dev/shm/dipc.{}", self.port));
        if !thread::panicking() {
            panic!("dipcrm {} failed; the daemon was killed", self.port);
        }
    }
}
