//! A stand-in for dipc with the requests it is only getting now: `r`,
//! `append` (oldest whole lines dropped past 2048 bytes), `wait` and `q`,
//! with docs/prog3.md's replies, so that the chat can be tested before the
//! real daemon has them. Without `wait` (FakeDipc::without_wait) it answers
//! `wait` as an older dipc does.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const CAPACITY: usize = 2048;

#[derive(Default)]
struct Mailboxes {
    /// Content and version of each mailbox written so far.
    boxes: Mutex<HashMap<u32, (Vec<u8>, u64)>>,
    changed: Condvar,
}

pub struct FakeDipc {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl FakeDipc {
    pub fn start() -> FakeDipc {
        FakeDipc::serve(true)
    }

    pub fn without_wait() -> FakeDipc {
        FakeDipc::serve(false)
    }

    fn serve(with_wait: bool) -> FakeDipc {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("local_addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mailboxes::default());
        let stopping = Arc::clone(&stop);
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let state = Arc::clone(&state);
                thread::spawn(move || serve_client(stream, &state, with_wait));
            }
        });
        FakeDipc { port, stop }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for FakeDipc {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn read_reply(mailbox: u32, content: &[u8], version: u64) -> Vec<u8> {
    let mut reply = format!(
        "OK {} bytes from mailbox {mailbox}, version {version}\n",
        content.len()
    )
    .into_bytes();
    reply.extend_from_slice(content);
    reply.push(b'\n');
    reply
}

fn serve_client(stream: TcpStream, state: &Mailboxes, with_wait: bool) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let request = line.trim_end_matches(['\n', '\r']);
        let (command, rest) = request.split_once(' ').unwrap_or((request, ""));
        let reply = match command {
            "r" => {
                let mailbox: u32 = rest.trim().parse().unwrap_or(0);
                let boxes = state.boxes.lock().expect("lock");
                let (content, version) = boxes.get(&mailbox).cloned().unwrap_or_default();
                read_reply(mailbox, &content, version)
            }
            "append" => {
                let (mailbox, text) = rest.split_once(' ').unwrap_or((rest, ""));
                let mailbox: u32 = mailbox.parse().unwrap_or(0);
                let mut boxes = state.boxes.lock().expect("lock");
                let (content, version) = boxes.entry(mailbox).or_default();
                content.extend_from_slice(text.as_bytes());
                content.push(b'\n');
                while content.len() > CAPACITY {
                    let end = content.iter().position(|&b| b == b'\n').unwrap_or(0);
                    content.drain(..=end);
                }
                *version += 1;
                let reply = format!(
                    "OK appended {} bytes to mailbox {mailbox}, version {version}\n",
                    text.len() + 1
                );
                state.changed.notify_all();
                reply.into_bytes()
            }
            "wait" if with_wait => {
                let words: Vec<u64> = rest
                    .split_whitespace()
                    .filter_map(|w| w.parse().ok())
                    .collect();
                let (mailbox, since) = (words[0] as u32, words[1]);
                let deadline =
                    Instant::now() + Duration::from_millis(words.get(2).copied().unwrap_or(30_000));
                let mut boxes = state.boxes.lock().expect("lock");
                loop {
                    let (content, version) = boxes.get(&mailbox).cloned().unwrap_or_default();
                    if version > since {
                        break read_reply(mailbox, &content, version);
                    }
                    let now = Instant::now();
                    if now >= deadline {
                        break format!("TIMEOUT mailbox {mailbox} is at version {version}\n")
                            .into_bytes();
                    }
                    boxes = state
                        .changed
                        .wait_timeout(boxes, deadline - now)
                        .expect("lock")
                        .0;
                }
            }
            "q" => {
                let _ = writer.write_all(b"Goodbye");
                return;
            }
            other => format!("ERR unknown command '{other}'\n").into_bytes(),
        };
        if writer.write_all(&reply).is_err() {
            return;
        }
    }
}
