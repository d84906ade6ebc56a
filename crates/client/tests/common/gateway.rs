//! The real `gateway` binary in the foreground on a free UDP port, for one
//! test; stopped (SIGTERM, then SIGKILL) when dropped.

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gateway::wire::{Kind, Message};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{eventually, first_line, wait_for, workspace_bin};

pub struct Gateway {
    child: Child,
    pub port: u16,
}

impl Gateway {
    /// Starts `gateway 0 --foreground --bind 127.0.0.1` and reads the port
    /// from its first line, `gateway: serving UDP 127.0.0.1:PORT (pid N)`.
    pub fn start() -> Gateway {
        let child = Command::new(workspace_bin("gateway"))
            .args(["0", "--foreground", "--bind", "127.0.0.1"])
            .args(["--health-interval", "0.3", "--ttl", "1.5"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the gateway");
        // In its guard before anything can fail.
        let mut gateway = Gateway { child, port: 0 };
        let stdout = gateway.child.stdout.take().expect("piped stdout");
        let line = first_line(
            stdout,
            Duration::from_secs(10),
            "the gateway's serving line",
        );
        gateway.port = line
            .split_whitespace()
            .nth(3)
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in the gateway's first line {line:?}"));
        gateway
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The status text (None: no answer within 500 ms).
    pub fn status(&self) -> Option<String> {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("a UDP socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(500)))
            .expect("a timeout");
        let request = Message::new(Kind::Status, None, 0).encode();
        socket
            .send_to(&request, ("127.0.0.1", self.port))
            .expect("sending to the gateway");
        let mut buf = vec![0u8; 65_536];
        let n = socket.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// Waits until the status lists the server of TCP port `port` as
    /// available.
    pub fn wait_available(&self, port: u16) {
        let wanted = format!(":{port} state=available");
        assert!(
            eventually(Duration::from_secs(10), || self
                .status()
                .is_some_and(|s| s.contains(&wanted))),
            "server {port} never became available: {:?}",
            self.status()
        );
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // Our own unreaped child: its pid cannot have been recycled.
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        wait_for(&mut self.child, Duration::from_secs(5));
    }
}
