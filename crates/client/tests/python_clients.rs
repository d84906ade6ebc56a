//! The Python clients of crates/client/python against the real daemon:
//! dipc.py's unittest script, text_client.py driven through piped stdin,
//! and tk_client.py's window under Xvfb (with a screenshot). python3,
//! python3-tk, Xvfb and ImageMagick's `import` are required: a missing one
//! fails the test with what to install (.ci/run installs them).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{
    first_line, free_port, on_path, process_exists, run_with_env, wait_for, Daemon, Output,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The longest a Python script of these tests may run.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

fn python_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python")
}

fn require(program: &str, package: &str) -> PathBuf {
    on_path(program).unwrap_or_else(|| {
        panic!("{program} is not installed: apt-get install {package} (.ci/run installs it)")
    })
}

fn python3() -> PathBuf {
    require("python3", "python3")
}

/// A python3 that can import tkinter: the one on PATH, else Debian's (the
/// one python3-tk serves when PATH's is another build).
fn python3_with_tk() -> PathBuf {
    let mut candidates: Vec<PathBuf> = on_path("python3").into_iter().collect();
    candidates.push(PathBuf::from("/usr/bin/python3"));
    candidates
        .iter()
        .find(|python| {
            Command::new(python)
                .args(["-c", "import tkinter"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success())
        })
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "no python3 can import tkinter (tried {candidates:?}): \
                 apt-get install python3-tk (.ci/run installs it)"
            )
        })
}

/// Runs `python script args` in `dir` with `env`, `stdin` piped in, its
/// output in files; killed past SCRIPT_TIMEOUT.
fn run_python(
    dir: &Path,
    python: &Path,
    script: &str,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: &[u8],
) -> Output {
    let script = python_dir().join(script).display().to_string();
    let args: Vec<&str> = std::iter::once(script.as_str())
        .chain(args.iter().copied())
        .collect();
    // No __pycache__ in the source tree.
    let mut env = env.to_vec();
    env.push(("PYTHONDONTWRITEBYTECODE", "1"));
    run_with_env(dir, python, &args, &env, Some(stdin), SCRIPT_TIMEOUT)
}

#[test]
fn python_module_against_a_live_daemon() {
    let daemon = Daemon::start(8);
    let port = daemon.port.to_string();
    let out = run_python(
        daemon.dir.path(),
        &python3(),
        "tests/test_dipc.py",
        &[],
        &[("DIPC_PORT", &port)],
        b"",
    );
    // unittest reports on stderr.
    assert!(out.status.success(), "{}", out.describe());
    assert!(
        out.stderr.contains("\nOK") && out.stderr.contains("Ran "),
        "{}",
        out.describe()
    );
    assert!(!out.stderr.contains("FAIL"), "{}", out.describe());
}

#[test]
fn text_client_through_piped_stdin() {
    let daemon = Daemon::start(4);
    let port = daemon.port.to_string();
    let long = "a".repeat(3000);
    let input = format!(
        "write 1 hello  dipc \n\
         read 1\n\
         write\n2\nasked for, line by line\n\
         r 2\n\
         put 77 seventy seven\n\
         get 77\n\
         put 77 again\n\
         del 77\n\
         get 77\n\
         delete 77\n\
         read 9\n\
         frobnicate\n\
         read one\n\
         write 3 {long}\n\
         quit\n\
         read 1\n"
    );
    let out = run_python(
        daemon.dir.path(),
        &python3(),
        "text_client.py",
        &["127.0.0.1", &port],
        &[],
        input.as_bytes(),
    );
    assert!(out.status.success(), "{}", out.describe());
    let expected = "wrote 12 bytes to mailbox 1, version 1\n\
                    mailbox 1, version 1, 12 bytes:\n\
                    hello  dipc \n\
                    wrote 23 bytes to mailbox 2, version 1\n\
                    mailbox 2, version 1, 23 bytes:\n\
                    asked for, line by line\n\
                    stored key 77\n\
                    seventy seven\n\
                    deleted key 77\n\
                    no such key 77\n\
                    no such key 77\n\
                    Goodbye\n";
    assert_eq!(out.stdout, expected, "{}", out.describe());
    let errors = "error: key exists\n\
                  error: mailbox 9 is out of range 1..4\n\
                  error: unknown command 'frobnicate' (try help)\n\
                  error: mailbox 'one' is not a number\n\
                  error: data is 3000 bytes, over the 2048-byte packet size; \
                  the 3000 bytes that follow are skipped\n";
    assert_eq!(out.stderr, errors, "{}", out.describe());
}

#[test]
fn text_client_without_a_daemon_says_so() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let port = free_port().to_string();
    let out = run_python(
        dir.path(),
        &python3(),
        "text_client.py",
        &["127.0.0.1", &port],
        &[],
        b"read 1\n",
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.describe());
    assert_eq!(
        out.stderr,
        format!(
            "text_client: cannot connect to 127.0.0.1:{port}: connection refused: \
             is dipc running on 127.0.0.1:{port}?\n"
        ),
        "{}",
        out.describe()
    );
    assert_eq!(out.stdout, "", "{}", out.describe());
}

/// An Xvfb server on a display it picks itself (-displayfd: no race with
/// another test's); SIGTERM, then SIGKILL, when dropped.
struct Xvfb {
    child: Option<Child>,
    display: String,
}

impl Xvfb {
    fn start() -> Xvfb {
        let program = require("Xvfb", "xvfb");
        let mut child = Command::new(program)
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                "800x600x24",
                "-nolisten",
                "tcp",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting Xvfb");
        let stdout = child.stdout.take().expect("piped stdout");
        // The guard exists before the wait: an Xvfb that never says its
        // display is still stopped.
        let mut guard = Xvfb {
            child: Some(child),
            display: String::new(),
        };
        let line = first_line(stdout, Duration::from_secs(20), "Xvfb's display number");
        let number: u32 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("Xvfb wrote {line:?}, not a display number"));
        guard.display = format!(":{number}");
        guard
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Our unreaped child: the pid cannot have been reused.
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let _ = wait_for(&mut child, Duration::from_secs(10));
        }
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The committed screenshot that README.md shows.
fn committed_screenshot() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/images/tk_client.png")
}

/// DIPC_UPDATE_SCREENSHOT=1: the run replaces the committed screenshot
/// (an ordinary run leaves it alone: the port it shows changes each run).
fn updating_the_screenshot() -> bool {
    std::env::var_os("DIPC_UPDATE_SCREENSHOT").is_some_and(|v| v == "1")
}

#[test]
fn tk_client_writes_and_reads_under_xvfb() {
    let python = python3_with_tk();
    require("import", "imagemagick");
    let mut xvfb = Xvfb::start();
    let daemon = Daemon::start(4);
    let port = daemon.port.to_string();
    let screenshot = daemon.dir.path().join("tk_client.png");
    let out = run_python(
        daemon.dir.path(),
        &python,
        "tests/test_tk_client.py",
        &[],
        &[
            ("DISPLAY", xvfb.display.as_str()),
            ("DIPC_PORT", &port),
            (
                "DIPC_SCREENSHOT",
                screenshot.to_str().expect("utf-8 screenshot path"),
            ),
        ],
        b"",
    );
    assert!(out.status.success(), "{}", out.describe());
    assert!(
        out.stdout.ends_with("tk_client: all checks passed\n"),
        "{}",
        out.describe()
    );
    let png = fs::read(&screenshot).expect("the screenshot was written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000);
    let kept = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tk_client.png");
    fs::write(&kept, &png).expect("keeping the screenshot");
    eprintln!("screenshot: {}", kept.display());
    if updating_the_screenshot() {
        // Renamed into place: the other test never reads half a file.
        let committed = committed_screenshot();
        let partial = committed.with_extension("png.partial");
        fs::write(&partial, &png).expect("writing the new screenshot");
        fs::rename(&partial, &committed).expect("replacing the committed screenshot");
        eprintln!("screenshot: {} replaced", committed.display());
    }

    let pid = xvfb.pid().expect("Xvfb running");
    xvfb.stop();
    assert!(!process_exists(pid), "Xvfb {pid} still exists after stop");
}

/// The committed screenshot that README.md shows is there and a PNG.
#[test]
fn the_committed_screenshot_is_a_png() {
    let path = committed_screenshot();
    let png = fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (DIPC_UPDATE_SCREENSHOT=1 makes it)",
            path.display()
        )
    });
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        path.display()
    );
}
