//! A program on a pseudo-terminal, as a person at a keyboard would run it:
//! its stdin, stdout and stderr are the terminal; the test types into it
//! and reads what it shows.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::pty::{openpty, Winsize};

use super::wait_for;

pub struct Terminal {
    child: Child,
    master: File,
    /// Everything the program wrote to the terminal.
    screen: Arc<Mutex<Vec<u8>>>,
    /// Where the next expect() starts looking.
    seen: usize,
}

impl Terminal {
    /// Starts `program <args>` on a new terminal of 40 x 200, with `env`
    /// added to its environment.
    pub fn spawn(program: &Path, args: &[&str], env: &[(&str, &OsStr)]) -> Terminal {
        let size = Winsize {
            ws_row: 40,
            ws_col: 200,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = openpty(&size, None).expect("openpty");
        // The program gets the slave only.
        fcntl(pty.master.as_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).expect("FD_CLOEXEC");
        let slave = File::from(pty.slave);
        let stdio = || Stdio::from(slave.try_clone().expect("dup the slave"));
        let child = Command::new(program)
            .args(args)
            .envs(env.iter().copied())
            .stdin(stdio())
            .stdout(stdio())
            .stderr(stdio())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
        // Only the program holds the slave now: once it exits, reading the
        // master fails and the reader below ends.
        drop(slave);
        let master = File::from(pty.master);
        let screen = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().expect("dup the master");
        let shown = Arc::clone(&screen);
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                shown
                    .lock()
                    .expect("screen lock")
                    .extend_from_slice(&buf[..n]);
            }
        });
        Terminal {
            child,
            master,
            screen,
            seen: 0,
        }
    }

    /// Everything shown so far, as text.
    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().expect("screen lock")).into_owned()
    }

    /// Types `keys` (a raw terminal: Enter is "\r", Ctrl-C "\x03", Ctrl-D
    /// "\x04").
    pub fn type_keys(&mut self, keys: &str) {
        self.master
            .write_all(keys.as_bytes())
            .expect("typing into the terminal");
    }

    /// Types `keys` one at a time, as a person does. (rustyline 18 with an
    /// external printer, as the chat has, selects on the terminal before
    /// looking at what it has read ahead: keys that arrive together are
    /// taken in only when the next one comes.)
    pub fn type_slowly(&mut self, keys: &str) {
        let mut buf = [0u8; 4];
        for c in keys.chars() {
            if c == '\r' {
                thread::sleep(Duration::from_millis(30));
            }
            self.type_keys(c.encode_utf8(&mut buf));
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits until `text` is shown after what earlier expects matched, and
    /// moves past it; panics with the screen after `timeout`.
    pub fn expect(&mut self, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let screen = self.screen.lock().expect("screen lock");
                let rest = &screen[self.seen.min(screen.len())..];
                if let Some(at) = rest.windows(text.len()).position(|w| w == text.as_bytes()) {
                    self.seen += at + text.len();
                    return;
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "{text:?} not shown within {timeout:?}; the screen:\n{}",
                    self.screen()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The program's exit status, once it exits (None: still running after
    /// `timeout`, and killed).
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_for(&mut self.child, timeout)
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
